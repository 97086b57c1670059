// What the HTTP connections of one filter chain share: the current route table (replaced on config swap,
// read per request), the clusters, limits and counters. Connections keep a reference to this object, so a
// swap changes what the next request sees without touching open connections.
import type { HttpConnectionManagerConfig, ListenerLimits } from "../config/types.ts";
import { keepBucket, TokenBucket } from "../filters/local-rate-limit.ts";
import type { HttpSecurity } from "../filters/rbac-http.ts";
import { securityModule } from "../filters/security-module.ts";
import type { HeadLimits } from "../http1/head-parser.ts";
import type { Http2Downstream } from "../http2/downstream.ts";
import { http2Module } from "../http2/lazy.ts";
import type { RouteTable } from "../router/route-table.ts";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";
import { TelemetrySlot } from "../telemetry/telemetry-slot.ts";
import type { Cluster, ClusterManager, Endpoint } from "../upstream/cluster.ts";
import type { ResponseFlag } from "../upstream/response-flags.ts";

export interface HttpStats {
  readonly cxTotal: Counter;
  readonly cxActive: Gauge;
  readonly rqTotal: Counter;
  readonly rq1xx: Counter;
  readonly rq2xx: Counter;
  readonly rq3xx: Counter;
  readonly rq4xx: Counter;
  readonly rq5xx: Counter;
  readonly protocolErrors: Counter;
  readonly headerTimeouts: Counter;
}

/** Minimal view of a connection for sweeps and drains, whatever its protocol. */
export interface HttpConnection {
  headStartedAt: number;
  lastActivity: number;
  readonly idle: boolean;
  drain(): void;
  expire(reason: "headers" | "idle"): void;
}

export class HttpRuntime {
  routeTable: RouteTable | undefined;
  readonly clusters: ClusterManager;
  readonly mode: "server" | "http_proxy";
  /** Accepted downstream protocols: HTTP/1.1 and HTTP/2 (auto), or only one. */
  codec: "auto" | "http1" | "http2";
  private h2Downstream: Http2Downstream | undefined;
  readonly scheme: "http" | "https";
  limits: HeadLimits;
  requestHeadersTimeoutMs: number;
  idleTimeoutMs: number;
  readonly stats: HttpStats;
  readonly connections = new Set<HttpConnection>();
  draining = false;
  /** The chain's local rate limit, before routing. */
  rateLimit: TokenBucket | undefined;
  /** jwt_authn, ext_authz and RBAC before routing; undefined when the chain has none. */
  security: HttpSecurity | undefined;
  /** Which side of the hop this chain serves (telemetry). */
  reporter: "source" | "destination";
  /** x-forwarded-client-cert set from the verified peer certificate (setClientCertDetails). */
  setClientCert: boolean;
  /** The proxy's telemetry sink (shared, replaced on config swap). */
  readonly telemetry: TelemetrySlot;
  private readonly store: StatsStore;
  private readonly prefix: string;
  private readonly flags = new Map<string, Counter>();

  constructor(
    config: HttpConnectionManagerConfig,
    routeTable: RouteTable | undefined,
    clusters: ClusterManager,
    limits: ListenerLimits | undefined,
    scheme: "http" | "https",
    store: StatsStore,
    telemetry: TelemetrySlot = new TelemetrySlot(),
  ) {
    this.telemetry = telemetry;
    this.routeTable = routeTable;
    this.clusters = clusters;
    this.mode = config.mode ?? "server";
    this.codec = config.codec ?? "auto";
    this.scheme = scheme;
    this.limits = {
      maxHeadBytes: limits?.maxRequestHeadersBytes ?? 60 * 1024,
      maxHeaders: limits?.maxRequestHeaders ?? 100,
    };
    this.requestHeadersTimeoutMs = limits?.requestHeadersTimeoutMs ?? 10_000;
    this.idleTimeoutMs = limits?.idleTimeoutMs ?? 300_000;
    this.rateLimit = config.localRateLimit ? new TokenBucket(config.localRateLimit, Date.now()) : undefined;
    this.reporter = config.reporter ?? "destination";
    this.setClientCert = config.setClientCertDetails === true;
    this.security =
      config.jwtAuthn !== undefined || (config.extAuthz?.length ?? 0) > 0 || (config.rbac?.length ?? 0) > 0
        ? securityModule().HttpSecurity.of(config, clusters, store)
        : undefined;
    this.store = store;
    const p = `http.${config.statPrefix ?? "ingress_http"}.`;
    this.prefix = p;
    this.stats = {
      cxTotal: store.counter(`${p}downstream_cx_total`),
      cxActive: store.gauge(`${p}downstream_cx_active`),
      rqTotal: store.counter(`${p}downstream_rq_total`),
      rq1xx: store.counter(`${p}downstream_rq_1xx`),
      rq2xx: store.counter(`${p}downstream_rq_2xx`),
      rq3xx: store.counter(`${p}downstream_rq_3xx`),
      rq4xx: store.counter(`${p}downstream_rq_4xx`),
      rq5xx: store.counter(`${p}downstream_rq_5xx`),
      protocolErrors: store.counter(`${p}downstream_cx_protocol_error`),
      headerTimeouts: store.counter(`${p}downstream_rq_header_timeout`),
    };
  }

  /**
   * Takes over a new config's settings for this chain, in place: the route table, the head limits and
   * timeouts, the codec. Connections keep a reference to this object, so open ones see the change on their
   * next request and new ones get it at once. (Only the route table used to be taken over: limits changed by a
   * config swap were ignored, for new connections too, until a restart.) Counters stay this runtime's.
   */
  adopt(next: HttpRuntime): void {
    if (next.routeTable !== undefined && this.routeTable !== undefined)
      next.routeTable.keepRateLimits(this.routeTable);
    this.routeTable = next.routeTable;
    this.limits = next.limits;
    this.requestHeadersTimeoutMs = next.requestHeadersTimeoutMs;
    this.idleTimeoutMs = next.idleTimeoutMs;
    this.codec = next.codec;
    this.rateLimit = keepBucket(this.rateLimit, next.rateLimit);
    this.reporter = next.reporter;
    this.setClientCert = next.setClientCert;
    this.security = next.security;
  }

  /** The HTTP/2 side of this chain, created on the first HTTP/2 connection. */
  get h2(): Http2Downstream {
    this.h2Downstream ??= new (http2Module().Http2Downstream)(this);
    return this.h2Downstream;
  }

  /** Counter of requests that ended with a response flag, e.g. http.ingress_http.response_flag.UH. */
  flagCounter(flag: ResponseFlag): Counter {
    let c = this.flags.get(flag);
    if (!c) {
      c = this.store.counter(`${this.prefix}response_flag.${flag}`);
      this.flags.set(flag, c);
    }
    return c;
  }

  /**
   * Counts a response by status class for the listener, and for the cluster and endpoint when the upstream
   * sent it (a local reply about an upstream, like 503 UF, is not the upstream's answer).
   */
  countResponse(status: number, cluster: Cluster | null, endpoint: Endpoint | null): void {
    const s = this.stats;
    if (status < 200) s.rq1xx.inc();
    else if (status < 300) s.rq2xx.inc();
    else if (status < 400) s.rq3xx.inc();
    else if (status < 500) s.rq4xx.inc();
    else s.rq5xx.inc();
    if (cluster === null || endpoint === null) return;
    const c = cluster.stats;
    if (status < 300) c.rq2xx.inc();
    else if (status < 400) c.rq3xx.inc();
    else if (status < 500) c.rq4xx.inc();
    else c.rq5xx.inc();
    if (status < 500) endpoint.rqSuccess++;
    else endpoint.rqError++;
  }

  /** Closes connections whose head is too slow (slowloris) or that sat idle too long. */
  sweep(now: number): void {
    for (const c of this.connections) {
      if (c.headStartedAt !== 0 && now - c.headStartedAt > this.requestHeadersTimeoutMs) c.expire("headers");
      else if (c.idle && now - c.lastActivity > this.idleTimeoutMs) c.expire("idle");
    }
  }
}
