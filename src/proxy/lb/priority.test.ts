// Priority levels: Envoy's load arithmetic (the tables of its "Priority levels" page, and its code where the
// page rounds differently), level choice by PRNG and by request hash, health changes seen through the
// HealthGeneration, and retries and fallbacks across levels. The shared conformance suite runs the priority
// balancer too (conformance.test.ts); the outlier detector driving it over real sockets is in
// upstream/priority-failover.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { endpoint, mulberry32 } from "./conformance.ts";
import {
  computePriorityLoads,
  createLoadBalancer,
  type HealthGeneration,
  levelHealth,
  type PrioritizedEndpoint,
  PriorityLoadBalancer,
  RingHashLoadBalancer,
  RoundRobinLoadBalancer,
} from "./index.ts";
import type { LbEndpoint, PickContext } from "./load-balancer.ts";

/** Loads for levels of 100 endpoints each, with the given numbers (= percents) healthy. */
function loadsFor(healthyPercents: readonly number[]): number[] {
  const health = healthyPercents.map((h) => levelHealth(h, 100));
  const loads = new Array<number>(health.length).fill(-1);
  computePriorityLoads(health, loads);
  return loads;
}

/** `count` endpoints at `priority`, numbered from `first`. */
function level(priority: number, count: number, first: number): PrioritizedEndpoint[] {
  return Array.from({ length: count }, (_, i) => ({ ...endpoint(first + i), priority }));
}

function shareOf(
  lb: { pick(ctx: PickContext): LbEndpoint | undefined },
  picks: number,
  inGroup: (e: LbEndpoint) => boolean,
  ctx: PickContext = {},
) {
  let n = 0;
  for (let k = 0; k < picks; k++) {
    const e = lb.pick(ctx);
    assert.ok(e?.healthy, "a healthy endpoint exists");
    if (inGroup(e)) n++;
  }
  return n / picks;
}

test("level health: 1.4 x the healthy fraction, in integer percent, capped at 100", () => {
  assert.equal(levelHealth(10, 10), 100);
  assert.equal(levelHealth(8, 10), 100, "80% x 1.4 = 112%");
  assert.equal(levelHealth(72, 100), 100, "100.8 floors to 100");
  assert.equal(levelHealth(71, 100), 99, "99.4 floors to 99");
  assert.equal(levelHealth(1, 2), 70);
  assert.equal(levelHealth(1, 3), 46, "46.67 floors");
  assert.equal(levelHealth(0, 5), 0);
  assert.equal(levelHealth(0, 0), 0, "an empty level has no health");
});

test("priority load: Envoy's tables for two levels, P1 fully healthy", () => {
  // Envoy docs, arch overview "Priority levels", first table.
  const rows: [number, number, number][] = [
    [100, 100, 0],
    [72, 100, 0],
    [71, 99, 1],
    [50, 70, 30],
    [25, 35, 65],
    [0, 0, 100],
  ];
  for (const [p0, l0, l1] of rows) assert.deepEqual(loadsFor([p0, 100]), [l0, l1], `P0 ${p0}% healthy`);
});

test("priority load: normalized when the total health is below 100", () => {
  // Envoy docs, second table (both levels degraded), and the {20, 30} -> {40%, 60%} example.
  const rows: [number, number, number, number][] = [
    [100, 100, 100, 0],
    [72, 72, 100, 0],
    [71, 71, 99, 1],
    [50, 50, 70, 30],
    [25, 100, 35, 65],
    [25, 25, 50, 50],
  ];
  for (const [p0, p1, l0, l1] of rows) assert.deepEqual(loadsFor([p0, p1]), [l0, l1], `${p0}% / ${p1}%`);
  const loads = [0, 0];
  computePriorityLoads([20, 30], loads);
  assert.deepEqual(loads, [40, 60]);
});

test("priority load: three levels, and the rounding remainder to the first available level", () => {
  // Envoy docs, third table. Its last row reads 36/36/28; Envoy's code (distributeLoad, then the remainder to
  // the first level with health) gives 35 + 2, 35, 28 — the code is what is reproduced.
  const rows: [number[], number[]][] = [
    [
      [100, 100, 100],
      [100, 0, 0],
    ],
    [
      [72, 72, 100],
      [100, 0, 0],
    ],
    [
      [71, 71, 100],
      [99, 1, 0],
    ],
    [
      [50, 50, 100],
      [70, 30, 0],
    ],
    [
      [25, 100, 100],
      [35, 65, 0],
    ],
    [
      [25, 25, 100],
      [35, 35, 30],
    ],
    [
      [25, 25, 20],
      [37, 35, 28],
    ],
  ];
  for (const [healthy, expected] of rows) assert.deepEqual(loadsFor(healthy), expected, `${healthy}`);
  // The remainder goes to the first level with health, not to P0.
  const loads = [0, 0, 0];
  computePriorityLoads([0, 33, 32], loads);
  assert.deepEqual(loads, [0, 51, 49], "floor(3300/65)=50, floor(3200/65)=49, remainder 1 to P1");
});

test("priority load: nothing healthy anywhere gives P0 everything (Envoy without panic mode)", () => {
  assert.deepEqual(loadsFor([0, 0, 0]), [100, 0, 0]);
});

test("createLoadBalancer: one priority, whichever it is, gets the policy's balancer itself", () => {
  const at0 = [endpoint(1), endpoint(2)];
  assert.ok(createLoadBalancer("ROUND_ROBIN", at0) instanceof RoundRobinLoadBalancer);
  assert.ok(createLoadBalancer("ROUND_ROBIN", level(0, 3, 1)) instanceof RoundRobinLoadBalancer);
  assert.ok(createLoadBalancer("RING_HASH", level(4, 3, 1)) instanceof RingHashLoadBalancer);
  const mixed = createLoadBalancer("RING_HASH", [...level(0, 2, 1), ...level(5, 2, 10)]);
  assert.ok(mixed instanceof PriorityLoadBalancer);
  assert.equal(mixed.policy, "RING_HASH");
  assert.deepEqual(mixed.priorities, [0, 5], "sparse priorities are levels in order");
});

test("createLoadBalancer: priorities must be integers 0..31", () => {
  for (const bad of [-1, 32, 1.5, Number.NaN]) {
    assert.throws(
      () => createLoadBalancer("RANDOM", [endpoint(1), { ...endpoint(2), priority: bad }]),
      /priority must be an integer 0\.\.31/,
      String(bad),
    );
  }
  assert.doesNotThrow(() => createLoadBalancer("RANDOM", [endpoint(1), { ...endpoint(2), priority: 31 }]));
});

test("P0 half healthy takes 70% and P1 the rest; a health change is seen once the generation moves", () => {
  const p0 = level(0, 2, 1);
  const p1 = level(1, 2, 10);
  const health: HealthGeneration = { value: 0 };
  const lb = createLoadBalancer("ROUND_ROBIN", [...p0, ...p1], { random: mulberry32(1), health });
  assert.ok(lb instanceof PriorityLoadBalancer);
  const inP0 = (e: LbEndpoint) => p0.includes(e as PrioritizedEndpoint);
  assert.deepEqual(lb.currentLoads(), [100, 0]);
  assert.equal(shareOf(lb, 10_000, inP0), 1, "all traffic to P0 while it is healthy");

  p0[0]!.healthy = false;
  // Not announced yet: the loads are stale by design, but the unhealthy endpoint is never picked.
  assert.deepEqual(lb.currentLoads(), [100, 0]);
  for (let k = 0; k < 1000; k++) assert.equal(lb.pick({}), p0[1]);
  health.value++;
  assert.deepEqual(lb.currentLoads(), [70, 30]);
  const share = shareOf(lb, 100_000, inP0);
  assert.ok(Math.abs(share - 0.7) < 0.01, `P0 share ${share}`);

  p0[1]!.healthy = false;
  health.value++;
  assert.deepEqual(lb.currentLoads(), [0, 100]);
  assert.equal(shareOf(lb, 1000, inP0), 0, "all traffic to P1");

  p0[0]!.healthy = true;
  p0[1]!.healthy = true;
  health.value++;
  assert.equal(shareOf(lb, 1000, inP0), 1, "back to P0");
});

test("without a HealthGeneration the loads follow health on every pick", () => {
  const p0 = level(0, 4, 1);
  const p1 = level(1, 4, 10);
  const lb = createLoadBalancer("RANDOM", [...p0, ...p1], { random: mulberry32(2) });
  assert.ok(lb instanceof PriorityLoadBalancer);
  p0[0]!.healthy = false;
  p0[1]!.healthy = false;
  p0[2]!.healthy = false; // 25% healthy: health 35
  const share = shareOf(lb, 100_000, (e) => p0.includes(e as PrioritizedEndpoint));
  assert.ok(Math.abs(share - 0.35) < 0.01, `P0 share ${share}`);
});

test("three levels spill in order; within a level the policy's weights hold", () => {
  const p0 = level(0, 4, 1);
  const p1 = [
    { ...endpoint(10, 3), priority: 1 },
    { ...endpoint(11, 1), priority: 1 },
  ];
  const p2 = level(2, 1, 20);
  const lb = createLoadBalancer("ROUND_ROBIN", [...p0, ...p1, ...p2], { random: mulberry32(3) });
  assert.ok(lb instanceof PriorityLoadBalancer);
  for (const e of p0) e.healthy = false;
  p1[1]!.healthy = false; // P1: 50% healthy by count -> health 70; P2 health 100 -> 0 / 70 / 30
  assert.deepEqual(lb.currentLoads(), [0, 70, 30]);
  const picks = 100_000;
  const counts = new Map<LbEndpoint, number>();
  for (let k = 0; k < picks; k++) {
    const e = lb.pick({})!;
    counts.set(e, (counts.get(e) ?? 0) + 1);
  }
  assert.ok(Math.abs((counts.get(p1[0]!) ?? 0) / picks - 0.7) < 0.01);
  assert.ok(Math.abs((counts.get(p2[0]!) ?? 0) / picks - 0.3) < 0.01);
  assert.equal(counts.get(p1[1]!), undefined);
});

test("a request hash picks the level as Envoy does: hash % 100 + 1 against the cumulative loads", () => {
  const p0 = level(0, 2, 1);
  const p1 = level(1, 2, 10);
  const lb = createLoadBalancer("RING_HASH", [...p0, ...p1], { random: mulberry32(4) });
  p0[0]!.healthy = false; // loads 70 / 30
  const inP0 = (e: LbEndpoint | undefined) => p0.includes(e as PrioritizedEndpoint);
  for (const base of [0, 100, 4_000_000_000]) {
    assert.ok(inP0(lb.pick({ hash: base + 69 })), `${base + 69}: d = 70 -> P0`);
    assert.ok(!inP0(lb.pick({ hash: base + 70 })), `${base + 70}: d = 71 -> P1`);
  }
  // The same key keeps its level and its endpoint.
  const first = lb.pick({ hash: 123_456_789 });
  for (let k = 0; k < 100; k++) assert.equal(lb.pick({ hash: 123_456_789 }), first);
});

test("avoid: a retry goes to another level when its own has no other healthy endpoint", () => {
  const p0 = level(0, 1, 1);
  const p1 = level(1, 2, 10);
  const lb = createLoadBalancer("LEAST_REQUEST", [...p0, ...p1], { random: mulberry32(5) });
  const only = p0[0]!;
  assert.equal(lb.pick({}), only);
  for (let k = 0; k < 100; k++) {
    const e = lb.pick({ avoid: only });
    assert.ok(e !== undefined && p1.includes(e as PrioritizedEndpoint), "another healthy endpoint, in P1");
  }
  for (const e of p1) e.healthy = false;
  for (let k = 0; k < 100; k++) assert.equal(lb.pick({ avoid: only }), only, "none other: the avoided one");
  only.healthy = false;
  assert.equal(lb.pick({ avoid: only }), undefined);
});

test("a healthy endpoint is found even where Envoy's integer health rounds to 0", () => {
  // P1: 1 of 200 healthy, health floor(140/200) = 0; P0 dead. Envoy gives P0 100% and finds no host there;
  // here the other levels are asked in order.
  const p0 = level(0, 2, 1);
  const p1 = level(1, 200, 100);
  for (const e of [...p0, ...p1]) e.healthy = false;
  p1[137]!.healthy = true;
  const lb = createLoadBalancer("MAGLEV", [...p0, ...p1], {
    random: mulberry32(6),
    maglev: { tableSize: 1009 },
  });
  assert.ok(lb instanceof PriorityLoadBalancer);
  assert.deepEqual(lb.currentLoads(), [100, 0]);
  for (let k = 0; k < 100; k++) assert.equal(lb.pick({ hash: k * 7919 }), p1[137]);
});
