// RANDOM, weighted: an endpoint is chosen with probability weight / total weight of the healthy endpoints
// (Envoy's random balancer picks among available hosts, by weight). One random number per draw through an
// alias table (common.ts), so a pick is O(1); an unhealthy or avoided draw is rejected and redrawn, which
// keeps the distribution exactly proportional among the usable endpoints. After MAX_TRIES rejections (most of
// the cluster down) an O(n) weighted scan of the usable endpoints decides.

import { AliasTable, lastResort, MAX_TRIES, validateEndpoints, weightedScan } from "./common.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";

export class RandomLoadBalancer implements LoadBalancer {
  readonly policy = "RANDOM" as const;
  private readonly endpoints: readonly LbEndpoint[];
  private readonly members: ReadonlySet<LbEndpoint>;
  private readonly table: AliasTable;
  private readonly random: () => number;

  constructor(endpoints: readonly LbEndpoint[], options: LoadBalancerOptions = {}) {
    validateEndpoints(endpoints);
    this.endpoints = endpoints.slice();
    this.members = new Set(this.endpoints);
    this.table = new AliasTable(this.endpoints.map((e) => e.weight));
    this.random = options.random ?? Math.random;
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const endpoints = this.endpoints;
    if (endpoints.length === 0) return undefined;
    const avoid = ctx.avoid;
    for (let t = 0; t < MAX_TRIES; t++) {
      const e = endpoints[this.table.sample(this.random())]!;
      if (e.healthy && e !== avoid) return e;
    }
    return weightedScan(endpoints, avoid, this.random()) ?? lastResort(this.members, avoid);
  }
}
