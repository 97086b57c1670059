// The proxy's life: config swaps under load (in-flight requests finish, idle keep-alive connections follow the
// new routes), refused configs (invalid, port in use) that change nothing, the admin endpoints, and the CLI as
// a real process: errors with FILE:LINE:COL, SIGTERM draining, SIGHUP reloading.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { ProxyConfig } from "./config/types.ts";
import {
  catchAll,
  closeAll,
  cluster,
  config,
  get,
  type HttpBackend,
  httpBackend,
  json,
  keepAliveClient,
  onClose,
  RawClient,
  type RawResponse,
  send,
  sleep,
  spawnProxy,
  startAdmin,
  startProxy,
  waitFor,
} from "./test-support.ts";

const dir = mkdtempSync(join(tmpdir(), "isthmus-lifecycle-"));
onClose(() => rmSync(dir, { recursive: true, force: true }));
after(closeAll);

/** A backend that names itself and holds requests to /slow until release(). */
interface Named extends HttpBackend {
  readonly held: Array<() => void>;
  release(): void;
}

async function named(name: string): Promise<Named> {
  const held: Array<() => void> = [];
  const b = await httpBackend((req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    const reply = () => {
      const body = JSON.stringify({ name, url: req.url });
      res.writeHead(200, { "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url?.startsWith("/slow")) held.push(reply);
    else reply();
  });
  return Object.assign(b, {
    held,
    release() {
      for (const r of held.splice(0)) r();
    },
  });
}

let v1: Named;
let v2: Named;

before(async () => {
  v1 = await named("v1");
  v2 = await named("v2");
});

const toV1 = (version: string) =>
  config({ version, routes: catchAll("v1"), clusters: [cluster("v1", [v1.port])], statPrefix: "life" });
const toV2 = (version: string) =>
  config({ version, routes: catchAll("v2"), clusters: [cluster("v2", [v2.port])], statPrefix: "life" });

const admin = (port: number, path: string, method = "GET") =>
  send(
    port,
    `${method} ${path} HTTP/1.1\r\nHost: admin\r\n${method === "POST" ? "Content-Length: 0\r\n" : ""}\r\n`,
  );

test("config swap: the in-flight request completes; an idle keep-alive connection follows the new routes", async () => {
  const p = await startProxy(toV1("one"));
  const idle = await keepAliveClient(p.port);
  assert.equal(json(await idle.get("/before")).name, "v1");
  const slow = get(p.port, "/slow");
  await waitFor(() => v1.held.length === 1, 3000, "slow request at v1");

  // The new config drops cluster v1 altogether.
  const r = await p.proxy.apply(toV2("two"));
  assert.deepEqual(r, { ok: true, errors: [] });
  assert.equal(p.proxy.listener("main")!.boundPort, p.port, "same socket");

  v1.release();
  const done = await slow;
  assert.equal(done.status, 200);
  assert.equal(json(done).name, "v1", "the request in flight finished where it started");

  const after1 = await idle.get("/after");
  assert.equal(json(after1).name, "v2", "the idle keep-alive connection now follows the new routes");
  assert.equal(idle.client.isClosed, false);
  assert.equal(json(await get(p.port, "/new")).name, "v2");
  await waitFor(() => v1.open.size === 0, 2000, "v1's pooled connection closed with its cluster");
  idle.client.destroy();
});

test("config swap: new listener limits apply to new and to open connections", async () => {
  const p = await startProxy(toV1("limits-1"));
  const open = await keepAliveClient(p.port);
  const big = { "x-big": "b".repeat(2000) };
  assert.equal((await open.get("/", "x", big)).status, 200, "a 2 KB head is fine under the default 60 KiB");
  const next = toV1("limits-2");
  const r = await p.proxy.apply({
    ...next,
    listeners: [{ ...next.listeners[0]!, limits: { maxRequestHeadersBytes: 1024 } }],
  });
  assert.deepEqual(r.errors, []);
  assert.equal((await get(p.port, "/", "x", big)).status, 431, "a new connection gets the new limit");
  assert.equal((await open.get("/", "x", big)).status, 431, "so does an open one, on its next request");
  assert.equal((await get(p.port, "/")).status, 200);
});

test("an invalid config is refused with errors naming the field; the old one keeps serving", async () => {
  const p = await startProxy(toV1("good"));
  const port = await startAdmin(p.proxy);
  const bad = toV2("bad") as unknown as { clusters: Array<{ endpoints: Array<{ port: number }> }> };
  bad.clusters[0]!.endpoints[0]!.port = 70_000;
  const r = await p.proxy.apply(bad as unknown as ProxyConfig);
  assert.equal(r.ok, false);
  assert.ok(
    r.errors.some((e) => e.startsWith("clusters.0.endpoints.0.port: ")),
    r.errors.join("\n"),
  );

  const typo = JSON.parse(JSON.stringify(toV2("typo")));
  typo.listeners[0].filterChains[0].filter.routeConfig.virtualHosts[0].routes[0].match = { prefx: "/" };
  const t = await p.proxy.apply(typo);
  assert.equal(t.ok, false);
  assert.ok(
    t.errors.some((e) =>
      /^listeners\.0\.filterChains\.0\.filter\.routeConfig\.virtualHosts\.0\.routes\.0\.match\.prefx: unknown field/.test(
        e,
      ),
    ),
    t.errors.join("\n"),
  );

  const tcpTypo = toV2("tcp-typo");
  const tt = await p.proxy.apply({
    ...tcpTypo,
    listeners: [
      {
        ...tcpTypo.listeners[0]!,
        filterChains: [{ filter: { type: "tcp", cluster: "v2", idleTimeout: 5 } as never }],
      },
    ],
  });
  assert.ok(
    tt.errors.includes('listeners.0.filterChains.0.filter.idleTimeout: unknown field "idleTimeout"'),
    tt.errors.join("\n"),
  );

  const dangling = toV2("dangling");
  const d = await p.proxy.apply({
    ...dangling,
    listeners: [
      { ...dangling.listeners[0]!, filterChains: [{ filter: { type: "http", routeConfigName: "nope" } }] },
    ],
  });
  assert.equal(d.ok, false);
  assert.match(d.errors.join("\n"), /routeConfigName: route configuration "nope" is not defined/);

  assert.equal(json(await get(p.port, "/")).name, "v1", "still the old routes");
  const dump = JSON.parse((await admin(port, "/config_dump")).body.toString());
  assert.equal(dump.version, "good");
  assert.ok(Array.isArray(dump.lastRejected) && dump.lastRejected.length > 0);
  assert.equal(p.proxy.stats.counter("server.config_update_rejected").value, 4);
  assert.equal(p.proxy.stats.counter("server.config_update_success").value, 1);
});

test("a config whose new listener's port is in use is refused and nothing changes", async () => {
  const p = await startProxy(toV1("before"));
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => squatter.close(() => r())));
  const taken = (squatter.address() as net.AddressInfo).port;

  const next = toV2("after");
  const r = await p.proxy.apply({
    ...next,
    listeners: [
      next.listeners[0]!,
      { name: "second", address: "127.0.0.1", port: taken, filterChains: next.listeners[0]!.filterChains },
    ],
  });
  assert.equal(r.ok, false);
  assert.match(
    r.errors.join("\n"),
    new RegExp(`listener second: cannot listen on 127\\.0\\.0\\.1:${taken}: EADDRINUSE`),
  );
  assert.equal(p.proxy.config?.version, "before");
  assert.equal(p.proxy.listener("second"), undefined);
  assert.equal(json(await get(p.port, "/")).name, "v1", "the routes did not change");
  assert.equal(p.proxy.clusters.get("v2"), undefined, "the clusters did not change");

  // A new listener on a free port, in a config otherwise equal, is fine (and binds before the swap).
  const ok = await p.proxy.apply({
    ...next,
    listeners: [next.listeners[0]!, { ...next.listeners[0]!, name: "second" }],
  });
  assert.deepEqual(ok.errors, []);
  assert.equal(json(await get(p.proxy.listener("second")!.boundPort, "/")).name, "v2");
});

test("admin: /ready, /config_dump, /clusters (text and JSON), /stats with a filter", async () => {
  const p = await startProxy(toV1("admin-v1"));
  const port = await startAdmin(p.proxy);
  for (let i = 0; i < 3; i++) assert.equal((await get(p.port, `/r${i}`)).status, 200);

  const ready = await admin(port, "/ready");
  assert.equal(ready.status, 200);
  assert.equal(ready.body.toString(), "LIVE\n");

  const dump = await admin(port, "/config_dump");
  assert.equal(dump.status, 200);
  assert.match(dump.header("content-type") ?? "", /application\/json/);
  const d = JSON.parse(dump.body.toString());
  assert.equal(d.version, "admin-v1");
  assert.equal(d.config.clusters[0].name, "v1");
  assert.ok(!Number.isNaN(Date.parse(d.appliedAt)));

  const text = (await admin(port, "/clusters")).body.toString();
  assert.match(text, new RegExp(`^v1::127\\.0\\.0\\.1:${v1.port}::rq_total::3$`, "m"));
  assert.match(text, new RegExp(`^v1::127\\.0\\.0\\.1:${v1.port}::rq_success::3$`, "m"));
  assert.match(text, /^v1::default_priority::max_connections::\d+$/m);
  const cj = JSON.parse((await admin(port, "/clusters?format=json")).body.toString());
  const host = cj.cluster_statuses.find((c: { name: string }) => c.name === "v1").host_statuses[0];
  assert.equal(host.address, `127.0.0.1:${v1.port}`);
  assert.equal(host.stats.rq_total, 3);
  assert.equal(host.stats.rq_success, 3);
  assert.equal(host.health_status, "HEALTHY");

  const stats = (await admin(port, "/stats?filter=^http\\.life\\.downstream_rq_")).body.toString();
  const lines = stats.trim().split("\n");
  assert.ok(lines.length > 0 && lines.every((l) => l.startsWith("http.life.downstream_rq_")), stats);
  assert.ok(lines.includes("http.life.downstream_rq_2xx: 3"), stats);
  const all = (await admin(port, "/stats")).body.toString();
  assert.match(all, /^cluster\.v1\.upstream_rq_total: 3$/m);
  const sj = JSON.parse((await admin(port, "/stats?format=json&filter=upstream_rq_total")).body.toString());
  assert.deepEqual(sj.stats, [{ name: "cluster.v1.upstream_rq_total", value: 3 }]);

  const mem = JSON.parse((await admin(port, "/memory")).body.toString());
  assert.ok(mem.rss > mem.heap_committed && mem.heap_committed >= mem.heap_used && mem.heap_used > 0, mem);
  assert.ok(mem.spaces.old_space.committed > 0, "per-space figures");

  assert.equal((await admin(port, "/no-such")).status, 404);
  assert.equal((await admin(port, "/drain_listeners")).status, 405, "drain needs POST");
});

test("admin: a malformed request target gets 400 and the admin keeps serving", async () => {
  const p = await startProxy(toV1("admin-bad"));
  const port = await startAdmin(p.proxy);
  for (const target of ["http://[", "http://a:99999/ready", "//[::1"]) {
    const r = await send(port, `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`);
    assert.equal(r.status, 400, target);
  }
  assert.equal((await send(port, "GET / HTTP/1.1\r\n\r\n")).status, 400, "parser errors too");
  assert.equal((await admin(port, "/ready")).status, 200);
});

test("admin: POST /drain_listeners stops accepting, closes idle connections, /ready says DRAINING", async () => {
  const p = await startProxy(toV1("drain"));
  const port = await startAdmin(p.proxy);
  const idle = await keepAliveClient(p.port);
  assert.equal((await idle.get("/")).status, 200);
  const slow = get(p.port, "/slow");
  await waitFor(() => v1.held.length === 1, 3000);

  const r = await admin(port, "/drain_listeners", "POST");
  assert.equal(r.status, 200);
  const ready = await admin(port, "/ready");
  assert.equal(ready.status, 503);
  assert.equal(ready.body.toString(), "DRAINING\n");
  assert.ok(await idle.client.closesWithin(1000), "the idle keep-alive connection is closed");
  await assert.rejects(RawClient.connect(p.port), /ECONNREFUSED/);

  v1.release();
  const done: RawResponse = await slow;
  assert.equal(done.status, 200, "the request in flight completes");
  assert.equal(done.header("connection"), "close");
});

// ---------------------------------------------------------------------------------------------------- CLI

function writeConfig(name: string, content: string | object): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content, null, 2));
  return file;
}

test("CLI: a bad config file prints FILE:LINE:COL field: message and exits 1", () => {
  const file = writeConfig(
    "bad.yaml",
    `listeners:
  - name: main
    port: 0
    filterChains:
      - filter: {type: http, routeConfigName: r}
routeConfigs:
  - name: r
    virtualHosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: c}
clusters:
  - name: c
    endpoints:
      - {address: 127.0.0.1, port: eighty}
`,
  );
  const bin = new URL("../../bin/isthmus.js", import.meta.url).pathname;
  const r = spawnSync(process.execPath, [bin, "proxy", "--config", file], {
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
  });
  assert.equal(r.status, 1, r.stderr);
  const first = r.stderr.trim().split("\n")[0]!;
  assert.match(
    first,
    new RegExp(
      `^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:17:30 clusters\\[0\\]\\.endpoints\\[0\\]\\.port: `,
    ),
  );

  const syntax = writeConfig("syntax.yaml", "listeners: [\n  {name: main\n");
  const s = spawnSync(process.execPath, [bin, "proxy", "--config", syntax], {
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
  });
  assert.equal(s.status, 1);
  assert.match(
    s.stderr,
    new RegExp(`^${syntax.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\d+:\\d+ invalid YAML`, "m"),
  );
});

test("CLI: SIGTERM during a slow request: it completes, new connections are refused, exit 0", async () => {
  const file = writeConfig("term.json", { ...toV1("term"), admin: { port: 0 } });
  const child = await spawnProxy(["--config", file]);
  const port = child.ports.get("main")!;
  const slow = get(port, "/slow");
  await waitFor(() => v1.held.length === 1, 5000, "slow request at v1");

  child.child.kill("SIGTERM");
  await child.waitForStderr(/draining/);
  // Listening stops at once.
  let refused = false;
  for (let i = 0; i < 50 && !refused; i++) {
    try {
      const c = await RawClient.connect(port);
      c.destroy();
      await new Promise((r) => setTimeout(r, 20));
    } catch (e) {
      refused = /ECONNREFUSED/.test((e as Error).message);
    }
  }
  assert.ok(refused, "new connections are refused while draining");
  assert.equal(v1.held.length, 1, "the slow request is still in flight");

  v1.release();
  const r = await slow;
  assert.equal(r.status, 200);
  assert.equal(json(r).url, "/slow");
  assert.equal(r.header("connection"), "close");
  assert.equal(await child.exited, 0, child.stderr());
});

test("CLI: SIGHUP with an invalid file keeps serving; with a valid file switches routes", async () => {
  const direct = (body: string) => ({
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "http", routeConfigName: "r" } }],
      },
    ],
    routeConfigs: [
      {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [{ match: { prefix: "/" }, directResponse: { status: 200, body } }],
          },
        ],
      },
    ],
    admin: { port: 0 },
  });
  const file = writeConfig("hup.json", direct("one"));
  const child = await spawnProxy(["--config", file]);
  const port = child.ports.get("main")!;
  const c = await keepAliveClient(port);
  assert.equal((await c.get("/")).body.toString(), "one");

  writeFileSync(file, JSON.stringify({ ...direct("two"), clusters: [{ name: "x", endpoints: "nope" }] }));
  child.child.kill("SIGHUP");
  await child.waitForStderr(/reload refused/);
  assert.match(child.stderr(), /clusters\[0\]\.endpoints: /);
  assert.equal((await c.get("/")).body.toString(), "one", "the running config stays");
  assert.equal((await get(port, "/")).body.toString(), "one");

  writeFileSync(file, JSON.stringify(direct("two")));
  child.child.kill("SIGHUP");
  await child.waitForStderr(/config reloaded/);
  assert.equal((await c.get("/")).body.toString(), "two", "the open connection follows the new routes");
  assert.equal((await get(port, "/")).body.toString(), "two");
  c.client.destroy();

  child.child.kill("SIGTERM");
  assert.equal(await child.exited, 0, child.stderr());
});

test("CLI: the heap governor reports server.memory_* stats; a bad --heap-headroom-mb is a usage error", async () => {
  const file = writeConfig("heap.json", { ...toV1("heap"), admin: { port: 0 } });
  const child = await spawnProxy(["--config", file, "--admin-port", "0", "--heap-headroom-mb", "1"]);
  await sleep(1200); // one check
  const stats = (await admin(child.adminPort!, "/stats?filter=^server\\.memory")).body.toString();
  assert.match(stats, /^server\.memory_heap_size: [1-9]\d*$/m);
  assert.match(stats, /^server\.memory_forced_gc: \d+$/m);

  const bin = new URL("../../bin/isthmus.js", import.meta.url).pathname;
  const bad = spawnSync(process.execPath, [bin, "proxy", "--config", file, "--heap-headroom-mb", "lots"], {
    encoding: "utf8",
    timeout: 20_000,
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
  });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /--heap-headroom-mb must be a whole number/);
});

test("admin: /clusters shows each endpoint's weight, locality and labels", async () => {
  const cfg = config({
    routes: catchAll("zoned"),
    clusters: [
      {
        name: "zoned",
        endpoints: [
          {
            address: "127.0.0.1",
            port: v1.port,
            weight: 3,
            locality: "us-east/zone-a",
            labels: { version: "v1" },
          },
        ],
      },
    ],
  });
  const p = await startProxy(cfg);
  const port = await startAdmin(p.proxy);
  const cj = JSON.parse((await admin(port, "/clusters?format=json")).body.toString());
  const host = cj.cluster_statuses.find((c: { name: string }) => c.name === "zoned").host_statuses[0];
  assert.equal(host.weight, 3);
  assert.equal(host.locality, "us-east/zone-a");
  assert.deepEqual(host.labels, { version: "v1" });
});
