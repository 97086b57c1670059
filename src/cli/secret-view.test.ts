// `isthmus proxy-config secret` against real processes: a control plane with a plug-in CA made by `isthmus ca`
// (so the root's serial and dates are known independently), a proxy that gets its workload certificate with a
// token, and the CLI reading the proxy's admin. Also: a proxy without an identity (WARMING), the PROXY guard
// (another proxy's admin, a proxy that reports no node id yet) and an admin that is not there.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { runIsthmus, startControlPlane } from "../control/e2e-support.ts";
import { closeAll, closedPort, onClose, type ProxyProcess, spawnProxy } from "../proxy/test-support.ts";
import { secretRows } from "./commands/proxy-secret.ts";

after(closeAll);

const TOKEN = "secret-view-admin-token";

/** istioctl's time format: the ISO time without milliseconds. */
const rfc3339 = (d: Date | string) => new Date(d).toISOString().replace(/\.\d{3}Z$/, "Z");

/** The table's rows as cells: columns are separated by at least three spaces, and no cell has two. */
function cells(out: string): string[][] {
  return out
    .trimEnd()
    .split("\n")
    .map((l) => l.split(/ {3,}/));
}

async function tokenFile(api: string, dir: string, namespace: string, serviceAccount: string) {
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

async function adminUrl(proxy: ProxyProcess): Promise<string> {
  await proxy.waitForStderr(/admin on [^\s]+:(\d+)/);
  return `http://127.0.0.1:${/admin on [^\s]+:(\d+)/.exec(proxy.stderr())![1]}`;
}

async function waitReady(admin: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while ((await fetch(`${admin}/ready`).catch(() => undefined))?.status !== 200) {
    assert.ok(Date.now() < deadline, "the proxy is ready once it has a config and a certificate");
    await new Promise((r) => setTimeout(r, 50));
  }
}

const secret = (...args: string[]) => runIsthmus(["proxy-config", "secret", ...args], TOKEN);

test("proxy-config secret: the proxy's workload certificate and roots, ACTIVE, with serials and dates", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-secret-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const root = await runIsthmus(["ca", "root", "--out", join(dir, "root")], TOKEN);
  assert.equal(root.status, 0, root.stderr);
  const inter = await runIsthmus(
    ["ca", "intermediate", "--root", join(dir, "root"), "--cluster", "east", "--out", join(dir, "east")],
    TOKEN,
  );
  assert.equal(inter.status, 0, inter.stderr);
  const rootCert = new X509Certificate(readFileSync(join(dir, "east", "root-cert.pem")));
  const caCert = new X509Certificate(readFileSync(join(dir, "east", "ca-cert.pem")));

  const cp = await startControlPlane([], TOKEN, "127.0.0.1:0", ["--ca-dir", join(dir, "east")]);
  const token = await tokenFile(cp.server, dir, "shop", "reviews");
  const proxy = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${cp.pushPort}`, "--node-id", "reviews-1"],
      ...["--namespace", "shop", "--service-account", "reviews", "--identity-token", token],
      ...["--ip", "127.0.0.131", "--admin-port", "0"],
    ],
    [],
  );
  const admin = await adminUrl(proxy);
  await proxy.waitForStderr(/identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/reviews until (\S+)/);
  const until = /identity spiffe:\/\/\S+ until (\S+)/.exec(proxy.stderr())![1]!;
  await waitReady(admin);

  const r = await secret("reviews-1", "--admin", admin);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "");
  const [header, ...rows] = cells(r.stdout);
  assert.deepEqual(header, [
    "RESOURCE NAME",
    "TYPE",
    "STATUS",
    "VALID CERT",
    "SERIAL NUMBER",
    "NOT AFTER",
    "NOT BEFORE",
  ]);
  assert.equal(rows.length, 2, r.stdout);
  const [own, roots] = rows;
  // The workload certificate: the leaf the proxy logged, its serial as the proxy's /certs reports it.
  const report = (await (await fetch(`${admin}/certs`)).json()) as {
    certificates: Array<{ name: string; chain: Array<{ serialNumber: string; validFrom: string }> }>;
  };
  const chain = report.certificates.find((c) => c.name === "default")!.chain;
  assert.equal(chain.length, 2, "the leaf and the cluster's intermediate");
  assert.equal(chain[1]!.serialNumber, caCert.serialNumber, "issued by the plug-in CA");
  assert.deepEqual(own, [
    "default",
    "Cert Chain",
    "ACTIVE",
    "true",
    chain[0]!.serialNumber,
    rfc3339(until),
    rfc3339(chain[0]!.validFrom),
  ]);
  assert.match(own![4]!, /^[0-9A-F]{16,}$/);
  assert.ok(Date.parse(own![6]!) <= Date.now() && Date.now() < Date.parse(own![5]!));
  assert.ok(Date.parse(own![5]!) - Date.parse(own![6]!) <= 25 * 3600_000, "a 24 h certificate");
  // The roots: the plug-in CA's root-cert.pem, read from disk here.
  assert.deepEqual(roots, [
    "ROOTCA",
    "CA",
    "ACTIVE",
    "true",
    rootCert.serialNumber,
    rfc3339(rootCert.validTo),
    rfc3339(rootCert.validFrom),
  ]);

  // -o json: the admin's report as it is; the address from ISTHMUS_PROXY_ADMIN.
  process.env.ISTHMUS_PROXY_ADMIN = admin.replace(/^http:\/\//, "");
  try {
    const j = await secret("-o", "json");
    assert.equal(j.status, 0, j.stderr);
    const parsed = JSON.parse(j.stdout);
    assert.equal(parsed.certificates[0].chain[0].serialNumber, own![4]);
    assert.deepEqual(parsed.certificates[0].chain[0].subjectAltNames, [
      "URI:spiffe://cluster.local/ns/shop/sa/reviews",
    ]);
    assert.equal(parsed.validations[0].ca[0].serialNumber, rootCert.serialNumber);
    assert.doesNotMatch(j.stdout, /PRIVATE KEY/);
  } finally {
    delete process.env.ISTHMUS_PROXY_ADMIN;
  }

  // The PROXY guard: this admin is reviews-1's.
  const wrong = await secret("ratings-1", "--admin", admin);
  assert.equal(wrong.status, 1);
  assert.equal(wrong.stdout, "");
  assert.equal(wrong.stderr, `the proxy at ${admin} is "reviews-1", not "ratings-1"\n`);
});

test("proxy-config secret: WARMING without an identity; no node id yet; an admin that is not there", async () => {
  const cp = await startControlPlane([], TOKEN);
  const plain = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${cp.pushPort}`, "--node-id", "plain-1", "--namespace", "shop"],
      ...["--ip", "127.0.0.132", "--admin-port", "0"],
    ],
    [],
  );
  const admin = await adminUrl(plain);
  await plain.waitForStderr(/control plane applied/, 15_000);
  const r = await secret("plain-1", "--admin", admin);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(cells(r.stdout).slice(1), [
    ["default", "Cert Chain", "WARMING", "false", "-", "-", "-"],
    ["ROOTCA", "CA", "WARMING", "false", "-", "-", "-"],
  ]);

  // A proxy whose control plane is unreachable has no config, so no node id to check PROXY against.
  const lonely = await spawnProxy(
    ["--control-plane", `127.0.0.1:${await closedPort()}`, "--node-id", "lonely", "--admin-port", "0"],
    [],
  );
  const lonelyAdmin = await adminUrl(lonely);
  const unknown = await secret("lonely", "--admin", lonelyAdmin);
  assert.equal(unknown.status, 1);
  assert.match(
    unknown.stderr,
    new RegExp(`cannot check that the proxy at ${lonelyAdmin} is "lonely": it reports no node id`),
  );
  // Without PROXY it is read anyway.
  const anyway = await secret("--admin", lonelyAdmin);
  assert.equal(anyway.status, 0, anyway.stderr);
  assert.match(anyway.stdout, /^default\s+Cert Chain\s+WARMING/m);

  // Nothing listens there: exit 1, the URL and the reason.
  const port = await closedPort();
  const gone = await secret("plain-1", "--admin", `http://127.0.0.1:${port}`);
  assert.equal(gone.status, 1);
  assert.equal(gone.stdout, "");
  assert.match(
    gone.stderr,
    new RegExp(
      `^cannot reach the proxy's admin at http://127\\.0\\.0\\.1:${port}/config_dump: .*ECONNREFUSED`,
    ),
  );
  const gone2 = await secret("--admin", `127.0.0.1:${port}`);
  assert.equal(gone2.status, 1);
  assert.match(gone2.stderr, new RegExp(`http://127\\.0\\.0\\.1:${port}/certs: .*ECONNREFUSED`));

  // Usage: no admin address, a --server (that is the other views' option), a bad -o.
  delete process.env.ISTHMUS_PROXY_ADMIN;
  for (const args of [
    [],
    ["--server", "http://127.0.0.1:1", "--admin", admin],
    ["--admin", admin, "-o", "yaml"],
  ]) {
    const u = await secret(...args);
    assert.equal(u.status, 2, `${args.join(" ")}: ${u.stderr}`);
    assert.match(u.stderr, /Run 'isthmus proxy-config --help'/);
  }
});

test("secretRows: an expired certificate is ACTIVE but not valid; other secrets and every root get a row", () => {
  const cert = (serialNumber: string, from: string, to: string) => ({
    serialNumber,
    validFrom: from,
    expirationTime: to,
  });
  const now = Date.parse("2030-01-01T00:00:00Z");
  assert.deepEqual(
    secretRows(
      {
        certificates: [
          { name: "gw-cert", chain: [cert("0A", "2029-01-01T00:00:00.000Z", "2031-01-01T00:00:00.000Z")] },
          { name: "default", chain: [cert("0B", "2029-01-01T00:00:00.000Z", "2029-12-31T00:00:00.000Z")] },
        ],
        validations: [
          {
            name: "ROOTCA",
            ca: [
              cert("01", "2020-01-01T00:00:00.000Z", "2040-01-01T00:00:00.000Z"),
              cert("02", "2030-06-01T00:00:00.000Z", "2050-01-01T00:00:00.000Z"),
            ],
          },
        ],
      },
      now,
    ),
    [
      ["default", "Cert Chain", "ACTIVE", "false", "0B", "2029-12-31T00:00:00Z", "2029-01-01T00:00:00Z"],
      ["gw-cert", "Cert Chain", "ACTIVE", "true", "0A", "2031-01-01T00:00:00Z", "2029-01-01T00:00:00Z"],
      ["ROOTCA", "CA", "ACTIVE", "true", "01", "2040-01-01T00:00:00Z", "2020-01-01T00:00:00Z"],
      ["ROOTCA", "CA", "ACTIVE", "false", "02", "2050-01-01T00:00:00Z", "2030-06-01T00:00:00Z"],
    ],
  );
});
