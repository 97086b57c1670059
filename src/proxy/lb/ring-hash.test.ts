// RING_HASH specifics. Distribution bound, documented: with k virtual nodes per endpoint on a ring of R = n·k
// entries, an endpoint's share of the circle has relative standard deviation sqrt((1 − 1/n) / (k + 1/n)) ≈
// 1/sqrt(k) (Dirichlet arcs). The default ring for 10 endpoints has k = 128: σ ≈ 8.4%, so ±30% of the fair
// share (3σ, plus 3σ of sampling noise from 100,000 hashes: 2.8%). With minimumRingSize 65,536, k = 8,192:
// σ ≈ 1.05%, and ±6% covers 3σ plus sampling.

import assert from "node:assert/strict";
import { test } from "node:test";
import { assertShares, endpoint, endpoints, mulberry32, statisticalTolerance } from "./conformance.ts";
import { murmur3 } from "./hash.ts";
import type { LbEndpoint } from "./load-balancer.ts";
import { RingHashLoadBalancer, virtualNodeCounts } from "./ring-hash.ts";

function hashes(count: number, seed = 1): number[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: count }, () => Math.floor(rnd() * 2 ** 32));
}

function mapping(lb: RingHashLoadBalancer, hs: readonly number[]): (LbEndpoint | undefined)[] {
  return hs.map((hash) => lb.pick({ hash }));
}

test("the same hash always maps to the same endpoint, whatever the instance or input order", () => {
  const eps = endpoints([1, 2, 1, 3, 1, 1, 2, 1, 1, 1]);
  const a = new RingHashLoadBalancer(eps);
  const b = new RingHashLoadBalancer([...eps].reverse());
  const hs = hashes(10_000);
  const first = mapping(a, hs);
  assert.deepEqual(mapping(a, hs), first);
  assert.deepEqual(mapping(b, hs), first);
  const c = new RingHashLoadBalancer(eps.map((e) => ({ ...e }))); // equal keys, other objects
  assert.deepEqual(
    mapping(c, hs).map((e) => e?.key),
    first.map((e) => e?.key),
  );
});

test("ring size: the lightest endpoint gets its share of minimumRingSize, rounded up to a power of two", () => {
  const ten = new RingHashLoadBalancer(endpoints(new Array(10).fill(1)));
  assert.equal(ten.size, 1280); // ceil(1024 / 10) = 103 → 128 each
  assert.equal(ten.minHashesPerHost, 128);
  assert.equal(ten.maxHashesPerHost, 128);
  const weighted = new RingHashLoadBalancer(endpoints([3, 1]));
  assert.deepEqual([weighted.minHashesPerHost, weighted.maxHashesPerHost, weighted.size], [256, 768, 1024]);
  // More endpoints than minimumRingSize: one virtual node each (as Envoy).
  const many = new RingHashLoadBalancer(endpoints(new Array(2000).fill(1)));
  assert.deepEqual([many.size, many.minHashesPerHost, many.maxHashesPerHost], [2000, 1, 1]);
  // maximumRingSize scales the ring down, each endpoint keeping at least one node.
  assert.deepEqual(virtualNodeCounts(endpoints([1, 1, 1, 1]), 1024, 500), [125, 125, 125, 125]);
  assert.deepEqual(virtualNodeCounts(endpoints([1, 1000]), 1024, 1000), [1, 999]);
  assert.equal(new RingHashLoadBalancer([]).size, 0);
});

test("rejects ring sizes out of range", () => {
  const eps = endpoints([1]);
  for (const ringHash of [
    { minimumRingSize: 2048, maximumRingSize: 1024 },
    { minimumRingSize: 0 },
    { maximumRingSize: 8 * 1024 * 1024 + 1 },
    { minimumRingSize: 1.5 },
  ]) {
    assert.throws(() => new RingHashLoadBalancer(eps, { ringHash }), RangeError, JSON.stringify(ringHash));
  }
});

test("removing one endpoint of 10 remaps only the keys it held, about 1/10", () => {
  const eps = endpoints(new Array(10).fill(1));
  const before = mapping(new RingHashLoadBalancer(eps), hashes(10_000));
  const removed = eps[3]!;
  const after = mapping(new RingHashLoadBalancer(eps.filter((e) => e !== removed)), hashes(10_000));
  let moved = 0;
  for (let k = 0; k < before.length; k++) {
    if (before[k] === after[k]) continue;
    moved++;
    assert.equal(before[k], removed, "a key of a remaining endpoint moved");
  }
  assert.ok(moved > 500 && moved < 1500, `${moved} of 10,000 keys moved`);
});

test("adding an 11th endpoint moves keys only onto the new endpoint", () => {
  const eps = endpoints(new Array(10).fill(1));
  const hs = hashes(10_000);
  const before = mapping(new RingHashLoadBalancer(eps), hs);
  const added = endpoint(11);
  const after = mapping(new RingHashLoadBalancer([...eps, added]), hs);
  let moved = 0;
  for (let k = 0; k < hs.length; k++) {
    if (before[k] === after[k]) continue;
    moved++;
    assert.equal(after[k], added);
  }
  assert.ok(moved > 10_000 / 11 / 1.5 && moved < (10_000 / 11) * 1.5, `${moved} keys moved`);
});

test("an unhealthy endpoint's keys go to the next healthy entry clockwise: the ring rebuilt without it", () => {
  const eps = endpoints([1, 2, 1, 1, 3, 1, 1, 1, 2, 1]);
  const lb = new RingHashLoadBalancer(eps);
  const hs = hashes(10_000);
  eps[4]!.healthy = false;
  eps[7]!.healthy = false;
  const rebuilt = new RingHashLoadBalancer(eps.filter((e) => e.healthy));
  assert.deepEqual(mapping(lb, hs), mapping(rebuilt, hs));
  eps[4]!.healthy = true;
  eps[7]!.healthy = true;
  assert.deepEqual(mapping(lb, hs), mapping(new RingHashLoadBalancer(eps), hs));
});

test("avoid: the retry goes to the next endpoint clockwise, consistently", () => {
  const eps = endpoints(new Array(10).fill(1));
  const lb = new RingHashLoadBalancer(eps);
  for (const hash of hashes(2000)) {
    const first = lb.pick({ hash })!;
    const retry = lb.pick({ hash, avoid: first });
    assert.ok(retry !== undefined && retry !== first);
    assert.equal(lb.pick({ hash, avoid: first }), retry);
    assert.equal(retry, new RingHashLoadBalancer(eps.filter((e) => e !== first)).pick({ hash }));
  }
});

test("hashes wrap around the ring and are taken modulo 2^32", () => {
  const lb = new RingHashLoadBalancer(endpoints(new Array(10).fill(1)));
  assert.equal(lb.pick({ hash: 0xffffffff }), lb.pick({ hash: 0 }));
  assert.equal(lb.pick({ hash: 2 ** 32 + 12345 }), lb.pick({ hash: 12345 }));
  const key = murmur3("session-42");
  assert.equal(lb.pick({ hash: key }), lb.pick({ hash: key }));
});

test("distribution over 10 equal endpoints: ±30% of fair with the default ring, ±6% with 65,536 entries", () => {
  const eps = endpoints(new Array(10).fill(1));
  const hs = hashes(100_000, 9);
  for (const [options, bound] of [
    [{}, 0.3],
    [{ ringHash: { minimumRingSize: 65_536 } }, 0.06],
  ] as const) {
    const lb = new RingHashLoadBalancer(eps, options);
    const counts = new Map<LbEndpoint, number>();
    for (const hash of hs) {
      const e = lb.pick({ hash })!;
      counts.set(e, (counts.get(e) ?? 0) + 1);
    }
    assert.equal(counts.size, 10);
    for (const [e, c] of counts) {
      const deviation = c / 10_000 - 1;
      assert.ok(Math.abs(deviation) <= bound, `${e.key}: ${(deviation * 100).toFixed(1)}% from fair`);
    }
  }
});

test("without a hash: weighted random", () => {
  const eps = endpoints([1, 3]);
  const lb = new RingHashLoadBalancer(eps, { random: mulberry32(3) });
  const counts = [0, 0];
  for (let k = 0; k < 100_000; k++) counts[eps.indexOf(lb.pick({})!)]!++;
  assertShares(
    counts.map((c) => c / 100_000),
    [0.25, 0.75],
    (p) => statisticalTolerance(p),
  );
});
