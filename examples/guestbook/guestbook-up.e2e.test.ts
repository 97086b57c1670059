// The Guestbook on the local runtime, end to end, split as the source documents run it: the frontend and the
// Redis master in the public cluster iks, the analyzer (v1, v2) and a Redis replica in the private cluster icp,
// which can only dial out. `isthmus up --detach` on a copy of this directory (its ingress on a free port), then
// real traffic through iks's ingress gateway.
//
// Unisolated (always): the peering link (icp dials iks), every entry scored by an analyzer pod in icp (the
// frontend's sidecar reaches it through iks's east-west gateway and the reverse tunnel icp's gateway holds
// there, as proxy-config shows), the replica in icp replicating from the master in iks across the link, the
// 90/10 canary over 2,000 entries, the timeout path with the tone API stopped, the AuthorizationPolicies
// enforced in the other cluster with the caller's identity, and `isthmus down` leaving nothing behind.
//
// Isolated (as root with ip and nft; skipped elsewhere with the reason): each cluster in its own network
// namespace. A process in iks's namespace cannot connect to anything listening in icp's, while the frontend's
// call to the analyzer in icp and the replication still work, and entries are stored unscored (the tone API's
// ServiceEntry names 127.0.0.1, which is icp's own loopback there). `isthmus down` removes the namespaces.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isolationSupport } from "../../src/runtime/isolation.ts";
import {
  eventually,
  exclusiveMesh,
  freePort,
  isthmus,
  processesIn,
} from "../../src/runtime/runtime-test-support.ts";

const cleanups: Array<() => Promise<void> | void> = [];
// One whole mesh at a time (the lock is released last, after this file's mesh is down).
before(async () => {
  cleanups.push(await exclusiveMesh());
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface AnalyzedBy {
  pod: string;
  cluster: string | null;
  version: string | null;
}

interface Entry {
  id: number;
  text: string;
  score: number | null;
  tone?: string | null;
  analyzer?: string | null;
  analyzedBy?: AnalyzedBy | null;
}

interface Pod {
  cluster: string;
  name: string;
  namespace: string;
  address: string;
  ready: boolean;
}

interface Up {
  dir: string;
  base: string;
  clusters: Record<string, { ingress?: string; configApi: string; network: string; private: boolean }>;
  pods: Pod[];
  pod(name: string): Pod;
}

const ANALYZER = "analyzer.guestbook.svc.cluster.local";
const REDIS_MASTER = "redis-master.guestbook.svc.cluster.local";
const REDIS_REPLICA = "redis-replica.guestbook.svc.cluster.local";

/** A copy of this directory brought up with `isthmus up --detach`; `isthmus down` when the tests end. */
async function upGuestbook(isolate: boolean): Promise<Up> {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-guestbook-"));
  cpSync(import.meta.dirname, dir, { recursive: true, filter: (src) => !src.includes(".isthmus") });
  // The apps' packages (sentiment) resolve from the repository's node_modules, as in examples/guestbook.
  symlinkSync(join(import.meta.dirname, "..", "..", "node_modules"), join(dir, "node_modules"));
  const port = await freePort();
  const mesh = readFileSync(join(dir, "mesh.yaml"), "utf8");
  assert.match(mesh, /port: 8080/);
  writeFileSync(join(dir, "mesh.yaml"), mesh.replace("port: 8080", `port: ${port}`));
  cleanups.push(async () => {
    await isthmus(["down", dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const started = Date.now();
  const up = await isthmus(["up", dir, "--detach", "-o", "json", ...(isolate ? ["--isolate"] : [])]);
  assert.equal(up.code, 0, up.err);
  const ready = JSON.parse(up.out) as { clusters: Up["clusters"]; pods: Pod[] };
  console.log(
    `guestbook${isolate ? " (isolated)" : ""} ready in ${((Date.now() - started) / 1000).toFixed(1)} s, ${ready.pods.length} pods`,
  );
  const base = ready.clusters.iks?.ingress;
  assert.equal(base, `http://127.0.0.1:${port}`);
  assert.ok(
    ready.pods.every((p) => p.ready),
    JSON.stringify(ready.pods),
  );
  return {
    dir,
    base,
    clusters: ready.clusters,
    pods: ready.pods,
    pod: (name) => {
      const p = ready.pods.find((x) => x.name === name);
      assert.ok(p, `pod ${name}`);
      return p;
    },
  };
}

/** The split: which pods run in which cluster, and the link between them (icp dials iks). */
async function checkSplit(g: Up): Promise<void> {
  const where = (cluster: string) =>
    g.pods
      .filter((p) => p.cluster === cluster)
      .map((p) => p.name)
      .sort();
  assert.deepEqual(where("iks"), ["frontend-0", "frontend-1", "redis-master-0"]);
  assert.deepEqual(where("icp"), ["analyzer-v1-0", "analyzer-v2-0", "redis-replica-0", "tone-api-0"]);
  assert.equal(g.clusters.icp?.private, true);
  assert.equal(g.clusters.iks?.private, false);
  assert.equal(g.clusters.icp?.ingress, undefined, "nothing dials into icp, not even an ingress");
  const links = await eventually(
    async () => {
      const r = await isthmus(["remote-clusters", "--mesh", g.dir, "-o", "json"]);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out) as Array<{
        cluster: string;
        remoteClusters: Array<{ cluster: string; direction: string; state: string }>;
      }>;
    },
    (all) => all.every((c) => c.remoteClusters.every((l) => l.state === "connected")),
    "the link between iks and icp connected",
    20_000,
  );
  const link = (from: string) => links.find((c) => c.cluster === from)?.remoteClusters[0];
  assert.equal(link("iks")?.cluster, "icp");
  assert.equal(link("iks")?.direction, "accept", "iks waits: icp cannot be dialled");
  assert.equal(link("icp")?.direction, "dial");
}

async function post(
  base: string,
  text: string,
): Promise<{ status: number; entry?: Entry; warning?: string }> {
  const r = await fetch(`${base}/api/entries`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text }),
  });
  const body = (await r.json()) as { entry?: Entry; warning?: string; error?: string };
  return { status: r.status, ...body };
}

/** Posts until an analyzer answers (peering delivers icp's endpoints to iks shortly after the pods are ready). */
async function firstAnalyzed(base: string, text: string): Promise<{ entry?: Entry; warning?: string }> {
  return eventually(
    () => post(base, text),
    (r) => r.status === 201 && r.entry?.analyzedBy != null,
    "an entry handled by the analyzer in icp",
    20_000,
  );
}

function redisCli(host: string, ...args: string[]): string {
  const r = spawnSync("redis-cli", ["-h", host, "-p", "6379", "--raw", ...args], {
    encoding: "utf8",
    timeout: 5000,
  });
  assert.equal(r.status, 0, `redis-cli ${args.join(" ")}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** The replica is in sync with the master through the link: its master is its own pod's tunnel port. */
async function checkReplication(g: Up, text: string): Promise<void> {
  const master = g.pod("redis-master-0");
  const replica = g.pod("redis-replica-0");
  assert.match(redisCli(master.address, "LRANGE", "guestbook:entries", "0", "-1"), new RegExp(text));
  await eventually(
    async () => redisCli(replica.address, "LRANGE", "guestbook:entries", "0", "-1"),
    (t) => t.includes(text),
    "the replica in icp to have the entry",
    20_000,
  );
  const info = redisCli(replica.address, "INFO", "replication");
  assert.match(info, /master_link_status:up/);
  // REDIS_MASTER_SERVICE_HOST is the replica pod's own address: the runtime's tunnel through its sidecar.
  assert.match(info, new RegExp(`master_host:${replica.address.replace(/\./g, "\\.")}\\b`));
}

/** An HTTP request sent to a pod's sidecar in proxy form: it leaves with that pod's identity. */
function viaSidecar(
  pod: Pod,
  host: string,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; text: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: pod.address,
        port: 15001,
        method,
        path: `http://${host}:80${path}`,
        headers: { host: `${host}:80`, "content-type": "application/json" },
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer in 10 s")));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * A Redis PING through a pod's sidecar (CONNECT, as the runtime's TCP tunnels do): what came back before the
 * connection closed or 3 s passed.
 */
function pingThroughSidecar(pod: Pod, host: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: pod.address, port: 15001 });
    let got = "";
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, 3000);
    s.setEncoding("latin1");
    s.on("connect", () => s.write(`CONNECT ${host}:6379 HTTP/1.1\r\nhost: ${host}:6379\r\n\r\n`));
    s.on("data", (d: string) => {
      const before = got.includes("\r\n\r\n");
      got += d;
      if (!before && got.includes("\r\n\r\n") && /^HTTP\/1\.1 200 /.test(got)) s.write("PING\r\n");
      if (got.includes("+PONG")) done();
    });
    s.on("error", done);
    s.on("close", done);
  });
}

/** How many connections a pod's sidecar refused on an inbound TCP port (admin /stats; unisolated runtime). */
async function rbacDenied(dir: string, cluster: string, pod: string, port: number): Promise<number> {
  const log = readFileSync(join(dir, ".isthmus", "logs", cluster, "guestbook", pod, "sidecar.log"), "utf8");
  const admin = [...log.matchAll(/admin on [^\s]+:(\d+)/g)].at(-1)?.[1];
  assert.ok(admin, `${pod}'s sidecar logs its admin port`);
  const stats = await (await fetch(`http://127.0.0.1:${admin}/stats`)).text();
  // Counted per inbound chain (Envoy's tcp.STAT_PREFIX.rbac.denied); none yet reads as 0.
  const m = new RegExp(`^tcp\\.inbound_[^\\s]*_${port}\\.rbac\\.denied: (\\d+)$`, "m").exec(stats);
  return m ? Number(m[1]) : 0;
}

/** `isthmus down`, and nothing of the mesh left: no process in its directory, no Redis on its addresses. */
async function downAndGone(g: Up): Promise<void> {
  const down = await isthmus(["down", g.dir]);
  assert.equal(down.code, 0, down.err);
  await eventually(
    async () => processesIn(g.dir),
    (p) => p.length === 0,
    "no process left",
    20_000,
  );
  // redis-server runs in its --dir (/tmp), so it is not among the processes found by their directory. (Only on
  // loopback addresses: an isolated mesh's addresses are routed nowhere once its namespaces are gone, and a
  // host's default route may answer for them.)
  for (const name of ["redis-master-0", "redis-replica-0"])
    if (g.pod(name).address.startsWith("127."))
      assert.equal(await accepts(g.pod(name).address, 6379), false, `${name} stopped`);
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

test("the Guestbook across iks and icp: the split, the link, Redis replication, the canary, faults, policies", async () => {
  const g = await upGuestbook(false);
  await checkSplit(g);

  const page = await fetch(`${g.base}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);

  // The entry crosses the link: scored by an analyzer pod of icp, its version matching its subset.
  const good = await firstAnalyzed(g.base, "What a wonderful, lovely day");
  assert.equal(good.entry?.tone, "positive", JSON.stringify(good));
  assert.equal(good.entry?.analyzedBy?.cluster, "icp");
  assert.match(good.entry?.analyzedBy?.pod ?? "", /^analyzer-v[12]-0$/);
  assert.equal(good.entry?.analyzedBy?.pod, `analyzer-${good.entry?.analyzer}-0`);
  const bad = await post(g.base, "This is terrible, awful and sad");
  assert.equal(bad.entry?.tone, "negative", JSON.stringify(bad));
  assert.equal((await post(g.base, "")).status, 400);

  // Written to the master in iks; replicated to icp over a connection icp opened. The list is read from the
  // master, in the frontend's own cluster.
  await checkReplication(g, "terrible, awful");
  const list = (await (await fetch(`${g.base}/api/entries`)).json()) as { source: string; cluster: string };
  assert.equal(list.source, "master");
  assert.equal(list.cluster, "iks");

  // How the frontend reaches the analyzer: its sidecar sends subset v1 to iks's east-west gateway (split
  // horizon: icp's pods are on another network), and that gateway over the tunnel to icp-network.
  const iksApi = g.clusters.iks!.configApi;
  process.env.ISTHMUS_TOKEN = readFileSync(join(g.dir, ".isthmus", "api-token"), "utf8").trim();
  const endpoints = async (proxy: string) => {
    const r = await isthmus(["proxy-config", "endpoints", proxy, "--server", iksApi, "-o", "json"]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as Array<{
      cluster: string;
      address: string;
      port: number;
      tunnel?: string;
      labels?: Record<string, string>;
    }>;
  };
  const v1 = `outbound|80|v1|${ANALYZER}`;
  const fromFrontend = (await endpoints("frontend-0")).filter((e) => e.cluster === v1);
  assert.equal(fromFrontend.length, 1, JSON.stringify(fromFrontend));
  assert.equal(fromFrontend[0]!.port, 15443);
  assert.equal(fromFrontend[0]!.labels?.["isthmus.io/via"], "gateway");
  assert.equal(fromFrontend[0]!.labels?.["topology.istio.io/network"], "icp-network");
  const fromGateway = (await endpoints("istio-eastwestgateway-iks")).filter((e) => e.cluster === v1);
  assert.equal(fromGateway.length, 1, JSON.stringify(fromGateway));
  assert.equal(fromGateway[0]!.tunnel, "icp-network");

  // The analyzer canary (traffic.yaml, read in iks): 90/10 between v1 and v2 in icp, within 5 points.
  const versions = { v1: 0, v2: 0, other: 0 };
  for (let i = 0; i < 2000; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, (_, k) => post(g.base, `entry ${i + k} is fine`)),
    );
    for (const r of batch) {
      const by = r.entry?.analyzedBy;
      const v = r.entry?.analyzer;
      if (by?.cluster === "icp" && (v === "v1" || v === "v2") && by.pod === `analyzer-${v}-0`) versions[v]++;
      else versions.other++;
    }
  }
  const v2Share = versions.v2 / (versions.v1 + versions.v2);
  console.log(
    `canary: v1 ${versions.v1}, v2 ${versions.v2}, other ${versions.other}; v2 ${v2Share.toFixed(3)}`,
  );
  assert.equal(versions.other, 0, "every entry scored in icp by the version it names");
  assert.ok(Math.abs(v2Share - 0.1) <= 0.05, `v2 share ${v2Share}`);

  // The tone API hanging: the analyzer's timeout and the frontend's fallback keep the page working; the entry
  // still names the analyzer that tried.
  const tone = processesIn(g.dir).find((p) =>
    readFileSync(`/proc/${p}/cmdline`, "latin1").includes("tone-api/server.mjs"),
  );
  assert.ok(tone !== undefined);
  assert.equal(spawnSync("kill", ["-STOP", String(tone)]).status, 0);
  let degraded: Awaited<ReturnType<typeof post>>;
  try {
    degraded = await post(g.base, "written while the tone API hangs");
  } finally {
    spawnSync("kill", ["-CONT", String(tone)]);
  }
  assert.equal(degraded.status, 201, JSON.stringify(degraded));
  assert.equal(degraded.entry?.score, null, "stored without a score");
  assert.equal(degraded.entry?.analyzedBy?.cluster, "icp");
  assert.match(degraded.warning ?? "", /could not score it.*tone API timed out/);

  // The AuthorizationPolicies, enforced in the callee's cluster with the caller's identity carried across the
  // link: the frontend's sidecar may POST /analyze; redis-master's may not.
  const body = JSON.stringify({ text: "a good day" });
  const asFrontend = await viaSidecar(g.pod("frontend-0"), ANALYZER, "POST", "/analyze", body);
  assert.equal(asFrontend.status, 200, asFrontend.text);
  assert.equal(asFrontend.headers["x-served-cluster"], "icp");
  const asRedis = await viaSidecar(g.pod("redis-master-0"), ANALYZER, "POST", "/analyze", body);
  assert.equal(asRedis.status, 403, asRedis.text);
  assert.match(asRedis.text, /RBAC: access denied/);
  // The replica admits no one through the mesh (allow-nothing): the frontend's connection crosses the link to
  // the replica's sidecar, which refuses it. The master admits the frontend.
  assert.match(await pingThroughSidecar(g.pod("frontend-0"), REDIS_MASTER), /\+PONG/);
  const deniedBefore = await rbacDenied(g.dir, "icp", "redis-replica-0", 6379);
  assert.doesNotMatch(await pingThroughSidecar(g.pod("frontend-0"), REDIS_REPLICA), /\+PONG/);
  await eventually(
    () => rbacDenied(g.dir, "icp", "redis-replica-0", 6379),
    (n) => n === deniedBefore + 1,
    "the replica's sidecar counted the refusal",
    5000,
  );
  const direct = await fetch(`http://${g.pod("analyzer-v1-0").address}:15006/`).catch((e: Error) => e);
  assert.ok(direct instanceof Error, "the analyzer's sidecar takes mutual TLS only");

  await downAndGone(g);
});

const support = await isolationSupport();
const ss = spawnSync("ss", ["-V"]).status === 0;
const skipIsolated = !support.ok ? support.reason : ss ? false : "ss (iproute2) is missing";

/** Connects from inside a network namespace to each HOST:PORT; what each dial gave ("connected", an errno). */
function dialFrom(namespace: string, targets: readonly string[]): Record<string, string> {
  const script = `
import net from "node:net";
const out = {};
await Promise.all(process.argv.slice(1).map((t) => new Promise((resolve) => {
  const i = t.lastIndexOf(":");
  const s = net.connect({ host: t.slice(0, i), port: Number(t.slice(i + 1)) });
  const done = (r) => { out[t] = r; s.destroy(); resolve(); };
  s.setTimeout(3000, () => done("timeout"));
  s.once("connect", () => done("connected"));
  s.once("error", (e) => done(e.code ?? e.message));
})));
process.stdout.write(JSON.stringify(out));
`;
  const r = spawnSync(
    "ip",
    ["netns", "exec", namespace, process.execPath, "--input-type=module", "-e", script, ...targets],
    { encoding: "utf8", timeout: 20_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, string>;
}

/**
 * Every ADDRESS:PORT listening for TCP (IPv4) in a network namespace, loopback aside; a socket on every address
 * of the namespace is dialled at `anyAddress`, one of the namespace's own.
 */
function listeners(namespace: string, anyAddress: string): string[] {
  const r = spawnSync("ip", ["netns", "exec", namespace, "ss", "-Hltn4"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[3])
    .filter((a): a is string => a !== undefined && !a.startsWith("127."))
    .map((a) => (a.startsWith("0.0.0.0:") || a.startsWith("*:") ? `${anyAddress}:${a.split(":")[1]}` : a));
}

function namespaces(): string[] {
  const r = spawnSync("ip", ["netns", "list"], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

test("the Guestbook with --isolate: iks cannot dial into icp, the mesh's calls and replication still cross", {
  skip: skipIsolated,
}, async () => {
  const g = await upGuestbook(true);
  const state = JSON.parse(readFileSync(join(g.dir, ".isthmus", "runtime.json"), "utf8")) as {
    isolatedBase?: number;
  };
  assert.ok(state.isolatedBase !== undefined, "the runtime is isolated");
  const iksNs = `isthmus-${state.isolatedBase}-iks`;
  const icpNs = `isthmus-${state.isolatedBase}-icp`;
  assert.ok(namespaces().includes(iksNs) && namespaces().includes(icpNs), namespaces().join(", "));
  await checkSplit(g);

  // The frontend's entry reaches the analyzer in icp. The tone API is not reachable from there (its
  // ServiceEntry names 127.0.0.1, icp's own loopback in its namespace): stored unscored, and said so.
  const first = await firstAnalyzed(g.base, "What a wonderful, lovely day");
  assert.equal(first.entry?.analyzedBy?.cluster, "icp", JSON.stringify(first));
  assert.match(first.entry?.analyzedBy?.pod ?? "", /^analyzer-v[12]-0$/);
  assert.equal(first.entry?.score, null);
  assert.match(first.warning ?? "", /could not score it.*tone API failed/);
  await checkReplication(g, "wonderful, lovely day");

  // Everything listening in icp, every pod, its control plane and its gateways among it: live from inside
  // icp, refused from inside iks (the hub's rules reset new connections into a private cluster).
  const icpAddresses = g.pods
    .filter((p) => p.cluster === "icp" && p.name !== "tone-api-0")
    .map((p) => p.address);
  const icpControlPlane = new URL(g.clusters.icp!.configApi).hostname;
  const inIcp = listeners(icpNs, icpControlPlane);
  for (const a of [...icpAddresses, icpControlPlane])
    assert.ok(
      inIcp.some((l) => l.startsWith(`${a}:`)),
      `${a} listens in icp: ${inIcp.join(" ")}`,
    );
  assert.ok(
    inIcp.some((l) => l.endsWith(":15443")),
    "icp's east-west gateway",
  );
  const fromIcp = dialFrom(icpNs, inIcp);
  assert.ok(
    Object.values(fromIcp).every((r) => r === "connected"),
    JSON.stringify(fromIcp),
  );
  const fromIks = dialFrom(iksNs, inIcp);
  assert.deepEqual(
    Object.entries(fromIks).filter(([, r]) => r !== "ECONNREFUSED"),
    [],
    "nothing in icp accepts a connection from iks",
  );
  // The probe itself works from iks (its own cluster), and icp dials out to iks's east-west gateway.
  const iksGateway = listeners(iksNs, new URL(g.clusters.iks!.configApi).hostname).find((l) =>
    l.endsWith(":15443"),
  )!;
  assert.ok(iksGateway);
  assert.deepEqual(dialFrom(iksNs, [iksGateway]), { [iksGateway]: "connected" });
  assert.deepEqual(dialFrom(icpNs, [iksGateway]), { [iksGateway]: "connected" });

  // ... while the call through the mesh crosses: a second entry handled in icp.
  const second = await post(g.base, "still reaching the analyzer");
  assert.equal(second.status, 201, JSON.stringify(second));
  assert.equal(second.entry?.analyzedBy?.cluster, "icp", JSON.stringify(second));

  await downAndGone(g);
  assert.deepEqual(
    namespaces().filter((n) => n === iksNs || n === icpNs),
    [],
    "isthmus down removed the namespaces",
  );
});
