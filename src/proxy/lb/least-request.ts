// LEAST_REQUEST, following Envoy's "Weighted least request" (docs: intro/arch_overview/upstream/load_balancing/
// load_balancers, and the LeastRequest proto's choice_count and active_request_bias):
//
// - All weights equal: P2C. Draw choice_count (default 2) healthy endpoints uniformly at random, independently
//   (with replacement, as Envoy's N_CHOICES does), and take the one with the fewest activeRequests; on a tie the
//   earlier draw wins, so equally loaded endpoints are picked uniformly. O(1).
// - Weights not all equal: Envoy "shifts into a mode where it uses a weighted round robin schedule in which
//   weights are dynamically adjusted based on the host's request load at the time of selection":
//       weight = load_balancing_weight / (active_requests + 1) ^ active_request_bias,   bias default 1.0.
//   That is an earliest-deadline-first schedule (edf.ts) in which an endpoint, each time it is picked, comes
//   due again after 1 / that weight, computed from its activeRequests at that moment (before the caller counts
//   the new request, as in Envoy). Bias 0 makes it plain weighted round robin. O(log n).
//
// Unhealthy and avoided endpoints are rejected from the draws (P2C) or parked (EDF). When a draw finds nothing
// usable in MAX_TRIES attempts (most of the cluster is down), P2C switches to Envoy's FULL_SCAN selection for
// that pick: an O(n) scan for the least active usable endpoint, ties broken uniformly by reservoir sampling.

import { allWeightsEqual, lastResort, MAX_TRIES, validateEndpoints } from "./common.ts";
import { EdfScheduler } from "./edf.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";

export interface LeastRequestOptions extends LoadBalancerOptions {
  readonly leastRequest?: {
    /** Endpoints drawn per P2C pick; default 2, at least 2. */
    readonly choiceCount?: number;
    /** Exponent of (active + 1) in the weighted mode; default 1.0, at least 0. */
    readonly activeRequestBias?: number;
  };
}

export class LeastRequestLoadBalancer implements LoadBalancer {
  readonly policy = "LEAST_REQUEST" as const;
  private readonly endpoints: readonly LbEndpoint[];
  private readonly members: ReadonlySet<LbEndpoint>;
  private readonly random: () => number;
  private readonly choiceCount: number;
  private readonly bias: number;
  /** max weight / weight: an idle endpoint's period in the weighted mode. */
  private readonly basePeriods: Float64Array;
  /** Weighted mode only. */
  private readonly scheduler: EdfScheduler | undefined;

  constructor(endpoints: readonly LbEndpoint[], options: LeastRequestOptions = {}) {
    validateEndpoints(endpoints);
    const choiceCount = options.leastRequest?.choiceCount ?? 2;
    const bias = options.leastRequest?.activeRequestBias ?? 1.0;
    if (!Number.isInteger(choiceCount) || choiceCount < 2) {
      throw new RangeError(`leastRequest.choiceCount must be an integer >= 2, got ${choiceCount}`);
    }
    if (!(Number.isFinite(bias) && bias >= 0)) {
      throw new RangeError(`leastRequest.activeRequestBias must be >= 0, got ${bias}`);
    }
    this.endpoints = endpoints.slice();
    this.members = new Set(this.endpoints);
    this.random = options.random ?? Math.random;
    this.choiceCount = choiceCount;
    this.bias = bias;
    let maxWeight = 0;
    for (const e of endpoints) if (e.weight > maxWeight) maxWeight = e.weight;
    this.basePeriods = Float64Array.from(endpoints, (e) => maxWeight / e.weight);
    if (allWeightsEqual(endpoints)) {
      this.scheduler = undefined;
    } else {
      const periods = new Float64Array(endpoints.length);
      for (let i = 0; i < periods.length; i++) periods[i] = this.period(i);
      this.scheduler = new EdfScheduler(periods);
    }
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const endpoints = this.endpoints;
    const n = endpoints.length;
    const avoid = ctx.avoid;
    const scheduler = this.scheduler;
    if (scheduler !== undefined) {
      for (let step = 0; step < n; step++) {
        const i = scheduler.top();
        const e = endpoints[i]!;
        if (e.healthy && e !== avoid) {
          scheduler.advance(this.period(i));
          return e;
        }
        scheduler.park();
      }
      return lastResort(this.members, avoid);
    }
    if (n === 0) return undefined;
    let best: LbEndpoint | undefined;
    for (let c = 0; c < this.choiceCount; c++) {
      const e = this.drawUniform(avoid);
      // Draws keep missing: few endpoints are usable, so look at all of them.
      if (e === undefined) return this.fullScan(avoid) ?? lastResort(this.members, avoid);
      if (best === undefined || e.activeRequests < best.activeRequests) best = e;
    }
    return best;
  }

  /** 1 / (weight / (active + 1)^bias), scaled by the max weight. */
  private period(i: number): number {
    const active = this.endpoints[i]!.activeRequests;
    const base = this.basePeriods[i]!;
    if (this.bias === 1) return base * (active + 1);
    if (this.bias === 0) return base;
    return base * (active + 1) ** this.bias;
  }

  /** A uniformly drawn healthy endpoint other than `avoid`, or undefined after MAX_TRIES misses. */
  private drawUniform(avoid: LbEndpoint | undefined): LbEndpoint | undefined {
    const endpoints = this.endpoints;
    const n = endpoints.length;
    for (let t = 0; t < MAX_TRIES; t++) {
      let i = Math.floor(this.random() * n);
      if (i >= n) i = n - 1;
      const e = endpoints[i]!;
      if (e.healthy && e !== avoid) return e;
    }
    return undefined;
  }

  /** Envoy's FULL_SCAN: the least active usable endpoint, ties broken uniformly. O(n). */
  private fullScan(avoid: LbEndpoint | undefined): LbEndpoint | undefined {
    let best: LbEndpoint | undefined;
    let tied = 0;
    const endpoints = this.endpoints;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!;
      if (!e.healthy || e === avoid) continue;
      if (best === undefined || e.activeRequests < best.activeRequests) {
        best = e;
        tied = 1;
      } else if (e.activeRequests === best.activeRequests) {
        tied++;
        if (Math.floor(this.random() * tied) === 0) best = e;
      }
    }
    return best;
  }
}
