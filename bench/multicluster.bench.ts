// npm run bench:multicluster — what crossing clusters costs, on the three-cluster mesh of bench/multicluster-mesh
// (each cluster in its own network namespace when run as root, as `isthmus up --isolate`): at 500 requests/s
// from the client pod's sidecar in east, the latency of a call within east (echo), across networks through
// west's east-west gateway (west-only: sidecar -> mTLS -> west's gateway, passed through by SNI -> the pod's
// sidecar), and through the dial-out tunnel into the private cluster (hidden-only: sidecar -> east's gateway ->
// the reverse tunnel hidden's gateway holds -> hidden's gateway -> the pod's sidecar); then the failover time
// when a whole cluster dies under load (api, served by west, fails over to hidden). Each path is measured in
// ROUNDS interleaved rounds (open loop, latency from each request's scheduled time) and the median round is
// kept. Required: the gateway and the tunnel add <= 3 ms at p99 over the same-cluster call; failover <= 2 s.
// There is no other mesh to compare with on this machine (Istio needs Kubernetes); the same-cluster call is
// the baseline. Ends with one JSON line.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchMesh } from "../src/runtime/launch.ts";
import { readMeshFile } from "../src/runtime/mesh-file.ts";
import { fixedRate } from "./lib/fixed-rate.ts";
import { recordedLoad } from "./lib/recorded-load.ts";

const RPS = Number(process.env.BENCH_RPS ?? 500);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 16;
const PATHS = [
  { key: "same", service: "echo", path: "same cluster (east -> east)" },
  { key: "gateway", service: "west-only", path: "east-west gateway (east -> west)" },
  { key: "tunnel", service: "hidden-only", path: "dial-out tunnel (east -> private hidden)" },
] as const;

const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-mc-"));
cpSync(join(import.meta.dirname, "multicluster-mesh"), dir, { recursive: true });
const spec = readMeshFile(dir);
if (!spec.ok) throw new Error(JSON.stringify(spec.diagnostics));
const launched = await launchMesh(spec.mesh, join(dir, ".isthmus"), {
  isolate: process.env.BENCH_ISOLATE !== "0",
  log: () => {},
});
if (!launched.ok) throw new Error(launched.message ?? JSON.stringify(launched.diagnostics));
const mesh = launched.mesh;
const stop = async () => {
  await mesh.stop();
  rmSync(dir, { recursive: true, force: true });
};
process.once("SIGINT", () => void stop().then(() => process.exit(130)));

try {
  const t0 = Date.now();
  await mesh.runtime.start();
  const readyS = (Date.now() - t0) / 1000;
  const client = mesh.runtime.status().pods.find((p) => p.name === "client-0")!;
  const url = (service: string) => `http://${service}.demo.svc.cluster.local/`;
  const run = (service: string, seconds: number) =>
    fixedRate({
      host: client.address,
      port: 15001,
      path: url(service),
      hostHeader: `${service}.demo.svc.cluster.local`,
      rps: RPS,
      seconds,
      connections: CONNECTIONS,
    });
  // Warm every path (connections, TLS sessions, JIT) before measuring.
  for (const p of PATHS) await run(p.service, 2);
  const rounds = new Map<string, Awaited<ReturnType<typeof run>>[]>(PATHS.map((p) => [p.key, []]));
  for (let r = 0; r < ROUNDS; r++)
    for (const p of PATHS) rounds.get(p.key)!.push(await run(p.service, SECONDS));
  const median = (key: string) => {
    const list = [...rounds.get(key)!].sort((a, b) => a.p99Ms - b.p99Ms);
    return list[Math.floor(list.length / 2)]!;
  };

  // Failover: api from west; all of west killed; when does every request succeed, served by hidden?
  const stat = async (name: string) => {
    const text = await (await fetch(`${client.admin}/stats`)).text();
    const m = new RegExp(`^${name.replace(/[|.]/g, "\\$&")}: (\\d+)$`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  };
  const API = "cluster.outbound|80||api.demo.svc.cluster.local.";
  const retriesBefore = await stat(`${API}upstream_rq_retry`);
  const load = recordedLoad({
    proxyHost: client.address,
    proxyPort: 15001,
    url: url("api"),
    rps: RPS,
    connections: CONNECTIONS,
  });
  await new Promise((r) => setTimeout(r, 3000));
  const killedAt = load.now();
  await mesh.runtime.stopCluster("west");
  await new Promise((r) => setTimeout(r, 5000));
  const records = await load.stop();
  const after = records.filter((x) => x.at + x.latencyMs >= killedAt);
  const failed = after.filter((x) => x.status !== 200);
  // Switched: from the answer after which every request succeeded and was served by hidden.
  let switchedAt = killedAt;
  for (const x of after)
    if (x.status !== 200 || !x.body.startsWith("hidden "))
      switchedAt = Math.max(switchedAt, x.at + x.latencyMs);
  const failoverS = (switchedAt - killedAt) / 1000;
  const retries = (await stat(`${API}upstream_rq_retry`)) - retriesBefore;
  const ejections = await stat(`${API}outlier_detection.ejections_consecutive_gateway_failure`);

  const rows = PATHS.map((p) => {
    const m = median(p.key);
    return [p.path, m.p50Ms.toFixed(2), m.p90Ms.toFixed(2), m.p99Ms.toFixed(2), String(m.errors)];
  });
  const same = median("same");
  const gateway = median("gateway");
  const tunnel = median("tunnel");
  const widths = [42, 9, 9, 9, 7];
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join(" ");
  console.log(
    `\nmulti-cluster latency at ${RPS} req/s, ${CONNECTIONS} connections, median of ${ROUNDS} rounds of ${SECONDS} s (${mesh.isolation ? "isolated: a network namespace per cluster" : `unisolated: ${mesh.unisolatedReason ?? "not asked"}`}; mesh ready in ${readyS.toFixed(1)} s)\n`,
  );
  console.log(line(["path", "p50 ms", "p90 ms", "p99 ms", "errors"]));
  for (const r of rows) console.log(line(r));
  console.log(
    `\nadded at p99 over the same-cluster call: gateway ${(gateway.p99Ms - same.p99Ms).toFixed(2)} ms, tunnel ${(tunnel.p99Ms - same.p99Ms).toFixed(2)} ms (required <= 3 ms each)`,
  );
  console.log(
    `failover when all of west dies at ${RPS} req/s: ${failoverS.toFixed(3)} s until every answer comes from hidden (required <= 2 s); ${failed.length} of ${after.length} requests failed during the switch; the client's sidecar retried ${retries} (connections west's death broke) and ejected west's gateway ${ejections} time(s) (outlier detection)`,
  );
  console.log(
    JSON.stringify({
      same_p99_ms: Number(same.p99Ms.toFixed(3)),
      gateway_p99_ms: Number(gateway.p99Ms.toFixed(3)),
      tunnel_p99_ms: Number(tunnel.p99Ms.toFixed(3)),
      failover_s: Number(failoverS.toFixed(3)),
      same_p50_ms: Number(same.p50Ms.toFixed(3)),
      gateway_p50_ms: Number(gateway.p50Ms.toFixed(3)),
      tunnel_p50_ms: Number(tunnel.p50Ms.toFixed(3)),
      failover_errors: failed.length,
      failover_retries: retries,
      rps: RPS,
      isolated: mesh.isolation !== undefined,
    }),
  );
} finally {
  await stop();
}
