// From a matched route to the endpoint a request goes to, the same for every downstream codec: the weighted
// cluster, the cluster's request circuit breaker, and the load balancer (with the route's hash policies for
// RING_HASH and MAGLEV). On success the request is counted against the cluster and the endpoint; the caller
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
): UpstreamChoice | ResponseFlag {
  const wc = pickCluster(route, Math.random());
  const cluster = wc ? clusters.get(wc.name) : undefined;
  if (!wc || !cluster) return ResponseFlag.NoClusterFound;
  if (cluster.limits.active.value >= cluster.limits.maxRequests) {
    cluster.limits.overflowRequests.inc();
    return ResponseFlag.UpstreamOverflow;
  }
  const policies = route.action?.hashPolicy;
  const hash =
    policies && (cluster.policy === "RING_HASH" || cluster.policy === "MAGLEV")
      ? computeHash(policies, source.hashInput())
      : undefined;
  const endpoint = cluster.lb.pick({ hash }) as Endpoint | undefined;
  if (!endpoint) {
    cluster.stats.noHealthyHost.inc();
    return ResponseFlag.NoHealthyUpstream;
  }
  cluster.limits.active.value++;
  endpoint.activeRequests++;
  cluster.stats.rqTotal.inc();
  endpoint.rqTotal++;
  return { wc, cluster, endpoint };
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
