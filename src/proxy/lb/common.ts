// Pieces shared by the load balancers. Health is a mutable flag on each endpoint, owned by the upstream layer
// and changed without telling us, so no balancer keeps a "healthy list": each looks at `healthy` at pick time
// and skips what it cannot use. The fast paths are O(1) / O(log n); the helpers here are the allocation-free
// O(n) fallbacks used only when the fast path keeps hitting unusable endpoints (most of the cluster is down,
// or a retry avoids the only endpoint the fast path offers).

import type { LbEndpoint } from "./load-balancer.ts";

/** Rejection-sampling attempts before a balancer falls back to an O(n) scan. */
export const MAX_TRIES = 32;

/** Throws a RangeError unless every weight is a finite number > 0. */
export function validateEndpoints(endpoints: readonly LbEndpoint[]): void {
  for (const e of endpoints) {
    if (!(typeof e.weight === "number" && Number.isFinite(e.weight) && e.weight > 0)) {
      throw new RangeError(`endpoint ${e.key}: weight must be a finite number > 0, got ${String(e.weight)}`);
    }
  }
}

export function allWeightsEqual(endpoints: readonly LbEndpoint[]): boolean {
  for (let i = 1; i < endpoints.length; i++) if (endpoints[i]!.weight !== endpoints[0]!.weight) return false;
  return true;
}

/** Endpoint indices ordered by key: what consistent-hash tables are built from, whatever the input order. */
export function indicesByKey(endpoints: readonly LbEndpoint[]): number[] {
  const order = endpoints.map((_, i) => i);
  order.sort((a, b) => {
    const ka = endpoints[a]!.key;
    const kb = endpoints[b]!.key;
    return ka < kb ? -1 : ka > kb ? 1 : a - b;
  });
  return order;
}

/**
 * The last resort of every balancer when nothing but `avoid` is usable: `avoid` itself, if it is one of ours
 * and healthy ("honour avoid when another healthy endpoint exists, else retry on the same one").
 */
export function lastResort(
  members: ReadonlySet<LbEndpoint>,
  avoid: LbEndpoint | undefined,
): LbEndpoint | undefined {
  return avoid?.healthy && members.has(avoid) ? avoid : undefined;
}

/**
 * O(n), no allocation: a weighted-random healthy endpoint other than `avoid` (u in [0, 1)), or undefined when
 * there is none.
 */
export function weightedScan(
  endpoints: readonly LbEndpoint[],
  avoid: LbEndpoint | undefined,
  u: number,
): LbEndpoint | undefined {
  let total = 0;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e.healthy && e !== avoid) total += e.weight;
  }
  if (total === 0) return undefined;
  let target = u * total;
  let last: LbEndpoint | undefined;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (!e.healthy || e === avoid) continue;
    target -= e.weight;
    if (target < 0) return e;
    last = e;
  }
  return last; // only reached through floating-point rounding at u ≈ 1
}

/**
 * Vose's alias method: O(n) to build, O(1) and one random number per weighted sample. `sample(u)` with u in
 * [0, 1) uses u's integer part (times n) for the column and its fraction for the coin.
 */
export class AliasTable {
  readonly n: number;
  private readonly prob: Float64Array;
  private readonly alias: Int32Array;
  private readonly uniform: boolean;

  constructor(weights: ArrayLike<number>) {
    const n = weights.length;
    this.n = n;
    this.prob = new Float64Array(n);
    this.alias = new Int32Array(n);
    let uniform = true;
    let total = 0;
    for (let i = 0; i < n; i++) {
      total += weights[i]!;
      if (weights[i] !== weights[0]) uniform = false;
    }
    this.uniform = uniform;
    if (uniform || n === 0) return;
    const scaled = new Float64Array(n);
    const small: number[] = [];
    const large: number[] = [];
    for (let i = 0; i < n; i++) {
      scaled[i] = (weights[i]! * n) / total;
      (scaled[i]! < 1 ? small : large).push(i);
    }
    while (small.length > 0 && large.length > 0) {
      const s = small.pop()!;
      const l = large.pop()!;
      this.prob[s] = scaled[s]!;
      this.alias[s] = l;
      scaled[l] = scaled[l]! + scaled[s]! - 1;
      (scaled[l]! < 1 ? small : large).push(l);
    }
    for (const i of large) this.prob[i] = 1;
    for (const i of small) this.prob[i] = 1; // rounding leftovers
  }

  /** A column index drawn with probability weight / total. n must be > 0. */
  sample(u: number): number {
    const x = u * this.n;
    let i = Math.floor(x);
    if (i >= this.n) i = this.n - 1;
    if (this.uniform) return i;
    return x - i < this.prob[i]! ? i : this.alias[i]!;
  }
}

/** O(n): whether some healthy endpoint other than `avoid` exists. */
export function hasUsable(endpoints: readonly LbEndpoint[], avoid: LbEndpoint | undefined): boolean {
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e.healthy && e !== avoid) return true;
  }
  return false;
}
