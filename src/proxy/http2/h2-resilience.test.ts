// Resilience and request filters for HTTP/2 clients (gRPC), over real sockets: retries of a gRPC
// "unavailable" on another endpoint (the mesh default), with the request body replayed; the route timeout;
// fault aborts as trailers-only gRPC responses; rate limits; CORS preflights.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type net from "node:net";
import { after, test } from "node:test";
import type { ProxyConfig, RouteAction } from "../config/types.ts";
import { closeAll, onClose, startProxy } from "../test-support.ts";

after(closeAll);

/** An h2c backend: `reply(n, body)` decides each call's outcome (status, grpc-status, or hang). */
async function grpcBackend(reply: (n: number) => "ok" | "unavailable" | "hang") {
  const server = http2.createServer();
  const state = { port: 0, calls: 0, bodies: [] as string[] };
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream) => {
    const n = ++state.calls;
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      body += d;
    });
    stream.on("end", () => {
      state.bodies.push(body);
      const r = reply(n);
      if (r === "hang") return;
      if (r === "unavailable") {
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", "grpc-status": "14" },
          { endStream: true },
        );
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(`echo:${body}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(
    () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  );
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

function cfg(ports: number[], action: Partial<RouteAction> = {}): ProxyConfig {
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              codec: "http2",
              statPrefix: "h2r",
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    name: "all",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, route: { cluster: "up", ...action } }],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [
      { name: "up", protocol: "http2", endpoints: ports.map((port) => ({ address: "127.0.0.1", port })) },
    ],
  };
}

function call(port: number, headers: http2.OutgoingHttpHeaders = {}, body = "ping") {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on("error", () => {});
  onClose(() => c.destroy());
  return new Promise<{
    status: number;
    headers: http2.IncomingHttpHeaders;
    grpc: string | undefined;
    body: string;
  }>((resolve, reject) => {
    const req = c.request({
      ":method": "POST",
      ":path": "/pkg.Svc/Call",
      "content-type": "application/grpc",
      ...headers,
    });
    let h: http2.IncomingHttpHeaders = {};
    let grpc: string | undefined;
    let data = "";
    req.on("response", (x) => {
      h = x;
      grpc = x["grpc-status"] as string | undefined;
    });
    req.on("trailers", (t) => {
      grpc = t["grpc-status"] as string | undefined;
    });
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      data += d;
    });
    req.on("end", () => resolve({ status: Number(h[":status"]), headers: h, grpc, body: data }));
    req.on("error", reject);
    req.end(body);
  });
}

test("gRPC unavailable is retried on another endpoint by the mesh default, the body replayed", async () => {
  const down = await grpcBackend(() => "unavailable");
  const up = await grpcBackend(() => "ok");
  const p = await startProxy(cfg([down.port, up.port]));
  for (let i = 0; i < 4; i++) {
    const r = await call(p.port, {}, `msg${i}`);
    assert.equal(r.grpc, "0");
    assert.equal(r.body, `echo:msg${i}`);
  }
  assert.ok(down.calls >= 1, "the failing endpoint was tried");
  assert.deepEqual(
    down.bodies.filter((b) => !b.startsWith("msg")),
    [],
    "every attempt got the whole body",
  );
  assert.equal(p.proxy.stats.counter("cluster.up.upstream_rq_retry").value, down.calls);
});

test("gRPC: retries exhausted return the last trailers-only response, flagged URX", async () => {
  const down = await grpcBackend(() => "unavailable");
  const p = await startProxy(
    cfg([down.port], { retryPolicy: { numRetries: 2, backoff: { baseIntervalMs: 1 } } }),
  );
  const r = await call(p.port);
  assert.equal(r.grpc, "14");
  assert.equal(down.calls, 3);
  assert.equal(p.proxy.stats.counter("http.h2r.response_flag.URX").value, 1);
});

test("HTTP/2: the route timeout answers 504 UT; a per-try timeout moves to the next endpoint", async () => {
  const hang = await grpcBackend(() => "hang");
  const p = await startProxy(cfg([hang.port], { timeoutMs: 150, retryPolicy: { numRetries: 0 } }));
  const r = await call(p.port);
  assert.equal(r.status, 504);
  assert.equal(p.proxy.stats.counter("http.h2r.response_flag.UT").value, 1);

  const ok = await grpcBackend(() => "ok");
  const q = await startProxy(
    cfg([hang.port, ok.port], { retryPolicy: { numRetries: 1, perTryTimeoutMs: 100, retryOn: ["5xx"] } }),
  );
  for (let i = 0; i < 2; i++) assert.equal((await call(q.port)).grpc, "0");
});

test("HTTP/2: fault abort with a gRPC status, rate limit, CORS preflight", async () => {
  const ok = await grpcBackend(() => "ok");
  const f = await startProxy(cfg([ok.port], { fault: { abort: { grpcStatus: 8 } } }));
  const r = await call(f.port);
  assert.equal(r.status, 200);
  assert.equal(r.grpc, "8");
  assert.equal(ok.calls, 0);

  const l = await startProxy(cfg([ok.port], { localRateLimit: { maxTokens: 1, fillIntervalMs: 60_000 } }));
  assert.equal((await call(l.port)).grpc, "0");
  assert.equal((await call(l.port)).status, 429);

  const c = await startProxy(
    cfg([ok.port], { cors: { allowOrigins: [{ exact: "https://app.example" }], allowMethods: ["POST"] } }),
  );
  const pre = await call(c.port, {
    ":method": "OPTIONS",
    origin: "https://app.example",
    "access-control-request-method": "POST",
  });
  assert.equal(pre.status, 200);
  assert.equal(pre.headers["access-control-allow-origin"], "https://app.example");
  assert.equal(pre.headers["access-control-allow-methods"], "POST");
});

test("HTTP/2: a gRPC call is mirrored (body included) to the shadow cluster", async () => {
  const primary = await grpcBackend(() => "ok");
  const shadow = await grpcBackend(() => "unavailable");
  const c = cfg([primary.port], { requestMirrorPolicies: [{ cluster: "shadow" }] });
  const p = await startProxy({
    ...c,
    clusters: [
      ...c.clusters!,
      { name: "shadow", protocol: "http2", endpoints: [{ address: "127.0.0.1", port: shadow.port }] },
    ],
  });
  const r = await call(p.port, {}, "mirrored-body");
  assert.equal(r.grpc, "0");
  const deadline = Date.now() + 3000;
  while (shadow.bodies.length === 0 && Date.now() < deadline) await new Promise((x) => setTimeout(x, 10));
  assert.deepEqual(shadow.bodies, ["mirrored-body"]);
});
