import assert from "node:assert/strict";
import { test } from "node:test";
import { endpoints } from "./conformance.ts";
import { EdfScheduler } from "./edf.ts";
import type { LbEndpoint, LoadBalancer, PickContext } from "./load-balancer.ts";
import { RoundRobinLoadBalancer } from "./round-robin.ts";

function sequence(lb: LoadBalancer, eps: readonly LbEndpoint[], n: number, ctx: PickContext = {}): string {
  return Array.from({ length: n }, () => {
    const e = lb.pick(ctx);
    return e === undefined ? "-" : String(eps.indexOf(e) + 1);
  }).join("");
}

test("equal weights rotate exactly 1,2,3,1,2,3", () => {
  const eps = endpoints([1, 1, 1]);
  assert.equal(sequence(new RoundRobinLoadBalancer(eps), eps, 9), "123123123");
  const heavy = endpoints([5, 5, 5, 5]); // equal but not 1: still a plain rotation
  assert.equal(sequence(new RoundRobinLoadBalancer(heavy), heavy, 8), "12341234");
});

test("the rotation skips an unhealthy endpoint and takes it back when it recovers", () => {
  const eps = endpoints([1, 1, 1]);
  const lb = new RoundRobinLoadBalancer(eps);
  assert.equal(sequence(lb, eps, 1), "1");
  eps[1]!.healthy = false;
  assert.equal(sequence(lb, eps, 6), "313131");
  eps[1]!.healthy = true;
  assert.equal(sequence(lb, eps, 6), "231231"); // the last pick was 1
  for (const e of eps) e.healthy = false;
  assert.equal(sequence(lb, eps, 3), "---");
});

test("avoid moves the rotation on to the next endpoint", () => {
  const eps = endpoints([1, 1, 1]);
  const lb = new RoundRobinLoadBalancer(eps);
  assert.equal(sequence(lb, eps, 1), "1");
  assert.equal(sequence(lb, eps, 1, { avoid: eps[1] }), "3");
  assert.equal(sequence(lb, eps, 3), "123");
});

test("weights 3:1 interleave smoothly: A A B A, never four A in a row", () => {
  const eps = endpoints([3, 1]);
  const lb = new RoundRobinLoadBalancer(eps);
  const seq = sequence(lb, eps, 4000);
  assert.equal(seq.slice(0, 12), "112111211121");
  assert.ok(!seq.includes("1111"), "a burst of four picks of the heavy endpoint");
  assert.ok(!seq.includes("22"), "the light endpoint picked twice in a row");
  assert.equal([...seq].filter((c) => c === "1").length, 3000);
});

test("weights are honoured exactly over a full cycle, and among the healthy ones only", () => {
  const eps = endpoints([5, 1, 2, 3]);
  const lb = new RoundRobinLoadBalancer(eps);
  const count = (seq: string, c: string) => [...seq].filter((x) => x === c).length;
  let seq = sequence(lb, eps, 11 * 1000);
  assert.deepEqual(
    ["1", "2", "3", "4"].map((c) => count(seq, c)),
    [5000, 1000, 2000, 3000],
  );
  eps[0]!.healthy = false;
  seq = sequence(lb, eps, 6 * 1000);
  const got = ["1", "2", "3", "4"].map((c) => count(seq, c));
  assert.equal(got[0], 0);
  // Exact up to the one round in which the parked endpoint's position settles.
  for (const [i, want] of [
    [1, 1000],
    [2, 2000],
    [3, 3000],
  ] as const) {
    assert.ok(Math.abs(got[i]! - want) <= 3, `endpoint ${i + 1}: ${got[i]} picks, expected ${want}`);
  }
});

test("unequal weights: a recovered endpoint rejoins the schedule", () => {
  const eps = endpoints([2, 1, 1]);
  const lb = new RoundRobinLoadBalancer(eps);
  eps[0]!.healthy = false;
  assert.ok(!sequence(lb, eps, 100).includes("1"));
  eps[0]!.healthy = true;
  const seq = sequence(lb, eps, 4000);
  const ones = [...seq].filter((c) => c === "1").length;
  assert.ok(Math.abs(ones - 2000) <= 2, `${ones} picks of the weight-2 endpoint in 4000`);
});

test("EDF scheduler: ties go to the entry queued first, and rebasing far-out deadlines keeps the ratio", () => {
  const s = new EdfScheduler([1, 1, 1]);
  const order: number[] = [];
  for (let k = 0; k < 6; k++) {
    order.push(s.top());
    s.advance(1);
  }
  assert.deepEqual(order, [0, 1, 2, 0, 1, 2]);
  // Periods of 2^38 pass "now" = 2^40 within a few picks and force rebases; the 3:1 ratio must hold.
  const big = new EdfScheduler([2 ** 38, 3 * 2 ** 38]);
  const counts = [0, 0];
  for (let k = 0; k < 4000; k++) {
    const i = big.top();
    counts[i]!++;
    big.advance(i === 0 ? 2 ** 38 : 3 * 2 ** 38);
  }
  assert.deepEqual(counts, [3000, 1000]);
});
