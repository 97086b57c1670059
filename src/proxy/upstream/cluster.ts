// A cluster: a named set of endpoints, the load balancer over them, the circuit-breaker limits, and one
// connection pool per endpoint. Rebuilt from config on every change, adopting the endpoints and pools of its
// predecessor so that counters and idle keep-alive connections survive a config swap.
import type tls from "node:tls";
import type { ClusterConfig, LbPolicy, UpstreamTlsConfig } from "../config/types.ts";
import { http2Module } from "../http2/lazy.ts";
import type { Http2Sessions } from "../http2/upstream-sessions.ts";
import { createLoadBalancer, type HealthGeneration } from "../lb/index.ts";
import type { LbEndpoint, LoadBalancer } from "../lb/load-balancer.ts";
import { SecretStore } from "../secrets/secret-store.ts";
import { type Counter, type Gauge, StatsStore } from "../stats/stats.ts";
import type { TunnelRegistry } from "../tunnel/registry.ts";
import { Http1Pool } from "./http1-pool.ts";
import { OutlierDetector, type OutlierState } from "./outlier-detector.ts";
import { watchUpstreamTls } from "./tls-failure.ts";

/** Envoy's default circuit-breaker thresholds are 1024; Istio raises them to 2^32-1 (effectively none). */
const UNLIMITED = 2 ** 32 - 1;

export interface ClusterLimits {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly connections: Gauge;
  readonly pending: Gauge;
  readonly active: Gauge;
  readonly connectionsTotal: Counter;
  readonly overflowPending: Counter;
  readonly overflowRequests: Counter;
}

/** An endpoint with the per-host counters /clusters reports. */
export class Endpoint implements LbEndpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  weight: number;
  activeRequests = 0;
  healthy = true;
  rqTotal = 0;
  rqSuccess = 0;
  rqError = 0;
  cxConnectFail = 0;
  labels: Readonly<Record<string, string>>;
  locality: string;
  /** Priority level (0 preferred); read when a cluster's balancer is built. */
  priority = 0;
  /** Outlier detection's state for this endpoint, when its cluster has outlier detection. */
  outlier: OutlierState | null = null;
  /** The reverse tunnel this endpoint is reached through (a CONNECT stream, never a dial); undefined: dialled. */
  tunnel: string | undefined = undefined;

  constructor(address: string, port: number, weight: number) {
    this.key = `${address}:${port}`;
    this.address = address;
    this.port = port;
    this.weight = weight;
    this.labels = {};
    this.locality = "";
  }
}

export interface ClusterStats {
  readonly rqTotal: Counter;
  readonly rq2xx: Counter;
  readonly rq3xx: Counter;
  readonly rq4xx: Counter;
  readonly rq5xx: Counter;
  readonly cxConnectFail: Counter;
  readonly noHealthyHost: Counter;
  /** Retries made (upstream_rq_retry), and refused by the retry budget (upstream_rq_retry_overflow). */
  readonly retry: Counter;
  readonly retryOverflow: Counter;
  readonly retryLimitExceeded: Counter;
  readonly timeout: Counter;
  readonly perTryTimeout: Counter;
  /** Mirrored requests sent to this cluster, and dropped because they could not keep up. */
  readonly mirrorTotal: Counter;
  readonly mirrorDropped: Counter;
}

export class Cluster {
  readonly name: string;
  readonly config: ClusterConfig;
  readonly endpoints: readonly Endpoint[];
  readonly lb: LoadBalancer;
  readonly limits: ClusterLimits;
  readonly stats: ClusterStats;
  readonly policy: LbPolicy;
  /**
   * Bumped whenever an endpoint's `healthy` flag flips, so that a priority balancer recomputes its level loads
   * then and not on every pick. Shared with the previous generation of the cluster: they share endpoints, and
   * the old outlier detector may still eject one while its last requests finish.
   */
  readonly health: HealthGeneration;
  private readonly pools = new Map<string, Http1Pool>();
  /** HTTP/2 sessions, for clusters with protocol http2 (gRPC); undefined for HTTP/1 clusters. */
  readonly h2: Http2Sessions | undefined;
  readonly retryBudget: { readonly percent: number; readonly minConcurrency: number } | undefined;
  /** Retries waiting or in flight now (for the retry budget). */
  activeRetries = 0;

  /** Reverse tunnels, for endpoints reached through one (pools open CONNECT streams on them). */
  private readonly tunnels: TunnelRegistry | undefined;
  private readonly tlsDefault: tls.ConnectionOptions | undefined;
  private readonly tlsMatches: ReadonlyArray<{
    readonly match: ReadonlyArray<readonly [string, string]>;
    readonly options: tls.ConnectionOptions | undefined;
  }>;

  constructor(
    config: ClusterConfig,
    store: StatsStore,
    previous?: Cluster,
    secrets: SecretStore = new SecretStore(),
    tunnels?: TunnelRegistry,
  ) {
    this.tunnels = tunnels;
    this.name = config.name;
    this.config = config;
    this.policy = config.lbPolicy ?? "ROUND_ROBIN";
    const p = `cluster.${config.name}.`;
    const cb = config.circuitBreakers ?? {};
    this.limits = {
      maxConnections: cb.maxConnections ?? UNLIMITED,
      maxPendingRequests: cb.maxPendingRequests ?? UNLIMITED,
      maxRequests: cb.maxRequests ?? UNLIMITED,
      connections: store.gauge(`${p}upstream_cx_active`),
      pending: store.gauge(`${p}upstream_rq_pending_active`),
      active: store.gauge(`${p}upstream_rq_active`),
      connectionsTotal: store.counter(`${p}upstream_cx_total`),
      overflowPending: store.counter(`${p}upstream_rq_pending_overflow`),
      overflowRequests: store.counter(`${p}upstream_rq_overflow`),
    };
    this.stats = {
      rqTotal: store.counter(`${p}upstream_rq_total`),
      rq2xx: store.counter(`${p}upstream_rq_2xx`),
      rq3xx: store.counter(`${p}upstream_rq_3xx`),
      rq4xx: store.counter(`${p}upstream_rq_4xx`),
      rq5xx: store.counter(`${p}upstream_rq_5xx`),
      cxConnectFail: store.counter(`${p}upstream_cx_connect_fail`),
      noHealthyHost: store.counter(`${p}upstream_cx_none_healthy`),
      retry: store.counter(`${p}upstream_rq_retry`),
      retryOverflow: store.counter(`${p}upstream_rq_retry_overflow`),
      retryLimitExceeded: store.counter(`${p}upstream_rq_retry_limit_exceeded`),
      timeout: store.counter(`${p}upstream_rq_timeout`),
      perTryTimeout: store.counter(`${p}upstream_rq_per_try_timeout`),
      mirrorTotal: store.counter(`${p}upstream_rq_mirror`),
      mirrorDropped: store.counter(`${p}upstream_rq_mirror_dropped`),
    };
    const budget = cb.retryBudget;
    this.retryBudget = budget
      ? { percent: budget.budgetPercent, minConcurrency: budget.minRetryConcurrency ?? 3 }
      : undefined;
    const reuse = previous && sameConnectionSettings(previous.config, config) ? previous : undefined;
    this.tlsDefault = config.tls ? upstreamTls(config.tls, secrets) : undefined;
    this.tlsMatches = (config.transportSocketMatches ?? []).map((m) => ({
      match: Object.entries(m.match),
      options: m.tls ? upstreamTls(m.tls, secrets) : undefined,
    }));
    this.h2 =
      config.protocol === "http2"
        ? (reuse?.h2 ??
          new (http2Module().Http2Sessions)(
            (ep) => this.tlsFor(ep),
            config.connectTimeoutMs ?? 10_000,
            (socket, ep) => watchUpstreamTls(socket, store, config.name, ep.key),
          ))
        : undefined;
    const eps: Endpoint[] = [];
    for (const e of config.endpoints) {
      const key = `${e.address}:${e.port}`;
      const old = reuse?.endpoints.find((x) => x.key === key);
      const ep = old ?? new Endpoint(e.address, e.port, e.weight ?? 1);
      ep.weight = e.weight ?? 1;
      ep.labels = e.labels ?? {};
      ep.locality = e.locality ?? "";
      ep.priority = e.priority ?? 0;
      ep.tunnel = e.tunnel;
      eps.push(ep);
      const pool = reuse?.pools.get(key);
      if (pool) this.pools.set(key, pool);
    }
    this.endpoints = eps;
    this.health = previous?.health ?? { value: 0 };
    this.lb = createLoadBalancer(this.policy, eps, {
      ...(config.ringHash ? { ringHash: config.ringHash } : {}),
      ...(config.maglev ? { maglev: config.maglev } : {}),
      health: this.health,
    });
    this.membership = store.gauge(`${p}membership_total`);
    this.store = store;
    this.previous = previous;
  }

  private previous: Cluster | undefined;
  private readonly membership: Gauge;
  private readonly store: StatsStore;
  /** Passive health checking; started when the cluster goes live. */
  outlier: OutlierDetector | undefined;

  /** Endpoints of an original_dst cluster, made from request authorities ("host:port" keys). */
  private dynamic: Map<string, Endpoint> | undefined;

  /**
   * The endpoint an original_dst cluster sends a request to: its authority's host and port (80 when absent),
   * made on first use. At most MAX_ORIGINAL_DST endpoints are kept; beyond that, idle ones are dropped with
   * their pools, so that clients naming many hosts cannot grow the proxy without bound.
   */
  originalDestination(authority: string): Endpoint | undefined {
    const dest = splitAuthority(authority);
    if (dest === undefined) return undefined;
    const key = `${dest.host}:${dest.port}`;
    this.dynamic ??= new Map();
    let ep = this.dynamic.get(key);
    if (ep === undefined) {
      if (this.dynamic.size >= MAX_ORIGINAL_DST)
        for (const [k, e] of this.dynamic)
          if (e.activeRequests === 0) {
            this.dynamic.delete(k);
            this.pools.get(k)?.close();
            this.pools.delete(k);
          }
      if (this.dynamic.size >= MAX_ORIGINAL_DST) return undefined;
      ep = new Endpoint(dest.host, dest.port, 1);
      this.dynamic.set(key, ep);
    }
    return ep.healthy ? ep : undefined;
  }

  /** Called when this cluster goes live: the predecessor's pools it did not adopt drain and close. */
  activate(): void {
    this.membership.value = this.endpoints.length;
    const prev = this.previous;
    this.previous = undefined;
    prev?.outlier?.stop();
    const od = this.config.outlierDetection;
    if (od)
      this.outlier = new OutlierDetector(
        od,
        this.endpoints,
        this.store,
        `cluster.${this.name}.`,
        Date.now,
        this.health,
      );
    else
      for (const e of this.endpoints)
        if (e.outlier !== null) {
          // Outlier detection was removed: nothing will bring an ejected endpoint back, so do it now.
          e.outlier = null;
          e.healthy = true;
          this.health.value++;
        }
    if (prev) for (const [key, pool] of prev.pools) if (this.pools.get(key) !== pool) pool.close();
    if (prev?.h2 && prev.h2 !== this.h2) prev.h2.close();
  }

  /**
   * How to dial an endpoint: the TLS options of the first transport socket match its labels satisfy, else the
   * cluster's (undefined: plain text). Made once per match at config time; per endpoint only the lookup.
   */
  tlsFor(ep: Endpoint): tls.ConnectionOptions | undefined {
    for (const m of this.tlsMatches) if (m.match.every(([k, v]) => ep.labels[k] === v)) return m.options;
    return this.tlsDefault;
  }

  /** The pool for an endpoint of this cluster, created on first use. */
  pool(ep: Endpoint): Http1Pool {
    let pool = this.pools.get(ep.key);
    if (!pool) {
      pool = new Http1Pool(ep, this.limits, {
        connectTimeoutMs: this.config.connectTimeoutMs ?? 10_000,
        idleTimeoutMs: this.config.idleTimeoutMs ?? 3_600_000,
        maxRequestsPerConnection: this.config.circuitBreakers?.maxRequestsPerConnection || UNLIMITED,
        tls: this.tlsFor(ep),
        tunnels: this.tunnels,
      });
      this.pools.set(ep.key, pool);
    }
    return pool;
  }

  /** Closes every pool: idle connections now, busy ones when their exchange ends. */
  close(): void {
    for (const pool of this.pools.values()) pool.close();
    this.h2?.close();
    this.outlier?.stop();
  }
}

const MAX_ORIGINAL_DST = 1024;

/** "host:port", "[v6]:port" or "host" (port 80) -> host and port; undefined when it names no host. */
function splitAuthority(authority: string): { host: string; port: number } | undefined {
  let host = authority;
  let port = 80;
  const colon = authority.lastIndexOf(":");
  if (colon > 0 && authority.indexOf("]") < colon) {
    const p = Number(authority.slice(colon + 1));
    if (!Number.isInteger(p) || p < 1 || p > 65535) return undefined;
    port = p;
    host = authority.slice(0, colon);
  }
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return host === "" ? undefined : { host, port };
}

function sameConnectionSettings(a: ClusterConfig, b: ClusterConfig): boolean {
  return (
    JSON.stringify([
      a.protocol,
      a.tls,
      a.transportSocketMatches,
      a.connectTimeoutMs,
      a.idleTimeoutMs,
      a.circuitBreakers,
    ]) ===
    JSON.stringify([
      b.protocol,
      b.tls,
      b.transportSocketMatches,
      b.connectTimeoutMs,
      b.idleTimeoutMs,
      b.circuitBreakers,
    ])
  );
}

/**
 * The cluster's TLS options. Named secrets are read when a connection is made, not when the cluster is built:
 * `cert`, `key` and `ca` are enumerable getters, so the `{...options, host, port}` each pool spreads into
 * tls.connect() takes the material current at that moment — a rotated certificate is used by the next
 * connection without rebuilding the cluster or closing pooled connections.
 */
export function upstreamTls(t: UpstreamTlsConfig, secrets: SecretStore): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = {
    ...(t.sni ? { servername: t.sni } : {}),
    ...(t.validationContext ? { ca: t.validationContext } : {}),
    ...(t.certificateChain ? { cert: t.certificateChain } : {}),
    ...(t.privateKey ? { key: t.privateKey } : {}),
    ALPNProtocols: [...(t.alpnProtocols ?? ["http/1.1"])],
    rejectUnauthorized: t.insecureSkipVerify !== true,
  };
  const live = (name: "cert" | "key" | "ca", read: () => string | string[] | undefined) =>
    Object.defineProperty(options, name, { enumerable: true, get: read });
  if (t.certificateSecret !== undefined) {
    const name = t.certificateSecret;
    live("cert", () => secrets.certificate(name)?.certificateChain);
    live("key", () => secrets.certificate(name)?.privateKey);
  }
  if (t.validationSecret !== undefined) {
    const name = t.validationSecret;
    // No roots yet: an empty bundle, so that nothing verifies (never Node's default store for a mesh peer).
    live("ca", () => secrets.validation(name)?.trustedCa ?? []);
  }
  const sans = t.matchSubjectAltNames;
  if (sans !== undefined && sans.length > 0)
    options.checkServerIdentity = (_host, cert) => {
      const names = (cert.subjectaltname ?? "").split(", ");
      if (names.some((n) => n.startsWith("URI:") && sans.includes(n.slice(4)))) return undefined;
      return new Error(
        `peer identity ${JSON.stringify(cert.subjectaltname ?? "")} is not one of ${JSON.stringify(sans)}`,
      );
    };
  return options;
}

/** Whether one more retry fits the cluster's retry budget (always, without one). */
export function retryAllowed(c: Cluster): boolean {
  const b = c.retryBudget;
  if (b === undefined) return true;
  const allowed = Math.max(b.minConcurrency, (c.limits.active.value * b.percent) / 100);
  return c.activeRetries < allowed;
}

/** All clusters of the running config, by name. */
export class ClusterManager {
  private clusters = new Map<string, Cluster>();
  readonly store: StatsStore;

  private readonly secrets: SecretStore;
  /**
   * Reverse tunnels accepted by this proxy's listeners: endpoints with `tunnel` are reached through them. Set
   * by the proxy when a config first uses tunnels; undefined until then (no endpoint has a tunnel).
   */
  tunnels: TunnelRegistry | undefined;

  constructor(
    store: StatsStore = new StatsStore(),
    secrets: SecretStore = new SecretStore(),
    tunnels?: TunnelRegistry,
  ) {
    this.store = store;
    this.secrets = secrets;
    this.tunnels = tunnels;
  }

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  all(): Cluster[] {
    return [...this.clusters.values()];
  }

  /** Builds the next generation of clusters without side effects; nothing changes until commit(). */
  prepare(configs: readonly ClusterConfig[]): Map<string, Cluster> {
    const next = new Map<string, Cluster>();
    for (const c of configs)
      next.set(c.name, new Cluster(c, this.store, this.clusters.get(c.name), this.secrets, this.tunnels));
    return next;
  }

  commit(next: Map<string, Cluster>): void {
    const old = this.clusters;
    this.clusters = next;
    for (const c of next.values()) c.activate();
    for (const [name, c] of old) if (!next.has(name)) c.close();
  }

  closeAll(): void {
    for (const c of this.clusters.values()) c.close();
  }
}
