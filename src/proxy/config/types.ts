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
  /**
   * Reverse tunnels this proxy dials and holds (a private network's east-west gateway): each is an outbound
   * mutual-TLS connection over which the acceptor, not this proxy, opens HTTP/2 CONNECT streams; every stream
   * is handed to a local listener as if it were a connection accepted there.
   */
  readonly reverseTunnels?: readonly ReverseTunnelConfig[];
}

/**
 * One reverse tunnel, dialled by this proxy: it connects to an acceptor (a listener whose chain's filter is
 * reverse_tunnel_acceptor), announces itself under `name`, and then serves the CONNECT streams the acceptor
 * opens by handing each to `listener`. Redialled with backoff when it drops.
 */
export interface ReverseTunnelConfig {
  /** The name the acceptor files the tunnel under; clusters' endpoints with `tunnel: NAME` ride it. */
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** Mutual TLS to the acceptor (a client certificate is required there). */
  readonly tls: UpstreamTlsConfig;
  /** Connections held open at once (streams are spread over them). Default 1. */
  readonly connections?: number;
  /** The local listener each CONNECT stream is handed to (e.g. the east-west gateway's passthrough one). */
  readonly listener: string;
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
  /** PEM, inline; or certificateSecret. */
  readonly certificateChain?: string;
  readonly privateKey?: string;
  /** The name of a certificate secret the proxy holds (e.g. "default", its workload certificate). */
  readonly certificateSecret?: string;
  /** PEM CA bundle; with requireClientCertificate, client certificates must chain to it. */
  readonly validationContext?: string;
  /** The name of a validation secret (trusted roots) the proxy holds, instead of validationContext. */
  readonly validationSecret?: string;
  readonly requireClientCertificate?: boolean;
  /** The client certificate must carry one of these URI SANs (e.g. SPIFFE IDs). Default: any. */
  readonly matchSubjectAltNames?: readonly string[];
  /** ALPN the server accepts, in preference order. Default ["h2", "http/1.1"]. */
  readonly alpnProtocols?: readonly string[];
}

export type NetworkFilter = HttpConnectionManagerConfig | TcpProxyConfig | ReverseTunnelAcceptorConfig;

/**
 * Accepts reverse tunnels (ReverseTunnelConfig, dialled by other proxies): the chain must terminate TLS and
 * require a client certificate. Each accepted tunnel is held under the name its initiator announces, and
 * endpoints with `tunnel: NAME` in any cluster of this proxy are reached over it.
 */
export interface ReverseTunnelAcceptorConfig {
  readonly type: "reverse_tunnel_acceptor";
  readonly statPrefix?: string;
  /** Names an initiator may announce; absent: any. */
  readonly allowedNames?: readonly string[];
}

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
  /**
   * Requests from a peer whose client certificate the chain verified reach the upstream with
   * x-forwarded-client-cert describing it (By, Hash, Subject, URI: Istio's inbound sidecar). Whatever the
   * setting, a client's own x-forwarded-client-cert is never forwarded (Envoy's SANITIZE).
   */
  readonly setClientCertDetails?: boolean;
  /** A token bucket for every request of this chain, before routing; beyond it 429 with flag RL. */
  readonly localRateLimit?: LocalRateLimit;
  /**
   * Envoy's jwt_authn: tokens verified before routing; a verified token's principal (iss/sub) and payload are
   * what RBAC's requestPrincipal and jwtClaim match. An invalid token: 401; no token: the request passes
   * without a principal.
   */
  readonly jwtAuthn?: JwtAuthnConfig;
  /** Envoy's ext_authz (HTTP), in order, after jwtAuthn and before rbac. */
  readonly extAuthz?: readonly ExtAuthzConfig[];
  /** Envoy's RBAC filters, in order, after jwtAuthn and extAuthz; the first that denies answers 403. */
  readonly rbac?: readonly RbacConfig[];
}

export interface TcpProxyConfig {
  readonly type: "tcp";
  readonly cluster: string;
  readonly statPrefix?: string;
  /** Close a connection idle in both directions this long. Default 1 hour. */
  readonly idleTimeoutMs?: number;
  /**
   * Envoy's network RBAC filters, in order, when the connection is accepted: a denied connection is closed.
   * Only source IP, TLS peer, destination IP/port and SNI are known; header, path, method and JWT matchers
   * never match here.
   */
  readonly rbac?: readonly RbacConfig[];
}

// -------------------------------------------------------------------------------------------- security

/** Envoy's StringMatcher: exactly one of exact, prefix, suffix, contains, regex (RE2, whole value). */
export interface RbacStringMatcher {
  readonly exact?: string;
  readonly prefix?: string;
  readonly suffix?: string;
  readonly contains?: string;
  readonly regex?: string;
  readonly ignoreCase?: boolean;
}

/**
 * A header of the request (pseudo-headers :method, :authority, :path included; several values joined with
 * ","). Without a value matcher: present. `invert`: the result negated (an absent header matches then).
 */
export interface RbacHeaderMatcher extends RbacStringMatcher {
  readonly name: string;
  readonly present?: boolean;
  readonly invert?: boolean;
}

/** Envoy's RBAC permission: what the request asks for. Exactly one field. */
export interface RbacPermission {
  readonly any?: true;
  readonly andRules?: readonly RbacPermission[];
  readonly orRules?: readonly RbacPermission[];
  readonly notRule?: RbacPermission;
  readonly header?: RbacHeaderMatcher;
  /** The path without query, dot segments resolved and unreserved %XX decoded. */
  readonly urlPath?: RbacStringMatcher;
  /** Envoy's uri_template: `{*}` one segment, `{**}` the rest of the path (last). */
  readonly uriTemplate?: string;
  /** CIDR or address of the local address the connection arrived at. */
  readonly destinationIp?: string;
  readonly destinationPort?: number;
  /** TLS SNI of the connection. */
  readonly requestedServerName?: RbacStringMatcher;
}

/** Envoy's RBAC principal: who asks. Exactly one field. */
export interface RbacPrincipal {
  readonly any?: true;
  readonly andIds?: readonly RbacPrincipal[];
  readonly orIds?: readonly RbacPrincipal[];
  readonly notId?: RbacPrincipal;
  /**
   * A TLS peer whose certificate the chain verified; principalName matches its URI SAN (else its subject).
   * Plain-text connections never match.
   */
  readonly authenticated?: { readonly principalName?: RbacStringMatcher };
  /** CIDR or address of the downstream socket's peer. */
  readonly directRemoteIp?: string;
  /** CIDR or address of the client (this proxy trusts no x-forwarded-for hop: the socket's peer). */
  readonly remoteIp?: string;
  readonly header?: RbacHeaderMatcher;
  /** The verified JWT's "iss/sub" (jwtAuthn); no verified token never matches. */
  readonly requestPrincipal?: RbacStringMatcher;
  /** A claim of the verified JWT's payload at `path`; a list claim matches when one element does. */
  readonly jwtClaim?: { readonly path: readonly string[]; readonly value: RbacStringMatcher };
}

/** A policy matches when one of its permissions and one of its principals match. */
export interface RbacPolicy {
  readonly permissions: readonly RbacPermission[];
  readonly principals: readonly RbacPrincipal[];
}

export interface RbacRules {
  /**
   * ALLOW: a request that matches no policy is denied (no policies: every request is). DENY: a request that
   * matches one is denied. LOG: never denies; the match is counted (rbac.logged) and noted in the access log.
   */
  readonly action: "ALLOW" | "DENY" | "LOG";
  /** By name, evaluated in name order (the first match is the effective policy). */
  readonly policies: Readonly<Record<string, RbacPolicy>>;
}

/** Envoy's RBAC filter: rules enforced, shadow rules only evaluated and counted (dry run). */
export interface RbacConfig {
  /** Absent: nothing enforced. */
  readonly rules?: RbacRules;
  readonly shadowRules?: RbacRules;
  /** Inserted in the shadow counters' names: rbac.PREFIXshadow_allowed. */
  readonly shadowRulesStatPrefix?: string;
  /** Inserted in the enforced counters' names: rbac.PREFIXallowed. */
  readonly rulesStatPrefix?: string;
}

/**
 * Envoy's ext_authz with an HTTP service: the request's method, path and headers (without body) are sent to
 * `cluster` as a check; a 200 answer lets it through (with the headersToUpstreamOnAllow it names), any other
 * status is the client's answer (403 when it is not an error status), flag UAEX.
 */
export interface ExtAuthzConfig {
  readonly cluster: string;
  /** Prepended to the request's path in the check. */
  readonly pathPrefix?: string;
  /** Authority of the check request. Default: the cluster's name. */
  readonly authority?: string;
  /** Default 200 (Envoy's). */
  readonly timeoutMs?: number;
  /** The service unreachable, timing out or answering 5xx: let the request through (true) or answer statusOnError. */
  readonly failureModeAllow?: boolean;
  /** Default 403. */
  readonly statusOnError?: number;
  /** Request headers sent to the service (besides :method, :path, host, content-length). Default: all. */
  readonly includeRequestHeaders?: readonly string[];
  /** Headers of an OK answer copied to the upstream request. */
  readonly headersToUpstreamOnAllow?: readonly string[];
  /** Headers of a denying answer copied to the client's response. Default: all of them. */
  readonly headersToDownstreamOnDeny?: readonly string[];
  /** Only requests matching one of these are checked (Istio's CUSTOM rules). Absent: every request. */
  readonly policies?: Readonly<Record<string, RbacPolicy>>;
}

export interface JwtAuthnConfig {
  readonly providers: readonly JwtProvider[];
}

/** Envoy's JwtProvider (with Istio's requirement: any of the providers, or no token at all). */
export interface JwtProvider {
  readonly name: string;
  /** The token's iss must be this. Absent: any issuer. */
  readonly issuer?: string;
  /** The token's aud must contain one of these. Absent: not checked. */
  readonly audiences?: readonly string[];
  /** A JWKS document (JSON text). */
  readonly localJwks?: string;
  /** A JWKS fetched on first use, kept cacheDurationMs, refetched on expiry and on an unknown kid. */
  readonly remoteJwks?: {
    /** http(s) URL of the JWKS. */
    readonly uri: string;
    /** Connect to this cluster's endpoint instead of resolving the URI's host. */
    readonly cluster?: string;
    /** Default 5,000. */
    readonly timeoutMs?: number;
    /** Default 600,000 (Envoy's 10 minutes). */
    readonly cacheDurationMs?: number;
  };
  /** Where the token is looked for. None of fromHeaders/fromParams/fromCookies: Authorization: Bearer and ?access_token. */
  readonly fromHeaders?: readonly { readonly name: string; readonly valuePrefix?: string }[];
  readonly fromParams?: readonly string[];
  readonly fromCookies?: readonly string[];
  /** Keep the token in the request forwarded upstream. Default false: a header carrying it is removed. */
  readonly forward?: boolean;
  /** The verified payload, base64url JSON, in this request header. */
  readonly forwardPayloadHeader?: string;
  /** Default 60 (Envoy's). */
  readonly clockSkewSeconds?: number;
  /** Tokens longer than this are refused. Default 8,192. */
  readonly maxTokenBytes?: number;
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
  /**
   * Envoy's transport_socket_matches: an endpoint whose labels hold every pair of an entry's `match` is dialled
   * with that entry's `tls` (plain text when it has none), the first such entry winning; other endpoints use
   * the cluster's `tls`. Istio's auto mTLS: endpoints labelled security.istio.io/tlsMode=istio have a sidecar and
   * get mutual TLS, the rest of one service plain text.
   */
  readonly transportSocketMatches?: readonly TransportSocketMatch[];
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

export interface TransportSocketMatch {
  readonly name: string;
  readonly match: Readonly<Record<string, string>>;
  readonly tls?: UpstreamTlsConfig;
}

export interface UpstreamTlsConfig {
  readonly sni?: string;
  /** PEM CA bundle; default: Node's CA store. */
  readonly validationContext?: string;
  /** The name of a validation secret (trusted roots) the proxy holds, instead of validationContext. */
  readonly validationSecret?: string;
  readonly certificateChain?: string;
  readonly privateKey?: string;
  /** The name of a certificate secret the proxy holds, presented as the client certificate. */
  readonly certificateSecret?: string;
  /**
   * The server certificate must carry one of these URI SANs (e.g. the SPIFFE IDs expected behind the
   * cluster); checked instead of the host name. Default: the host name check.
   */
  readonly matchSubjectAltNames?: readonly string[];
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
  /**
   * Envoy's priority level, 0 (default) to 31: traffic goes to the lowest level with healthy endpoints and
   * spills to the next in proportion to the unhealthy share (overprovisioning factor 1.4), as Envoy does.
   */
  readonly priority?: number;
  /**
   * Reached through the reverse tunnel of this name (see ReverseTunnelConfig): a CONNECT stream to
   * address:port on one of its connections, instead of a connection dialled from here.
   */
  readonly tunnel?: string;
}
