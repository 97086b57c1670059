import assert from "node:assert/strict";
import { test } from "node:test";
import type { HashPolicy } from "../config/types.ts";
import { endpoints } from "./conformance.ts";
import { murmur3 } from "./hash.ts";
import { computeHash, type HashInput } from "./hash-policy.ts";
import { MaglevLoadBalancer } from "./maglev.ts";
import { RingHashLoadBalancer } from "./ring-hash.ts";

interface Request {
  headers?: Record<string, string>;
  cookies?: Record<string, string>;
  query?: Record<string, string>;
  sourceIp?: string;
}

/** A HashInput over plain maps; `asked` records every lookup, in order. */
function input(req: Request, asked: string[] = []): HashInput {
  return {
    header: (name) => {
      asked.push(`header:${name}`);
      return req.headers?.[name.toLowerCase()];
    },
    cookie: (name) => {
      asked.push(`cookie:${name}`);
      return req.cookies?.[name];
    },
    sourceIp: req.sourceIp ?? "",
    queryParameter: (name) => {
      asked.push(`query:${name}`);
      return req.query?.[name];
    },
  };
}

test("each policy kind hashes its value with murmur3", () => {
  const req: Request = {
    headers: { "x-user": "alice" },
    cookies: { session: "s-123" },
    query: { shard: "7" },
    sourceIp: "192.0.2.10",
  };
  assert.equal(computeHash([{ header: "x-user" }], input(req)), murmur3("alice"));
  assert.equal(computeHash([{ cookie: "session" }], input(req)), murmur3("s-123"));
  assert.equal(computeHash([{ cookie: "session", ttlMs: 60_000, path: "/" }], input(req)), murmur3("s-123"));
  assert.equal(computeHash([{ sourceIp: true }], input(req)), murmur3("192.0.2.10"));
  assert.equal(computeHash([{ queryParameter: "shard" }], input(req)), murmur3("7"));
  // Header names are looked up through the input, which matches them case-insensitively here.
  assert.equal(computeHash([{ header: "X-User" }], input(req)), murmur3("alice"));
});

test("the first policy that yields a value wins; later policies are not evaluated", () => {
  const req: Request = {
    headers: { "x-user": "alice" },
    cookies: { session: "s-1" },
    sourceIp: "198.51.100.1",
  };
  const asked: string[] = [];
  const policies: HashPolicy[] = [
    { header: "x-missing" },
    { cookie: "absent" },
    { cookie: "session" },
    { header: "x-user" },
    { sourceIp: true },
  ];
  assert.equal(computeHash(policies, input(req, asked)), murmur3("s-1"));
  assert.deepEqual(asked, ["header:x-missing", "cookie:absent", "cookie:session"]);
  assert.equal(computeHash([{ header: "x-user" }, { cookie: "session" }], input(req)), murmur3("alice"));
  assert.equal(
    computeHash([{ queryParameter: "q" }, { sourceIp: true }], input(req)),
    murmur3("198.51.100.1"),
  );
});

test("no value from any policy, or no policies: undefined", () => {
  assert.equal(computeHash([], input({ sourceIp: "192.0.2.1" })), undefined);
  const policies: HashPolicy[] = [{ header: "x-user" }, { cookie: "session" }, { queryParameter: "q" }];
  assert.equal(computeHash(policies, input({ sourceIp: "192.0.2.1" })), undefined);
  // An unknown source address (""): no value.
  assert.equal(computeHash([{ sourceIp: true }], input({})), undefined);
  assert.equal(
    computeHash([{ sourceIp: true }, { header: "h" }], input({ headers: { h: "v" } })),
    murmur3("v"),
  );
});

test("a present but empty value is a value", () => {
  const h = computeHash([{ header: "x-empty" }, { sourceIp: true }], input({ headers: { "x-empty": "" } }));
  assert.equal(h, murmur3(""));
  assert.notEqual(h, undefined);
});

test("hashes are unsigned 32-bit; equal values, equal hashes; different values spread", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 10_000; i++) {
    const h = computeHash([{ cookie: "session" }], input({ cookies: { session: `user-${i}` } }))!;
    assert.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    assert.equal(h, computeHash([{ cookie: "session" }], input({ cookies: { session: `user-${i}` } })));
    seen.add(h);
  }
  assert.equal(seen.size, 10_000);
});

test("end to end: one session cookie sticks to one endpoint under ring hash and Maglev", () => {
  const eps = endpoints(new Array(8).fill(1));
  for (const lb of [new RingHashLoadBalancer(eps), new MaglevLoadBalancer(eps)]) {
    const used = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const req = input({ cookies: { session: `user-${i}` } });
      const first = lb.pick({ hash: computeHash([{ cookie: "session" }], req) })!;
      for (let k = 0; k < 5; k++)
        assert.equal(lb.pick({ hash: computeHash([{ cookie: "session" }], req) }), first);
      used.add(first.key);
    }
    assert.equal(used.size, 8, `${lb.policy}: sessions reached ${used.size} of 8 endpoints`);
  }
});
