// Load balancers by policy. Build one per cluster config (never per request) and call pick() per request.
// Endpoints of several priorities get one balancer of the policy per level under a PriorityLoadBalancer
// (priority.ts); endpoints of a single priority get the policy's balancer itself, with nothing in between.

import type { LbPolicy } from "../config/types.ts";
import { LeastRequestLoadBalancer } from "./least-request.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions } from "./load-balancer.ts";
import { MaglevLoadBalancer } from "./maglev.ts";
import {
  groupByPriority,
  type PrioritizedEndpoint,
  PriorityLoadBalancer,
  type PriorityOptions,
} from "./priority.ts";
import { RandomLoadBalancer } from "./random.ts";
import { RingHashLoadBalancer } from "./ring-hash.ts";
import { RoundRobinLoadBalancer } from "./round-robin.ts";

export { fmix32, murmur3 } from "./hash.ts";
export { computeHash, type HashInput } from "./hash-policy.ts";
export { LeastRequestLoadBalancer, type LeastRequestOptions } from "./least-request.ts";
export type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";
export { MaglevLoadBalancer } from "./maglev.ts";
export {
  computePriorityLoads,
  type HealthGeneration,
  levelHealth,
  type PrioritizedEndpoint,
  PriorityLoadBalancer,
  type PriorityOptions,
} from "./priority.ts";
export { RandomLoadBalancer } from "./random.ts";
export { RingHashLoadBalancer } from "./ring-hash.ts";
export { RoundRobinLoadBalancer } from "./round-robin.ts";

/**
 * The balancer for `policy` over `endpoints` (each weight > 0, each priority an integer 0..31, absent 0).
 * Throws a RangeError for invalid weights, priorities or options (ring sizes out of range, a Maglev table size
 * that is not a prime <= 5000011). With several priorities, pass `options.health` (bumped when an endpoint's
 * health changes) so that picks need not recount healthy endpoints.
 */
export function createLoadBalancer(
  policy: LbPolicy,
  endpoints: readonly PrioritizedEndpoint[],
  options: PriorityOptions = {},
): LoadBalancer {
  const grouped = groupByPriority(endpoints);
  if (grouped === undefined) return levelBalancer(policy, endpoints, options);
  const balancers = grouped.levels.map((level) => levelBalancer(policy, level, options));
  return new PriorityLoadBalancer(policy, grouped.priorities, grouped.levels, balancers, options);
}

function levelBalancer(
  policy: LbPolicy,
  endpoints: readonly LbEndpoint[],
  options: LoadBalancerOptions,
): LoadBalancer {
  switch (policy) {
    case "ROUND_ROBIN":
      return new RoundRobinLoadBalancer(endpoints, options);
    case "LEAST_REQUEST":
      return new LeastRequestLoadBalancer(endpoints, options);
    case "RANDOM":
      return new RandomLoadBalancer(endpoints, options);
    case "RING_HASH":
      return new RingHashLoadBalancer(endpoints, options);
    case "MAGLEV":
      return new MaglevLoadBalancer(endpoints, options);
    default: {
      const unknown: never = policy;
      throw new RangeError(`unknown load balancing policy ${String(unknown)}`);
    }
  }
}
