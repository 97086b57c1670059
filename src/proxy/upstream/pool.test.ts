// Connection pools and circuit breakers through the proxy, with real backends: Istio's connectionPool limits
// (503 UO beyond them), maxRequestsPerConnection, no healthy upstream (UH), connection failures (UF) and
// timeouts, idle upstream connections closed, and every load-balancing policy observed through requests.
import assert from "node:assert/strict";
import type http from "node:http";
import net from "node:net";
import { after, before, test } from "node:test";
import { Worker } from "node:worker_threads";
import type { ClusterConfig, RouteConfig } from "../config/types.ts";
import {
  closeAll,
  closedPort,
  cluster,
  config,
  get,
  type HttpBackend,
  httpBackend,
  json,
  keepAliveClient,
  netBackend,
  onClose,
  RawClient,
  type RawResponse,
  type RunningProxy,
  sleep,
  startProxy,
  waitFor,
} from "../test-support.ts";

/** A backend that names itself; requests to .../hold... or .../hold-NAME wait until release(). */
interface Named extends HttpBackend {
  readonly name: string;
  readonly held: http.ServerResponse[];
  release(): void;
}

async function named(name: string): Promise<Named> {
  const held: http.ServerResponse[] = [];
  const reply = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const body = JSON.stringify({ name, url: req.url });
    res.writeHead(200, { "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  const requests = new Map<http.ServerResponse, http.IncomingMessage>();
  const b = await httpBackend((req, res) => {
    req.resume();
    const url = req.url ?? "";
    if ((url.includes("/hold") && !url.includes("/hold-")) || url.includes(`/hold-${name}`)) {
      held.push(res);
      requests.set(res, req);
      return;
    }
    reply(req, res);
  });
  return Object.assign(b, {
    name,
    held,
    release() {
      for (const res of held.splice(0)) reply(requests.get(res)!, res);
    },
  });
}

let backends: Named[];
let conn: Named;
let req: Named;
let perConn: Named;
let idle: Named;
let refusedPort: number;
let proxy: RunningProxy;

const route = (prefix: string, clusterName: string, extra: Partial<RouteConfig> = {}): RouteConfig => ({
  match: { prefix },
  route: { cluster: clusterName },
  ...extra,
});

before(async () => {
  backends = await Promise.all(["a", "b", "c", "d"].map(named));
  conn = await named("conn");
  req = await named("req");
  perConn = await named("per-conn");
  idle = await named("idle");
  refusedPort = await closedPort();
  const ports = backends.map((b) => b.port);
  const clusters: ClusterConfig[] = [
    cluster("cb-conn", [conn.port], { circuitBreakers: { maxConnections: 1, maxPendingRequests: 1 } }),
    cluster("cb-req", [req.port], { circuitBreakers: { maxRequests: 1 } }),
    cluster("per-conn", [perConn.port], { circuitBreakers: { maxRequestsPerConnection: 2 } }),
    cluster("idle", [idle.port], { idleTimeoutMs: 300 }),
    cluster("empty", []),
    cluster("unhealthy", [backends[0]!.port]),
    cluster("refused", [refusedPort]),
    cluster("rr", ports, { lbPolicy: "ROUND_ROBIN" }),
    cluster("lr", ports, { lbPolicy: "LEAST_REQUEST" }),
    cluster("random", ports, { lbPolicy: "RANDOM" }),
    cluster("ring", ports, { lbPolicy: "RING_HASH" }),
    cluster("maglev", ports, { lbPolicy: "MAGLEV" }),
  ];
  const hash = { route: { hashPolicy: [{ header: "x-user" }] } };
  proxy = await startProxy(
    config({
      statPrefix: "pool",
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [
              ...[
                "cb-conn",
                "cb-req",
                "per-conn",
                "idle",
                "empty",
                "unhealthy",
                "refused",
                "rr",
                "lr",
                "random",
              ].map((c) => route(`/${c}/`, c)),
              { match: { prefix: "/ring/" }, route: { cluster: "ring", ...hash.route } },
              { match: { prefix: "/maglev/" }, route: { cluster: "maglev", ...hash.route } },
            ],
          },
        ],
      },
      clusters,
    }),
  );
});
after(closeAll);

const stat = (name: string) => proxy.proxy.stats.counter(name).value;
const gauge = (name: string) => proxy.proxy.stats.gauge(name).value;

/** Starts a GET on its own connection; resolves with the response. */
function start(path: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return get(proxy.port, path, "x", headers);
}

test("maxConnections + maxPendingRequests: one connection, one waiting, the next 503 overflow (UO)", async () => {
  const uoBefore = stat("http.pool.response_flag.UO");
  const first = start("/cb-conn/hold/1");
  await waitFor(() => conn.held.length === 1, 3000, "first request at the backend");
  const second = start("/cb-conn/hold/2");
  await waitFor(
    () => gauge("cluster.cb-conn.upstream_rq_pending_active") === 1,
    3000,
    "second request pending",
  );
  const third = await start("/cb-conn/3");
  assert.equal(third.status, 503);
  assert.match(third.body.toString(), /overflow/);
  assert.equal(stat("http.pool.response_flag.UO"), uoBefore + 1);
  assert.equal(stat("cluster.cb-conn.upstream_rq_pending_overflow"), 1);
  conn.release();
  assert.equal((await first).status, 200);
  // The waiting request got the connection when the first was done, and is now held in turn.
  await waitFor(() => conn.held.length === 1, 3000, "second request at the backend");
  conn.release();
  assert.equal(json(await second).url, "/cb-conn/hold/2");
  assert.equal(conn.connections, 1, "never more than one upstream connection");
  assert.equal(gauge("cluster.cb-conn.upstream_rq_pending_active"), 0);
});

test("maxRequests: a second concurrent request is 503 overflow (UO)", async () => {
  const first = start("/cb-req/hold");
  await waitFor(() => req.held.length === 1, 3000, "first request at the backend");
  const second = await start("/cb-req/2");
  assert.equal(second.status, 503);
  assert.match(second.body.toString(), /overflow/);
  assert.equal(stat("cluster.cb-req.upstream_rq_overflow"), 1);
  req.release();
  assert.equal((await first).status, 200);
  assert.equal((await start("/cb-req/3")).status, 200, "below the limit again");
  assert.equal(gauge("cluster.cb-req.upstream_rq_active"), 0);
});

test("maxRequestsPerConnection: a connection is closed after N requests", async () => {
  const c = await keepAliveClient(proxy.port);
  for (let i = 0; i < 6; i++) assert.equal((await c.get(`/per-conn/${i}`)).status, 200);
  c.client.destroy();
  assert.equal(perConn.requests, 6);
  assert.equal(perConn.connections, 3, "2 requests per connection");
  await waitFor(() => perConn.open.size === 0, 2000, "used-up connections closed");
});

test("no endpoint, or none healthy: 503 no healthy upstream (UH)", async () => {
  const uh = stat("http.pool.response_flag.UH");
  const empty = await start("/empty/");
  assert.equal(empty.status, 503);
  assert.equal(empty.body.toString(), "no healthy upstream");
  const ep = proxy.proxy.clusters.get("unhealthy")!.endpoints[0]!;
  assert.equal((await start("/unhealthy/")).status, 200);
  ep.healthy = false;
  try {
    const r = await start("/unhealthy/");
    assert.equal(r.status, 503);
    assert.equal(r.body.toString(), "no healthy upstream");
  } finally {
    ep.healthy = true;
  }
  assert.equal(stat("http.pool.response_flag.UH"), uh + 2);
  assert.equal(stat("cluster.unhealthy.upstream_cx_none_healthy"), 1);
});

test("connection refused: 503 connection failure (UF), counted per cluster and endpoint", async () => {
  const r = await start("/refused/");
  assert.equal(r.status, 503);
  assert.match(r.body.toString(), /connection failure/);
  assert.match(r.body.toString(), /ECONNREFUSED/);
  assert.equal(stat("http.pool.response_flag.UF"), 1);
  // The mesh default retry policy (2 retries on connect-failure) made three attempts, then gave up (URX).
  assert.equal(stat("http.pool.response_flag.URX"), 1);
  assert.equal(stat("cluster.refused.upstream_rq_retry"), 2);
  assert.equal(stat("cluster.refused.upstream_cx_connect_fail"), 3);
  assert.equal(proxy.proxy.clusters.get("refused")!.endpoints[0]!.cxConnectFail, 3);
  assert.equal(
    gauge("cluster.refused.upstream_cx_active"),
    0,
    "the failed connection is not counted as open",
  );
  // The client connection is still usable: the request had no body.
  const c = await keepAliveClient(proxy.port);
  assert.equal((await c.get("/refused/")).status, 503);
  assert.equal((await c.get("/rr/")).status, 200);
  c.client.destroy();
});

test("connectTimeoutMs: a listener that never accepts (full backlog) gets 503 connection failure in time", async (t) => {
  // A loopback endpoint that never completes a connection: a listening socket whose owner never accepts.
  // The thread that owns it blocks its event loop right after listen(), so the kernel's accept queue (backlog
  // 1) fills with two connections of ours, and every SYN after that is dropped: connect() just hangs.
  const sab = new SharedArrayBuffer(4);
  const worker = new Worker(
    `const { parentPort, workerData } = require("node:worker_threads");
     const server = require("node:net").createServer();
     server.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(new Int32Array(workerData), 0, 0);
       server.close();
     });`,
    { eval: true, workerData: sab },
  );
  onClose(async () => {
    Atomics.store(new Int32Array(sab), 0, 1);
    Atomics.notify(new Int32Array(sab), 0);
    await worker.terminate();
  });
  const port = await new Promise<number>((resolve) => worker.once("message", resolve));
  const fillers: net.Socket[] = [];
  onClose(() => {
    for (const s of fillers) s.destroy();
  });
  let connected = 0;
  for (let i = 0; i < 4; i++) {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.on("error", () => {});
    s.once("connect", () => connected++);
    fillers.push(s);
  }
  await sleep(300);
  if (connected >= 4) {
    t.skip("the kernel completed every connection: no loopback blackhole to time out against here");
    return;
  }
  const p = await startProxy(
    config({
      statPrefix: "timeout",
      routes: {
        name: "r",
        virtualHosts: [{ name: "all", domains: ["*"], routes: [route("/", "blackhole")] }],
      },
      clusters: [cluster("blackhole", [port], { connectTimeoutMs: 300 })],
    }),
  );
  const started = Date.now();
  const r = await get(p.port, "/");
  const elapsed = Date.now() - started;
  assert.equal(r.status, 503);
  assert.match(r.body.toString(), /connection failure/);
  assert.match(r.body.toString(), /connect timeout/);
  assert.ok(elapsed >= 250 && elapsed < 2000, `answered after ${elapsed} ms`);
  assert.equal(p.proxy.stats.counter("http.timeout.response_flag.UF").value, 1);
});

test("idle upstream connections are closed after idleTimeoutMs; the next request opens a new one", async () => {
  assert.equal((await start("/idle/1")).status, 200);
  assert.equal(idle.open.size, 1);
  const t0 = Date.now();
  await waitFor(() => idle.open.size === 0, 3000, "idle upstream connection closed");
  assert.ok(Date.now() - t0 < 1500);
  assert.equal((await start("/idle/2")).status, 200);
  assert.equal(idle.connections, 2);
  // A connection kept busy past the idle timeout is not closed under its request.
  const slow = start("/idle/hold");
  await waitFor(() => idle.held.length === 1, 3000);
  await sleep(500);
  idle.release();
  assert.equal((await slow).status, 200);
});

/** Which backend served each of `n` sequential requests to `path` (one keep-alive connection). */
async function servedBy(path: string, n: number, headers: Record<string, string> = {}): Promise<string[]> {
  const c = await keepAliveClient(proxy.port);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(json(await c.get(path, "x", headers)).name as string);
  c.client.destroy();
  return out;
}

const tally = (names: string[]) => {
  const m: Record<string, number> = {};
  for (const n of names) m[n] = (m[n] ?? 0) + 1;
  return m;
};

test("ROUND_ROBIN: a strict rotation over the endpoints", async () => {
  const names = await servedBy("/rr/x", 40);
  assert.deepEqual(tally(names), { a: 10, b: 10, c: 10, d: 10 });
  for (let i = 4; i < names.length; i++) assert.equal(names[i], names[i - 4], "the same order every round");
});

test("RANDOM: every endpoint gets a share, not in a fixed rotation", async () => {
  const names = await servedBy("/random/x", 400);
  const t = tally(names);
  for (const n of ["a", "b", "c", "d"]) assert.ok((t[n] ?? 0) > 50 && (t[n] ?? 0) < 150, `${n}: ${t[n]}`);
  let rotation = true;
  for (let i = 4; i < names.length; i++) if (names[i] !== names[i - 4]) rotation = false;
  assert.equal(rotation, false);
});

test("LEAST_REQUEST: an endpoint with requests in flight is avoided", async () => {
  // Requests to /lr/hold-a are held by backend "a" and answered at once by the others. With power of two
  // choices, "a" (busy) is picked only when both draws land on it: 1 in 16, against 1 in 4 for round robin.
  const a = backends[0]!;
  const pending: Array<Promise<RawResponse>> = [];
  const N = 80;
  let fast = 0;
  for (let i = 0; i < N; i++) {
    const held = a.held.length;
    let answered = false;
    const p = start("/lr/hold-a");
    const done = () => {
      answered = true;
    };
    p.then(done, done);
    pending.push(p);
    await waitFor(() => answered || a.held.length > held, 3000, "answered or held");
    if (answered) fast++;
  }
  const atA = a.held.length;
  assert.equal(fast + atA, N);
  assert.ok(atA <= 14, `the busy endpoint got ${atA} of ${N} requests (round robin would give 20)`);
  assert.ok(gauge("cluster.lr.upstream_rq_active") === atA);
  a.release();
  for (const r of await Promise.all(pending)) assert.equal(r.status, 200);
});

for (const policy of ["ring", "maglev"] as const) {
  test(`${policy === "ring" ? "RING_HASH" : "MAGLEV"} with a header hash policy: same value, same endpoint`, async () => {
    const byUser = new Map<string, string>();
    for (let u = 0; u < 24; u++) {
      const names = await servedBy(`/${policy}/x`, 4, { "x-user": `user-${u}` });
      assert.equal(new Set(names).size, 1, `user-${u} went to ${names.join(",")}`);
      byUser.set(`user-${u}`, names[0]!);
    }
    const used = new Set(byUser.values());
    assert.ok(used.size >= 3, `24 users spread over ${used.size} endpoints`);
    // Through a fresh connection, the same users land on the same endpoints again.
    for (const [user, name] of [...byUser].slice(0, 6)) {
      assert.equal(json(await start(`/${policy}/x`, { "x-user": user })).name, name);
    }
  });
}

test("a request whose client goes away while it waits for a connection frees its place", async () => {
  const first = start("/cb-conn/hold/a");
  await waitFor(() => conn.held.length === 1, 3000);
  const waiting = await RawClient.connect(proxy.port);
  waiting.write("GET /cb-conn/hold/b HTTP/1.1\r\nHost: x\r\n\r\n");
  await waitFor(() => gauge("cluster.cb-conn.upstream_rq_pending_active") === 1, 3000, "pending");
  waiting.destroy();
  await waitFor(() => gauge("cluster.cb-conn.upstream_rq_pending_active") === 0, 3000, "pending freed");
  conn.release();
  assert.equal((await first).status, 200);
  assert.equal((await start("/cb-conn/after")).status, 200);
  assert.equal(gauge("cluster.cb-conn.upstream_rq_active"), 0);
});

test("pooled connections the backend closes on its own are not reused", async () => {
  // Closes each connection after 50 ms without a request, as servers with a short keep-alive timeout do.
  const short = await netBackend((s) => {
    s.setTimeout(50, () => s.destroy());
    s.on("data", () => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  });
  const p = await startProxy(config({ routes: route2("short"), clusters: [cluster("short", [short.port])] }));
  const c = await keepAliveClient(p.port);
  for (let i = 0; i < 3; i++) {
    const r = await c.get("/");
    assert.equal(r.status, 200, `request ${i}: ${r.body}`);
    await sleep(150);
  }
  c.client.destroy();
  assert.equal(short.connections, 3, "a new upstream connection after each idle close");
  assert.equal(p.proxy.stats.gauge("cluster.short.upstream_cx_active").value, 0);
});

function route2(clusterName: string) {
  return { name: "r", virtualHosts: [{ name: "all", domains: ["*"], routes: [route("/", clusterName)] }] };
}
