import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "./backoff.ts";

test("backoff doubles from 0.5 s to a 30 s cap, with jitter either way, and resets", () => {
  const plain = new Backoff(500, 30_000, 0.2, () => 0.5);
  assert.deepEqual(
    Array.from({ length: 9 }, () => plain.next()),
    [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000],
  );
  plain.reset();
  assert.equal(plain.next(), 500);
  const low = new Backoff(500, 30_000, 0.2, () => 0);
  const high = new Backoff(500, 30_000, 0.2, () => 0.999_999);
  assert.equal(low.next(), 400);
  assert.equal(high.next(), 600);
  for (let i = 0; i < 20; i++) assert.ok(high.next() <= 30_000, "never past the cap");
  const many = new Backoff(500, 30_000, 0.2);
  for (let i = 0; i < 100; i++) many.next();
  assert.ok(many.next() >= 24_000);
});
