// The shared conformance suite (conformance.ts) against every load-balancing policy (index.test.ts checks that
// createLoadBalancer builds these same classes).
//
// Tolerances with a request hash (consistent hashing), on top of the 5σ sampling bound:
// - RING_HASH: a ring of R entries cuts the circle into R arcs whose lengths are, for well-mixed hashes,
//   Dirichlet(1, ..., 1); an endpoint holding a fraction p of the entries owns a share with standard deviation
//   sqrt(p(1−p)/(R+1)). Every ring here has R >= 1024 entries, so 4·sqrt(p(1−p)/1025) bounds it (±5.4% at
//   p = 0.25). Arcs of an unhealthy endpoint pass to the next healthy entry, which stays within that bound.
// - MAGLEV: each endpoint holds its weighted share of 65,537 slots to within a slot or two; probes redistribute
//   an unhealthy endpoint's slots in proportion to the others'. 0.5% absolute covers both.

//
// The priority balancer (priority.ts) runs the same suite around each policy, in two shapes whose expected
// shares are those of the endpoints under test alone: behind a level of dead endpoints (P0 all unhealthy, so
// P1 — the endpoints under test — gets 100% of the load), and ahead of one (P0 under test: with P1 at health
// 0, Envoy's normalization gives P0 100% however few of its endpoints are up). The dead endpoints must never
// come back from a pick, and retries and fallbacks must cross levels correctly.

import type { LbPolicy } from "../config/types.ts";
import {
  endpoint,
  type LoadBalancerFactory,
  runLoadBalancerConformance,
  statisticalTolerance,
} from "./conformance.ts";
import { createLoadBalancer } from "./index.ts";
import { LeastRequestLoadBalancer } from "./least-request.ts";
import type { LbEndpoint } from "./load-balancer.ts";
import { MaglevLoadBalancer } from "./maglev.ts";
import { PriorityLoadBalancer } from "./priority.ts";
import { RandomLoadBalancer } from "./random.ts";
import { RingHashLoadBalancer } from "./ring-hash.ts";
import { RoundRobinLoadBalancer } from "./round-robin.ts";

const deterministic = () => 0.02;
/** Unequal weights make LEAST_REQUEST an exact schedule; equal weights make it random (P2C). */
const random = (p: number) => statisticalTolerance(p);
const ring = (p: number) => 4 * Math.sqrt((p * (1 - p)) / 1025) + statisticalTolerance(p);
const maglev = (p: number) => 0.005 + statisticalTolerance(p);

runLoadBalancerConformance("ROUND_ROBIN", (e, o) => new RoundRobinLoadBalancer(e, o), {
  policy: "ROUND_ROBIN",
  tolerance: deterministic,
});
runLoadBalancerConformance("LEAST_REQUEST", (e, o) => new LeastRequestLoadBalancer(e, o), {
  policy: "LEAST_REQUEST",
  tolerance: random,
});
runLoadBalancerConformance("RANDOM", (e, o) => new RandomLoadBalancer(e, o), {
  policy: "RANDOM",
  tolerance: random,
});
runLoadBalancerConformance("RING_HASH", (e, o) => new RingHashLoadBalancer(e, o), {
  policy: "RING_HASH",
  tolerance: random,
  hashed: { tolerance: ring },
});
runLoadBalancerConformance("MAGLEV", (e, o) => new MaglevLoadBalancer(e, o), {
  policy: "MAGLEV",
  tolerance: random,
  hashed: { tolerance: maglev },
});

/** The endpoints under test at one level and three unhealthy ones at the other (`deadAt` 0 or 1). */
function withDeadLevel(policy: LbPolicy, deadAt: 0 | 1): LoadBalancerFactory {
  return (tested, options) => {
    const dead: LbEndpoint[] = [endpoint(70_001), endpoint(70_002, 3), endpoint(70_003)];
    for (const e of dead) e.healthy = false;
    const levels = deadAt === 0 ? [dead, tested] : [tested, dead];
    const balancers = levels.map((l) => createLoadBalancer(policy, l, options));
    return new PriorityLoadBalancer(policy, [0, 1], levels, balancers, options);
  };
}

const traits: Record<
  LbPolicy,
  { tolerance: (p: number) => number; hashed?: { tolerance: (p: number) => number } }
> = {
  ROUND_ROBIN: { tolerance: deterministic },
  LEAST_REQUEST: { tolerance: random },
  RANDOM: { tolerance: random },
  RING_HASH: { tolerance: random, hashed: { tolerance: ring } },
  MAGLEV: { tolerance: random, hashed: { tolerance: maglev } },
};
for (const policy of Object.keys(traits) as LbPolicy[]) {
  for (const deadAt of [0, 1] as const) {
    runLoadBalancerConformance(
      `priority(${policy}, ${deadAt === 0 ? "behind a dead level" : "ahead of a dead level"})`,
      withDeadLevel(policy, deadAt),
      { policy, ...traits[policy] },
    );
  }
}
