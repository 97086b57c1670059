import assert from "node:assert/strict";
import { test } from "node:test";
import { mulberry32 } from "./conformance.ts";
import { fmix32, murmur3, murmur3Bytes } from "./hash.ts";

test("murmur3 matches MurmurHash3 x86_32 reference vectors", () => {
  const vectors: [string, number, number][] = [
    ["", 0, 0x00000000],
    ["", 1, 0x514e28b7],
    ["The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723],
    ["aaaa", 0x9747b28c, 0x5a97808a],
    ["abc", 0x9747b28c, 0xc84a62dd],
    ["Hello, world!", 0x9747b28c, 0x24884cba],
    ["Hello, world!", 1234, 0xfaf6cdb3],
  ];
  for (const [key, seed, want] of vectors)
    assert.equal(murmur3(key, seed), want, JSON.stringify([key, seed]));
});

test("murmur3 hashes the UTF-8 bytes, as Buffer encodes them (lone surrogates included), at any length", () => {
  const rnd = mulberry32(1);
  const pool = [
    "a",
    "Z",
    "0",
    ":",
    "é",
    "ß",
    "中",
    "☃",
    "😀",
    "\ud800",
    "\udfff",
    "\u0000",
    "\u07ff",
    "\uffff",
  ];
  for (let k = 0; k < 2000; k++) {
    const len = k < 1990 ? Math.floor(rnd() * 40) : 5000 + Math.floor(rnd() * 5000); // a few beyond the scratch
    let s = "";
    for (let i = 0; i < len; i++) s += pool[Math.floor(rnd() * pool.length)];
    const bytes = Buffer.from(s, "utf8");
    assert.equal(murmur3(s, k), murmur3Bytes(bytes, bytes.length, k), JSON.stringify(s.slice(0, 20)));
  }
});

test("virtual node keys spread evenly over 64 buckets", () => {
  const buckets = new Array<number>(64).fill(0);
  const n = 64_000;
  for (let i = 0; i < n; i++) buckets[murmur3(`10.0.${i >> 8}.${i & 255}:8080_${i % 7}`) >>> 26]!++;
  // Chi-square with 63 degrees of freedom: mean 63, sd ~11.2; 120 is ~5 sd out.
  const expected = n / 64;
  const chi2 = buckets.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 120, `chi-square ${chi2.toFixed(1)}`);
});

test("fmix32 is a bijection that avalanches", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 100_000; i++) seen.add(fmix32(i));
  assert.equal(seen.size, 100_000);
  // Flipping one input bit flips about half of the output bits.
  let flipped = 0;
  const rnd = mulberry32(2);
  for (let k = 0; k < 1000; k++) {
    const x = Math.floor(rnd() * 2 ** 32);
    const bit = 1 << Math.floor(rnd() * 32);
    let d = (fmix32(x) ^ fmix32(x ^ bit)) >>> 0;
    while (d !== 0) {
      flipped += d & 1;
      d >>>= 1;
    }
  }
  assert.ok(Math.abs(flipped / 1000 - 16) < 1, `${flipped / 1000} bits flipped on average`);
});
