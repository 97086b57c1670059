// Workload tokens: a good token grants its service account; every bad token is refused with its own reason
// (expired, not yet valid, wrong audience, wrong issuer, alg none, HMAC with the public key, another key,
// oversized, malformed, a subject that is not a service account).
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { SignJWT, UnsecuredJWT } from "jose";
import { MAX_TOKEN_BYTES, TOKEN_AUDIENCE, TOKEN_ISSUER, TOKEN_KEY_FILE, WorkloadTokens } from "./tokens.ts";

const dir = mkdtempSync(join(tmpdir(), "isthmus-tokens-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("an issued token grants its namespace and service account; the key is kept in the state dir", async () => {
  const tokens = await WorkloadTokens.loadOrCreate(dir);
  assert.equal(statSync(join(dir, TOKEN_KEY_FILE)).mode & 0o777, 0o600);
  const { token, expiresAt } = await tokens.issue({ namespace: "shop", serviceAccount: "cart" }, 600);
  assert.ok(Math.abs(expiresAt.getTime() - Date.now() - 600_000) < 2000);
  const r = await tokens.verify(token);
  assert.ok(r.ok);
  assert.deepEqual(r.grant, { namespace: "shop", serviceAccount: "cart" });
  // A restarted control plane (same key) accepts it.
  const again = await WorkloadTokens.loadOrCreate(dir);
  assert.ok((await again.verify(token)).ok);
  // issueFor: the config API's body.
  const good = await tokens.issueFor({ namespace: "shop", serviceAccount: "cart", ttlSeconds: 60 });
  assert.ok(good.ok);
  const bad = await tokens.issueFor({ namespace: "Shop", serviceAccount: "", ttlSeconds: 10 ** 9, extra: 1 });
  assert.equal(bad.ok, false);
  if (!bad.ok) assert.equal(bad.errors.length, 4, bad.errors.join("\n"));
  assert.equal((await tokens.issueFor("x")).ok, false);
});

test("bad tokens are refused, each with its reason", async () => {
  const tokens = await WorkloadTokens.loadOrCreate(dir);
  const key = createPrivateKey(readFileSync(join(dir, TOKEN_KEY_FILE), "utf8"));
  const now = Math.floor(Date.now() / 1000);
  const claims = (
    over: Partial<{ sub: string; aud: string; iss: string; exp: number; nbf: number }> = {},
  ) => ({
    sub: "system:serviceaccount:shop:cart",
    aud: TOKEN_AUDIENCE,
    iss: TOKEN_ISSUER,
    exp: now + 600,
    nbf: now,
    ...over,
  });
  const sign = (c: ReturnType<typeof claims>, signingKey = key) =>
    new SignJWT({ ...c }).setProtectedHeader({ alg: "ES256", typ: "JWT" }).sign(signingKey);
  const other = await WorkloadTokens.generate();
  const cases: [string, string | undefined, string][] = [
    ["missing", undefined, "missing"],
    ["empty", "", "missing"],
    ["expired", await sign(claims({ exp: now - 60 })), "expired"],
    ["not yet valid", await sign(claims({ nbf: now + 600 })), "not-yet-valid"],
    ["wrong audience", await sign(claims({ aud: "kubernetes" })), "audience"],
    ["wrong issuer", await sign(claims({ iss: "someone" })), "issuer"],
    ["not a service account", await sign(claims({ sub: "admin" })), "subject"],
    ["bad names", await sign(claims({ sub: "system:serviceaccount:Shop:c/a" })), "subject"],
    ["alg none", new UnsecuredJWT({ ...claims() }).encode(), "algorithm"],
    [
      "HS256 with the public key as secret",
      await new SignJWT({ ...claims() })
        .setProtectedHeader({ alg: "HS256" })
        .sign(createPublicKey(key).export({ format: "der", type: "spki" })),
      "algorithm",
    ],
    ["another key", (await other.issue({ namespace: "shop", serviceAccount: "cart" })).token, "signature"],
    ["oversized", await sign({ ...claims(), pad: "x".repeat(MAX_TOKEN_BYTES) } as never), "too-large"],
    ["malformed", "not.a.jwt", "malformed"],
    ["garbage", "%%%", "malformed"],
  ];
  for (const [what, token, reason] of cases) {
    const r = await tokens.verify(token);
    assert.equal(r.ok, false, what);
    if (!r.ok) {
      assert.equal(r.reason, reason, `${what}: ${r.message}`);
      if (token) assert.ok(!r.message.includes(token), "the token is never echoed");
    }
  }
  // A tampered payload (the service account changed) breaks the signature.
  const good = (await tokens.issue({ namespace: "shop", serviceAccount: "cart" })).token;
  const [h, p, s] = good.split(".");
  const payload = JSON.parse(Buffer.from(p!, "base64url").toString());
  payload.sub = "system:serviceaccount:shop:admin";
  const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
  const r = await tokens.verify(forged);
  assert.equal(r.ok ? "" : r.reason, "signature");
});
