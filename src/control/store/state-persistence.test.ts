// --state-dir with real processes: a VirtualService applied through the config API survives a SIGKILL of the
// control plane. A sidecar keeps routing by it with no failed request while the control plane is down and after
// it is back, and is SYNCED on the same version (nothing resent); a delete survives the same way; a state file
// that does not load stops the start with its file and line, unless --discard-invalid-state moves it aside.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, httpBackend, onClose, spawnProxy } from "../../proxy/test-support.ts";
import {
  type ControlPlaneProcess,
  isthmus,
  runIsthmus,
  SidecarClient,
  startControlPlane,
  waitSynced,
} from "../e2e-support.ts";
import { STATE_FILE, STATE_TEMP } from "./state-file.ts";

after(closeAll);

const TOKEN = "state-persistence-test-token";
const WEB = "web:9080";
const PROXY_IP = "127.0.78.1";
const PROXY_ID = "client-state-test";

const base = (ports: { v1: number; v2: number }) => `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 9080 }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: default }
spec:
  host: web
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
${Object.entries(ports)
  .map(
    ([v, port]) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: web-${v}, namespace: default }
spec:
  address: 127.0.0.1
  labels: { app: web, version: ${v} }
  ports: { http: ${port} }
`,
  )
  .join("")}`;

const allToV2 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: default }
spec:
  hosts: [web]
  http: [{ route: [{ destination: { host: web, subset: v2 } }] }]
`;

test("an applied VirtualService survives a SIGKILL: routing holds with no failed request, same version", async (t) => {
  const v1 = await httpBackend((_req, res) => res.end("web-v1"));
  const v2 = await httpBackend((_req, res) => res.end("web-v2"));
  const dir = mkdtempSync(join(tmpdir(), "isthmus-state-e2e-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, "base.yaml");
  writeFileSync(config, base({ v1: v1.port, v2: v2.port }));
  writeFileSync(join(dir, "vs.yaml"), allToV2);
  const stateDir = join(dir, "state"); // missing: the control plane creates it
  const stateArgs = ["--state-dir", stateDir];

  let cp: ControlPlaneProcess = await startControlPlane([config], TOKEN, "127.0.0.1:0", stateArgs);
  const diag = () => `\ncontrol plane:\n${cp.stderr()}`;
  const proxy = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${cp.pushPort}`, "--node-id", PROXY_ID, "--namespace", "default"],
      ...["--label", "app=client", "--ip", PROXY_IP, "--admin-port", "0"],
    ],
    [],
  );
  await proxy.waitForStderr(/control plane applied/, 15_000);
  const client = new SidecarClient(PROXY_IP);
  onClose(() => client.close());
  let synced = await waitSynced(cp.server, TOKEN, [PROXY_ID]);

  const applied = await isthmus(cp.server, TOKEN, "apply", "-f", join(dir, "vs.yaml"));
  assert.equal(applied.status, 0, `${applied.stderr}${diag()}`);
  synced = await waitSynced(cp.server, TOKEN, [PROXY_ID], synced);
  assert.equal(statSync(stateDir).mode & 0o777, 0o700, "the state directory is created 0700");
  assert.equal(statSync(join(stateDir, STATE_FILE)).mode & 0o777, 0o600);
  assert.equal((await client.get(WEB)).body.toString(), "web-v2");

  /** SIGKILL, `n` requests with no control plane, then a restart on the same push port with the same state. */
  let served = 0;
  const failures: string[] = [];
  let running = true;
  const traffic = (async () => {
    while (running) {
      try {
        const r = await client.get(WEB, "/", {}, 2000);
        assert.equal(`${r.status} ${r.body}`, "200 web-v2");
        served++;
      } catch (e) {
        if (failures.length < 10) failures.push((e as Error).message);
        client.close();
      }
    }
  })();
  const requests = async (n: number) => {
    const target = served + n;
    while (served < target && failures.length === 0) await new Promise((r) => setTimeout(r, 10));
  };
  const restart = async () => {
    const pushPort = cp.pushPort;
    await cp.kill();
    const atKill = served;
    await requests(100);
    assert.ok(served - atKill >= 100, "served while the control plane was down");
    cp = await startControlPlane([config], TOKEN, `127.0.0.1:${pushPort}`, stateArgs);
  };
  try {
    await requests(30);
    // A crash in the middle of a later write would leave a truncated temporary file: it must not be read.
    writeFileSync(
      join(stateDir, STATE_TEMP),
      `${allToV2.replace("name: web", "name: ghost")}---\napiVersion: networking.istio.io/v1\nkind: Virtu`,
    );
    await restart();
    const resynced = await waitSynced(cp.server, TOKEN, [PROXY_ID], undefined, 20_000);
    assert.deepEqual(resynced, synced, "the restored state renders the same version: nothing is resent");
    await requests(50);

    // And again: a restarted control plane that changed nothing leaves the state as it was.
    await restart();
    assert.deepEqual(await waitSynced(cp.server, TOKEN, [PROXY_ID], undefined, 20_000), synced);
    await requests(30);
    running = false;
    await traffic;
    t.diagnostic(`requests across two restarts: ${served}`);
    assert.deepEqual(failures, [], `failed requests${diag()}`);
  } finally {
    running = false;
    await traffic;
  }
  const got = await isthmus(cp.server, TOKEN, "get", "virtualservice");
  assert.equal(got.status, 0, got.stderr);
  assert.deepEqual(
    (JSON.parse(got.stdout) as Array<{ metadata: { name: string } }>).map((o) => o.metadata.name),
    ["web"],
    "restored, and the temporary file's resources are not",
  );
  assert.match(cp.stderr(), /restored 1 applied resources from .*applied\.yaml/);

  // A delete is durable too: after another SIGKILL the VirtualService stays gone and traffic balances again.
  const deleted = await isthmus(cp.server, TOKEN, "delete", "virtualservice", "web");
  assert.equal(deleted.status, 0, deleted.stderr);
  synced = await waitSynced(cp.server, TOKEN, [PROXY_ID], synced);
  const pushPort = cp.pushPort;
  await cp.kill();
  cp = await startControlPlane([config], TOKEN, `127.0.0.1:${pushPort}`, stateArgs);
  assert.deepEqual(await waitSynced(cp.server, TOKEN, [PROXY_ID], undefined, 20_000), synced);
  const after = await isthmus(cp.server, TOKEN, "get", "virtualservice");
  assert.deepEqual(JSON.parse(after.stdout), []);
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) seen.add(`${(await client.get(WEB)).body}`);
  assert.deepEqual([...seen].sort(), ["web-v1", "web-v2"]);
  assert.doesNotMatch(proxy.stderr(), /control plane rejected/);
});

test("a state file that does not load stops the start with FILE:LINE:COL; --discard-invalid-state moves it aside", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-state-bad-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, STATE_FILE);
  // The second document has an invalid port: nothing of the file may be served.
  writeFileSync(
    file,
    `${allToV2}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: { name: se, namespace: default }\n` +
      "spec:\n  hosts: [se.example.internal]\n  ports: [{ number: 70000, name: http, protocol: HTTP }]\n",
  );
  const args = ["control-plane", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"];
  args.push("--monitoring-listen", "off", "--state-dir", dir);
  const refused = await runIsthmus(args, TOKEN);
  assert.equal(refused.status, 1, refused.stderr);
  assert.ok(
    refused.stderr.includes(`${file}:13:21 ServiceEntry default/se spec.ports[0].number:`),
    refused.stderr,
  );
  assert.match(refused.stderr, /not starting.*--discard-invalid-state/);
  assert.doesNotMatch(refused.stderr, /services on|config API on/, "nothing was served");

  // An unparseable one, too.
  writeFileSync(file, `${allToV2}---\nkind: [unclosed\n`);
  const unparseable = await runIsthmus(args, TOKEN);
  assert.equal(unparseable.status, 1);
  assert.ok(
    new RegExp(`${file.replace(/[.]/g, "\\.")}:\\d+:\\d+ invalid YAML`).test(unparseable.stderr),
    unparseable.stderr,
  );

  const cp = await startControlPlane([], TOKEN, "127.0.0.1:0", [
    "--state-dir",
    dir,
    "--discard-invalid-state",
  ]);
  assert.match(cp.stderr(), /moved it to .*applied\.yaml\.invalid-/);
  const got = await isthmus(cp.server, TOKEN, "get", "virtualservice");
  assert.deepEqual(JSON.parse(got.stdout), []);
  assert.equal(
    readdirSync(dir).filter((f) => f.startsWith(`${STATE_FILE}.invalid-`)).length,
    1,
    "kept aside",
  );
  const vs = join(dir, "vs.yaml");
  writeFileSync(vs, allToV2);
  assert.equal((await isthmus(cp.server, TOKEN, "apply", "-f", vs)).status, 0);
  assert.equal(statSync(file).mode & 0o777, 0o600, "a fresh state file");
  await cp.kill();
});

test("--discard-invalid-state without --state-dir is a usage error", async () => {
  const r = await runIsthmus(
    ["control-plane", "--api-listen", "127.0.0.1:0", "--monitoring-listen", "off", "--discard-invalid-state"],
    TOKEN,
  );
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--discard-invalid-state needs --state-dir/);
});
