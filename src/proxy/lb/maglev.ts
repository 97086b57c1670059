// MAGLEV: Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4), as Envoy's maglev
// balancer (arch overview "Maglev"; Maglev proto: table_size default 65537, must be prime, limited to
// 5000011). A lookup table of M slots is filled once; a pick is table[hash % M]: O(1).
//
// Table construction (the paper's Pseudocode 1 with Envoy's weighting): endpoints, sorted by key so the table
// does not depend on input order, each get a permutation of the slots from two hashes of the key,
// offset = murmur3(key, 0) % M and skip = murmur3(key, 1) % (M - 1) + 1 (Envoy: xxHash64 with seeds 0 and 1),
// and take turns claiming their next preferred free slot. Weights change how often an endpoint takes a turn:
// in round r an endpoint of weight w (relative to the largest) takes one when r * w >= its target, which then
// grows by 1, so the heaviest endpoint plays every round, one of a third its weight every third round, and
// every endpoint plays in round 1 (at least one slot each while endpoints fit the table). Weights 1 and 2 give
// 21,846 and 43,691 of 65,537 slots, the figures of Envoy's documentation.
//
// Health: Envoy rebuilds the table over healthy hosts. Here the table is fixed and a hash whose slot holds an
// unusable endpoint (unhealthy, or avoided by a retry) probes further slots chosen by re-hashing:
// slot_k = fmix32(hash ^ k * 0x9e3779b9) % M for k = 1..MAX_TRIES. The probes are a deterministic function of
// the hash, so a given hash keeps its endpoint while health is unchanged; keys of healthy endpoints never move;
// and a failed endpoint's keys spread over the others in proportion to their slots, i.e. their weights. If
// every probe misses (nearly everything down), the first usable endpoint in key order from hash % n decides.
//
// Without a request hash the pick is weighted random (RandomLoadBalancer), as Envoy does.

import { indicesByKey, lastResort, MAX_TRIES, validateEndpoints } from "./common.ts";
import { fmix32, murmur3 } from "./hash.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";
import { RandomLoadBalancer } from "./random.ts";

export const DEFAULT_TABLE_SIZE = 65537;
/** Envoy's limit. */
export const MAX_TABLE_SIZE = 5000011;

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

export class MaglevLoadBalancer implements LoadBalancer {
  readonly policy = "MAGLEV" as const;
  readonly tableSize: number;
  /** Fewest / most slots of one endpoint (Envoy's min_entries_per_host / max_entries_per_host). */
  readonly minEntriesPerHost: number;
  readonly maxEntriesPerHost: number;
  private readonly endpoints: readonly LbEndpoint[];
  private readonly members: ReadonlySet<LbEndpoint>;
  /** Index into `endpoints` of each slot; empty when there are no endpoints. */
  private readonly table: Int32Array;
  /** Indices into `endpoints` in key order (last-resort fallback). */
  private readonly byKey: Int32Array;
  private readonly counts: Int32Array;
  private readonly hashless: RandomLoadBalancer;

  constructor(endpoints: readonly LbEndpoint[], options: LoadBalancerOptions = {}) {
    validateEndpoints(endpoints);
    const m = options.maglev?.tableSize ?? DEFAULT_TABLE_SIZE;
    if (!isPrime(m) || m > MAX_TABLE_SIZE) {
      throw new RangeError(`maglev.tableSize must be a prime number <= ${MAX_TABLE_SIZE}, got ${m}`);
    }
    this.tableSize = m;
    this.endpoints = endpoints.slice();
    this.members = new Set(this.endpoints);
    this.hashless = new RandomLoadBalancer(this.endpoints, options);
    const n = this.endpoints.length;
    this.byKey = Int32Array.from(indicesByKey(this.endpoints));
    this.counts = new Int32Array(n);
    this.table = n === 0 ? new Int32Array(0) : this.build(m);
    let min = n === 0 ? 0 : m;
    let max = 0;
    for (const c of this.counts) {
      if (c < min) min = c;
      if (c > max) max = c;
    }
    this.minEntriesPerHost = min;
    this.maxEntriesPerHost = max;
  }

  private build(m: number): Int32Array {
    const n = this.endpoints.length;
    const next = new Int32Array(n); // next preferred slot: offset + skip * turns, mod m
    const skip = new Int32Array(n);
    const weight = new Float64Array(n); // relative to the heaviest
    const target = new Float64Array(n);
    let maxWeight = 0;
    for (const e of this.endpoints) if (e.weight > maxWeight) maxWeight = e.weight;
    for (let s = 0; s < n; s++) {
      const e = this.endpoints[this.byKey[s]!]!;
      next[s] = murmur3(e.key, 0) % m;
      skip[s] = (murmur3(e.key, 1) % (m - 1)) + 1;
      weight[s] = e.weight / maxWeight;
    }
    const table = new Int32Array(m).fill(-1);
    let filled = 0;
    for (let round = 1; filled < m; round++) {
      for (let s = 0; s < n && filled < m; s++) {
        if (round * weight[s]! < target[s]!) continue;
        target[s] = target[s]! + 1;
        let c = next[s]!;
        while (table[c] !== -1) {
          c += skip[s]!;
          if (c >= m) c -= m;
        }
        const i = this.byKey[s]!;
        table[c] = i;
        this.counts[i] = this.counts[i]! + 1;
        c += skip[s]!;
        next[s] = c >= m ? c - m : c;
        filled++;
      }
    }
    return table;
  }

  /** Slots held by each endpoint, by key (Envoy logs these at trace level). */
  entriesPerHost(): Map<string, number> {
    const out = new Map<string, number>();
    for (let i = 0; i < this.endpoints.length; i++) {
      const key = this.endpoints[i]!.key;
      out.set(key, (out.get(key) ?? 0) + this.counts[i]!);
    }
    return out;
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const hash = ctx.hash;
    if (hash === undefined) return this.hashless.pick(ctx);
    const table = this.table;
    const m = table.length;
    if (m === 0) return undefined;
    const endpoints = this.endpoints;
    const avoid = ctx.avoid;
    const h = hash >>> 0;
    let e = endpoints[table[h % m]!]!;
    if (e.healthy && e !== avoid) return e;
    for (let k = 1; k <= MAX_TRIES; k++) {
      e = endpoints[table[fmix32(h ^ Math.imul(k, 0x9e3779b9)) % m]!]!;
      if (e.healthy && e !== avoid) return e;
    }
    const byKey = this.byKey;
    const n = byKey.length;
    for (let step = 0, s = h % n; step < n; step++) {
      e = endpoints[byKey[s]!]!;
      if (e.healthy && e !== avoid) return e;
      if (++s === n) s = 0;
    }
    return lastResort(this.members, avoid);
  }
}
