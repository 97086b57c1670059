// ProxyConfig: everything a proxy runs from, in Envoy's nouns. The proxy knows nothing of Istio; the control
// plane's translator turns Istio resources into this. The same shape is read from a bootstrap file
// (`isthmus proxy --config`) and will be streamed by the control plane. JSON Schema: docs/proxy-config.schema.json.

export interface ProxyConfig {
  /** Identity of this proxy, reported in /config_dump and (later) to the control plane. */
  readonly node?: NodeInfo;
  readonly admin?: AdminConfig;
  readonly listeners: readonly ListenerConfig[];
  readonly routeConfigs?: readonly RouteConfiguration[];
  readonly clusters?: readonly ClusterConfig[];
  /** Version label of this config, shown in /config_dump; set by whoever produced it. */
  readonly version?: string;
  /** Metrics, access log and tracing. Absent: none of them. */
  readonly telemetry?: TelemetryConfig;
}

export interface TelemetryConfig {
  /** Prometheus scrape endpoint (Istio's :15090/stats/prometheus). */
  readonly prometheus?: { readonly address?: string; readonly port?: number };
  /** One JSON line per request. path: a file, or "/dev/stdout". */
  readonly accessLog?: { readonly path: string };
  /** Spans exported with OTLP/HTTP. */
  readonly tracing?: {
    /** e.g. http://127.0.0.1:4318/v1/traces */
    readonly otlpEndpoint: string;
    /** 0-100, for requests that arrive without a sampling decision. Default 1 (Istio's). */
    readonly samplingPercent?: number;
    /** service.name of the spans. Default: node.metadata.workload or "isthmus-proxy". */
    readonly serviceName?: string;
  };
}

export interface NodeInfo {
  readonly id?: string;
  readonly cluster?: string;
  /**
   * This workload's labels for telemetry: workload, namespace, app, version, canonical_service,
   * canonical_revision, principal, cluster (Istio's metric label names without the source_/destination_
   * prefix). Sent to peers in the peer metadata exchange.
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface AdminConfig {
  /** Default 127.0.0.1. */
  readonly address?: string;
  /** Default 15000; 0 disables the admin listener. */
  readonly port?: number;
}

// ---------------------------------------------------------------------------------------------- listeners

export interface ListenerConfig {
  readonly name: string;
  /** Default 0.0.0.0. */
  readonly address?: string;
  readonly port: number;
  readonly filterChains: readonly FilterChainConfig[];
  /**
   * Bounds on what a downstream may send. Defaults: 60 KiB of headers (431 beyond), 100 headers,
   * 10 s to send the head (slowloris), 300 s idle keep-alive.
   */
  readonly limits?: ListenerLimits;
}

export interface ListenerLimits {
  readonly maxRequestHeadersBytes?: number;
  readonly maxRequestHeaders?: number;
  readonly requestHeadersTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
  /** Default 10,000. Beyond it new connections are closed at once. */
  readonly maxConnections?: number;
}

export interface FilterChainConfig {
  readonly name?: string;
  /** The chain applies when every condition set here holds; the most specific chain wins. */
  readonly match?: FilterChainMatch;
  /** TLS termination for this chain; absent for plain text. */
  readonly tls?: DownstreamTlsConfig;
  readonly filter: NetworkFilter;
}

export interface FilterChainMatch {
  /** Original destination port (for a listener that receives traffic for many ports). */
  readonly destinationPort?: number;
  /** SNI names, exact or "*.suffix". Implies TLS on the connection. */
  readonly serverNames?: readonly string[];
  /** ALPN protocols offered by the client (h2, http/1.1, ...). */
  readonly applicationProtocols?: readonly string[];
}

export interface DownstreamTlsConfig {
  /** PEM. */
  readonly certificateChain: string;
  readonly privateKey: string;
  /** PEM CA bundle; with requireClientCertificate, client certificates must chain to it. */
  readonly validationContext?: string;
  readonly requireClientCertificate?: boolean;
  /** ALPN the server accepts, in preference order. Default ["h2", "http/1.1"]. */
  readonly alpnProtocols?: readonly string[];
}

export type NetworkFilter = HttpConnectionManagerConfig | TcpProxyConfig;

export interface HttpConnectionManagerConfig {
  readonly type: "http";
  /** Route configuration by name (routeConfigs) or inline. */
  readonly routeConfigName?: string;
  readonly routeConfig?: RouteConfiguration;
  /**
   * "http_proxy": the listener also takes absolute-form requests (GET http://host/path) and CONNECT, as an
   * HTTP_PROXY does; apps reach their sidecar this way locally. Default "server".
   */
  readonly mode?: "server" | "http_proxy";
  /** Accepted downstream protocols. Default "auto": HTTP/1.1, and HTTP/2 by prior knowledge (h2c) or ALPN. */
  readonly codec?: "auto" | "http1" | "http2";
  readonly statPrefix?: string;
  /**
   * Which side of the hop this chain serves, for telemetry: "source" (outbound: the app's requests leave
   * through it) or "destination" (inbound: requests arrive for the app). Default "destination".
   */
  readonly reporter?: "source" | "destination";
  /** A token bucket for every request of this chain, before routing; beyond it 429 with flag RL. */
  readonly localRateLimit?: LocalRateLimit;
}

export interface TcpProxyConfig {
  readonly type: "tcp";
  readonly cluster: string;
  readonly statPrefix?: string;
  /** Close a connection idle in both directions this long. Default 1 hour. */
  readonly idleTimeoutMs?: number;
}

// ----------------------------------------------------------------------------------------------- routing

export interface RouteConfiguration {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHostConfig[];
  /** Response headers added by this route table, after the route's own. */
  readonly responseHeadersToAdd?: readonly HeaderValueOption[];
}

export interface VirtualHostConfig {
  readonly name: string;
  /**
   * Authorities served: exact ("reviews", "reviews:9080"), "*.suffix", "prefix.*" or "*". Matching is on the
   * Host/:authority; a domain without a port also matches the authority with any port, as Istio generates.
   */
  readonly domains: readonly string[];
  /** Evaluated in order: the first match wins. */
  readonly routes: readonly RouteConfig[];
}

export interface RouteConfig {
  readonly name?: string;
  readonly match: RouteMatch;
  readonly route?: RouteAction;
  readonly redirect?: RedirectAction;
  readonly directResponse?: DirectResponseAction;
  readonly requestHeadersToAdd?: readonly HeaderValueOption[];
  readonly requestHeadersToRemove?: readonly string[];
  readonly responseHeadersToAdd?: readonly HeaderValueOption[];
  readonly responseHeadersToRemove?: readonly string[];
}

/** A route matches when every condition set holds. Path: at most one of prefix, path, regex. */
export interface RouteMatch {
  readonly prefix?: string;
  readonly path?: string;
  /** RE2 syntax, matched against the whole path (without query). */
  readonly regex?: string;
  /** Default true. */
  readonly caseSensitive?: boolean;
  readonly headers?: readonly HeaderMatcher[];
  readonly queryParameters?: readonly QueryParameterMatcher[];
}

/**
 * Pseudo-headers :method, :scheme, :authority and :path can be matched like headers. `invert` matches when the
 * condition does not hold; `present: false` matches when the header is absent (Istio's withoutHeaders).
 */
export interface HeaderMatcher {
  readonly name: string;
  readonly exact?: string;
  readonly prefix?: string;
  readonly suffix?: string;
  readonly regex?: string;
  readonly present?: boolean;
  readonly invert?: boolean;
}

export interface QueryParameterMatcher {
  readonly name: string;
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
  readonly present?: boolean;
}

export interface RouteAction {
  /** One cluster, or several with weights (relative; need not sum to 100). */
  readonly cluster?: string;
  readonly weightedClusters?: readonly WeightedCluster[];
  /** Replaces the matched prefix (prefix matches) or the whole path. */
  readonly prefixRewrite?: string;
  /** RE2 pattern and substitution (\1 ... for groups) applied to the path. */
  readonly regexRewrite?: { readonly pattern: string; readonly substitution: string };
  readonly hostRewrite?: string;
  /** Consistent-hash inputs, first that yields a value wins (for RING_HASH / MAGLEV clusters). */
  readonly hashPolicy?: readonly HashPolicy[];
  /**
   * Time for the whole exchange, all retries included, until the response is complete: beyond it 504 with
   * flag UT (or the stream is reset when the response had started). Absent or 0: none (Istio's default).
   */
  readonly timeoutMs?: number;
  /**
   * Absent: the mesh default (Istio's): 2 retries on connect-failure, refused-stream, unavailable, cancelled.
   * `{ numRetries: 0 }` turns retries off.
   */
  readonly retryPolicy?: RetryPolicy;
  /** Faults injected before the request is forwarded (Istio's HTTPFaultInjection). */
  readonly fault?: FaultPolicy;
  /** Copies of the request sent to other clusters, fire and forget; the Host gets "-shadow". */
  readonly requestMirrorPolicies?: readonly MirrorPolicy[];
  /** CORS (Istio's corsPolicy); preflights are answered by the proxy. */
  readonly cors?: CorsPolicy;
  /** A token bucket for this route's requests; beyond it 429 with flag RL. */
  readonly localRateLimit?: LocalRateLimit;
}

export interface FaultPolicy {
  /** percentage: 0-100 of requests. */
  readonly delay?: { readonly fixedDelayMs: number; readonly percentage?: number };
  /** Either an HTTP status or a gRPC status (sent as a trailers-only gRPC response). */
  readonly abort?: {
    readonly httpStatus?: number;
    readonly grpcStatus?: number;
    readonly percentage?: number;
  };
}

export interface MirrorPolicy {
  readonly cluster: string;
  /** 0-100; default 100. */
  readonly percentage?: number;
}

export interface StringMatch {
  readonly exact?: string;
  readonly prefix?: string;
  /** RE2, whole value. */
  readonly regex?: string;
}

export interface CorsPolicy {
  readonly allowOrigins: readonly StringMatch[];
  readonly allowMethods?: readonly string[];
  readonly allowHeaders?: readonly string[];
  readonly exposeHeaders?: readonly string[];
  readonly maxAgeSeconds?: number;
  readonly allowCredentials?: boolean;
}

/** Envoy's local rate limit: a bucket of maxTokens, refilled by tokensPerFill every fillIntervalMs. */
export interface LocalRateLimit {
  readonly maxTokens: number;
  /** Default maxTokens. */
  readonly tokensPerFill?: number;
  readonly fillIntervalMs: number;
}

/** Envoy's retry policy (Istio's HTTPRetry). */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  readonly numRetries: number;
  /** Each attempt's own timeout (504 UT for that attempt, retried on 5xx / gateway-error / reset). */
  readonly perTryTimeoutMs?: number;
  /**
   * Envoy's conditions: 5xx, gateway-error, reset, connect-failure, refused-stream, retriable-4xx,
   * retriable-status-codes, and for gRPC cancelled, deadline-exceeded, resource-exhausted, unavailable.
   * Default: connect-failure, refused-stream, unavailable, cancelled.
   */
  readonly retryOn?: readonly string[];
  /** With retriable-status-codes (a bare status in Istio's retryOn means this). */
  readonly retriableStatusCodes?: readonly number[];
  /** Exponential backoff with full jitter: base 25 ms, max 10 x base (Envoy's). */
  readonly backoff?: { readonly baseIntervalMs?: number; readonly maxIntervalMs?: number };
}

export interface WeightedCluster {
  readonly name: string;
  readonly weight: number;
  readonly requestHeadersToAdd?: readonly HeaderValueOption[];
  readonly requestHeadersToRemove?: readonly string[];
  readonly responseHeadersToAdd?: readonly HeaderValueOption[];
  readonly responseHeadersToRemove?: readonly string[];
}

export type HashPolicy =
  | { readonly header: string }
  | { readonly cookie: string; readonly ttlMs?: number; readonly path?: string }
  | { readonly sourceIp: true }
  | { readonly queryParameter: string };

export interface RedirectAction {
  readonly scheme?: string;
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
  readonly prefixRewrite?: string;
  /** 301 (default), 302, 303, 307, 308. */
  readonly responseCode?: number;
}

export interface DirectResponseAction {
  readonly status: number;
  readonly body?: string;
}

export interface HeaderValueOption {
  readonly name: string;
  readonly value: string;
  /** true: add another value; false (default): replace any existing value. */
  readonly append?: boolean;
}

// ------------------------------------------------------------------------------------------------ clusters

export type LbPolicy = "ROUND_ROBIN" | "LEAST_REQUEST" | "RANDOM" | "RING_HASH" | "MAGLEV";

export interface ClusterConfig {
  readonly name: string;
  /**
   * "static" (default): the endpoints listed. "original_dst": no endpoints are listed; each request goes to the
   * host and port its own authority names (the CONNECT target, the absolute-form URI's or the Host header's
   * host, port 80 when it names none), as a forward proxy would: Envoy's ORIGINAL_DST cluster for traffic to
   * destinations the config does not know. The host is resolved by the system resolver on each connection.
   */
  readonly type?: "static" | "original_dst";
  /** Default ROUND_ROBIN. */
  readonly lbPolicy?: LbPolicy;
  readonly ringHash?: { readonly minimumRingSize?: number; readonly maximumRingSize?: number };
  readonly maglev?: { readonly tableSize?: number };
  /** Upstream protocol. Default "http1". "auto": h2 when the endpoint offers it through ALPN (TLS only). */
  readonly protocol?: "http1" | "http2";
  readonly endpoints: readonly EndpointConfig[];
  /** Default 10 s (Istio's). */
  readonly connectTimeoutMs?: number;
  readonly circuitBreakers?: CircuitBreakers;
  /** Close upstream connections idle this long. Default 1 hour (Istio's idleTimeout). */
  readonly idleTimeoutMs?: number;
  /** TLS to the upstream. */
  readonly tls?: UpstreamTlsConfig;
  /** Passive health checking (Istio's outlierDetection). */
  readonly outlierDetection?: OutlierDetection;
}

/** Envoy's outlier detection, as Istio's DestinationRule sets it. Defaults are Envoy's. */
export interface OutlierDetection {
  /** 5xx responses (and connection failures) in a row that eject an endpoint. Default 5; 0 disables. */
  readonly consecutive5xxErrors?: number;
  /** 502/503/504 (and connection failures) in a row. Default 0 (off). */
  readonly consecutiveGatewayErrors?: number;
  /** How often ejections are reconsidered. Default 10 s. */
  readonly intervalMs?: number;
  /** An ejection lasts this times the number of times the endpoint was ejected. Default 30 s. */
  readonly baseEjectionTimeMs?: number;
  /** At most this share of the endpoints ejected at once. Default 10 %; at least one can always be. */
  readonly maxEjectionPercent?: number;
  /** Below this share of healthy endpoints, ejection stops (panic). Default 0. */
  readonly minHealthPercent?: number;
}

/** Istio's connectionPool limits, per cluster. Unset = Envoy's defaults (effectively unlimited: 2^32-1). */
export interface CircuitBreakers {
  /** tcp.maxConnections. */
  readonly maxConnections?: number;
  /** http.http1MaxPendingRequests: requests waiting for a connection. */
  readonly maxPendingRequests?: number;
  /** http.http2MaxRequests: requests in flight. */
  readonly maxRequests?: number;
  /** http.maxRequestsPerConnection: a connection is closed after this many (0 = unlimited). */
  readonly maxRequestsPerConnection?: number;
  /**
   * Retries in flight at once may not exceed this share of the active requests (at least
   * minRetryConcurrency), so that retries cannot multiply the load on a failing service. Absent: unlimited
   * (Istio leaves maxRetries unlimited).
   */
  readonly retryBudget?: { readonly budgetPercent: number; readonly minRetryConcurrency?: number };
}

export interface UpstreamTlsConfig {
  readonly sni?: string;
  /** PEM CA bundle; default: Node's CA store. */
  readonly validationContext?: string;
  readonly certificateChain?: string;
  readonly privateKey?: string;
  readonly alpnProtocols?: readonly string[];
  readonly insecureSkipVerify?: boolean;
}

export interface EndpointConfig {
  readonly address: string;
  readonly port: number;
  /** Default 1. */
  readonly weight?: number;
  readonly labels?: Readonly<Record<string, string>>;
  /** region/zone/subzone. */
  readonly locality?: string;
}
