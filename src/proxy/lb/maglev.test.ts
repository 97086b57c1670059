import assert from "node:assert/strict";
import { test } from "node:test";
import { assertShares, endpoints, mulberry32, statisticalTolerance } from "./conformance.ts";
import type { LbEndpoint } from "./load-balancer.ts";
import { DEFAULT_TABLE_SIZE, isPrime, MAX_TABLE_SIZE, MaglevLoadBalancer } from "./maglev.ts";

function hashes(count: number, seed = 1): number[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: count }, () => Math.floor(rnd() * 2 ** 32));
}

function mapping(lb: MaglevLoadBalancer, hs: readonly number[]): (LbEndpoint | undefined)[] {
  return hs.map((hash) => lb.pick({ hash }));
}

test("table: 65,537 slots by default, shared to within one slot by equal endpoints", () => {
  const lb = new MaglevLoadBalancer(endpoints(new Array(10).fill(1)));
  assert.equal(lb.tableSize, DEFAULT_TABLE_SIZE);
  assert.equal(DEFAULT_TABLE_SIZE, 65537);
  assert.deepEqual([lb.minEntriesPerHost, lb.maxEntriesPerHost], [6553, 6554]);
});

test("weights 1 and 2 get 21,846 and 43,691 slots, the figures in Envoy's documentation", () => {
  const eps = endpoints([1, 2]);
  const counts = new MaglevLoadBalancer(eps).entriesPerHost();
  assert.equal(counts.get(eps[0]!.key), 21_846);
  assert.equal(counts.get(eps[1]!.key), 43_691);
});

test("weights 1 to 5: slots within 0.1% of the weight share", () => {
  const eps = endpoints([1, 2, 3, 4, 5]);
  const counts = new MaglevLoadBalancer(eps).entriesPerHost();
  for (const e of eps) {
    const share = counts.get(e.key)! / DEFAULT_TABLE_SIZE;
    assert.ok(Math.abs(share - e.weight / 15) < 0.001, `${e.key}: ${share}`);
  }
});

test("table size must be a prime no larger than 5,000,011", () => {
  const eps = endpoints([1, 1]);
  for (const tableSize of [65536, 1, 0, -7, 7.5, 100]) {
    assert.throws(
      () => new MaglevLoadBalancer(eps, { maglev: { tableSize } }),
      RangeError,
      String(tableSize),
    );
  }
  assert.ok(isPrime(MAX_TABLE_SIZE));
  let beyond = MAX_TABLE_SIZE + 2;
  while (!isPrime(beyond)) beyond += 2;
  assert.throws(() => new MaglevLoadBalancer(eps, { maglev: { tableSize: beyond } }), RangeError);
  const small = new MaglevLoadBalancer(eps, { maglev: { tableSize: 7 } });
  assert.equal(small.tableSize, 7);
  assert.equal(small.minEntriesPerHost + small.maxEntriesPerHost, 7);
});

test("more endpoints than slots: some endpoints hold none, picks still work", () => {
  const eps = endpoints(new Array(10).fill(1));
  const lb = new MaglevLoadBalancer(eps, { maglev: { tableSize: 7 } });
  assert.equal(lb.minEntriesPerHost, 0);
  assert.equal(lb.maxEntriesPerHost, 1);
  for (const hash of hashes(100)) assert.ok(eps.includes(lb.pick({ hash })!));
});

test("the same hash always maps to the same endpoint, whatever the instance or input order", () => {
  const eps = endpoints([1, 2, 1, 3, 1, 1, 2, 1, 1, 1]);
  const hs = hashes(10_000);
  const first = mapping(new MaglevLoadBalancer(eps), hs);
  assert.deepEqual(mapping(new MaglevLoadBalancer(eps), hs), first);
  assert.deepEqual(mapping(new MaglevLoadBalancer([...eps].reverse()), hs), first);
});

test("removing one endpoint of 10 remaps about 1/10 of the keys", () => {
  const eps = endpoints(new Array(10).fill(1));
  const hs = hashes(10_000);
  const before = mapping(new MaglevLoadBalancer(eps), hs);
  const removed = eps[6]!;
  const after = mapping(new MaglevLoadBalancer(eps.filter((e) => e !== removed)), hs);
  let moved = 0;
  let movedElsewhere = 0;
  for (let k = 0; k < hs.length; k++) {
    if (before[k] === after[k]) continue;
    moved++;
    if (before[k] !== removed) movedElsewhere++;
  }
  // The removed endpoint's ~10%, plus Maglev's small extra disruption (the paper's "minimal", not zero).
  assert.ok(moved > 700 && moved < 1300, `${moved} of 10,000 keys moved`);
  assert.ok(movedElsewhere < 200, `${movedElsewhere} keys of remaining endpoints moved`);
});

test("an unhealthy endpoint's keys, and only they, move, spread over the others, consistently", () => {
  const eps = endpoints(new Array(10).fill(1));
  const lb = new MaglevLoadBalancer(eps);
  const hs = hashes(10_000);
  const before = mapping(lb, hs);
  const down = eps[2]!;
  down.healthy = false;
  const after = mapping(lb, hs);
  assert.deepEqual(mapping(lb, hs), after, "not deterministic for a given hash");
  const receivers = new Map<LbEndpoint, number>();
  for (let k = 0; k < hs.length; k++) {
    if (before[k] !== down) {
      assert.equal(after[k], before[k], "a key of a healthy endpoint moved");
    } else {
      assert.ok(after[k] !== down && after[k]!.healthy);
      receivers.set(after[k]!, (receivers.get(after[k]!) ?? 0) + 1);
    }
  }
  const movedCount = [...receivers.values()].reduce((a, b) => a + b, 0);
  assert.equal(receivers.size, 9);
  for (const [e, c] of receivers) {
    assert.ok(Math.abs(c / movedCount - 1 / 9) < 0.05, `${e.key} took ${c} of ${movedCount} moved keys`);
  }
  down.healthy = true;
  assert.deepEqual(mapping(lb, hs), before);
});

test("avoid: the retry gets another endpoint, the same one for the same hash", () => {
  const eps = endpoints(new Array(10).fill(1));
  const lb = new MaglevLoadBalancer(eps);
  for (const hash of hashes(2000)) {
    const first = lb.pick({ hash })!;
    const retry = lb.pick({ hash, avoid: first });
    assert.ok(retry !== undefined && retry !== first && retry.healthy);
    assert.equal(lb.pick({ hash, avoid: first }), retry);
  }
});

test("hashes are taken modulo 2^32", () => {
  const lb = new MaglevLoadBalancer(endpoints(new Array(10).fill(1)));
  assert.equal(lb.pick({ hash: 2 ** 32 + 999 }), lb.pick({ hash: 999 }));
});

test("distribution over 10 equal endpoints within ±20% of fair (in fact ±5%)", () => {
  const eps = endpoints(new Array(10).fill(1));
  const lb = new MaglevLoadBalancer(eps);
  const counts = new Map<LbEndpoint, number>();
  for (const hash of hashes(100_000, 5)) {
    const e = lb.pick({ hash })!;
    counts.set(e, (counts.get(e) ?? 0) + 1);
  }
  assert.equal(counts.size, 10);
  for (const [e, c] of counts) {
    assert.ok(Math.abs(c / 10_000 - 1) <= 0.05, `${e.key}: ${c} of 100,000`);
  }
});

test("without a hash: weighted random", () => {
  const eps = endpoints([1, 3]);
  const lb = new MaglevLoadBalancer(eps, { random: mulberry32(3) });
  const counts = [0, 0];
  for (let k = 0; k < 100_000; k++) counts[eps.indexOf(lb.pick({})!)]!++;
  assertShares(
    counts.map((c) => c / 100_000),
    [0.25, 0.75],
    (p) => statisticalTolerance(p),
  );
});
