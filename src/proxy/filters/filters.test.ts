// The request filters through the proxy, with real backends: fault delays and aborts (HTTP and gRPC) with
// their flags, mirroring (shadow host, body, never slowing or failing the primary), local rate limits per
// route and per listener (429 RL), and CORS preflights and response headers. Plus the token bucket's arithmetic.
import assert from "node:assert/strict";
import type http from "node:http";
import { after, test } from "node:test";
import type { ClusterConfig, RouteAction, RouteConfiguration } from "../config/types.ts";
import {
  closeAll,
  closedPort,
  config,
  echo,
  get,
  httpBackend,
  json,
  send,
  sleep,
  startProxy,
  waitFor,
} from "../test-support.ts";
import { TokenBucket } from "./local-rate-limit.ts";

after(closeAll);

function routes(action: Partial<RouteAction>): RouteConfiguration {
  return {
    name: "r",
    virtualHosts: [
      {
        name: "all",
        domains: ["*"],
        routes: [
          { match: { prefix: "/" }, route: { cluster: "up", retryPolicy: { numRetries: 0 }, ...action } },
        ],
      },
    ],
  };
}

async function proxy(action: Partial<RouteAction>, clusters: ClusterConfig[], extra = {}) {
  return startProxy(config({ routes: routes(action), clusters, statPrefix: "f", ...extra }));
}

const up = (port: number, name = "up"): ClusterConfig => ({
  name,
  endpoints: [{ address: "127.0.0.1", port }],
});

test("fault abort: every request gets the status, flag FI, the backend sees nothing", async () => {
  const b = await httpBackend(echo);
  const p = await proxy({ fault: { abort: { httpStatus: 418, percentage: 100 } } }, [up(b.port)]);
  const r = await get(p.port, "/");
  assert.equal(r.status, 418);
  assert.equal(r.body.toString(), "fault filter abort");
  assert.equal(b.requests, 0);
  assert.equal(p.proxy.stats.counter("http.f.response_flag.FI").value, 1);
});

test("fault abort with a percentage: about that share of requests", async () => {
  const b = await httpBackend(echo);
  const p = await proxy({ fault: { abort: { httpStatus: 503, percentage: 30 } } }, [up(b.port)]);
  let aborted = 0;
  for (let i = 0; i < 200; i++) if ((await get(p.port, "/")).status === 503) aborted++;
  assert.ok(aborted > 30 && aborted < 95, `30% of 200 requests, got ${aborted}`);
  assert.equal(b.requests, 200 - aborted);
});

test("fault abort with a gRPC status: a trailers-only gRPC response", async () => {
  const b = await httpBackend(echo);
  const p = await proxy({ fault: { abort: { grpcStatus: 14 } } }, [up(b.port)]);
  const r = await get(p.port, "/pkg.Svc/Call");
  assert.equal(r.status, 200);
  assert.equal(r.header("grpc-status"), "14");
  assert.equal(r.header("content-type"), "application/grpc");
});

test("fault delay: the request waits, then goes through; flag DI", async () => {
  const b = await httpBackend(echo);
  const p = await proxy({ fault: { delay: { fixedDelayMs: 200 } } }, [up(b.port)]);
  const t0 = Date.now();
  const r = await send(p.port, "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello", "POST");
  assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 >= 190, "delayed");
  assert.equal(json(r).body, "hello", "the body sent during the delay arrives");
  assert.equal(p.proxy.stats.counter("http.f.response_flag.DI").value, 1);
});

test("mirror: the shadow gets the request with -shadow host and its body; the primary's response is returned", async () => {
  const primary = await httpBackend(echo);
  const seen: Array<{ host: string; body: string }> = [];
  const shadow = await httpBackend((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      seen.push({ host: String(req.headers.host), body });
      res.writeHead(500);
      res.end("shadow fails, nobody cares");
    });
  });
  const p = await proxy({ requestMirrorPolicies: [{ cluster: "shadow" }] }, [
    up(primary.port),
    up(shadow.port, "shadow"),
  ]);
  const r = await send(
    p.port,
    "POST /m HTTP/1.1\r\nhost: reviews:9080\r\ncontent-length: 4\r\n\r\nbody",
    "POST",
  );
  assert.equal(r.status, 200);
  assert.equal(json(r).body, "body");
  await waitFor(() => seen.length === 1, 3000, "the mirrored request");
  assert.deepEqual(seen[0], { host: "reviews-shadow:9080", body: "body" });
  assert.equal(p.proxy.stats.counter("cluster.shadow.upstream_rq_mirror").value, 1);
});

test("mirror: a mirror that hangs or is down never slows or fails the primary", async () => {
  const primary = await httpBackend(echo);
  const held: http.ServerResponse[] = [];
  const hang = await httpBackend((_req, res) => held.push(res));
  const down = await closedPort();
  const p = await proxy({ requestMirrorPolicies: [{ cluster: "hang" }, { cluster: "down" }] }, [
    up(primary.port),
    up(hang.port, "hang"),
    up(down, "down"),
  ]);
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const r = await get(p.port, `/${i}`);
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 1000);
  }
  assert.equal(primary.requests, 5);
  for (const res of held) res.end();
});

test("mirror percentage 0 sends nothing", async () => {
  const primary = await httpBackend(echo);
  const shadow = await httpBackend(echo);
  const p = await proxy({ requestMirrorPolicies: [{ cluster: "shadow", percentage: 0 }] }, [
    up(primary.port),
    up(shadow.port, "shadow"),
  ]);
  for (let i = 0; i < 20; i++) await get(p.port, "/");
  await sleep(50);
  assert.equal(shadow.requests, 0);
});

test("local rate limit on a route: beyond the bucket 429 with flag RL; it refills", async () => {
  const b = await httpBackend(echo);
  const p = await proxy({ localRateLimit: { maxTokens: 3, tokensPerFill: 3, fillIntervalMs: 300 } }, [
    up(b.port),
  ]);
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) codes.push((await get(p.port, "/")).status);
  assert.deepEqual(codes, [200, 200, 200, 429, 429]);
  assert.equal(p.proxy.stats.counter("http.f.response_flag.RL").value, 2);
  await sleep(320);
  assert.equal((await get(p.port, "/")).status, 200, "refilled");
});

test("local rate limit on the listener chain applies before routing", async () => {
  const b = await httpBackend(echo);
  const cfg = config({ routes: routes({}), clusters: [up(b.port)], statPrefix: "f" });
  const chain = cfg.listeners[0]!.filterChains[0]!;
  const limited = {
    ...cfg,
    listeners: [
      {
        ...cfg.listeners[0]!,
        filterChains: [
          { ...chain, filter: { ...chain.filter, localRateLimit: { maxTokens: 1, fillIntervalMs: 60_000 } } },
        ],
      },
    ],
  };
  const p = await startProxy(limited as typeof cfg);
  assert.equal((await get(p.port, "/")).status, 200);
  const r = await get(p.port, "/no/route/needed");
  assert.equal(r.status, 429);
  assert.equal(r.body.toString(), "local_rate_limited");
});

test("local rate limit buckets survive a config swap that does not change them, route and listener", async () => {
  const b = await httpBackend(echo);
  const build = (maxTokens: number, extraClusters: ClusterConfig[] = []) => {
    const cfg = config({
      routes: routes({ localRateLimit: { maxTokens, fillIntervalMs: 60_000 } }),
      clusters: [up(b.port), ...extraClusters],
      statPrefix: "f",
    });
    const listener = cfg.listeners[0]!;
    const chain = listener.filterChains[0]!;
    const limit = { maxTokens: maxTokens + 1, fillIntervalMs: 60_000 };
    return {
      ...cfg,
      listeners: [
        {
          ...listener,
          filterChains: [{ ...chain, filter: { ...chain.filter, localRateLimit: limit } }],
        },
      ],
    };
  };
  const p = await startProxy(build(2));
  assert.equal((await get(p.port, "/")).status, 200);
  assert.equal((await get(p.port, "/")).status, 200);
  // A push for something else (another cluster): the route's bucket stays empty.
  assert.deepEqual((await p.proxy.apply(build(2, [up(b.port, "other")]))).errors, []);
  assert.equal((await get(p.port, "/")).status, 429, "not refilled by an unrelated push");
  // New settings: a new bucket, as Envoy builds a new filter.
  assert.deepEqual((await p.proxy.apply(build(3))).errors, []);
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) codes.push((await get(p.port, "/")).status);
  assert.deepEqual(codes, [200, 200, 200, 429, 429]);
  // The listener's own bucket (4 tokens) was kept across the last swap too: 3 + 1 before, 4 now taken.
  assert.deepEqual((await p.proxy.apply(build(3, [up(b.port, "again")]))).errors, []);
  assert.equal((await get(p.port, "/no/route")).status, 429, "the listener's bucket was not refilled either");
});

test("CORS: an allowed preflight is answered by the proxy; a disallowed one passes through", async () => {
  const b = await httpBackend(echo);
  const p = await proxy(
    {
      cors: {
        allowOrigins: [{ exact: "https://app.example" }, { regex: "https://.*\\.trusted\\.example" }],
        allowMethods: ["GET", "POST"],
        allowHeaders: ["x-token"],
        exposeHeaders: ["x-trace"],
        maxAgeSeconds: 600,
        allowCredentials: true,
      },
    },
    [up(b.port)],
  );
  const r = await send(
    p.port,
    "OPTIONS /api HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\naccess-control-request-method: POST\r\n\r\n",
    "OPTIONS",
  );
  assert.equal(r.status, 200);
  assert.equal(r.header("access-control-allow-origin"), "https://app.example");
  assert.equal(r.header("access-control-allow-methods"), "GET,POST");
  assert.equal(r.header("access-control-allow-headers"), "x-token");
  assert.equal(r.header("access-control-max-age"), "600");
  assert.equal(r.header("access-control-allow-credentials"), "true");
  const before = b.requests;
  const bad = await send(
    p.port,
    "OPTIONS /api HTTP/1.1\r\nhost: x\r\norigin: https://evil.example\r\naccess-control-request-method: POST\r\n\r\n",
    "OPTIONS",
  );
  assert.equal(bad.header("access-control-allow-origin"), undefined);
  assert.equal(b.requests, before + 1, "passed to the backend");

  const simple = await get(p.port, "/api", "x", { origin: "https://b.trusted.example" });
  assert.equal(simple.status, 200);
  assert.equal(simple.header("access-control-allow-origin"), "https://b.trusted.example");
  assert.equal(simple.header("access-control-expose-headers"), "x-trace");
  const none = await get(p.port, "/api", "x", { origin: "https://evil.example" });
  assert.equal(none.header("access-control-allow-origin"), undefined);
});

test("token bucket: refills whole fills only, never above the maximum", () => {
  const b = new TokenBucket({ maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 100 }, 0);
  assert.equal(b.take(0), true);
  assert.equal(b.take(0), true);
  assert.equal(b.take(99), false);
  assert.equal(b.take(100), true);
  assert.equal(b.take(150), false);
  assert.equal(b.take(10_000), true, "long idle: full again");
  assert.equal(b.take(10_000), true);
  assert.equal(b.take(10_000), false, "but not above maxTokens");
});
