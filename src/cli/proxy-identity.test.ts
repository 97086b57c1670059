// `isthmus proxy --identity-token`: a real control plane (its CA and token issuer) and a real proxy process.
// The proxy makes its key, gets a SPIFFE certificate for its namespace and service account, is not ready
// before it has one, and shows it on admin /certs without the key; a token for another service account gets
// no certificate (the CA says why) and the proxy stays not ready.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { startControlPlane } from "../control/e2e-support.ts";
import { closeAll, get, onClose, spawnProxy } from "../proxy/test-support.ts";

after(closeAll);

const TOKEN = "proxy-identity-admin-token";

async function controlPlane(): Promise<{ xds: string; api: string }> {
  const cp = await startControlPlane([], TOKEN);
  return { xds: `127.0.0.1:${cp.pushPort}`, api: cp.server };
}

async function tokenFile(
  api: string,
  dir: string,
  namespace: string,
  serviceAccount: string,
): Promise<string> {
  const r = await fetch(`${api}/apis/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ namespace, serviceAccount, ttlSeconds: 600 }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const file = join(dir, `${namespace}-${serviceAccount}.token`);
  writeFileSync(file, ((await r.json()) as { token: string }).token, { mode: 0o600 });
  return file;
}

async function adminPort(proxy: Awaited<ReturnType<typeof spawnProxy>>): Promise<number> {
  await proxy.waitForStderr(/admin on [^\s]+:(\d+)/);
  return Number(/admin on [^\s]+:(\d+)/.exec(proxy.stderr())![1]);
}

async function admin(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await get(port, path);
  return { status: r.status, body: r.body.toString() };
}

test("a proxy gets its SPIFFE certificate with its token, and is ready only then", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-identity-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const { xds, api } = await controlPlane();
  const token = await tokenFile(api, dir, "shop", "reviews");
  const proxy = await spawnProxy(
    [
      ...[
        "--control-plane",
        xds,
        "--node-id",
        "reviews-1",
        "--namespace",
        "shop",
        "--service-account",
        "reviews",
      ],
      ...["--identity-token", token, "--ip", "127.0.0.71", "--admin-port", "0"],
    ],
    [],
  );
  const port = await adminPort(proxy);
  await proxy.waitForStderr(/identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/reviews until/);
  const deadline = Date.now() + 10_000;
  while ((await admin(port, "/ready")).status !== 200) {
    assert.ok(Date.now() < deadline, "ready once it has a config and a certificate");
    await new Promise((r) => setTimeout(r, 50));
  }
  const certs = await admin(port, "/certs");
  const report = JSON.parse(certs.body) as {
    certificates: Array<{
      name: string;
      chain: Array<{ subjectAltNames: string[]; daysUntilExpiration: number }>;
    }>;
    validations: Array<{ name: string; ca: unknown[] }>;
  };
  const own = report.certificates.find((c) => c.name === "default")!;
  assert.deepEqual(own.chain[0]!.subjectAltNames, ["URI:spiffe://cluster.local/ns/shop/sa/reviews"]);
  assert.equal(own.chain[0]!.daysUntilExpiration, 0, "24 h: less than a day left, in whole days");
  assert.equal(report.validations.find((v) => v.name === "ROOTCA")!.ca.length, 1);
  assert.doesNotMatch(certs.body, /PRIVATE KEY/);
  assert.doesNotMatch(proxy.stderr(), /PRIVATE KEY|eyJ/, "neither the key nor the token is logged");
});

test("a token for another service account gets no certificate, and the proxy stays not ready", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-identity-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const { xds, api } = await controlPlane();
  const token = await tokenFile(api, dir, "shop", "ratings");
  const proxy = await spawnProxy(
    [
      ...[
        "--control-plane",
        xds,
        "--node-id",
        "reviews-2",
        "--namespace",
        "shop",
        "--service-account",
        "reviews",
      ],
      ...["--identity-token", token, "--ip", "127.0.0.72", "--admin-port", "0"],
    ],
    [],
  );
  const port = await adminPort(proxy);
  await proxy.waitForStderr(/identity: .*(PERMISSION_DENIED|not granted|does not grant|identity)/i);
  assert.equal((await admin(port, "/ready")).status, 503);
  assert.equal(JSON.parse((await admin(port, "/certs")).body).certificates.length, 0);
});
