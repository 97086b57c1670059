// HTTP/2 through the proxy, over real sockets: h2c clients to HTTP/1 and HTTP/2 upstreams (gRPC-style
// trailers, trailers-only responses, streaming both ways), and HTTP/1 clients to HTTP/2 upstreams.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type net from "node:net";
import { after, test } from "node:test";
import type { ProxyConfig } from "../config/types.ts";
import { catchAll, closeAll, cluster, echo, get, httpBackend, onClose, startProxy } from "../test-support.ts";

after(closeAll);

async function h2Backend(
  onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void,
): Promise<number> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", onStream);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(
    () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

function proxyConfig(
  clusters: ProxyConfig["clusters"],
  codec: "auto" | "http1" | "http2" = "auto",
): ProxyConfig {
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "http", routeConfig: catchAll("up"), codec } }],
      },
    ],
    clusters: clusters ?? [],
  };
}

function h2Client(port: number): http2.ClientHttp2Session {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on("error", () => {});
  onClose(() => c.destroy());
  return c;
}

/** One request on a session: status, headers, body, trailers. */
function h2Request(
  c: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string,
): Promise<{
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  trailers: http2.IncomingHttpHeaders;
}> {
  return new Promise((resolve, reject) => {
    const req = c.request(headers, { endStream: body === undefined });
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let data = "";
    req.on("response", (h) => {
      resHeaders = h;
    });
    req.on("trailers", (t) => {
      trailers = t;
    });
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      data += d;
    });
    req.on("end", () =>
      resolve({ status: Number(resHeaders[":status"]), headers: resHeaders, body: data, trailers }),
    );
    req.on("error", reject);
    if (body !== undefined) req.end(body);
  });
}

test("h2c prior knowledge to an HTTP/1 upstream: status, headers and bodies both ways", async () => {
  const backend = await httpBackend(echo);
  const { port } = await startProxy(proxyConfig([cluster("up", [backend.port])]));
  const c = h2Client(port);
  const big = "x".repeat(1024 * 1024);
  const r = await h2Request(
    c,
    { ":method": "POST", ":path": "/upload?q=1", ":authority": "svc", "x-test": "yes" },
    big,
  );
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.body) as {
    method: string;
    url: string;
    headers: Record<string, string>;
    bodyLength: number;
  };
  assert.equal(seen.method, "POST");
  assert.equal(seen.url, "/upload?q=1");
  assert.equal(seen.headers["x-test"], "yes");
  assert.equal(seen.headers.host, "svc");
  assert.equal(seen.bodyLength, big.length);
});

test("h2c to an HTTP/2 upstream: gRPC-style response with trailers", async () => {
  const up = await h2Backend((stream, h) => {
    let body = "";
    stream.on("data", (d) => {
      body += d;
    });
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "fine" }));
      stream.end(`${h[":path"]}:${body}`);
    });
  });
  const { port } = await startProxy(proxyConfig([cluster("up", [up], { protocol: "http2" })]));
  const c = h2Client(port);
  const r = await h2Request(
    c,
    { ":method": "POST", ":path": "/pkg.Svc/Call", "content-type": "application/grpc", te: "trailers" },
    "ping",
  );
  assert.equal(r.status, 200);
  assert.equal(r.headers["content-type"], "application/grpc");
  assert.equal(r.body, "/pkg.Svc/Call:ping");
  assert.equal(r.trailers["grpc-status"], "0");
  assert.equal(r.trailers["grpc-message"], "fine");
});

test("h2c to an HTTP/2 upstream: trailers-only error response", async () => {
  const up = await h2Backend((stream) => {
    stream.respond(
      { ":status": 200, "content-type": "application/grpc", "grpc-status": "5", "grpc-message": "not found" },
      { endStream: true },
    );
  });
  const { port } = await startProxy(proxyConfig([cluster("up", [up], { protocol: "http2" })]));
  const r = await h2Request(h2Client(port), { ":method": "POST", ":path": "/pkg.Svc/Get" }, "");
  assert.equal(r.status, 200);
  assert.equal(r.headers["grpc-status"], "5");
  assert.equal(r.body, "");
});

test("h2c to an HTTP/2 upstream: messages stream both ways before either side ends", async () => {
  const up = await h2Backend((stream) => {
    stream.respond({ ":status": 200 });
    stream.on("data", (d: Buffer) => stream.write(`echo:${d.toString()};`));
    stream.on("end", () => stream.end());
  });
  const { port } = await startProxy(proxyConfig([cluster("up", [up], { protocol: "http2" })]));
  const c = h2Client(port);
  const req = c.request({ ":method": "POST", ":path": "/stream" }, { endStream: false });
  req.setEncoding("utf8");
  let got = "";
  req.on("data", (d: string) => {
    got += d;
  });
  for (const m of ["a", "b", "c"]) {
    req.write(m);
    const want = `echo:${m};`;
    const deadline = Date.now() + 3000;
    while (!got.includes(want) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(got.includes(want), `echo of ${m} arrived before the client ended (got ${got})`);
  }
  req.end();
  await new Promise((r) => req.on("end", r));
  assert.equal(got, "echo:a;echo:b;echo:c;");
});

test("an HTTP/1.1 client reaches an HTTP/2 upstream; the body arrives chunked and intact", async () => {
  const up = await h2Backend((stream, h) => {
    stream.respond({ ":status": 201, "x-up": "h2" });
    stream.end(`h2 says ${h[":method"]} ${h[":path"]}`);
  });
  const { port } = await startProxy(proxyConfig([cluster("up", [up], { protocol: "http2" })]));
  const r = await get(port, "/hello");
  assert.equal(r.status, 201);
  assert.equal(r.header("x-up"), "h2");
  assert.equal(r.framing, "chunked");
  assert.equal(r.body.toString(), "h2 says GET /hello");
});

test("many concurrent streams on one session are all answered", async () => {
  const backend = await httpBackend((req, res) => res.end(req.url));
  const { port } = await startProxy(proxyConfig([cluster("up", [backend.port])]));
  const c = h2Client(port);
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => h2Request(c, { ":path": `/n/${i}` })),
  );
  results.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.body, `/n/${i}`);
  });
});

test("no route over HTTP/2: 404; upstream HTTP/2 server gone: 503", async () => {
  const noRoute: ProxyConfig = {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    name: "only",
                    domains: ["only.test"],
                    routes: [{ match: { prefix: "/" }, directResponse: { status: 200 } }],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
  };
  const a = await startProxy(noRoute);
  assert.equal((await h2Request(h2Client(a.port), { ":path": "/", ":authority": "other.test" })).status, 404);
  const b = await startProxy(
    proxyConfig([cluster("up", [1], { protocol: "http2", connectTimeoutMs: 1000 })]),
  );
  assert.equal((await h2Request(h2Client(b.port), { ":path": "/" })).status, 503);
});

test("codec http2 serves h2c without sniffing; codec http1 does not speak HTTP/2", async () => {
  const backend = await httpBackend((_req, res) => res.end("ok"));
  const h2only = await startProxy(proxyConfig([cluster("up", [backend.port])], "http2"));
  assert.equal((await h2Request(h2Client(h2only.port), { ":path": "/" })).body, "ok");
  const h1only = await startProxy(proxyConfig([cluster("up", [backend.port])], "http1"));
  const c = http2.connect(`http://127.0.0.1:${h1only.port}`);
  onClose(() => c.destroy());
  const failed = await new Promise<boolean>((resolve) => {
    c.on("error", () => resolve(true));
    c.on("close", () => resolve(true));
    const req = c.request({ ":path": "/" });
    req.on("error", () => resolve(true));
    req.on("response", () => resolve(false));
    req.end();
  });
  assert.ok(failed, "an HTTP/1-only chain must not answer an HTTP/2 request");
});

test("h2c: consistent hash by header picks the same endpoint for the same key, and counts per endpoint", async () => {
  const ports = await Promise.all(
    ["a", "b", "c", "d"].map(async (name) => (await httpBackend((_req, res) => res.end(name))).port),
  );
  const cfg: ProxyConfig = {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    name: "all",
                    domains: ["*"],
                    routes: [
                      {
                        match: { prefix: "/" },
                        route: { cluster: "up", hashPolicy: [{ header: "x-user" }] },
                      },
                    ],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [cluster("up", ports, { lbPolicy: "RING_HASH" })],
  };
  const p = await startProxy(cfg);
  const c = h2Client(p.port);
  const seen = new Map<string, Set<string>>();
  for (let i = 0; i < 40; i++) {
    const user = `user-${i % 8}`;
    const r = await h2Request(c, { ":path": "/", "x-user": user });
    assert.equal(r.status, 200);
    if (!seen.has(user)) seen.set(user, new Set());
    seen.get(user)!.add(r.body);
  }
  for (const [user, backends] of seen) assert.equal(backends.size, 1, `${user} always reaches one backend`);
  assert.ok(
    new Set([...seen.values()].map((s) => [...s][0])).size > 1,
    "different keys spread over endpoints",
  );
  const eps = p.proxy.clusters.get("up")!.endpoints;
  assert.equal(
    eps.reduce((n, e) => n + e.rqSuccess, 0),
    40,
    "every response is counted as an endpoint success",
  );
});
