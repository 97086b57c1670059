// The multi-cluster mesh of bench/multicluster-mesh run for real (isolated in network namespaces when the test
// runs as root, as CI does): east and west public, hidden private. From the client pod in east, calls reach a
// service in the same cluster, one in west through west's east-west gateway, and one in hidden through east's
// gateway and the reverse tunnel hidden holds there; east's namespace cannot dial hidden at all. Then the
// faults, in order, each with its figures printed: the private gateway killed mid-traffic (the tunnel is
// re-established, in-flight requests retried); west's control plane gone (its endpoints kept while its
// gateway serves); all of west killed under load (api fails over to hidden: errors during the switch counted,
// none after); west withdrawn after the grace period.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { failuresAfter, recordedLoad } from "../../bench/lib/recorded-load.ts";
import { runIsthmus } from "../control/e2e-support.ts";
import type { ProxyConfig } from "../proxy/config/types.ts";
import { type LaunchedMesh, launchMesh } from "./launch.ts";
import { readMeshFile } from "./mesh-file.ts";
import { eventually, exclusiveMesh } from "./runtime-test-support.ts";

const FIXTURE = new URL("../../bench/multicluster-mesh/", import.meta.url).pathname;
const HOST = (name: string) => `http://${name}.demo.svc.cluster.local/`;
const GRACE_S = 4;

let dir: string;
let mesh: LaunchedMesh;
let client: { host: string; port: number };
const log: string[] = [];
let westKilledAt = 0;

let release: () => void = () => {};

before(async () => {
  release = await exclusiveMesh();
  dir = mkdtempSync(join(tmpdir(), "isthmus-mc-"));
  cpSync(FIXTURE, dir, { recursive: true });
  const spec = readMeshFile(dir);
  assert.ok(spec.ok);
  const launched = await launchMesh(spec.mesh, join(dir, ".isthmus"), {
    isolate: true,
    peerGrace: `${GRACE_S}s`,
    log: (line) => log.push(line),
  });
  assert.ok(launched.ok, JSON.stringify(launched));
  mesh = launched.mesh;
  if (mesh.isolation === undefined) console.log(`# unisolated: ${mesh.unisolatedReason}`);
  await mesh.runtime.start();
  const pod = mesh.runtime.status().pods.find((p) => p.name === "client-0")!;
  client = { host: pod.address, port: 15001 };
});

after(async () => {
  await mesh?.stop();
  rmSync(dir, { recursive: true, force: true });
  release();
});

/** One GET through the client's sidecar: status and body. */
async function call(name: string): Promise<{ status: number; body: string }> {
  const load = recordedLoad({
    proxyHost: client.host,
    proxyPort: client.port,
    url: HOST(name),
    rps: 1,
    connections: 1,
  });
  await eventually(
    async () => load.finished.length,
    (n) => n > 0,
    "no answer",
    10_000,
  );
  const [r] = await load.stop();
  return { status: r!.status, body: r!.body.trim() };
}

async function remoteClusters(
  cluster: string,
): Promise<Array<{ cluster: string; state: string; lastError?: string }>> {
  const c = mesh.runtime.status().clusters[cluster]!;
  const r = await fetch(`${c.configApi}/debug/remote_clusters`, {
    headers: { authorization: `Bearer ${mesh.runtime.apiToken}` },
  });
  assert.equal(r.status, 200);
  return ((await r.json()) as { remoteClusters: Array<{ cluster: string; state: string }> }).remoteClusters;
}

test("calls cross clusters: same cluster, through an east-west gateway, through the private cluster's tunnel", async () => {
  assert.match((await call("echo")).body, /^east echo-0$/);
  assert.match((await call("west-only")).body, /^west west-only-0$/);
  assert.match((await call("hidden-only")).body, /^hidden hidden-only-0$/);
  // Locality failover's preference: us-west before the private eu-central.
  assert.match((await call("api")).body, /^west api-0$/);
  for (const c of ["east", "west", "hidden"]) {
    const peers = await remoteClusters(c);
    assert.deepEqual(
      peers.map((p) => `${p.cluster} ${p.state}`).sort(),
      ["east", "west", "hidden"]
        .filter((x) => x !== c)
        .map((x) => `${x} connected`)
        .sort(),
    );
  }
});

test("the CLI across clusters: remote-clusters, proxy-config endpoints, tls-check", async () => {
  const token = mesh.runtime.apiToken;
  const server = mesh.runtime.status().clusters.east!.configApi;
  const rc = await runIsthmus(["remote-clusters", "--server", server], token);
  assert.equal(rc.status, 0, rc.stderr);
  assert.match(rc.stdout, /^hidden\s+net-hidden\s+accept\s+\S+\s+connected/m);
  assert.match(rc.stdout, /^west\s+net-west\s+accept\s+\S+\s+connected/m);
  const ep = await runIsthmus(["proxy-config", "endpoints", "client-0", "--server", server], token);
  assert.equal(ep.status, 0, ep.stderr);
  assert.match(
    ep.stdout,
    /^\S+:15443\s+1\s+0\s+\S+\s+net-hidden\s+hidden\s+east-west gateway\s+outbound\|80\|\|hidden-only/m,
  );
  assert.match(
    ep.stdout,
    /^\S+:15443\s+1\s+0\s+\S+\s+net-west\s+west\s+east-west gateway\s+outbound\|80\|\|west-only/m,
  );
  const gw = await runIsthmus(
    ["proxy-config", "endpoints", "istio-eastwestgateway-east", "--server", server],
    token,
  );
  assert.match(
    gw.stdout,
    /^tunnel\.net-hidden:15443\s+.*tunnel net-hidden\s+outbound_\.80_\._\.hidden-only/m,
  );
  const tls = await runIsthmus(["tls-check", "client-0", "hidden-only", "--server", server], token);
  assert.equal(tls.status, 0, tls.stdout + tls.stderr);
  assert.match(tls.stdout, /^hidden-only\.demo\.svc\.cluster\.local:80\s+OK\s+PERMISSIVE\s+AUTO/m);
});

test("the private cluster cannot be dialled from a public cluster's network namespace", {
  skip: false,
}, async (t) => {
  const iso = mesh.isolation;
  if (iso === undefined) {
    t.skip(`unisolated: ${mesh.unisolatedReason}`);
    return;
  }
  const hidden = mesh.runtime.status().clusters.hidden!;
  const west = mesh.runtime.status().clusters.west!;
  const dial = (cluster: string, hostPort: string) =>
    new Promise<string>((resolve) => {
      const [h, p] = hostPort.split(":");
      const script = `const s=require("net").connect(${p},"${h}");s.setTimeout(3000,()=>{console.log("TIMEOUT");process.exit()});s.on("connect",()=>{console.log("CONNECTED");process.exit()});s.on("error",e=>{console.log(e.code);process.exit()})`;
      execFile(
        iso.command(cluster, [process.execPath, "-e", script])[0]!,
        iso.command(cluster, [process.execPath, "-e", script]).slice(1),
        (_e, out) => resolve(out.trim()),
      );
    });
  const hiddenCp = hidden.controlPlane.replace(":15010", ":15011");
  const hiddenPod = mesh.runtime.status().pods.find((p) => p.cluster === "hidden")!.address;
  const refused = await dial("east", hiddenCp);
  console.log(`# from east's namespace to hidden's control plane ${hiddenCp}: ${refused}`);
  assert.equal(refused, "ECONNREFUSED");
  assert.equal(await dial("east", `${hiddenPod}:15006`), "ECONNREFUSED");
  assert.equal(await dial("west", hiddenCp), "ECONNREFUSED");
  assert.equal(await dial("east", west.controlPlane), "CONNECTED");
  // The private cluster dials out.
  assert.equal(await dial("hidden", west.controlPlane), "CONNECTED");
});

test("the link dropped mid-traffic: the tunnel comes back, in-flight requests are retried", async () => {
  const load = recordedLoad({
    proxyHost: client.host,
    proxyPort: client.port,
    url: HOST("hidden-only"),
    rps: 50,
    connections: 8,
  });
  await new Promise((r) => setTimeout(r, 1000));
  const droppedAt = load.now();
  // Every connection of the link (hidden's gateway to east's: the reverse tunnels) destroyed at once, as a
  // firewall or NAT losing them would.
  const dropped = await dropTunnels();
  assert.ok(dropped > 0, "no tunnel connection to drop");
  await eventually(
    async () => load.finished.filter((r) => r.at > droppedAt + 1000 && r.status === 200).length,
    (n) => n > 50,
    "hidden-only never answered again after the link dropped",
    30_000,
  );
  const records = await load.stop();
  const f = failuresAfter(records, droppedAt);
  console.log(
    `# link drop: ${dropped} tunnel connections destroyed; ${records.length} requests at 50/s, ${f.count} failed, the last due ${f.lastMs.toFixed(0)} ms after the drop`,
  );
  assert.ok(f.count <= 5, `${f.count} requests failed`);
  const end = records.at(-1)!.at;
  assert.deepEqual(
    records.filter((r) => r.at > end - 1000 && r.status !== 200),
    [],
  );
});

/** Destroys the private gateway's tunnel connections (ss -K); how many there were. */
async function dropTunnels(): Promise<number> {
  const gw = mesh.runtime.status().clusters.hidden!.controlPlane.replace(/\.1:15010$/, ".3");
  const argv = ["ss", "-K", "-t", "dport", "=", "15008"];
  const cmd = mesh.isolation ? mesh.isolation.command("hidden", argv) : [...argv, "and", "src", gw];
  const out = await new Promise<string>((resolve, reject) =>
    execFile(cmd[0]!, cmd.slice(1), (e, stdout) => (e ? reject(e) : resolve(stdout))),
  );
  return out.split("\n").filter((l) => /ESTAB/.test(l)).length;
}

test("west's control plane gone: its endpoints are kept while its gateway serves", async () => {
  await mesh.runtime.stopProcess("control-plane/west");
  await eventually(
    async () => (await remoteClusters("east")).find((p) => p.cluster === "west")?.state,
    (s) => s === "down",
    "east never saw west's link go down",
    20_000,
  );
  // Well past the grace period: the gateway still answers east's probes, so west-only is still served.
  await new Promise((r) => setTimeout(r, (GRACE_S + 2) * 1000));
  assert.equal((await remoteClusters("east")).find((p) => p.cluster === "west")?.state, "down");
  assert.match((await call("west-only")).body, /^west west-only-0$/);
  console.log(
    `# west's control plane gone: its endpoints still served ${GRACE_S + 2} s later (grace ${GRACE_S} s), its gateway answering`,
  );
});

test("all of west killed under load: api fails over to hidden, errors only during the switch", async () => {
  const load = recordedLoad({
    proxyHost: client.host,
    proxyPort: client.port,
    url: HOST("api"),
    rps: 100,
    connections: 16,
  });
  await new Promise((r) => setTimeout(r, 2000));
  const before = load.finished.filter((r) => r.status === 200);
  assert.ok(
    before.length > 100 && before.every((r) => r.body.startsWith("west ")),
    "api was not served by west",
  );
  const killedAt = load.now();
  await mesh.runtime.stopCluster("west");
  westKilledAt = Date.now();
  await new Promise((r) => setTimeout(r, 5000));
  const records = await load.stop();
  const f = failuresAfter(records, killedAt);
  const firstHidden = records.find((r) => r.status === 200 && r.body.startsWith("hidden "));
  console.log(
    `# failover: ${records.length} requests at 100/s; ${f.count} failed during the switch, the last due ${f.lastMs.toFixed(0)} ms after the kill; hidden served from ${firstHidden ? (firstHidden.at - killedAt).toFixed(0) : "-"} ms`,
  );
  assert.ok(f.lastMs < 2000, `failures until ${f.lastMs} ms after the kill`);
  const settled = records.filter((r) => r.at > killedAt + 2000);
  assert.ok(settled.length > 200);
  assert.deepEqual(
    settled.filter((r) => r.status !== 200 || !r.body.startsWith("hidden ")),
    [],
    "requests after the switch failed or did not reach hidden",
  );
});

test("west gone for good: withdrawn after the grace period", async () => {
  await eventually(
    async () => (await remoteClusters("east")).find((p) => p.cluster === "west")?.state,
    (s) => s === "withdrawn",
    "east never withdrew west",
    (GRACE_S + 15) * 1000,
  );
  console.log(
    `# west withdrawn by east within ${((Date.now() - westKilledAt) / 1000).toFixed(1)} s of its gateway dying (grace ${GRACE_S} s)`,
  );
  // East's proxies no longer hold west's endpoints: api only hidden's, west-only none.
  const c = mesh.runtime.status().clusters.east!;
  const r = await fetch(`${c.configApi}/debug/config_dump?proxyID=client-0`, {
    headers: { authorization: `Bearer ${mesh.runtime.apiToken}` },
  });
  const dump = (await r.json()) as { config: ProxyConfig };
  const endpoints = (name: string) =>
    (dump.config.clusters ?? []).find((x) => x.name === `outbound|80||${name}.demo.svc.cluster.local`)
      ?.endpoints;
  assert.equal(endpoints("west-only"), undefined);
  assert.deepEqual(
    endpoints("api")?.map((e) => e.labels?.["topology.istio.io/cluster"]),
    ["hidden"],
  );
});
