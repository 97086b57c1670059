// TCP proxy chains over real sockets: bytes both ways, a large transfer with backpressure, and failures.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { after, test } from "node:test";
import type { ProxyConfig } from "../config/types.ts";
import { closeAll, closedPort, cluster, netBackend, startProxy } from "../test-support.ts";

after(closeAll);

function tcpConfig(port: number): ProxyConfig {
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "up", statPrefix: "tcp_up" } }],
      },
    ],
    clusters: [cluster("up", [port])],
  };
}

test("bytes flow both ways; a 10 MB transfer arrives intact", async () => {
  const echo = await netBackend((s) => s.pipe(s));
  const { port, proxy } = await startProxy(tcpConfig(echo.port));
  const payload = randomBytes(10 * 1024 * 1024);
  const c = net.connect(port, "127.0.0.1");
  const received: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve) => {
    c.on("data", (d: Buffer) => {
      received.push(d);
      n += d.length;
      if (n >= payload.length) resolve();
    });
  });
  c.write(payload);
  await done;
  c.destroy();
  const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  assert.equal(digest(Buffer.concat(received)), digest(payload));
  const stat = proxy.stats.snapshot().find(([k]) => k === "tcp.tcp_up.downstream_cx_total");
  assert.ok(stat && stat[1] >= 1);
});

test("an upstream that refuses closes the downstream connection", async () => {
  const { port } = await startProxy(tcpConfig(await closedPort()));
  const c = net.connect(port, "127.0.0.1");
  c.on("error", () => {});
  const closed = await new Promise<boolean>((resolve) => {
    c.on("close", () => resolve(true));
    setTimeout(() => resolve(false), 5000);
  });
  assert.ok(closed);
});

test("the upstream closing closes the downstream", async () => {
  const backend = await netBackend((s) => s.end("bye"));
  const { port } = await startProxy(tcpConfig(backend.port));
  const c = net.connect(port, "127.0.0.1");
  let got = "";
  c.on("data", (d) => {
    got += d;
  });
  await new Promise((r) => c.on("close", r));
  assert.equal(got, "bye");
});

test("telemetry: a TCP connection is reported when it opens and when it closes, with its bytes", async () => {
  const echo = await netBackend((s) => s.pipe(s));
  const { port, proxy } = await startProxy(tcpConfig(echo.port));
  const opened: string[] = [];
  const closed: Array<{ bytesReceived: number; bytesSent: number; upstreamCluster: string; flags: string }> =
    [];
  proxy.telemetry.sink = {
    onHttpRequest: () => {},
    onTcpOpen: (r) => opened.push(r.upstreamCluster),
    onTcpClose: (r) =>
      closed.push({
        bytesReceived: r.bytesReceived,
        bytesSent: r.bytesSent,
        upstreamCluster: r.upstreamCluster,
        flags: r.responseFlags,
      }),
  };
  const c = net.connect(port, "127.0.0.1");
  c.write("hello tcp");
  await new Promise<void>((resolve) => c.once("data", () => resolve()));
  c.end();
  const deadline = Date.now() + 3000;
  while (closed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(opened, ["up"]);
  assert.deepEqual(closed, [{ bytesReceived: 9, bytesSent: 9, upstreamCluster: "up", flags: "-" }]);
});
