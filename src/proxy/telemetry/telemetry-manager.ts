// The proxy's telemetry from config.telemetry: Istio metrics with their scrape endpoint, the access log, and
// the peer metadata this proxy sends. Follows the proxy's config lifecycle: prepare (open the log, bind the
// scrape port: what can fail) -> commit (swap into the TelemetrySlot). What a new config keeps the same is kept:
// counters survive config pushes, an unchanged log file stays open, an unchanged scrape port stays bound.
import type { NodeInfo, TelemetryConfig } from "../config/types.ts";
import type { StatsStore } from "../stats/stats.ts";
import type { JsonAccessLog } from "./access-log/json-access-log.ts";
import { decodePeer, encodePeer, peerInfoFromMetadata } from "./peer/peer-metadata-codec.ts";
import type { IstioMetrics } from "./prometheus/istio-metrics.ts";
import type { ScrapeServer } from "./prometheus/scrape-server.ts";
import type { HttpRequestRecord, TcpConnectionRecord, TelemetrySink } from "./request-record.ts";
import type { TelemetrySlot } from "./telemetry-slot.ts";
import type { RequestTracer } from "./trace/request-tracer.ts";

interface State {
  readonly identity: string;
  readonly tracer: RequestTracer | undefined;
  readonly tracingKey: string;
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
    tracer: undefined,
    tracingKey: "",
    metrics: undefined,
    scrape: undefined,
    scrapeAt: "",
    accessLog: undefined,
  };
  /** The bound scrape port (0 when none). */
  scrapePort = 0;
  /** Copies the access log's counters into the stats (on reads of /stats and scrapes). */
  logStats: () => void = () => {};

  constructor(slot: TelemetrySlot, stats: StatsStore) {
    this.slot = slot;
    this.stats = stats;
  }

  /** Builds what the config asks for, reusing what is unchanged. Throws when the scrape port cannot be bound. */
  async prepare(config: TelemetryConfig | undefined, node: NodeInfo | undefined): Promise<PreparedTelemetry> {
    // This proxy's own principal is what its control plane says it is (the identity its CA certifies); peers'
    // principals come only from their verified certificates.
    const principal = node?.metadata?.principal;
    const own = {
      ...peerInfoFromMetadata(node?.metadata),
      ...(principal !== undefined && /^spiffe:\/\/[^\s"\\]{1,500}$/.test(principal) ? { principal } : {}),
    };
    const identity = JSON.stringify(own);
    const cur = this.current;
    let metrics: IstioMetrics | undefined;
    let scrape: ScrapeServer | undefined;
    let scrapeAt = "";
    // Each piece is loaded when a config first asks for it: a proxy without telemetry loads none of it.
    if (config?.prometheus) {
      const { IstioMetrics } = await import("./prometheus/istio-metrics.ts");
      const { ScrapeServer } = await import("./prometheus/scrape-server.ts");
      metrics = cur.metrics && cur.identity === identity ? cur.metrics : new IstioMetrics(own);
      const address = config.prometheus.address ?? "0.0.0.0";
      const port = config.prometheus.port ?? 15090;
      scrapeAt = `${address}:${port}`;
      if (cur.scrape && cur.scrapeAt === scrapeAt) scrape = cur.scrape;
      else {
        const m = metrics;
        scrape = new ScrapeServer({
          istio: () => m.exposition(),
          envoy: () => {
            this.logStats();
            return this.stats.snapshot();
          },
          gauges: () => this.stats.gaugeNames(),
        });
        this.scrapePort = await scrape.listen(address, port);
      }
    }
    let accessLog: JsonAccessLog | undefined;
    if (config?.accessLog) {
      const { JsonAccessLog } = await import("./access-log/json-access-log.ts");
      accessLog =
        cur.accessLog && cur.accessLog.path === config.accessLog.path
          ? cur.accessLog
          : new JsonAccessLog(config.accessLog.path);
    }
    let tracer: RequestTracer | undefined;
    const tracingKey = config?.tracing ? JSON.stringify([config.tracing, own]) : "";
    if (config?.tracing) {
      if (cur.tracer && cur.tracingKey === tracingKey) tracer = cur.tracer;
      else {
        // OpenTelemetry is loaded only for proxies that trace.
        const { OtlpSpanSink } = await import("./trace/otlp-span-sink.ts");
        const { RequestTracer } = await import("./trace/request-tracer.ts");
        const t = config.tracing;
        tracer = new RequestTracer(
          t.samplingPercent ?? 1,
          new OtlpSpanSink({
            endpoint: t.otlpEndpoint,
            serviceName: t.serviceName ?? own.workload ?? "isthmus-proxy",
          }),
        );
      }
    }
    if (accessLog) {
      const log = accessLog;
      this.stats.gauge("access_log.lines_written");
      this.logStats = () => {
        this.stats.gauge("access_log.lines_written").value = log.written;
        this.stats.gauge("access_log.lines_dropped").value = log.dropped;
      };
    }
    const sinks = [metrics, accessLog].filter((s): s is IstioMetrics | JsonAccessLog => s !== undefined);
    // With tracing alone the exchanges still build records: they carry the span's data.
    const all: TelemetrySink[] = sinks.length === 0 && tracer !== undefined ? [NO_SINK] : sinks;
    return {
      state: { identity, tracer, tracingKey, metrics, scrape, scrapeAt, accessLog },
      // Without the principal: a peer proves that with its certificate, and the header's decoder refuses it.
      ownPeerHeader: sinks.length > 0 ? encodePeer(peerInfoFromMetadata(node?.metadata)) : "",
      sink: all.length === 0 ? undefined : all.length === 1 ? all[0] : new FanoutSink(all),
    };
  }

  /** Swaps the prepared telemetry in; closes what the new config dropped. */
  commit(p: PreparedTelemetry): void {
    const old = this.current;
    this.current = p.state;
    this.slot.sink = p.sink;
    this.slot.ownPeerHeader = p.ownPeerHeader;
    this.slot.decodePeer = decodePeer;
    this.slot.tracer = p.state.tracer;
    if (old.tracer && old.tracer !== p.state.tracer) void old.tracer.shutdown();
    if (old.scrape && old.scrape !== p.state.scrape) old.scrape.close();
    if (old.accessLog && old.accessLog !== p.state.accessLog) void old.accessLog.close();
  }

  /** Throws away a prepared state that was not committed (the config was refused). */
  discard(p: PreparedTelemetry): void {
    if (p.state.scrape && p.state.scrape !== this.current.scrape) p.state.scrape.close();
    if (p.state.accessLog && p.state.accessLog !== this.current.accessLog) void p.state.accessLog.close();
    if (p.state.tracer && p.state.tracer !== this.current.tracer) void p.state.tracer.shutdown();
  }

  async close(): Promise<void> {
    this.current.scrape?.close();
    await this.current.accessLog?.close();
    await this.current.tracer?.shutdown();
    this.slot.sink = undefined;
    this.slot.tracer = undefined;
  }

  get metrics(): IstioMetrics | undefined {
    return this.current.metrics;
  }

  get accessLog(): JsonAccessLog | undefined {
    return this.current.accessLog;
  }
}

const NO_SINK: TelemetrySink = { onHttpRequest: () => {} };

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
