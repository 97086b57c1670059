import assert from "node:assert/strict";
import { test } from "node:test";
import { AliasTable, weightedScan } from "./common.ts";
import { endpoints, mulberry32 } from "./conformance.ts";
import { RandomLoadBalancer } from "./random.ts";

test("alias table: the measure of u in [0, 1) mapped to each column is exactly its weight share", () => {
  for (const weights of [
    [1, 2, 3, 4],
    [1, 1, 1],
    [100, 1],
    [0.5, 7.25, 3, 1e-3],
  ]) {
    const table = new AliasTable(weights);
    const total = weights.reduce((a, b) => a + b, 0);
    const grid = 400_000;
    const counts = new Array<number>(weights.length).fill(0);
    for (let k = 0; k < grid; k++) counts[table.sample((k + 0.5) / grid)]!++;
    for (const [i, w] of weights.entries()) {
      // A column's coin threshold falls between grid points: at most one point per column off, each way.
      assert.ok(
        Math.abs(counts[i]! / grid - w / total) <= (2 * weights.length) / grid,
        `weights ${weights}: column ${i} got ${counts[i]! / grid}, expected ${w / total}`,
      );
    }
  }
});

test("one random number per pick while endpoints are healthy", () => {
  let calls = 0;
  const rnd = mulberry32(1);
  const lb = new RandomLoadBalancer(endpoints([1, 2, 3]), {
    random: () => {
      calls++;
      return rnd();
    },
  });
  for (let k = 0; k < 1000; k++) lb.pick({});
  assert.equal(calls, 1000);
});

test("u close to 1 stays in range", () => {
  const eps = endpoints([1, 3]);
  const lb = new RandomLoadBalancer(eps, { random: () => 1 - 2 ** -53 });
  assert.equal(lb.pick({}), eps[1]);
  const equal = endpoints([1, 1, 1]);
  assert.equal(new RandomLoadBalancer(equal, { random: () => 1 - 2 ** -53 }).pick({}), equal[2]);
});

test("fallback scan: weighted over the healthy endpoints other than avoid", () => {
  const eps = endpoints([1, 2, 3, 4, 5]);
  eps[1]!.healthy = false;
  const grid = 10_000;
  const counts = [0, 0, 0, 0, 0];
  for (let k = 0; k < grid; k++) counts[eps.indexOf(weightedScan(eps, eps[4], (k + 0.5) / grid)!)]!++;
  // Usable: weights 1, 3, 4 of 8.
  assert.deepEqual(
    counts.map((c) => c / grid),
    [1 / 8, 0, 3 / 8, 4 / 8, 0],
  );
  for (const e of eps) e.healthy = e === eps[4];
  assert.equal(weightedScan(eps, eps[4], 0.5), undefined);
  assert.equal(weightedScan(eps, undefined, 0.99), eps[4]);
});
