// Envoy's response flags: why a request ended the way it did. They appear in access logs and the
// response_flags metric label, and users of Istio read them (UH, UF, UO, NR, ...).
export const ResponseFlag = {
  /** No route matched. */
  NoRouteFound: "NR",
  /** No healthy upstream endpoint. */
  NoHealthyUpstream: "UH",
  /** Upstream connection failure (refused, timed out connecting). */
  UpstreamConnectionFailure: "UF",
  /** Circuit breaker overflow: connection pool, pending or request limits. */
  UpstreamOverflow: "UO",
  /** The upstream spoke invalid HTTP. */
  UpstreamProtocolError: "UPE",
  /** The upstream closed or reset the connection before the response completed. */
  UpstreamConnectionTermination: "UC",
  /** The downstream sent an invalid request. */
  DownstreamProtocolError: "DPE",
  /** The downstream closed the connection before the response completed. */
  DownstreamConnectionTermination: "DC",
  /** Cluster named by the route does not exist. */
  NoClusterFound: "NC",
  /** The route timeout or an attempt's per-try timeout expired. */
  UpstreamRequestTimeout: "UT",
  /** Retries were exhausted; the last attempt's outcome was returned. */
  UpstreamRetryLimitExceeded: "URX",
  /** A fault delay was injected. */
  DelayInjected: "DI",
  /** A fault abort was injected. */
  FaultInjected: "FI",
  /** The local rate limit refused the request. */
  RateLimited: "RL",
} as const;

export type ResponseFlag = (typeof ResponseFlag)[keyof typeof ResponseFlag];

/** Envoy's order of flags in access logs (the order of its ResponseFlag enum). */
const ORDER = ["UH", "UT", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "DC", "URX", "DPE", "UPE", "NC"];

/** A comma-joined flag list in Envoy's order ("URX,UF" -> "UF,URX"); "-" for none. */
export function formatFlags(flags: string): string {
  if (flags === "") return "-";
  if (flags.indexOf(",") === -1) return flags;
  return flags
    .split(",")
    .sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b))
    .join(",");
}
