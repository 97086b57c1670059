// `isthmus control-plane` and `isthmus proxy --control-plane` as real processes: a ServiceEntry's endpoint
// (a real backend) is reachable through the sidecar's outbound listener; a VirtualService added on disk and
// picked up with SIGHUP changes live traffic (a fault abort), pushed over the stream without a restart.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, httpBackend, onClose, RawClient, spawnProxy } from "../proxy/test-support.ts";

after(closeAll);

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;

async function viaSidecar(path: string): Promise<{ status: number; body: string }> {
  const c = await RawClient.connect(15001);
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
  writeFileSync(
    join(dir, "se.yaml"),
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo.example.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${backend.port} } }]
`,
  );
  const cp = spawn(process.execPath, [BIN, "control-plane", "--config", dir, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
  });
  let cpErr = "";
  cp.stderr!.setEncoding("utf8");
  cp.stderr!.on("data", (d: string) => {
    cpErr += d;
  });
  onClose(() => {
    cp.kill("SIGKILL");
  });
  const deadline = Date.now() + 15_000;
  while (!/on 127\.0\.0\.1:(\d+)/.test(cpErr)) {
    if (Date.now() > deadline) throw new Error(`control plane did not start: ${cpErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const cpPort = /on 127\.0\.0\.1:(\d+)/.exec(cpErr)![1];
  const proxy = await spawnProxy(
    [
      "--control-plane",
      `127.0.0.1:${cpPort}`,
      "--node-id",
      "client-1",
      "--namespace",
      "default",
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
  const first = await viaSidecar("/hello");
  assert.equal(first.status, 200);
  assert.equal(first.body, "from the backend");

  writeFileSync(
    join(dir, "vs.yaml"),
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo.example.internal]
  http:
    - fault: { abort: { httpStatus: 418, percentage: { value: 100 } } }
      route: [{ destination: { host: echo.example.internal } }]
`,
  );
  cp.kill("SIGHUP");
  const until = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < until) {
    status = (await viaSidecar("/hello")).status;
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
