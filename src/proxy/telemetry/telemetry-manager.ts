// The proxy's telemetry from config.telemetry: Istio metrics with their scrape endpoint, the access log, and
// the peer metadata this proxy sends. Follows the proxy's config lifecycle: prepare (open the log, bind the
// scrape port: what can fail) -> commit (swap into the TelemetrySlot). What a new config keeps the same is kept:
// counters survive config pushes, an unchanged log file stays open, an unchanged scrape port stays bound.
import type { NodeInfo, TelemetryConfig } from "../config/types.ts";
import type { StatsStore } from "../stats/stats.ts";
import { JsonAccessLog } from "./access-log/json-access-log.ts";
import { decodePeer, encodePeer, peerInfoFromMetadata } from "./peer/peer-metadata-codec.ts";
import { IstioMetrics } from "./prometheus/istio-metrics.ts";
import { ScrapeServer } from "./prometheus/scrape-server.ts";
import type { HttpRequestRecord, TcpConnectionRecord, TelemetrySink } from "./request-record.ts";
import type { TelemetrySlot } from "./telemetry-slot.ts";

interface State {
  readonly identity: string;
  readonly metrics: IstioMetrics | undefined;
  readonly scrape: ScrapeServer | undefined;
  readonly scrapeAt: string;
  readonly accessLog: JsonAccessLog | undefined;
}

export interface PreparedTelemetry {
  readonly state: State;
  readonly ownPeerHeader: string;
  readonly sink: TelemetrySink | undefined;
}

export class TelemetryManager {
  private readonly slot: TelemetrySlot;
  private readonly stats: StatsStore;
  private current: State = {
    identity: "",
    metrics: undefined,
    scrape: undefined,
    scrapeAt: "",
    accessLog: undefined,
  };
  /** The bound scrape port (0 when none). */
  scrapePort = 0;

  constructor(slot: TelemetrySlot, stats: StatsStore) {
    this.slot = slot;
    this.stats = stats;
  }

  /** Builds what the config asks for, reusing what is unchanged. Throws when the scrape port cannot be bound. */
  async prepare(config: TelemetryConfig | undefined, node: NodeInfo | undefined): Promise<PreparedTelemetry> {
    const own = peerInfoFromMetadata(node?.metadata);
    const identity = JSON.stringify(own);
    const cur = this.current;
    let metrics: IstioMetrics | undefined;
    let scrape: ScrapeServer | undefined;
    let scrapeAt = "";
    if (config?.prometheus) {
      metrics = cur.metrics && cur.identity === identity ? cur.metrics : new IstioMetrics(own);
      const address = config.prometheus.address ?? "0.0.0.0";
      const port = config.prometheus.port ?? 15090;
      scrapeAt = `${address}:${port}`;
      if (cur.scrape && cur.scrapeAt === scrapeAt) scrape = cur.scrape;
      else {
        const m = metrics;
        scrape = new ScrapeServer({
          istio: () => m.exposition(),
          envoy: () => this.stats.snapshot(),
          gauges: () => this.stats.gaugeNames(),
        });
        this.scrapePort = await scrape.listen(address, port);
      }
    }
    let accessLog: JsonAccessLog | undefined;
    if (config?.accessLog) {
      accessLog =
        cur.accessLog && cur.accessLog.path === config.accessLog.path
          ? cur.accessLog
          : new JsonAccessLog(config.accessLog.path);
    }
    const sinks = [metrics, accessLog].filter((s): s is IstioMetrics | JsonAccessLog => s !== undefined);
    return {
      state: { identity, metrics, scrape, scrapeAt, accessLog },
      ownPeerHeader: sinks.length > 0 ? encodePeer(own) : "",
      sink: sinks.length === 0 ? undefined : sinks.length === 1 ? sinks[0] : new FanoutSink(sinks),
    };
  }

  /** Swaps the prepared telemetry in; closes what the new config dropped. */
  commit(p: PreparedTelemetry): void {
    const old = this.current;
    this.current = p.state;
    this.slot.sink = p.sink;
    this.slot.ownPeerHeader = p.ownPeerHeader;
    this.slot.decodePeer = decodePeer;
    if (old.scrape && old.scrape !== p.state.scrape) old.scrape.close();
    if (old.accessLog && old.accessLog !== p.state.accessLog) void old.accessLog.close();
  }

  /** Throws away a prepared state that was not committed (the config was refused). */
  discard(p: PreparedTelemetry): void {
    if (p.state.scrape && p.state.scrape !== this.current.scrape) p.state.scrape.close();
    if (p.state.accessLog && p.state.accessLog !== this.current.accessLog) void p.state.accessLog.close();
  }

  async close(): Promise<void> {
    this.current.scrape?.close();
    await this.current.accessLog?.close();
    this.slot.sink = undefined;
  }

  get metrics(): IstioMetrics | undefined {
    return this.current.metrics;
  }

  get accessLog(): JsonAccessLog | undefined {
    return this.current.accessLog;
  }
}

class FanoutSink implements TelemetrySink {
  private readonly sinks: readonly TelemetrySink[];

  constructor(sinks: readonly TelemetrySink[]) {
    this.sinks = sinks;
  }

  onHttpRequest(r: HttpRequestRecord): void {
    for (const s of this.sinks) s.onHttpRequest(r);
  }

  onTcpOpen(r: Parameters<NonNullable<TelemetrySink["onTcpOpen"]>>[0]): void {
    for (const s of this.sinks) s.onTcpOpen?.(r);
  }

  onTcpClose(r: TcpConnectionRecord): void {
    for (const s of this.sinks) s.onTcpClose?.(r);
  }
}
