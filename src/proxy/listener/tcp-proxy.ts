// Plain TCP proxying: each downstream connection gets an upstream connection to an endpoint of the cluster,
// bytes flow both ways with backpressure (pipe), and either side closing closes the other. An endpoint reached
// through a reverse tunnel gets a CONNECT stream on that tunnel instead of a connection (never a dial).
import type http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { TcpProxyConfig } from "../config/types.ts";
import type { NetworkRbac } from "../filters/rbac-http.ts";
import { securityModule } from "../filters/security-module.ts";
import { tlsModule } from "../lazy-modules.ts";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";
import type { TcpConnectionRecord } from "../telemetry/request-record.ts";
import { TelemetrySlot } from "../telemetry/telemetry-slot.ts";
import { tunnelModule } from "../tunnel/lazy.ts";
import type { Cluster, ClusterManager, Endpoint } from "../upstream/cluster.ts";
import { watchUpstreamTls } from "../upstream/tls-failure.ts";

/** A stream closed cleanly at one end has this long to deliver what it still holds to the other. */
const TUNNEL_CLOSE_GRACE_MS = 30_000;
/** How long a connection waits for a reverse tunnel that is down (being redialled) before it fails. */
const TUNNEL_WAIT_MS = 3000;

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
    if (ep.tunnel !== undefined && !tlsOptions) {
      this.throughTunnel(down, preread, cluster, ep, ep.tunnel, started, base);
      return;
    }
    // TLS to an endpoint behind a tunnel runs inside its CONNECT stream (never a dial).
    const up = tlsOptions
      ? tlsModule().connect({
          ...tlsOptions,
          host: ep.address,
          port: ep.port,
          ...(ep.tunnel !== undefined
            ? {
                socket: tunnelModule().tunnelSocket(
                  this.clusters.tunnels,
                  ep.tunnel,
                  tunnelModule().authorityOf(ep.address, ep.port),
                ),
              }
            : {}),
        })
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
    let failureCounted = false;
    up.on("error", () => {
      // Once: a TLS socket over a tunnel stream reports the stream's error and its own.
      if (!connected && !failureCounted) {
        failureCounted = true;
        this.connectFail.inc();
        ep.cxConnectFail++;
      }
    });
    down.on("error", () => up.destroy());
    down.once("close", () => up.destroy());
  }
  /**
   * The upstream is (in plain text) a CONNECT stream on the reverse tunnel `tunnel` (an initiator hands it to its listener and
   * answers 200 once that accepted it). No tunnel of that name, an error answer, a reset or the connect timeout
   * before the answer: a connect failure (UF), as a refused dial would be.
   */
  private throughTunnel(
    down: net.Socket,
    preread: Buffer | undefined,
    cluster: Cluster,
    ep: Endpoint,
    tunnel: string,
    started: number,
    base: Pick<
      TcpConnectionRecord,
      "upstreamCluster" | "reporter" | "peer" | "destinationService" | "connectionSecurityPolicy"
    >,
    retried = false,
  ): void {
    const sink = this.telemetry.sink;
    let connected = false;
    const ended = () => {
      ep.activeRequests = Math.max(0, ep.activeRequests - 1);
      if (!connected) {
        this.connectFail.inc();
        ep.cxConnectFail++;
        sink?.onTcpOpen?.({ ...base, responseFlags: "UF" });
      }
      sink?.onTcpClose?.({
        ...base,
        startTimeMs: performance.timeOrigin + started,
        durationMs: performance.now() - started,
        bytesReceived: down.bytesRead,
        bytesSent: down.bytesWritten,
        upstreamHost: ep.key,
        downstreamRemoteAddress: `${down.remoteAddress ?? ""}:${down.remotePort ?? 0}`,
        responseFlags: connected ? "-" : "UF",
      });
    };
    // The proxy loaded the tunnel code and made the registry when it applied a config with tunnel endpoints.
    const { closeStream, pairStream, authorityOf } = tunnelModule();
    const registry = this.clusters.tunnels;
    const up: http2.ClientHttp2Stream | undefined = registry?.open(tunnel, authorityOf(ep.address, ep.port));
    if (up === undefined) {
      if (retried || registry === undefined) {
        ended();
        down.destroy();
        return;
      }
      // No tunnel of that name right now: the link may be being redialled. Wait for it as a dial waits for
      // its answer (within the connect timeout, at most TUNNEL_WAIT_MS), then try once more.
      const connectMs = cluster.config.connectTimeoutMs ?? 10_000;
      void registry.waitFor(tunnel, Math.min(connectMs, TUNNEL_WAIT_MS)).then((ok) => {
        if (ok && !down.destroyed)
          this.throughTunnel(down, preread, cluster, ep, tunnel, started, base, true);
        else {
          ended();
          down.destroy();
        }
      });
      return;
    }
    up.on("error", () => {});
    const connectTimer = setTimeout(
      () => closeStream(up, true, 0),
      cluster.config.connectTimeoutMs ?? 10_000,
    );
    up.once("response", (headers) => {
      clearTimeout(connectTimer);
      if (headers[":status"] !== 200 || down.destroyed) {
        closeStream(up, true, 0);
        return;
      }
      connected = true;
      sink?.onTcpOpen?.({ ...base, responseFlags: "-" });
      const idleMs = this.config.idleTimeoutMs ?? 3_600_000;
      up.setTimeout(idleMs, () => closeStream(up, true, 0));
      if (preread && preread.length > 0) up.write(preread);
      pairStream(up, down, TUNNEL_CLOSE_GRACE_MS);
    });
    up.once("close", () => {
      clearTimeout(connectTimer);
      if (!connected) down.destroy();
      ended();
    });
    down.once("close", () => {
      if (!connected) closeStream(up, true, 0);
    });
  }
}
