// RING_HASH: a Ketama ring, as Envoy's ring hash balancer (arch overview "Ring hash"; RingHash proto's
// minimum_ring_size, default 1024, and maximum_ring_size, default and limit 8M). Each endpoint is hashed onto
// a circle a number of times proportional to its weight (virtual node j of endpoint "address:port" is
// murmur3("address:port_j")); a request goes to the first virtual node at or after its hash, clockwise,
// found by binary search: O(log ring size).
//
// Ring size. Envoy scales the ring so the lightest endpoint gets ceil(its share * minimum_ring_size) hashes.
// That count moves with the number of endpoints (10 endpoints: 103 each; 9: 114 each), so every host change
// adds or drops virtual nodes on the other endpoints too and remaps ~2/N of the keys instead of ~1/N. Here the
// lightest endpoint's count is rounded up to a power of two (10 or 9 endpoints: 128 each), which keeps the
// other endpoints' virtual nodes in place: removing one endpoint remaps only the keys it held, unless the
// count crosses a power of two. The ring is then up to twice Envoy's size (one more binary-search step).
// Endpoint j's count is round(lightest count * weight_j / lightest weight); when that would exceed
// maximumRingSize the ring is scaled down to it (each endpoint keeping at least one node).
//
// Health: Envoy rebuilds the ring over healthy hosts, which hands an unhealthy host's arcs to the next host
// clockwise. Walking on to the next ring entry whose endpoint is healthy is the same mapping, without a
// rebuild: keys of healthy endpoints never move, and the ring stays consistent for a given hash. `avoid`
// (retries) is walked past the same way, as Envoy's ring does for retry attempts. The walk is short while most
// of the ring is healthy; after WALK_BEFORE_CHECK steps an O(n) check stops it when nothing is usable.
//
// Without a request hash the pick is weighted random (RandomLoadBalancer), as Envoy does.

import { hasUsable, indicesByKey, lastResort, validateEndpoints } from "./common.ts";
import { murmur3 } from "./hash.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";
import { RandomLoadBalancer } from "./random.ts";

export const DEFAULT_MIN_RING_SIZE = 1024;
export const DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024;
/** Envoy's limit for both sizes. */
export const RING_SIZE_LIMIT = 8 * 1024 * 1024;

const WALK_BEFORE_CHECK = 32;
/** Ring entries are sorted as hash * 2^21 + endpoint rank, exact in a double: at most 2^21 endpoints. */
const RANK_BITS = 2 ** 21;

export class RingHashLoadBalancer implements LoadBalancer {
  readonly policy = "RING_HASH" as const;
  /** Entries on the ring (Envoy's ring_hash_lb.size gauge). */
  readonly size: number;
  /** Fewest / most virtual nodes of one endpoint (Envoy's min_hashes_per_host / max_hashes_per_host). */
  readonly minHashesPerHost: number;
  readonly maxHashesPerHost: number;
  private readonly endpoints: readonly LbEndpoint[];
  private readonly members: ReadonlySet<LbEndpoint>;
  private readonly ringHashes: Uint32Array;
  /** Index into `endpoints` of each ring entry. */
  private readonly ringEndpoints: Int32Array;
  private readonly hashless: RandomLoadBalancer;

  constructor(endpoints: readonly LbEndpoint[], options: LoadBalancerOptions = {}) {
    validateEndpoints(endpoints);
    const minRing = options.ringHash?.minimumRingSize ?? DEFAULT_MIN_RING_SIZE;
    const maxRing = options.ringHash?.maximumRingSize ?? DEFAULT_MAX_RING_SIZE;
    for (const [name, v] of [
      ["minimumRingSize", minRing],
      ["maximumRingSize", maxRing],
    ] as const) {
      if (!Number.isInteger(v) || v < 1 || v > RING_SIZE_LIMIT) {
        throw new RangeError(`ringHash.${name} must be an integer in [1, ${RING_SIZE_LIMIT}], got ${v}`);
      }
    }
    if (minRing > maxRing) {
      throw new RangeError(`ringHash.minimumRingSize (${minRing}) > maximumRingSize (${maxRing})`);
    }
    if (endpoints.length > RANK_BITS) {
      throw new RangeError(`ring hash supports at most ${RANK_BITS} endpoints, got ${endpoints.length}`);
    }
    this.endpoints = endpoints.slice();
    this.members = new Set(this.endpoints);
    this.hashless = new RandomLoadBalancer(this.endpoints, options);

    const counts = virtualNodeCounts(this.endpoints, minRing, maxRing);
    const byKey = indicesByKey(this.endpoints);
    let total = 0;
    for (const c of counts) total += c;
    const packed = new Float64Array(total);
    let p = 0;
    for (let rank = 0; rank < byKey.length; rank++) {
      const i = byKey[rank]!;
      const key = this.endpoints[i]!.key;
      for (let j = 0; j < counts[i]!; j++) packed[p++] = murmur3(`${key}_${j}`) * RANK_BITS + rank;
    }
    packed.sort();
    this.ringHashes = new Uint32Array(total);
    this.ringEndpoints = new Int32Array(total);
    for (let k = 0; k < total; k++) {
      const v = packed[k]!;
      const hash = Math.floor(v / RANK_BITS);
      this.ringHashes[k] = hash;
      this.ringEndpoints[k] = byKey[v - hash * RANK_BITS]!;
    }
    this.size = total;
    let min = counts.length === 0 ? 0 : Number.POSITIVE_INFINITY;
    let max = 0;
    for (const c of counts) {
      if (c < min) min = c;
      if (c > max) max = c;
    }
    this.minHashesPerHost = min;
    this.maxHashesPerHost = max;
  }

  pick(ctx: PickContext): LbEndpoint | undefined {
    const hash = ctx.hash;
    if (hash === undefined) return this.hashless.pick(ctx);
    const ring = this.ringHashes;
    const size = ring.length;
    if (size === 0) return undefined;
    const h = hash >>> 0;
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    let idx = lo === size ? 0 : lo;
    const endpoints = this.endpoints;
    const avoid = ctx.avoid;
    for (let step = 0; step < size; step++) {
      const e = endpoints[this.ringEndpoints[idx]!]!;
      if (e.healthy && e !== avoid) return e;
      if (++idx === size) idx = 0;
      if (step === WALK_BEFORE_CHECK && !hasUsable(endpoints, avoid)) break;
    }
    return lastResort(this.members, avoid);
  }
}

/** Virtual nodes per endpoint (see the file comment). */
export function virtualNodeCounts(
  endpoints: readonly LbEndpoint[],
  minRing: number,
  maxRing: number,
): number[] {
  if (endpoints.length === 0) return [];
  let totalWeight = 0;
  let minWeight = Number.POSITIVE_INFINITY;
  for (const e of endpoints) {
    totalWeight += e.weight;
    if (e.weight < minWeight) minWeight = e.weight;
  }
  let lightest = 1;
  const wanted = Math.ceil((minWeight / totalWeight) * minRing);
  while (lightest < wanted) lightest *= 2;
  if ((lightest * totalWeight) / minWeight <= maxRing) {
    return endpoints.map((e) => Math.max(1, Math.round((lightest * e.weight) / minWeight)));
  }
  return endpoints.map((e) => Math.max(1, Math.floor((maxRing * e.weight) / totalWeight)));
}
