// What the HTTP exchanges report to telemetry when a request ends: one record per request with the status,
// flags, bytes, upstream, retries and timing, through real sockets (HTTP/1 and HTTP/2 clients).
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, test } from "node:test";
import type { HttpRequestRecord } from "../telemetry/request-record.ts";
import {
  catchAll,
  closeAll,
  closedPort,
  cluster,
  config,
  echo,
  get,
  httpBackend,
  onClose,
  send,
  startProxy,
  waitFor,
} from "../test-support.ts";

after(closeAll);

async function recordingProxy(c: Parameters<typeof config>[0]) {
  const p = await startProxy(config(c));
  const records: HttpRequestRecord[] = [];
  p.proxy.telemetry.sink = { onHttpRequest: (r) => records.push({ ...r }) };
  return { p, records };
}

test("HTTP/1: a proxied request's record: status, bytes, upstream, route, request id, timing", async () => {
  const b = await httpBackend(echo);
  const { p, records } = await recordingProxy({
    routes: catchAll("up"),
    clusters: [cluster("up", [b.port])],
  });
  const r = await send(
    p.port,
    "POST /items?x=1 HTTP/1.1\r\nhost: reviews:9080\r\nx-request-id: abc-123\r\nuser-agent: t/1\r\ncontent-length: 5\r\n\r\nhello",
    "POST",
  );
  assert.equal(r.status, 200);
  await waitFor(() => records.length === 1);
  const rec = records[0]!;
  assert.equal(rec.method, "POST");
  assert.equal(rec.path, "/items?x=1");
  assert.equal(rec.authority, "reviews:9080");
  assert.equal(rec.destinationService, "all", "the virtual host's name, never the client's Host header");
  assert.equal(rec.protocol, "HTTP/1.1");
  assert.equal(rec.responseCode, 200);
  assert.equal(rec.responseFlags, "-");
  assert.equal(rec.bytesReceived, 5);
  assert.equal(rec.bytesSent, r.body.length);
  assert.equal(rec.upstreamHost, `127.0.0.1:${b.port}`);
  assert.equal(rec.upstreamCluster, "up");
  assert.equal(rec.requestId, "abc-123");
  assert.equal(rec.userAgent, "t/1");
  assert.equal(rec.reporter, "destination");
  assert.ok(rec.durationMs >= 0 && rec.durationMs < 5000);
  assert.ok(Math.abs(rec.startTimeMs - Date.now()) < 5000);
});

test("HTTP/1: local replies and failures carry their flags (NR; UF,URX with retries counted)", async () => {
  const refused = await closedPort();
  const { p, records } = await recordingProxy({
    routes: {
      name: "r",
      virtualHosts: [
        { name: "v", domains: ["known"], routes: [{ match: { prefix: "/" }, route: { cluster: "down" } }] },
      ],
    },
    clusters: [cluster("down", [refused])],
  });
  assert.equal((await get(p.port, "/", "unknown")).status, 404);
  assert.equal((await get(p.port, "/", "known")).status, 503);
  await waitFor(() => records.length === 2);
  assert.equal(records[0]!.responseFlags, "NR");
  assert.equal(records[0]!.responseCode, 404);
  assert.equal(records[1]!.responseFlags, "UF,URX", "in Envoy's order");
  assert.equal(records[1]!.retries, 2);
});

test("HTTP/2: a gRPC-style request's record", async () => {
  const b = await httpBackend(echo);
  const { p, records } = await recordingProxy({
    routes: catchAll("up"),
    clusters: [cluster("up", [b.port])],
  });
  // The test config's codec is http1; use a second proxy config with auto codec for h2c.
  await p.close();
  const q = await startProxy({
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "http", routeConfig: catchAll("up"), reporter: "source" } }],
      },
    ],
    clusters: [cluster("up", [b.port])],
  });
  q.proxy.telemetry.sink = { onHttpRequest: (r) => records.push({ ...r }) };
  const c = http2.connect(`http://127.0.0.1:${q.port}`);
  onClose(() => c.destroy());
  await new Promise<void>((resolve, reject) => {
    const req = c.request({ ":path": "/h2", ":authority": "details:9080", "x-request-id": "r2" });
    req.resume();
    req.on("end", resolve);
    req.on("error", reject);
  });
  await waitFor(() => records.length === 1);
  const rec = records[0]!;
  assert.equal(rec.protocol, "HTTP/2");
  assert.equal(rec.responseCode, 200);
  assert.equal(rec.path, "/h2");
  assert.equal(rec.requestId, "r2");
  assert.equal(rec.reporter, "source");
  assert.equal(rec.upstreamCluster, "up");
  assert.equal(rec.destinationService, "all");
});
