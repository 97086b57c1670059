// ROUND_ROBIN, as Envoy's weighted round robin (arch overview, "Weighted round robin"): with equal weights a
// plain rotation (Envoy's unweighted pick: an index advancing over the hosts); with unequal weights an
// earliest-deadline-first schedule where an endpoint of weight w comes due every 1/w, which interleaves
// endpoints smoothly (weights 3:1 give A A B A | A A B A ...) rather than in bursts.
//
// Envoy rebuilds its schedule over healthy hosts when health changes; here health is read at pick time, so the
// rotation skips unhealthy endpoints (1,2,3 with 2 down rotates 1,3,1,3 and picks 2 up again when it recovers)
// and the EDF schedule parks them behind everyone else (edf.ts). Picks are O(1) (rotation) or O(log n) (EDF)
// while endpoints are healthy; each unhealthy endpoint met costs one more step, at most n steps per pick.
// Unlike Envoy, the rotation starts at the first endpoint rather than at a random one, so order is exact.

import { allWeightsEqual, lastResort, validateEndpoints } from "./common.ts";
import { EdfScheduler } from "./edf.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";

export class RoundRobinLoadBalancer implements LoadBalancer {
  readonly policy = "ROUND_ROBIN" as const;
  private readonly endpoints: readonly LbEndpoint[];
  private readonly members: ReadonlySet<LbEndpoint>;
  /** Equal weights: next index of the rotation. */
  private cursor = 0;
  /** Unequal weights: the EDF schedule and each endpoint's period (max weight / weight). */
  private readonly scheduler: EdfScheduler | undefined;
  private readonly periods: Float64Array;

  constructor(endpoints: readonly LbEndpoint[], _options: LoadBalancerOptions = {}) {
    validateEndpoints(endpoints);
    this.endpoints = endpoints.slice();
    this.members = new Set(this.endpoints);
    let maxWeight = 0;
    for (const e of endpoints) if (e.weight > maxWeight) maxWeight = e.weight;
    this.periods = Float64Array.from(endpoints, (e) => maxWeight / e.weight);
    this.scheduler = allWeightsEqual(endpoints) ? undefined : new EdfScheduler(this.periods);
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const endpoints = this.endpoints;
    const n = endpoints.length;
    const avoid = ctx.avoid;
    const scheduler = this.scheduler;
    if (scheduler === undefined) {
      let i = this.cursor;
      for (let step = 0; step < n; step++) {
        const e = endpoints[i]!;
        if (++i === n) i = 0;
        if (e.healthy && e !== avoid) {
          this.cursor = i;
          return e;
        }
      }
    } else {
      // Each park() sends the top entry behind all others: n parks in a row have seen every endpoint.
      for (let step = 0; step < n; step++) {
        const i = scheduler.top();
        const e = endpoints[i]!;
        if (e.healthy && e !== avoid) {
          scheduler.advance(this.periods[i]!);
          return e;
        }
        scheduler.park();
      }
    }
    return lastResort(this.members, avoid);
  }
}
