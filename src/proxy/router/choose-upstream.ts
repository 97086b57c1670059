// From a matched route to the endpoint a request goes to, the same for every downstream codec: the weighted
// cluster, the cluster's request circuit breaker, and the load balancer (with the route's hash policies for
// RING_HASH and MAGLEV; an original_dst cluster's endpoint is the request authority's). On success the request is counted against the cluster and the endpoint; the caller
// must release it (active requests) when the exchange ends.
import type { HashInput } from "../lb/hash-policy.ts";
import { computeHash } from "../lb/hash-policy.ts";
import type { Cluster, ClusterManager, Endpoint } from "../upstream/cluster.ts";
import { ResponseFlag } from "../upstream/response-flags.ts";
import { type CompiledRoute, type CompiledWeightedCluster, pickCluster, queryValue } from "./route-table.ts";

export interface UpstreamChoice {
  readonly wc: CompiledWeightedCluster;
  readonly cluster: Cluster;
  readonly endpoint: Endpoint;
}

/** What a request offers to the hash policies; asked only when the cluster hashes. */
export interface HashSource {
  hashInput(): HashInput;
}

/** The upstream for a routed request, or the flag of the local reply to send instead (NC, UO, UH). */
export function chooseUpstream(
  route: CompiledRoute,
  clusters: ClusterManager,
  source: HashSource,
  authority: string,
): UpstreamChoice | ResponseFlag {
  const wc = pickCluster(route, Math.random());
  const cluster = wc ? clusters.get(wc.name) : undefined;
  if (!wc || !cluster) return ResponseFlag.NoClusterFound;
  if (cluster.limits.active.value >= cluster.limits.maxRequests) {
    cluster.limits.overflowRequests.inc();
    return ResponseFlag.UpstreamOverflow;
  }
  const endpoint = pickEndpoint(route, cluster, source, null, authority);
  if (endpoint === undefined) return ResponseFlag.NoHealthyUpstream;
  countRequest(cluster, endpoint);
  return { wc, cluster, endpoint };
}

/**
 * The endpoint for a retry in the same cluster: another than those already tried where the balancer offers
 * one within a few picks (Envoy's previous_hosts predicate), counted like a first attempt.
 */
export function chooseRetryEndpoint(
  route: CompiledRoute,
  cluster: Cluster,
  source: HashSource,
  tried: readonly Endpoint[],
  authority: string,
): Endpoint | ResponseFlag {
  if (cluster.limits.active.value >= cluster.limits.maxRequests) {
    cluster.limits.overflowRequests.inc();
    return ResponseFlag.UpstreamOverflow;
  }
  const endpoint = pickEndpoint(route, cluster, source, tried, authority);
  if (endpoint === undefined) return ResponseFlag.NoHealthyUpstream;
  countRequest(cluster, endpoint);
  return endpoint;
}

const RETRY_HOST_PICKS = 5;

function pickEndpoint(
  route: CompiledRoute,
  cluster: Cluster,
  source: HashSource,
  tried: readonly Endpoint[] | null,
  authority: string,
): Endpoint | undefined {
  if (cluster.config.type === "original_dst") {
    const ep = cluster.originalDestination(authority);
    if (ep === undefined) cluster.stats.noHealthyHost.inc();
    return ep;
  }
  const policies = route.action?.hashPolicy;
  const hash =
    policies && (cluster.policy === "RING_HASH" || cluster.policy === "MAGLEV")
      ? computeHash(policies, source.hashInput())
      : undefined;
  const avoid = tried !== null && tried.length > 0 ? tried[tried.length - 1] : undefined;
  let endpoint = cluster.lb.pick({ hash, avoid }) as Endpoint | undefined;
  // The balancer avoids the last endpoint tried; earlier ones (a third attempt) are avoided by picking again.
  if (tried !== null && tried.length > 1)
    for (let i = 1; i < RETRY_HOST_PICKS && endpoint !== undefined && tried.includes(endpoint); i++)
      endpoint = cluster.lb.pick({ hash, avoid }) as Endpoint | undefined;
  if (endpoint === undefined) cluster.stats.noHealthyHost.inc();
  return endpoint;
}

function countRequest(cluster: Cluster, endpoint: Endpoint): void {
  cluster.limits.active.value++;
  endpoint.activeRequests++;
  cluster.stats.rqTotal.inc();
  endpoint.rqTotal++;
}

/** The hash input of a request: flat [name, value, ...] headers with lower-case names, path with query. */
export function requestHashInput(headers: readonly string[], path: string, sourceIp: string): HashInput {
  return {
    header: (name) => {
      const n = name.toLowerCase();
      for (let i = 0; i < headers.length; i += 2) if (headers[i] === n) return headers[i + 1];
      return undefined;
    },
    cookie: (name) => cookieValue(headers, name),
    sourceIp,
    queryParameter: (name) => {
      const q = path.indexOf("?");
      return q === -1 ? undefined : queryValue(path.slice(q + 1), name);
    },
  };
}

function cookieValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== "cookie") continue;
    for (const part of headers[i + 1]!.split(";")) {
      const eq = part.indexOf("=");
      if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}
