// Control planes peering as processes (isthmus control-plane --cluster ... with MeshLink resources), each with
// a plug-in CA: an intermediate of the mesh's root peers; one of another root is refused, and the reason shows
// in `isthmus remote-clusters` and in the log. Bad peering flags are refused before anything starts.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll } from "../proxy/test-support.ts";
import { CACERTS_FILES, createIntermediate, createRoot, writeFiles } from "./ca/cacerts.ts";
import { eventually, isthmus, runIsthmus, startControlPlane } from "./e2e-support.ts";

const TOKEN = "peering-test-token-0123456789";

after(closeAll);

async function caDir(dir: string, root: { cert: string; key: string }, cluster: string): Promise<string> {
  const pem = await createIntermediate({ rootCert: root.cert, rootKey: root.key, cluster, days: 30 });
  const out = join(dir, `ca-${cluster}`);
  writeFiles(out, {
    [CACERTS_FILES.caCert]: pem.caCert,
    [CACERTS_FILES.caKey]: pem.caKey,
    [CACERTS_FILES.rootCert]: pem.rootCert,
    [CACERTS_FILES.certChain]: pem.certChain,
  });
  return out;
}

const link = (cluster: string, address?: string) => `apiVersion: isthmus.io/v1alpha1
kind: MeshLink
metadata: {name: ${cluster}, namespace: istio-system}
spec:
  cluster: ${cluster}
${address ? `  address: "${address}"\n` : ""}`;

async function pair(rootOfB: "same" | "other") {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-peering-"));
  const root = await createRoot({ trustDomain: "cluster.local", days: 30 });
  const other = rootOfB === "same" ? root : await createRoot({ trustDomain: "cluster.local", days: 30 });
  writeFileSync(join(dir, "a.yaml"), link("b"));
  const a = await startControlPlane([join(dir, "a.yaml")], TOKEN, "127.0.0.1:0", [
    ...["--cluster", "a", "--network", "net-a", "--peer-listen", "127.0.0.1:0"],
    ...["--ca-dir", await caDir(dir, root, "a")],
  ]);
  const peerAddress = await eventually(
    async () => /peering on (127\.0\.0\.1:\d+)/.exec(a.stderr())?.[1],
    (x) => x !== undefined,
    "a never printed its peering address",
  );
  writeFileSync(join(dir, "b.yaml"), link("a", peerAddress));
  const b = await startControlPlane([join(dir, "b.yaml")], TOKEN, "127.0.0.1:0", [
    ...["--cluster", "b", "--network", "net-b", "--private"],
    ...["--ca-dir", await caDir(dir, other, "b")],
  ]);
  return { a, b };
}

const remote = async (server: string) => {
  const r = await isthmus(server, TOKEN, "remote-clusters", "-o", "json");
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as {
    remoteClusters: Array<{ cluster: string; state: string; direction: string; lastError: string | null }>;
  };
};

test("two control planes with intermediates of one root peer: the private one dials, both sync", async () => {
  const { a, b } = await pair("same");
  const rows = await eventually(
    async () => (await remote(b.server)).remoteClusters,
    (r) => r[0]?.state === "connected",
    "b never connected to a",
  );
  assert.deepEqual(
    rows.map((r) => [r.cluster, r.direction]),
    [["a", "dial"]],
  );
  const fromA = await eventually(
    async () => (await remote(a.server)).remoteClusters,
    (r) => r[0]?.state === "connected",
    "a never saw b",
  );
  assert.equal(fromA[0]!.direction, "accept");
  const table = await isthmus(b.server, TOKEN, "remote-clusters");
  assert.match(table.stdout, /^CLUSTER\s+NETWORK\s+DIRECTION/m);
  assert.match(table.stdout, /^a\s+net-a\s+dial\s+127\.0\.0\.1:\d+\s+connected/m);
});

test("an intermediate of another root is refused: the reason in remote-clusters and in the log", async () => {
  const { b } = await pair("other");
  const rows = await eventually(
    async () => (await remote(b.server)).remoteClusters,
    (r) => r[0]?.state === "refused",
    "b was never refused",
  );
  console.log(`# mismatched roots: b's link to a is ${rows[0]!.state}: ${rows[0]!.lastError}`);
  assert.match(rows[0]!.lastError ?? "", /certificate|authority|issuer/i);
  assert.match(b.stderr(), /peering: .*a.*(certificate|authority|issuer)/i);
  const table = await isthmus(b.server, TOKEN, "remote-clusters");
  assert.match(table.stdout, /^a\s+.*refused/m);
  assert.match(table.stdout, /^a: .*(certificate|authority|issuer)/im);
});

test("peering flags are checked before anything starts", async () => {
  const cases: Array<[string[], RegExp]> = [
    [["--network", "x"], /--network needs --cluster/],
    [["--cluster", "Bad_Name"], /--cluster must be a DNS label/],
    [["--cluster", "a", "--private", "--peer-listen", "127.0.0.1:0"], /exclude each other/],
    [["--cluster", "a", "--peer-grace", "10ms"], /--peer-grace must be a duration of at least 1s/],
  ];
  for (const [flags, message] of cases) {
    const r = await runIsthmus(["control-plane", "--config", "/dev/null", ...flags], TOKEN);
    assert.equal(r.status, 2, `${flags.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});
