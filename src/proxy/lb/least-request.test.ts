import assert from "node:assert/strict";
import { test } from "node:test";
import { assertShares, endpoints, mulberry32, statisticalTolerance } from "./conformance.ts";
import { LeastRequestLoadBalancer } from "./least-request.ts";

/** A PRNG replaying fixed values (each draw of n = 2 endpoints: < 0.5 is the first, >= 0.5 the second). */
function scripted(values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

test("P2C takes the less loaded of the two drawn endpoints; a tie keeps the first draw", () => {
  const eps = endpoints([1, 1]);
  eps[0]!.activeRequests = 5;
  const draws = [0.1, 0.6, 0.6, 0.1, 0.1, 0.1, 0.6, 0.6];
  const lb = new LeastRequestLoadBalancer(eps, { random: scripted(draws) });
  const picks = Array.from({ length: 4 }, () => eps.indexOf(lb.pick({})!));
  // (0,1) → 1, (1,0) → 1, (0,0) → 0 (only endpoint 0 was drawn), (1,1) → 1
  assert.deepEqual(picks, [1, 1, 0, 1]);
  eps[0]!.activeRequests = 0;
  eps[1]!.activeRequests = 0;
  const tie = new LeastRequestLoadBalancer(eps, { random: scripted(draws) });
  assert.deepEqual(
    Array.from({ length: 4 }, () => eps.indexOf(tie.pick({})!)),
    [0, 1, 0, 1],
  );
});

test("P2C prefers endpoints with fewer active requests, in the proportions two draws give", () => {
  const n = 100_000;
  const two = endpoints([1, 1]);
  two[0]!.activeRequests = 10;
  let lb = new LeastRequestLoadBalancer(two, { random: mulberry32(1) });
  let counts = [0, 0];
  for (let k = 0; k < n; k++) counts[two.indexOf(lb.pick({})!)]!++;
  // The busy endpoint is picked only when both draws land on it: 1/4.
  assertShares(
    counts.map((c) => c / n),
    [0.25, 0.75],
    (p) => statisticalTolerance(p, n),
  );

  const three = endpoints([1, 1, 1]);
  three[0]!.activeRequests = 0;
  three[1]!.activeRequests = 1;
  three[2]!.activeRequests = 100;
  lb = new LeastRequestLoadBalancer(three, { random: mulberry32(2) });
  counts = [0, 0, 0];
  for (let k = 0; k < n; k++) counts[three.indexOf(lb.pick({})!)]!++;
  // Least loaded: unless neither draw is it, 1 − (2/3)² = 5/9; busiest: both draws on it, 1/9.
  assertShares(
    counts.map((c) => c / n),
    [5 / 9, 3 / 9, 1 / 9],
    (p) => statisticalTolerance(p, n),
  );

  // choiceCount 3: the least loaded is missed only if all three draws miss it.
  lb = new LeastRequestLoadBalancer(three, { random: mulberry32(3), leastRequest: { choiceCount: 3 } });
  counts = [0, 0, 0];
  for (let k = 0; k < n; k++) counts[three.indexOf(lb.pick({})!)]!++;
  assertShares(
    counts.map((c) => c / n),
    [19 / 27, 7 / 27, 1 / 27],
    (p) => statisticalTolerance(p, n),
  );
});

test("P2C under live load: a slow endpoint gets fewer requests and stays less loaded than at random", () => {
  // Each tick one request arrives; each request in flight completes with probability 0.15 per tick, but only
  // 0.05 on endpoint 0. At random, endpoint 0 would get 25% of requests and hold 0.25 / 0.05 = 5 in flight.
  const ticks = 20_000;
  const eps = endpoints([1, 1, 1, 1]);
  const lb = new LeastRequestLoadBalancer(eps, { random: mulberry32(4) });
  const rnd = mulberry32(5);
  const picks = [0, 0, 0, 0];
  const inFlight = [0, 0, 0, 0];
  for (let k = 0; k < ticks; k++) {
    const e = lb.pick({})!;
    picks[eps.indexOf(e)]!++;
    e.activeRequests++;
    for (const [i, x] of eps.entries()) {
      const q = i === 0 ? 0.05 : 0.15;
      let done = 0;
      for (let r = 0; r < x.activeRequests; r++) if (rnd() < q) done++;
      x.activeRequests -= done;
      inFlight[i]! += x.activeRequests;
    }
  }
  const share0 = picks[0]! / ticks;
  const mean0 = inFlight[0]! / ticks;
  assert.ok(share0 < 0.2, `slow endpoint got ${(share0 * 100).toFixed(1)}% of requests`);
  assert.ok(mean0 < 3.5, `slow endpoint held ${mean0.toFixed(2)} requests in flight on average`);
});

test("unequal weights: weight / (active + 1) decides, as in Envoy's docs (weight 2, 4 active → 0.4)", () => {
  const n = 70_000;
  const eps = endpoints([2, 1]);
  eps[0]!.activeRequests = 4;
  const lb = new LeastRequestLoadBalancer(eps, { random: mulberry32(6) });
  const counts = [0, 0];
  for (let k = 0; k < n; k++) counts[eps.indexOf(lb.pick({})!)]!++;
  // Effective weights 0.4 and 1: 2/7 and 5/7, exactly (an EDF schedule, not a random draw).
  assertShares(
    counts.map((c) => c / n),
    [2 / 7, 5 / 7],
    () => 0.001,
  );
});

test("unequal weights: activeRequestBias 0 ignores load, 2 penalises it quadratically", () => {
  const n = 90_000;
  const run = (bias: number) => {
    const eps = endpoints([2, 1]);
    eps[0]!.activeRequests = 3;
    const lb = new LeastRequestLoadBalancer(eps, { leastRequest: { activeRequestBias: bias } });
    const counts = [0, 0];
    for (let k = 0; k < n; k++) counts[eps.indexOf(lb.pick({})!)]!++;
    return counts.map((c) => c / n);
  };
  assertShares(run(0), [2 / 3, 1 / 3], () => 0.001); // plain weighted round robin
  assertShares(run(1), [1 / 3, 2 / 3], () => 0.001); // 2/4 vs 1
  assertShares(run(2), [1 / 9, 8 / 9], () => 0.001); // 2/16 vs 1
});

test("unequal weights: the schedule follows activeRequests as they change", () => {
  const eps = endpoints([3, 1]);
  const lb = new LeastRequestLoadBalancer(eps);
  const window = () => {
    const counts = [0, 0];
    for (let k = 0; k < 10_000; k++) counts[eps.indexOf(lb.pick({})!)]!++;
    return counts.map((c) => c / 10_000);
  };
  assertShares(window(), [0.75, 0.25], () => 0.002);
  eps[0]!.activeRequests = 8; // 3/9 vs 1
  assertShares(window(), [0.25, 0.75], () => 0.002);
  eps[0]!.activeRequests = 0;
  assertShares(window(), [0.75, 0.25], () => 0.002);
});

test("full scan fallback: the least loaded of few healthy endpoints, ties shared", () => {
  const eps = endpoints(new Array(300).fill(1));
  for (const e of eps) e.healthy = false;
  for (const i of [10, 20, 30]) eps[i]!.healthy = true;
  eps[10]!.activeRequests = 3;
  const lb = new LeastRequestLoadBalancer(eps, { random: mulberry32(7) });
  const seen = new Map<number, number>();
  for (let k = 0; k < 3000; k++) {
    const i = eps.indexOf(lb.pick({})!);
    seen.set(i, (seen.get(i) ?? 0) + 1);
  }
  // Draws (which may hit 10) or the scan (which never does): 10 is picked only when both draws hit it.
  assert.ok((seen.get(10) ?? 0) < 3000 * 0.05, `busy endpoint picked ${seen.get(10)} times`);
  assert.ok((seen.get(20) ?? 0) > 1000 && (seen.get(30) ?? 0) > 1000, JSON.stringify([...seen]));
});

test("rejects choiceCount < 2 and a negative activeRequestBias", () => {
  const eps = endpoints([1, 2]);
  assert.throws(() => new LeastRequestLoadBalancer(eps, { leastRequest: { choiceCount: 1 } }), RangeError);
  assert.throws(() => new LeastRequestLoadBalancer(eps, { leastRequest: { choiceCount: 2.5 } }), RangeError);
  assert.throws(
    () => new LeastRequestLoadBalancer(eps, { leastRequest: { activeRequestBias: -1 } }),
    RangeError,
  );
});
