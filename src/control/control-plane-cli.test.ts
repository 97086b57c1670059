// `isthmus control-plane` and `isthmus proxy --control-plane` as real processes: a ServiceEntry's endpoint
// (a real backend) is reachable through the sidecar's outbound listener; a VirtualService added on disk and
// picked up with SIGHUP changes live traffic (a fault abort), pushed over the stream without a restart.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, httpBackend, onClose, RawClient, spawnProxy } from "../proxy/test-support.ts";
import { echoServiceEntry, faultVirtualService } from "./e2e-support.ts";

after(closeAll);

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;

/** Runs `isthmus control-plane ARGS`; resolves once stderr matches every pattern; killed in closeAll(). */
async function startControlPlane(args: string[], env: NodeJS.ProcessEnv, ready: RegExp[]) {
  const cp = spawn(process.execPath, [BIN, "control-plane", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env,
  });
  const out = { child: cp, stderr: "" };
  cp.stderr!.setEncoding("utf8");
  cp.stderr!.on("data", (d: string) => {
    out.stderr += d;
  });
  onClose(() => {
    cp.kill("SIGKILL");
  });
  const deadline = Date.now() + 15_000;
  while (!ready.every((re) => re.test(out.stderr))) {
    if (Date.now() > deadline) throw new Error(`control plane did not start: ${out.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return out;
}

/** A request through the sidecar's outbound listener on its workload address (each test has its own). */
async function viaSidecar(path: string, ip: string): Promise<{ status: number; body: string }> {
  const c = await RawClient.connect(15001, ip);
  try {
    c.write(`GET http://echo.example.internal${path} HTTP/1.1\r\nhost: echo.example.internal\r\n\r\n`);
    const r = await c.read("GET");
    return { status: r.status, body: r.body.toString() };
  } finally {
    c.destroy();
  }
}

test("control plane -> proxy over the push stream; SIGHUP with a new VirtualService changes traffic", async () => {
  const backend = await httpBackend((_req, res) => res.end("from the backend"));
  const dir = mkdtempSync(join(tmpdir(), "isthmus-cp-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "se.yaml"), echoServiceEntry(backend.port));
  const started = await startControlPlane(
    ["--config", dir, "--listen", "127.0.0.1:0", "--monitoring-listen", "off"],
    { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
    [/on 127\.0\.0\.1:(\d+)/],
  );
  const cp = started.child;
  const cpErr = started.stderr;
  const cpPort = /on 127\.0\.0\.1:(\d+)/.exec(cpErr)![1];
  const proxy = await spawnProxy(
    [
      "--control-plane",
      `127.0.0.1:${cpPort}`,
      "--node-id",
      "client-1",
      "--namespace",
      "default",
      "--ip",
      "127.0.0.2",
      "--admin-port",
      "0",
    ],
    [],
  );
  await proxy.waitForStderr(/control plane applied/, 15_000);
  const adminPort = Number(/admin on [^\s]+:(\d+)/.exec(proxy.stderr())![1]);
  const ready = await RawClient.connect(adminPort);
  ready.write("GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n");
  assert.equal((await ready.read("GET")).status, 200, "ready once the first config is applied");
  ready.destroy();
  const first = await viaSidecar("/hello", "127.0.0.2").catch((e) => {
    throw new Error(`${(e as Error).message}\nproxy: ${proxy.stderr()}\ncp: ${cpErr}`);
  });
  assert.equal(first.status, 200);
  assert.equal(first.body, "from the backend");

  writeFileSync(join(dir, "vs.yaml"), faultVirtualService(418));
  cp.kill("SIGHUP");
  const until = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < until) {
    status = (await viaSidecar("/hello", "127.0.0.2")).status;
    if (status === 418) break;
    assert.equal(status, 200, "the old config serves until the new one arrives");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 418);
});

test("a proxy whose control plane is unreachable is not ready, and keeps trying", async () => {
  const proxy = await spawnProxy(
    ["--control-plane", "127.0.0.1:1", "--node-id", "lonely", "--admin-port", "0"],
    [],
  );
  await proxy.waitForStderr(/admin on [^\s]+:(\d+)/);
  await proxy.waitForStderr(/control plane disconnected/, 10_000);
  const adminPort = Number(/admin on [^\s]+:(\d+)/.exec(proxy.stderr())![1]);
  const c = await RawClient.connect(adminPort);
  c.write("GET /ready HTTP/1.1\r\nhost: admin\r\n\r\n");
  const r = await c.read("GET");
  c.destroy();
  assert.equal(r.status, 503);
  assert.equal(r.body.toString(), "PRE_INITIALIZING\n");
});

test("config API: apply, an invalid apply changes nothing, get, delete, and a wrong token is refused", async () => {
  const backend = await httpBackend((_req, res) => res.end("api-backend"));
  const dir = mkdtempSync(join(tmpdir(), "isthmus-api-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const token = "a-test-token-of-enough-length";
  const env = { ...process.env, ISTHMUS_FROM_SOURCE: "1", ISTHMUS_TOKEN: token };
  const { stderr: cpErr } = await startControlPlane(
    ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--monitoring-listen", "127.0.0.1:0"],
    env,
    [/config API on [^\s]+:(\d+)/, /services on 127\.0\.0\.1:(\d+)/, /metrics on (http:\S+)/],
  );
  const metricsUrl = /metrics on (http:\S+)/.exec(cpErr)![1]!;
  const apiPort = /config API on [^\s]+:(\d+)/.exec(cpErr)![1];
  const cpPort = /services on 127\.0\.0\.1:(\d+)/.exec(cpErr)![1];
  const server = `http://127.0.0.1:${apiPort}`;
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, ...args, "--server", server], {
      encoding: "utf8",
      env,
      timeout: 20_000,
    });

  const se = join(dir, "se.yaml");
  writeFileSync(se, echoServiceEntry(backend.port));
  const applied = run("apply", "-f", se);
  assert.equal(applied.status, 0, applied.stderr);
  assert.match(applied.stdout, /ServiceEntry\/default\/echo applied/);

  await spawnProxy(
    [
      "--control-plane",
      `127.0.0.1:${cpPort}`,
      "--node-id",
      "api-client",
      "--ip",
      "127.0.0.3",
      "--admin-port",
      "0",
    ],
    [],
  );
  const deadline2 = Date.now() + 10_000;
  let body = "";
  while (Date.now() < deadline2) {
    try {
      body = (await viaSidecar("/", "127.0.0.3")).body;
      if (body === "api-backend") break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(body, "api-backend");

  // The debugging views: proxy-status, proxy-config, and istiod's metrics.
  const statusTable = run("proxy-status");
  assert.equal(statusTable.status, 0, statusTable.stderr);
  assert.match(statusTable.stdout, /^NAME\s+CLUSTER\s+NAMESPACE\s+CONFIG\s+VERSION\s+ERROR$/m);
  assert.match(statusTable.stdout, /^api-client\s+-\s+default\s+SYNCED\s+[0-9a-f]{16}\s*$/m);
  const statusJson = run("proxy-status", "api-client", "-o", "json");
  assert.equal(JSON.parse(statusJson.stdout)[0].state, "SYNCED");
  assert.equal(run("proxy-status", "nobody").status, 1);
  const clusters = run("proxy-config", "clusters", "api-client");
  assert.equal(clusters.status, 0, clusters.stderr);
  assert.match(clusters.stdout, /^echo\.example\.internal\s+80\s+-\s+OUTBOUND\s+ROUND_ROBIN\s+1$/m);
  const endpoints = run("proxy-config", "endpoints", "api-client", "-o", "json");
  assert.deepEqual(
    JSON.parse(endpoints.stdout).map((e: { address: string; port: number }) => `${e.address}:${e.port}`),
    [`127.0.0.1:${backend.port}`],
  );
  const listeners = run("proxy-config", "listeners", "api-client");
  assert.match(listeners.stdout, /127\.0\.0\.3\s+15001\s+ALL -> Route: /);
  const routes = run("proxy-config", "routes", "api-client", "-o", "yaml");
  assert.match(routes.stdout, /echo\.example\.internal/);
  assert.equal(run("proxy-config", "listeners", "nobody").status, 1);
  const metricsText = await (await fetch(metricsUrl)).text();
  assert.match(metricsText, /^pilot_xds 1$/m);
  assert.match(metricsText, /^pilot_xds_pushes\{type="proxy-config"\} [1-9]/m);
  assert.match(metricsText, /^pilot_xds_push_time_count\{type="proxy-config"\} [1-9]/m);

  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, faultVirtualService(999));
  const refused = run("apply", "-f", bad);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:7:\\d+ error: `));
  assert.equal((await viaSidecar("/", "127.0.0.3")).body, "api-backend", "nothing changed");

  const got = run("get", "ServiceEntry");
  assert.equal(got.status, 0, got.stderr);
  assert.equal(JSON.parse(got.stdout)[0].metadata.name, "echo");

  const deleted = run("delete", "ServiceEntry", "echo");
  assert.equal(deleted.status, 0, deleted.stderr);
  const deadline3 = Date.now() + 10_000;
  let status = 200;
  while (Date.now() < deadline3) {
    status = (await viaSidecar("/", "127.0.0.3")).status;
    if (status !== 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // Gone from the registry, the host is unknown: under ALLOW_ANY (Istio's default) the request is passed
  // through to the name itself, which does not resolve here.
  assert.equal(status, 503, "the host is gone from the sidecar's routes");

  const wrong = spawnSync(process.execPath, [BIN, "get", "ServiceEntry", "--server", server], {
    encoding: "utf8",
    env: { ...env, ISTHMUS_TOKEN: "wrong-token-wrong-token" },
    timeout: 20_000,
  });
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /missing or wrong token/);
});
