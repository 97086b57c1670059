// Priority levels, as Envoy's (arch overview "Priority levels"; LoadBalancerBase in Envoy's
// load_balancer_impl.cc): endpoints are grouped by priority (0 is the most preferred), each level has its own
// balancer of the cluster's policy, and a request first draws a level by the "priority load", then asks that
// level's balancer for an endpoint.
//
// The arithmetic is Envoy's, in integer percents:
//   health(P)  = min(100, floor(140 × healthy(P) / total(P)))             (overprovisioning factor 1.4)
//   total      = min(100, Σ health(P))                                    (the normalized total health)
//   load(P)    = min(what is left of 100, floor(health(P) × 100 / total)), in priority order
// and the rounding remainder goes to the first level with health > 0. A level 80% healthy still takes all the
// traffic (80 × 1.4 > 100); 50% healthy takes 70%. When every level's health is 0, P0 gets 100% (Envoy with
// its panic threshold at 0, which is what Istio configures by default).
//
// Level choice is Envoy's choosePriority: a number d in 1..100, from the request hash (hash % 100 + 1) when
// there is one (RING_HASH, MAGLEV) so a key keeps its level, else from the PRNG; the first level whose
// cumulative load reaches d wins.
//
// Health is each endpoint's `healthy` flag, which the upstream layer flips without telling the balancers. So
// that a pick does not rescan every endpoint, the levels' loads are recomputed only when a HealthGeneration
// (a counter the outlier detector bumps whenever it ejects or brings back an endpoint) has moved; without one
// the loads are recomputed on every pick (correct, O(n)). Either way a pick never returns an unhealthy
// endpoint: when the chosen level has nothing usable (loads not yet recomputed, or a level whose integer
// health rounds to 0 although one of its endpoints is up), the other levels are asked in priority order.
//
// Differences from Envoy: no panic mode (Istio sets healthy_panic_threshold to the rule's minHealthPercent,
// 0 by default, which turns it off; here unhealthy endpoints are never picked); and the fallback above, where Envoy would answer "no healthy upstream". A
// retry's `avoid` is honoured within the chosen level first and then across levels ("another healthy
// endpoint when one exists"), where Envoy's previous_hosts predicate only redraws up to 5 times.

import type { LbPolicy } from "../config/types.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";

/** Envoy's default overprovisioning factor, in percent. */
export const OVERPROVISIONING_FACTOR = 140;
/** Priorities are 0..MAX_PRIORITY, as the proxy config allows. */
export const MAX_PRIORITY = 31;

/**
 * A counter bumped by whoever flips an endpoint's `healthy` flag (the outlier detector). Priority balancers
 * read it on every pick and recompute their levels' loads when it moved. One per cluster, shared by the
 * cluster's successive generations, since they share endpoint objects.
 */
export interface HealthGeneration {
  value: number;
}

/** An endpoint with its priority level (absent: 0). */
export interface PrioritizedEndpoint extends LbEndpoint {
  readonly priority?: number;
}

export interface PriorityOptions extends LoadBalancerOptions {
  /** Bumped when endpoint health changes; absent: level loads are recomputed on every pick. */
  readonly health?: HealthGeneration;
}

/** A level's health score: min(100, floor(1.4 × healthy / total × 100)); 0 for an empty level. */
export function levelHealth(healthy: number, total: number): number {
  if (total <= 0) return 0;
  return Math.min(100, Math.floor((OVERPROVISIONING_FACTOR * healthy) / total));
}

/**
 * Envoy's priority load from the levels' health scores (integers 0..100): writes each level's share of the
 * traffic, in percent, into `loads` (same length). The shares sum to 100. Allocation-free.
 */
export function computePriorityLoads(health: ArrayLike<number>, loads: { [i: number]: number }): void {
  const n = health.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += health[i]!;
  const total = Math.min(100, sum);
  if (total === 0) {
    for (let i = 0; i < n; i++) loads[i] = i === 0 ? 100 : 0;
    return;
  }
  let left = 100;
  let firstAvailable = -1;
  for (let i = 0; i < n; i++) {
    const h = health[i]!;
    if (firstAvailable < 0 && h > 0) firstAvailable = i;
    const load = Math.min(left, Math.floor((h * 100) / total));
    loads[i] = load;
    left -= load;
  }
  if (left > 0) loads[firstAvailable] = loads[firstAvailable]! + left;
}

/**
 * The endpoints grouped by priority, lowest first, with those priorities; undefined when they all share one
 * priority (the caller then needs no priority balancer). Throws a RangeError for a priority that is not an
 * integer 0..31.
 */
export function groupByPriority(
  endpoints: readonly PrioritizedEndpoint[],
): { priorities: number[]; levels: PrioritizedEndpoint[][] } | undefined {
  const byPriority = new Map<number, PrioritizedEndpoint[]>();
  for (const e of endpoints) {
    const p = e.priority ?? 0;
    if (!Number.isInteger(p) || p < 0 || p > MAX_PRIORITY)
      throw new RangeError(
        `endpoint ${e.key}: priority must be an integer 0..${MAX_PRIORITY}, got ${String(p)}`,
      );
    const level = byPriority.get(p);
    if (level === undefined) byPriority.set(p, [e]);
    else level.push(e);
  }
  if (byPriority.size <= 1) return undefined;
  const priorities = [...byPriority.keys()].sort((a, b) => a - b);
  return { priorities, levels: priorities.map((p) => byPriority.get(p)!) };
}

export class PriorityLoadBalancer implements LoadBalancer {
  readonly policy: LbPolicy;
  /** The priority of each level, ascending (only priorities that have endpoints). */
  readonly priorities: readonly number[];
  private readonly balancers: readonly LoadBalancer[];
  private readonly members: readonly (readonly LbEndpoint[])[];
  private readonly health: HealthGeneration | undefined;
  private readonly random: () => number;
  /** Generation the loads were computed at; -1: never. */
  private seen = -1;
  private readonly levelHealth: Int32Array;
  private readonly loads: Int32Array;
  /** Cumulative loads: level i is chosen for draws d in (cumulative[i-1], cumulative[i]]. */
  private readonly cumulative: Int32Array;

  /**
   * `balancers[i]` balances `levels[i]` (the endpoints of priority `priorities[i]`); all of one policy.
   * Build through createLoadBalancer (index.ts), which makes the per-level balancers.
   */
  constructor(
    policy: LbPolicy,
    priorities: readonly number[],
    levels: readonly (readonly LbEndpoint[])[],
    balancers: readonly LoadBalancer[],
    options: PriorityOptions = {},
  ) {
    if (levels.length !== balancers.length || levels.length !== priorities.length || levels.length === 0)
      throw new RangeError("a priority balancer needs one balancer and one priority per non-empty level");
    this.policy = policy;
    this.priorities = priorities.slice();
    this.members = levels.map((l) => l.slice());
    this.balancers = balancers.slice();
    this.health = options.health;
    this.random = options.random ?? Math.random;
    const n = levels.length;
    this.levelHealth = new Int32Array(n);
    this.loads = new Int32Array(n);
    this.cumulative = new Int32Array(n);
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const health = this.health;
    if (health === undefined || health.value !== this.seen) this.recompute();
    const hash = ctx.hash;
    const d = (hash !== undefined ? (hash >>> 0) % 100 : Math.floor(this.random() * 100)) + 1;
    const balancers = this.balancers;
    const n = balancers.length;
    let chosen = 0;
    while (chosen < n - 1 && d > this.cumulative[chosen]!) chosen++;
    const avoid = ctx.avoid;
    const e = balancers[chosen]!.pick(ctx);
    if (e !== undefined && e !== avoid) return e;
    // The chosen level has nothing usable but (at most) the avoided endpoint: the others, in priority order.
    let fallback = e;
    for (let i = 0; i < n; i++) {
      if (i === chosen) continue;
      const f = balancers[i]!.pick(ctx);
      if (f !== undefined && f !== avoid) return f;
      if (fallback === undefined) fallback = f;
    }
    return fallback;
  }

  /** Each level's share of the traffic now, in percent (for the admin view and tests). */
  currentLoads(): number[] {
    const health = this.health;
    if (health === undefined || health.value !== this.seen) this.recompute();
    return Array.from(this.loads);
  }

  /** O(endpoints), allocation-free; runs once per health change (or per pick without a HealthGeneration). */
  private recompute(): void {
    this.seen = this.health === undefined ? -1 : this.health.value;
    const members = this.members;
    for (let i = 0; i < members.length; i++) {
      const level = members[i]!;
      let healthy = 0;
      for (let j = 0; j < level.length; j++) if (level[j]!.healthy) healthy++;
      this.levelHealth[i] = levelHealth(healthy, level.length);
    }
    computePriorityLoads(this.levelHealth, this.loads);
    let sum = 0;
    for (let i = 0; i < this.loads.length; i++) {
      sum += this.loads[i]!;
      this.cumulative[i] = sum;
    }
  }
}
