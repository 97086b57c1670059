import assert from "node:assert/strict";
import { test } from "node:test";
import type { LbPolicy } from "../config/types.ts";
import { endpoints, mulberry32 } from "./conformance.ts";
import {
  createLoadBalancer,
  LeastRequestLoadBalancer,
  MaglevLoadBalancer,
  RandomLoadBalancer,
  RingHashLoadBalancer,
  RoundRobinLoadBalancer,
} from "./index.ts";

test("createLoadBalancer builds the balancer of each policy", () => {
  const eps = endpoints([1, 2]);
  const cases: [LbPolicy, new (...args: never[]) => unknown][] = [
    ["ROUND_ROBIN", RoundRobinLoadBalancer],
    ["LEAST_REQUEST", LeastRequestLoadBalancer],
    ["RANDOM", RandomLoadBalancer],
    ["RING_HASH", RingHashLoadBalancer],
    ["MAGLEV", MaglevLoadBalancer],
  ];
  for (const [policy, cls] of cases) {
    const lb = createLoadBalancer(policy, eps);
    assert.ok(lb instanceof cls, policy);
    assert.equal(lb.policy, policy);
    assert.ok(eps.includes(lb.pick({ hash: 12345 })!));
  }
});

test("createLoadBalancer passes the options on", () => {
  const eps = endpoints([1, 1, 1]);
  const ring = createLoadBalancer("RING_HASH", eps, { ringHash: { minimumRingSize: 3000 } });
  assert.ok(ring instanceof RingHashLoadBalancer);
  assert.equal(ring.size, 3 * 1024); // 1000 per endpoint, rounded up to a power of two
  const maglev = createLoadBalancer("MAGLEV", eps, { maglev: { tableSize: 101 } });
  assert.ok(maglev instanceof MaglevLoadBalancer);
  assert.equal(maglev.tableSize, 101);
  assert.throws(() => createLoadBalancer("MAGLEV", eps, { maglev: { tableSize: 100 } }), RangeError);
  // The injected PRNG drives the picks: the same seed gives the same sequence.
  const run = () => {
    const lb = createLoadBalancer("RANDOM", eps, { random: mulberry32(7) });
    return Array.from({ length: 50 }, () => lb.pick({})!.key).join();
  };
  assert.equal(run(), run());
});

test("createLoadBalancer rejects an unknown policy", () => {
  assert.throws(() => createLoadBalancer("LEAST_CONN" as LbPolicy, endpoints([1])), RangeError);
});
