// Route timeouts and retries through the proxy, with real backends: Envoy's (and Istio's) semantics for
// retryOn conditions, per-try timeouts, the retry going to another endpoint, request bodies replayed (and not
// when too large to keep), the retry budget, the mesh default policy, and URX / UT in the response flags.
import assert from "node:assert/strict";
import type http from "node:http";
import { after, test } from "node:test";
import type { ClusterConfig, RetryPolicy, RouteAction } from "../config/types.ts";
import {
  closeAll,
  closedPort,
  config,
  get,
  type HttpBackend,
  httpBackend,
  RawClient,
  send,
  sleep,
  startProxy,
} from "../test-support.ts";

after(closeAll);

/** A backend that answers with `status` (and its name) or hangs when status is 0. */
async function backend(name: string, status: (n: number, req: http.IncomingMessage) => number) {
  let n = 0;
  const held: http.ServerResponse[] = [];
  const b = await httpBackend((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = status(++n, req);
      if (s === 0) {
        held.push(res);
        return;
      }
      const extra: Record<string, string> = {};
      if (req.headers["x-grpc"]) {
        extra["content-type"] = "application/grpc";
        extra["grpc-status"] = String(req.headers["x-grpc"]);
      }
      res.writeHead(s, { "x-backend": name, ...extra });
      res.end(`${name}:${Buffer.concat(chunks).toString()}`);
    });
  });
  return Object.assign(b, { name, held });
}

async function proxyWith(
  backends: readonly HttpBackend[],
  action: Partial<RouteAction>,
  cluster: Partial<ClusterConfig> = {},
) {
  return startProxy(
    config({
      statPrefix: "res",
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [{ match: { prefix: "/" }, route: { cluster: "up", ...action } }],
          },
        ],
      },
      clusters: [
        {
          name: "up",
          endpoints: backends.map((b) => ({ address: "127.0.0.1", port: b.port })),
          ...cluster,
        },
      ],
    }),
  );
}

const retries = (p: Partial<RetryPolicy> & { numRetries: number }): Partial<RouteAction> => ({
  retryPolicy: { backoff: { baseIntervalMs: 1 }, ...p },
});

test("route timeout: a backend that does not answer in time gets the client 504 UT", async () => {
  const slow = await backend("slow", () => 0);
  const p = await proxyWith([slow], { timeoutMs: 150, retryPolicy: { numRetries: 0 } });
  const r = await get(p.port, "/");
  assert.equal(r.status, 504);
  assert.equal(r.body.toString(), "upstream request timeout");
  assert.equal(p.proxy.stats.counter("http.res.response_flag.UT").value, 1);
  assert.equal(p.proxy.stats.counter("cluster.up.upstream_rq_timeout").value, 1);
});

test("route timeout after the response started: the client connection is reset", async () => {
  const b = await httpBackend((_req, res) => {
    res.writeHead(200, { "content-length": "100" });
    res.write("partial");
  });
  const p = await proxyWith([b], { timeoutMs: 150 });
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
  await assert.rejects(c.read("GET"));
  c.destroy();
});

test("retryOn 5xx: a 503 from one endpoint is retried on the other", async () => {
  const bad = await backend("bad", () => 503);
  const good = await backend("good", () => 200);
  const p = await proxyWith([bad, good], retries({ numRetries: 1, retryOn: ["5xx"] }));
  for (let i = 0; i < 6; i++) {
    const r = await get(p.port, "/");
    assert.equal(r.status, 200);
    assert.equal(r.header("x-backend"), "good");
  }
  assert.equal(good.requests, 6);
  assert.ok(bad.requests > 0);
  assert.equal(
    p.proxy.stats.counter("cluster.up.upstream_rq_retry").value,
    bad.requests,
    "one retry per 503",
  );
});

test("retries exhausted: the last response is returned, flagged URX", async () => {
  const bad = await backend("bad", () => 503);
  const p = await proxyWith([bad], retries({ numRetries: 2, retryOn: ["gateway-error"] }));
  const r = await get(p.port, "/");
  assert.equal(r.status, 503);
  assert.equal(r.header("x-backend"), "bad");
  assert.equal(bad.requests, 3);
  assert.equal(p.proxy.stats.counter("http.res.response_flag.URX").value, 1);
  assert.equal(p.proxy.stats.counter("cluster.up.upstream_rq_retry_limit_exceeded").value, 1);
});

test("a status outside retryOn is not retried (500 with gateway-error); retriable-status-codes and 409", async () => {
  const b = await backend("b", (_n, req) => Number(req.url!.slice(1)));
  const p = await proxyWith(
    [b],
    retries({
      numRetries: 1,
      retryOn: ["gateway-error", "retriable-status-codes", "retriable-4xx"],
      retriableStatusCodes: [429],
    }),
  );
  assert.equal((await get(p.port, "/500")).status, 500);
  assert.equal(b.requests, 1, "500 is not a gateway error");
  assert.equal((await get(p.port, "/429")).status, 429);
  assert.equal(b.requests, 3, "429 is in retriableStatusCodes");
  assert.equal((await get(p.port, "/409")).status, 409);
  assert.equal(b.requests, 5, "409 is retriable-4xx");
  assert.equal((await get(p.port, "/404")).status, 404);
  assert.equal(b.requests, 6);
});

test("gRPC: grpc-status unavailable (14) is retried under 'unavailable'; other codes are not", async () => {
  const b = await backend("g", (n) => (n === 1 ? 200 : 200));
  const p = await proxyWith([b], retries({ numRetries: 1, retryOn: ["unavailable"] }));
  const r = await get(p.port, "/", "x", { "x-grpc": "14" });
  assert.equal(r.header("grpc-status"), "14");
  assert.equal(b.requests, 2);
  await get(p.port, "/", "x", { "x-grpc": "3" });
  assert.equal(b.requests, 3);
});

test("per-try timeout: a hanging attempt is abandoned and the retry answers", async () => {
  const hang = await backend("hang", () => 0);
  const good = await backend("good", () => 200);
  const p = await proxyWith([hang, good], retries({ numRetries: 1, perTryTimeoutMs: 100, retryOn: ["5xx"] }));
  const r = await get(p.port, "/");
  assert.equal(r.status, 200);
  assert.equal(r.header("x-backend"), "good");
  assert.equal(p.proxy.stats.counter("cluster.up.upstream_rq_per_try_timeout").value, 1);
});

test("a request body is replayed on the retry", async () => {
  const flaky = await backend("flaky", (n) => (n === 1 ? 503 : 200));
  const p = await proxyWith([flaky], retries({ numRetries: 1, retryOn: ["5xx"] }));
  const body = "hello=world";
  const r = await send(
    p.port,
    `POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    "POST",
  );
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), `flaky:${body}`);
  assert.equal(flaky.requests, 2);
});

test("a body too large to keep is not retried", async () => {
  const flaky = await backend("flaky", (n) => (n === 1 ? 503 : 200));
  const p = await proxyWith([flaky], retries({ numRetries: 1, retryOn: ["5xx"] }));
  const body = "x".repeat(100 * 1024);
  const r = await send(
    p.port,
    `POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
    "POST",
  );
  assert.equal(r.status, 503);
  assert.equal(flaky.requests, 1);
});

test("retry budget: with no room for retries none is made, and the overflow is counted", async () => {
  const bad = await backend("bad", () => 503);
  const p = await proxyWith([bad], retries({ numRetries: 3, retryOn: ["5xx"] }), {
    circuitBreakers: { retryBudget: { budgetPercent: 0, minRetryConcurrency: 0 } },
  });
  assert.equal((await get(p.port, "/")).status, 503);
  assert.equal(bad.requests, 1);
  assert.equal(p.proxy.stats.counter("cluster.up.upstream_rq_retry_overflow").value, 1);
});

test("the mesh default retries a refused connection on another endpoint", async () => {
  const refused = await closedPort();
  const good = await backend("good", () => 200);
  const p = await startProxy(
    config({
      routes: {
        name: "r",
        virtualHosts: [
          { name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: "up" } }] },
        ],
      },
      clusters: [
        {
          name: "up",
          endpoints: [
            { address: "127.0.0.1", port: refused },
            { address: "127.0.0.1", port: good.port },
          ],
        },
      ],
    }),
  );
  for (let i = 0; i < 4; i++) assert.equal((await get(p.port, "/")).status, 200);
  assert.ok(p.proxy.stats.counter("cluster.up.upstream_rq_retry").value >= 2);
  await sleep(0);
});
