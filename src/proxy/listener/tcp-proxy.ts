// Plain TCP proxying: each downstream connection gets an upstream connection to an endpoint of the cluster,
// bytes flow both ways with backpressure (pipe), and either side closing closes the other.
import net from "node:net";
import type tls from "node:tls";
import type { TcpProxyConfig } from "../config/types.ts";
import type { NetworkRbac } from "../filters/rbac-http.ts";
import { securityModule } from "../filters/security-module.ts";
import { tlsModule } from "../lazy-modules.ts";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";
import { TelemetrySlot } from "../telemetry/telemetry-slot.ts";
import type { ClusterManager, Endpoint } from "../upstream/cluster.ts";
import { watchUpstreamTls } from "../upstream/tls-failure.ts";

export class TcpProxyRuntime {
  readonly config: TcpProxyConfig;
  private readonly clusters: ClusterManager;
  private readonly cxTotal: Counter;
  private readonly cxActive: Gauge;
  private readonly noRoute: Counter;
  private readonly connectFail: Counter;
  readonly sockets = new Set<net.Socket>();

  private readonly telemetry: TelemetrySlot;
  private readonly store: StatsStore;
  private readonly rbac: NetworkRbac | undefined;

  constructor(
    config: TcpProxyConfig,
    clusters: ClusterManager,
    store: StatsStore,
    telemetry: TelemetrySlot = new TelemetrySlot(),
  ) {
    this.config = config;
    this.telemetry = telemetry;
    this.clusters = clusters;
    const p = `tcp.${config.statPrefix ?? config.cluster}.`;
    this.store = store;
    this.cxTotal = store.counter(`${p}downstream_cx_total`);
    this.cxActive = store.gauge(`${p}downstream_cx_active`);
    this.noRoute = store.counter(`${p}downstream_cx_no_route`);
    this.connectFail = store.counter(`${p}upstream_cx_connect_fail`);
    this.rbac = (config.rbac?.length ?? 0) > 0 ? securityModule().NetworkRbac.of(config, store) : undefined;
  }

  handle(down: net.Socket, preread?: Buffer): void {
    this.cxTotal.inc();
    this.cxActive.value++;
    this.sockets.add(down);
    down.once("close", () => {
      this.sockets.delete(down);
      this.cxActive.value--;
    });
    // Network RBAC: a denied connection is closed before any upstream is chosen.
    if (this.rbac !== undefined && !this.rbac.allows(down)) {
      down.destroy();
      return;
    }
    const cluster = this.clusters.get(this.config.cluster);
    const ep = cluster?.lb.pick({}) as Endpoint | undefined;
    if (!cluster || !ep) {
      this.noRoute.inc();
      down.destroy();
      return;
    }
    ep.activeRequests++;
    const sink = this.telemetry.sink;
    const started = sink !== undefined ? performance.now() : 0;
    const base = {
      upstreamCluster: cluster.name,
      reporter: "destination" as const,
      peer: undefined,
      destinationService: cluster.name,
      connectionSecurityPolicy:
        (down as { authorized?: boolean }).authorized === true ? ("mutual_tls" as const) : ("none" as const),
    };
    down.pause();
    // Mutual TLS to a peer proxy (a cluster's transport socket for this endpoint), else plain TCP.
    const tlsOptions = cluster.tlsFor(ep);
    const up = tlsOptions
      ? tlsModule().connect({ ...tlsOptions, host: ep.address, port: ep.port })
      : net.connect({ host: ep.address, port: ep.port, noDelay: true });
    if (tlsOptions) watchUpstreamTls(up as tls.TLSSocket, this.store, cluster.name, ep.key);
    up.setTimeout(cluster.config.connectTimeoutMs ?? 10_000, () => up.destroy(new Error("connect timeout")));
    let connected = false;
    up.once(tlsOptions ? "secureConnect" : "connect", () => {
      connected = true;
      sink?.onTcpOpen?.({ ...base, responseFlags: "-" });
      up.setTimeout(this.config.idleTimeoutMs ?? 3_600_000, () => {
        up.destroy();
        down.destroy();
      });
      if (preread && preread.length > 0) up.write(preread);
      down.pipe(up);
      up.pipe(down);
      down.resume();
    });
    const done = () => {
      ep.activeRequests = Math.max(0, ep.activeRequests - 1);
    };
    up.once("close", () => {
      done();
      down.destroy();
      if (!connected) sink?.onTcpOpen?.({ ...base, responseFlags: "UF" });
      sink?.onTcpClose?.({
        ...base,
        startTimeMs: performance.timeOrigin + started,
        durationMs: performance.now() - started,
        // Bytes from the downstream are what went up; bytes to it are what came down.
        bytesReceived: up.bytesWritten,
        bytesSent: up.bytesRead,
        upstreamHost: ep.key,
        downstreamRemoteAddress: `${down.remoteAddress ?? ""}:${down.remotePort ?? 0}`,
        responseFlags: connected ? "-" : "UF",
      });
    });
    up.on("error", () => {
      if (!connected) {
        this.connectFail.inc();
        ep.cxConnectFail++;
      }
    });
    down.on("error", () => up.destroy());
    down.once("close", () => up.destroy());
  }
}
