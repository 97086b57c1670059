// The control plane's config sources as real processes: `isthmus control-plane` watching a directory, a proxy
// connected to it, and `isthmus apply` against its config API. A half-written or invalid save never reaches
// the proxy; a file's resources cannot be changed through the API; a deleted file's service goes; a batch of
// 10,000 resources is applied in bounded time and memory, and batches over the limits are refused clearly.
import assert from "node:assert/strict";
import { type SpawnSyncReturns, spawn, spawnSync } from "node:child_process";
import { readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, httpBackend, onClose, RawClient, spawnProxy } from "../../proxy/test-support.ts";
import { echoServiceEntry, faultVirtualService } from "../e2e-support.ts";

after(closeAll);

const BIN = new URL("../../../bin/isthmus.js", import.meta.url).pathname;
const TOKEN = "config-sources-test-token";
const ENV = { ...process.env, ISTHMUS_FROM_SOURCE: "1", ISTHMUS_TOKEN: TOKEN };

const serviceEntry = (i: number, port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i}, namespace: default }
spec:
  hosts: [svc-${i}.example.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.${(i >> 8) & 255}.${i & 255} }]
`;

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "isthmus-sources-"));
  onClose(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** `isthmus control-plane ARGS` with the test token; its stderr is kept; killed in closeAll(). */
async function startControlPlane(args: string[]) {
  const child = spawn(
    process.execPath,
    [BIN, "control-plane", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", ...args],
    { stdio: ["ignore", "ignore", "pipe"], env: ENV },
  );
  const cp = { child, stderr: "", apiPort: 0, port: 0 };
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    cp.stderr += d;
  });
  const exited = new Promise((r) => child.once("exit", r));
  onClose(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  });
  await waitForText(cp, /services on 127\.0\.0\.1:(\d+)/, 20_000);
  cp.apiPort = Number(/config API on [^\s]+:(\d+)/.exec(cp.stderr)![1]);
  cp.port = Number(/services on 127\.0\.0\.1:(\d+)/.exec(cp.stderr)![1]);
  return cp;
}

async function waitForText(cp: { stderr: string }, re: RegExp, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(cp.stderr)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in:\n${cp.stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `isthmus ARGS --server` the control plane's API, as a process. */
function isthmus(apiPort: number, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args, "--server", `http://127.0.0.1:${apiPort}`], {
    encoding: "utf8",
    env: ENV,
    timeout: 120_000,
    maxBuffer: 256 * 1024 * 1024,
  });
}

async function viaSidecar(ip: string): Promise<{ status: number; body: string }> {
  const c = await RawClient.connect(15001, ip);
  try {
    c.write("GET http://echo.example.internal/ HTTP/1.1\r\nhost: echo.example.internal\r\n\r\n");
    const r = await c.read("GET");
    return { status: r.status, body: r.body.toString() };
  } finally {
    c.destroy();
  }
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

test("watched files: half-written and invalid saves never reach the proxy; files win over apply; a deleted file's service goes", async () => {
  const backend = await httpBackend((_req, res) => res.end("from the backend"));
  const dir = await tempDir();
  const se = join(dir, "se.yaml");
  writeFileSync(se, echoServiceEntry(backend.port));
  const cp = await startControlPlane(["--config", dir, "--monitoring-listen", "off"]);
  const ip = "127.0.0.57";
  const proxy = await spawnProxy(
    ["--control-plane", `127.0.0.1:${cp.port}`, "--node-id", "files-client", "--ip", ip, "--admin-port", "0"],
    [],
  );
  await proxy.waitForStderr(/control plane applied/, 15_000);
  assert.deepEqual(await viaSidecar(ip), { status: 200, body: "from the backend" });

  // A save cut off inside the endpoints' flow map: a YAML error on the last line.
  const full = readFileSync(se, "utf8");
  writeFileSync(se, full.slice(0, full.indexOf("ports: { http")));
  await waitForText(cp, /se\.yaml: not applied; its last good version \(1 resource\) is still served/);
  assert.match(cp.stderr, new RegExp(`${escapeRegExp(se)}:9:\\d+ `), "file and line named");
  assert.deepEqual(await viaSidecar(ip), { status: 200, body: "from the backend" });
  const got = isthmus(cp.apiPort, "get", "ServiceEntry", "echo");
  assert.equal(JSON.parse(got.stdout)[0].spec.endpoints[0].ports.http, backend.port);

  // An invalid resource in a new file: refused with the validator's message, no fault reaches the proxy.
  writeFileSync(join(dir, "vs.yaml"), faultVirtualService(999));
  await waitForText(cp, /vs\.yaml: not applied; none of its resources are served/);
  assert.match(
    cp.stderr,
    /vs\.yaml:7:\d+ VirtualService default\/echo spec\.http\[0\]\.fault\.abort\.httpStatus: /,
  );
  assert.equal((await viaSidecar(ip)).status, 200);

  // The file owns ServiceEntry echo: the API refuses to change or delete it, naming the file.
  const other = join(await tempDir(), "other.yaml");
  writeFileSync(other, echoServiceEntry(1));
  const applied = isthmus(cp.apiPort, "apply", "-f", other);
  assert.equal(applied.status, 1);
  assert.match(applied.stderr, new RegExp(`ServiceEntry default/echo is defined in ${escapeRegExp(se)}`));
  const deleted = isthmus(cp.apiPort, "delete", "ServiceEntry", "echo");
  assert.equal(deleted.status, 1);
  assert.match(deleted.stderr, /remove it there/);

  // Fixed: the file's content is served again; then the VirtualService is fixed and takes effect.
  writeFileSync(se, full);
  await waitForText(cp, /se\.yaml: applied, 1 resource/);
  writeFileSync(join(dir, "vs.yaml"), faultVirtualService(418));
  await waitForStatus(ip, 418);

  // Deleting the files removes the service from what the proxy has acknowledged. (Checked through the debug
  // views rather than traffic: what a sidecar does with a host it does not know is the outbound traffic
  // policy's business, not this test's.)
  unlinkSync(join(dir, "vs.yaml"));
  unlinkSync(se);
  await waitForText(cp, /se\.yaml: removed; no longer serving its 1 resource/);
  const deadline = Date.now() + 10_000;
  let clusters = "";
  let status = "";
  while (Date.now() < deadline) {
    clusters = isthmus(cp.apiPort, "proxy-config", "clusters", "files-client", "-o", "json").stdout;
    status = isthmus(cp.apiPort, "proxy-status", "files-client", "-o", "json").stdout;
    if (!clusters.includes("echo.example.internal") && JSON.parse(status)[0]?.state === "SYNCED") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.doesNotMatch(clusters, /echo\.example\.internal/);
  assert.equal(JSON.parse(status)[0].state, "SYNCED", "the proxy acknowledged the config without echo");
});

async function waitForStatus(ip: string, want: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < deadline) {
    status = (await viaSidecar(ip)).status;
    if (status === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, want);
}

test("isthmus apply of 10,000 resources: accepted in bounded time and memory; over the limits refused; an invalid batch changes nothing", async () => {
  const dir = await tempDir();
  const cp = await startControlPlane(["--monitoring-listen", "off"]);
  const batch = (port: number, bad?: number) =>
    Array.from({ length: 10_000 }, (_, i) => serviceEntry(i, i === bad ? 70_000 : port)).join("---\n");
  const big = join(dir, "big.yaml");
  writeFileSync(big, batch(80));
  const started = performance.now();
  const applied = isthmus(cp.apiPort, "apply", "-f", big);
  const took = performance.now() - started;
  assert.equal(applied.status, 0, applied.stderr);
  assert.equal(applied.stdout.split("\n").filter((l) => l.endsWith(" applied")).length, 10_000);
  assert.ok(took < 60_000, `10,000 resources applied in ${Math.round(took)} ms`);
  const peak = peakRssBytes(cp.child.pid!);
  if (peak !== undefined)
    assert.ok(peak < 1024 * 1024 * 1024, `the control plane's peak RSS is ${Math.round(peak / 1048576)} MiB`);

  // One invalid resource among 10,000 changed ones: refused with its FILE:LINE, none of the others applied.
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, batch(81, 4321));
  const refused = isthmus(cp.apiPort, "apply", "-f", bad);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, new RegExp(`^${escapeRegExp(bad)}:${4321 * 10 + 8}:\\d+ error: `, "m"));
  const after = JSON.parse(isthmus(cp.apiPort, "get", "ServiceEntry").stdout) as Array<{
    spec: { ports: Array<{ number: number }> };
  }>;
  assert.equal(after.length, 10_000);
  assert.ok(
    after.every((r) => r.spec.ports[0]!.number === 80),
    "nothing of the invalid batch was applied",
  );

  // Over the limits: the error names the limit and says what to do.
  const many = join(dir, "many.yaml");
  writeFileSync(many, Array.from({ length: 20_001 }, (_, i) => serviceEntry(i, 80)).join("---\n"));
  const tooMany = isthmus(cp.apiPort, "apply", "-f", many);
  assert.equal(tooMany.status, 1);
  assert.match(tooMany.stderr, /20001 documents; one apply takes at most 20000 resources, split it/);
  const huge = join(dir, "huge.yaml");
  writeFileSync(huge, `${"# padding\n".repeat(1_700_000)}${serviceEntry(1, 80)}`);
  const tooBig = isthmus(cp.apiPort, "apply", "-f", huge);
  assert.equal(tooBig.status, 1);
  assert.match(tooBig.stderr, /larger than 16777216 bytes \(16 MiB\), the limit of one apply; split it/);
  assert.equal(JSON.parse(isthmus(cp.apiPort, "get", "ServiceEntry").stdout).length, 10_000);
  assert.ok(cp.child.exitCode === null, "the control plane is still running");
});

/** The peak resident set of a process (Linux), or undefined where /proc does not tell. */
function peakRssBytes(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
