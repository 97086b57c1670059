// The behaviour every LoadBalancer owes the proxy, as one suite run against each implementation (called from
// conformance.test.ts, in the manner of hono's shared runtime test suites). Randomness comes from a seeded
// PRNG passed as options.random, so every run picks exactly the same endpoints.
//
// Distribution tolerances (absolute, on an endpoint's share of PICKS picks, expected share p):
// - deterministic schedules (ROUND_ROBIN, and LEAST_REQUEST with unequal weights): ±2%; they are exact to
//   within one pick.
// - random draws (RANDOM, P2C, hash policies without a hash): 5 standard deviations of a binomial share,
//   5·sqrt(p(1−p)/PICKS), e.g. ±0.68% at p = 0.25. A correct balancer misses that with probability ~6e-7
//   per check; with the fixed seed the outcome is the same on every run anyway.
// - consistent hashing with a request hash: the table's own granularity comes on top (see conformance.test.ts).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LbPolicy } from "../config/types.ts";
import type { LbEndpoint, LoadBalancer, LoadBalancerOptions, PickContext } from "./load-balancer.ts";

export type LoadBalancerFactory = (
  endpoints: readonly LbEndpoint[],
  options: LoadBalancerOptions,
) => LoadBalancer;

export interface ConformanceTraits {
  readonly policy: LbPolicy;
  /** Absolute tolerance on a share expected to be p, over PICKS picks without a request hash. */
  readonly tolerance: (p: number) => number;
  /** Consistent-hash policies: the checks are run again with a request hash on every pick. */
  readonly hashed?: { readonly tolerance: (p: number) => number };
}

export const PICKS = 100_000;

/** 5 standard deviations of the share of n Bernoulli(p) draws. */
export function statisticalTolerance(p: number, n = PICKS): number {
  return 5 * Math.sqrt((p * (1 - p)) / n);
}

/** Mulberry32: a small seeded PRNG with full 32-bit output, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function endpoint(i: number, weight = 1): LbEndpoint {
  const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return { key: `${address}:8080`, address, port: 8080, weight, activeRequests: 0, healthy: true };
}

export function endpoints(weights: readonly number[]): LbEndpoint[] {
  return weights.map((w, i) => endpoint(i + 1, w));
}

/** Share of each endpoint over `picks` picks (undefined results fail the test). */
export function shares(
  lb: LoadBalancer,
  eps: readonly LbEndpoint[],
  picks: number,
  nextHash?: () => number,
): number[] {
  const index = new Map(eps.map((e, i) => [e, i]));
  const counts = new Array<number>(eps.length).fill(0);
  const ctx: PickContext = {};
  for (let k = 0; k < picks; k++) {
    if (nextHash !== undefined) ctx.hash = nextHash();
    const e = lb.pick(ctx);
    assert.ok(e !== undefined, "a healthy endpoint exists, so pick must return one");
    const i = index.get(e);
    assert.ok(i !== undefined, "pick returned an endpoint it was not given");
    counts[i] = counts[i]! + 1;
  }
  return counts.map((c) => c / picks);
}

export function assertShares(
  actual: readonly number[],
  expected: readonly number[],
  tolerance: (p: number) => number,
) {
  for (let i = 0; i < expected.length; i++) {
    const p = expected[i]!;
    const tol = tolerance(p);
    assert.ok(
      Math.abs(actual[i]! - p) <= tol,
      `endpoint ${i}: share ${actual[i]!.toFixed(4)}, expected ${p.toFixed(4)} ± ${tol.toFixed(4)} ` +
        `(all: ${actual.map((s) => s.toFixed(4)).join(", ")})`,
    );
  }
}

export function runLoadBalancerConformance(
  name: string,
  factory: LoadBalancerFactory,
  traits: ConformanceTraits,
): void {
  const modes: { label: string; hashed: boolean; tolerance: (p: number) => number }[] = [
    { label: traits.hashed ? "without a request hash" : "", hashed: false, tolerance: traits.tolerance },
  ];
  if (traits.hashed)
    modes.push({ label: "with a request hash", hashed: true, tolerance: traits.hashed.tolerance });

  describe(`${name} conformance`, () => {
    test("reports its policy", () => {
      assert.equal(factory(endpoints([1]), {}).policy, traits.policy);
    });

    test("rejects weights that are not finite numbers > 0", () => {
      for (const w of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        assert.throws(() => factory([endpoint(1), endpoint(2, w)], {}), RangeError, `weight ${w}`);
      }
    });

    for (const mode of modes) {
      const t = (title: string) => (mode.label ? `${title} (${mode.label})` : title);
      const setup = (seed: number) => {
        const random = mulberry32(seed);
        const hashes = mulberry32(seed ^ 0x5bd1e995);
        const nextHash = mode.hashed ? () => Math.floor(hashes() * 2 ** 32) : undefined;
        const ctx = (avoid?: LbEndpoint): PickContext => {
          const c: PickContext = {};
          if (nextHash !== undefined) c.hash = nextHash();
          if (avoid !== undefined) c.avoid = avoid;
          return c;
        };
        return { random, nextHash, ctx };
      };

      test(t("returns undefined when there are no endpoints"), () => {
        const { random, ctx } = setup(1);
        const lb = factory([], { random });
        for (let k = 0; k < 100; k++) assert.equal(lb.pick(ctx()), undefined);
      });

      test(t("returns undefined when every endpoint is unhealthy, avoid or not"), () => {
        const { random, ctx } = setup(2);
        const eps = endpoints([1, 2, 3, 1, 5]);
        const lb = factory(eps, { random });
        for (const e of eps) e.healthy = false;
        for (let k = 0; k < 1000; k++) {
          assert.equal(lb.pick(ctx()), undefined);
          assert.equal(lb.pick(ctx(eps[k % eps.length])), undefined);
        }
      });

      test(t("returns a healthy endpoint whenever one exists, never an unhealthy one"), () => {
        const { random, ctx } = setup(3);
        const flips = mulberry32(33);
        const eps = endpoints(Array.from({ length: 20 }, (_, i) => 1 + (i % 4)));
        const members = new Set(eps);
        const lb = factory(eps, { random });
        for (let round = 0; round < 2000; round++) {
          // Mostly-healthy, half-healthy and nearly-dead clusters, changing between picks.
          const pHealthy = [0.9, 0.5, 0.05][round % 3]!;
          for (const e of eps) e.healthy = flips() < pHealthy;
          const anyHealthy = eps.some((e) => e.healthy);
          for (let k = 0; k < 10; k++) {
            const e = lb.pick(ctx());
            if (!anyHealthy) {
              assert.equal(e, undefined);
              continue;
            }
            assert.ok(e !== undefined, `round ${round}: a healthy endpoint exists`);
            assert.ok(members.has(e), "returned an endpoint it was not given");
            assert.ok(e.healthy, `round ${round}: returned unhealthy ${e.key}`);
          }
        }
      });

      test(t("finds the one healthy endpoint among many"), () => {
        const { random, ctx } = setup(4);
        const eps = endpoints(Array.from({ length: 200 }, (_, i) => 1 + (i % 7)));
        const lb = factory(eps, { random });
        for (const e of eps) e.healthy = false;
        const lone = eps[137]!;
        lone.healthy = true;
        for (let k = 0; k < 1000; k++) assert.equal(lb.pick(ctx()), lone);
        // ... and the lightest endpoint among heavy unhealthy ones.
        const skewed = [endpoint(1, 1000), endpoint(2, 1000), endpoint(3, 1)];
        const lb2 = factory(skewed, { random });
        skewed[0]!.healthy = false;
        skewed[1]!.healthy = false;
        for (let k = 0; k < 1000; k++) assert.equal(lb2.pick(ctx()), skewed[2]);
      });

      test(t("picks an endpoint again once it is healthy again"), () => {
        const { random, ctx } = setup(5);
        const eps = endpoints([1, 1, 1]);
        const lb = factory(eps, { random });
        eps[1]!.healthy = false;
        for (let k = 0; k < 1000; k++) assert.notEqual(lb.pick(ctx()), eps[1]);
        eps[1]!.healthy = true;
        let seen = 0;
        for (let k = 0; k < 1000; k++) if (lb.pick(ctx()) === eps[1]) seen++;
        assert.ok(seen > 200, `recovered endpoint picked ${seen} times of 1000`);
      });

      test(t("avoid: returns another healthy endpoint when one exists"), () => {
        const { random, ctx } = setup(6);
        for (const weights of [
          [1, 1, 1, 1, 1],
          [100, 1, 1],
          [1, 100, 5, 3],
        ]) {
          const eps = endpoints(weights);
          const lb = factory(eps, { random });
          for (const avoid of eps) {
            for (let k = 0; k < 300; k++) {
              const e = lb.pick(ctx(avoid));
              assert.ok(
                e !== undefined && e !== avoid && e.healthy,
                `weights ${weights}: avoided ${avoid.key}`,
              );
            }
          }
          // With some unhealthy: still another healthy one, never the avoided one.
          eps[eps.length - 1]!.healthy = false;
          for (let k = 0; k < 300; k++) {
            const e = lb.pick(ctx(eps[0]));
            assert.ok(e !== undefined && e !== eps[0] && e.healthy);
          }
        }
      });

      test(t("avoid: returns the avoided endpoint when it is the only healthy one"), () => {
        const { random, ctx } = setup(7);
        const eps = endpoints([1, 3, 2, 1]);
        const lb = factory(eps, { random });
        for (const e of eps) e.healthy = e === eps[2];
        for (let k = 0; k < 300; k++) assert.equal(lb.pick(ctx(eps[2])), eps[2]);
        const single = endpoints([4]);
        const lb1 = factory(single, { random });
        for (let k = 0; k < 100; k++) assert.equal(lb1.pick(ctx(single[0])), single[0]);
      });

      test(t("avoid: never returns an unhealthy avoided endpoint, nor one it was not given"), () => {
        const { random, ctx } = setup(8);
        const eps = endpoints([1, 2, 3]);
        const lb = factory(eps, { random });
        for (const e of eps) e.healthy = false;
        const stranger = endpoint(99);
        for (let k = 0; k < 300; k++) {
          assert.equal(lb.pick(ctx(eps[1])), undefined);
          assert.equal(lb.pick(ctx(stranger)), undefined);
        }
        eps[0]!.healthy = true;
        for (let k = 0; k < 300; k++) assert.equal(lb.pick(ctx(stranger)), eps[0]);
      });

      test(t("leaves the endpoints' counters and health alone"), () => {
        const { random, ctx } = setup(9);
        const eps = endpoints([1, 2, 3, 4]);
        eps[1]!.activeRequests = 7;
        eps[3]!.healthy = false;
        const before = JSON.stringify(eps);
        const lb = factory(eps, { random });
        for (let k = 0; k < 1000; k++) lb.pick(ctx(eps[k % 4]));
        assert.equal(JSON.stringify(eps), before);
      });

      test(t(`equal weights: each of 4 endpoints gets 25% of ${PICKS} picks`), () => {
        const { random, nextHash } = setup(10);
        const eps = endpoints([1, 1, 1, 1]);
        assertShares(
          shares(factory(eps, { random }), eps, PICKS, nextHash),
          [0.25, 0.25, 0.25, 0.25],
          mode.tolerance,
        );
      });

      test(t("weights 3 and 1 get 75% and 25%"), () => {
        const { random, nextHash } = setup(11);
        const eps = endpoints([3, 1]);
        assertShares(shares(factory(eps, { random }), eps, PICKS, nextHash), [0.75, 0.25], mode.tolerance);
      });

      test(t("weights 1, 2, 3, 4 with the 4 unhealthy: 1/6, 2/6, 3/6"), () => {
        const { random, nextHash } = setup(12);
        const eps = endpoints([1, 2, 3, 4]);
        const lb = factory(eps, { random });
        eps[3]!.healthy = false;
        assertShares(shares(lb, eps, PICKS, nextHash), [1 / 6, 2 / 6, 3 / 6, 0], mode.tolerance);
      });

      test(t("weights 1 to 10 over 10 endpoints"), () => {
        const { random, nextHash } = setup(13);
        const weights = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        const eps = endpoints(weights);
        assertShares(
          shares(factory(eps, { random }), eps, PICKS, nextHash),
          weights.map((w) => w / 55),
          mode.tolerance,
        );
      });
    }
  });
}
