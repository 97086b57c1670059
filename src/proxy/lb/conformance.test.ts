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

import { runLoadBalancerConformance, statisticalTolerance } from "./conformance.ts";
import { LeastRequestLoadBalancer } from "./least-request.ts";
import { MaglevLoadBalancer } from "./maglev.ts";
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
