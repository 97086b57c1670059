// npm run bench:control-plane — the control plane under a synthetic mesh, as a real process.
//
// Per size (services x 10 endpoints as ServiceEntries over 10 namespaces, 50 VirtualServices with weighted
// subsets, retries and timeouts, 50 DestinationRules with subsets and traffic policies), an `isthmus
// control-plane` serves 1,000 lightweight push-stream clients (bench/lib/xds-load-clients.ts, another process:
// they ACK, they do not apply). Reported: the time until every client has its first config (full push); the
// convergence of CHANGES endpoint changes and CHANGES VirtualService changes made through the config API, from
// the apply to each client's next response (p50, p99 over all clients and changes); the control plane's peak
// RSS. Sizes BENCH_SIZES (default 100,1000,5000); the figures of the 1,000-service run are the JSON line's, with
// the growth across sizes beside them. Required (1,000 services): full push <= 5 s, endpoint p99 <= 500 ms,
// VirtualService p99 <= 1,000 ms, RSS <= 1 GB.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const root = join(import.meta.dirname, "..");
const SIZES = (process.env.BENCH_SIZES ?? "100,1000,5000").split(",").map(Number);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 1000);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 5);
const ENDPOINTS = 10;
const NAMESPACES = 10;
const RULES = 50;
const TOKEN = "bench-control-plane-token";
const children: ChildProcess[] = [];

const host = (i: number) => `svc-${i}.ns-${i % NAMESPACES}.svc.cluster.local`;
const ns = (i: number) => `ns-${i % NAMESPACES}`;

function serviceEntry(i: number, generation = 0): string {
  const eps = Array.from({ length: ENDPOINTS }, (_, e) => {
    const n = i * ENDPOINTS + e + generation * 7919;
    return `  - {address: 10.${Math.floor(n / 65536) % 256}.${Math.floor(n / 256) % 256}.${n % 256}, labels: {version: v${(e % 2) + 1}}, locality: region-${e % 3}/zone-${e % 2}}`;
  }).join("\n");
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: ${ns(i)}}
spec:
  hosts: [${host(i)}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${eps}
`;
}

function virtualService(i: number, v1Weight = 90): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-${i}, namespace: ${ns(i)}}
spec:
  hosts: [${host(i)}]
  http:
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: ${host(i)}, subset: v2}}]
  - route:
    - {destination: {host: ${host(i)}, subset: v1}, weight: ${v1Weight}}
    - {destination: {host: ${host(i)}, subset: v2}, weight: ${100 - v1Weight}}
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,connect-failure"}
    timeout: 5s
`;
}

function destinationRule(i: number): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-${i}, namespace: ${ns(i)}}
spec:
  host: ${host(i)}
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Lines of a child's stdout as parsed JSON, one at a time. */
function jsonLines(child: ChildProcess): () => Promise<Record<string, unknown>> {
  const queue: Record<string, unknown>[] = [];
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => {
    const v = JSON.parse(l) as Record<string, unknown>;
    const w = waiting.shift();
    if (w) w(v);
    else queue.push(v);
  });
  return () => {
    const v = queue.shift();
    return v ? Promise.resolve(v) : new Promise((r) => waiting.push(r));
  };
}

interface SizeResult {
  services: number;
  fullPushS: number;
  pushedMb: number;
  endpointP50: number;
  endpointP99: number;
  vsP50: number;
  vsP99: number;
  rssMb: number;
}

async function runSize(services: number): Promise<SizeResult> {
  const docs: string[] = [];
  for (let i = 0; i < services; i++) docs.push(serviceEntry(i));
  for (let i = 0; i < Math.min(RULES, services); i++) docs.push(virtualService(i), destinationRule(i));

  const cp = spawn(
    process.execPath,
    [
      join(root, "bin", "isthmus.js"),
      "control-plane",
      "--listen",
      "127.0.0.1:0",
      "--api-listen",
      "127.0.0.1:0",
      "--monitoring-listen",
      "off",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ISTHMUS_TOKEN: TOKEN } },
  );
  children.push(cp);
  let cpErr = "";
  cp.stderr!.setEncoding("utf8");
  cp.stderr!.on("data", (d: string) => {
    cpErr += d;
  });
  const deadline = Date.now() + 120_000;
  while (!/services on 127\.0\.0\.1:(\d+)/.test(cpErr)) {
    if (cp.exitCode !== null || Date.now() > deadline)
      throw new Error(`control plane did not start:\n${cpErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const xdsPort = /services on 127\.0\.0\.1:(\d+)/.exec(cpErr)![1];
  const api = `http://127.0.0.1:${/config API on [^\s]+:(\d+)/.exec(cpErr)![1]}`;

  const apply = async (yaml: string) => {
    const r = await fetch(`${api}/apis/resources`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "x-source": "bench" },
      body: yaml,
    });
    if (r.status !== 200) throw new Error(`apply refused: ${await r.text()}`);
  };
  // The mesh goes in through the config API (resources from --config files are the files' own, and the changes
  // below are applies), in batches within the API's per-apply bounds, before any client connects.
  for (let i = 0; i < docs.length; i += 5000) await apply(docs.slice(i, i + 5000).join("---\n"));

  const load = spawn(process.execPath, [join(root, "bench", "lib", "xds-load-clients.ts")], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  children.push(load);
  const next = jsonLines(load);
  const send = (o: unknown) => load.stdin!.write(`${JSON.stringify(o)}\n`);
  send({ clients: CLIENTS, server: `127.0.0.1:${xdsPort}`, namespaces: NAMESPACES });
  const ready = (await next()) as { ready: number; bytes: number };

  const converge = async (change: () => Promise<void>): Promise<number[]> => {
    send({ mark: Date.now() });
    await next();
    await change();
    send({ collect: true });
    const { latencies } = (await next()) as { latencies: number[] };
    const missing = latencies.filter((l) => Number.isNaN(l)).length;
    if (missing > 0) throw new Error(`${missing} clients never saw the change`);
    // Let the control plane settle (ACKs, debounce) before the next change.
    await new Promise((r) => setTimeout(r, 300));
    return latencies;
  };
  const endpointLatencies: number[] = [];
  const vsLatencies: number[] = [];
  for (let k = 1; k <= CHANGES; k++) {
    const target = Math.floor(services / 2) + k;
    endpointLatencies.push(...(await converge(() => apply(serviceEntry(target % services, k)))));
    vsLatencies.push(...(await converge(() => apply(virtualService(k % Math.min(RULES, services), 90 - k)))));
  }
  endpointLatencies.sort((a, b) => a - b);
  vsLatencies.sort((a, b) => a - b);
  const rssMb = peakRssMb(cp.pid!);
  load.stdin!.end();
  cp.kill("SIGTERM");
  await new Promise((r) => cp.once("exit", r));
  return {
    services,
    fullPushS: ready.ready / 1000,
    pushedMb: ready.bytes / 1024 / 1024,
    endpointP50: percentile(endpointLatencies, 50),
    endpointP99: percentile(endpointLatencies, 99),
    vsP50: percentile(vsLatencies, 50),
    vsP99: percentile(vsLatencies, 99),
    rssMb,
  };
}

async function main(): Promise<void> {
  console.log(
    `bench:control-plane — ${CLIENTS} clients, ${ENDPOINTS} endpoints per service, ${RULES} VirtualServices and DestinationRules, ${CHANGES} changes of each kind\n`,
  );
  const results: SizeResult[] = [];
  for (const size of SIZES) {
    results.push(await runSize(size));
    const r = results[results.length - 1]!;
    console.error(`  ${size} services done: full push ${r.fullPushS.toFixed(2)} s`);
  }
  const pad = (s: string | number, n: number) => String(s).padStart(n);
  console.log(
    `${"services".padEnd(10)}${pad("full push", 12)}${pad("first MB", 10)}${pad("endpoint p50", 14)}${pad("p99", 9)}${pad("VS p50", 10)}${pad("p99", 9)}${pad("peak RSS", 11)}`,
  );
  for (const r of results)
    console.log(
      `${String(r.services).padEnd(10)}${pad(`${r.fullPushS.toFixed(2)} s`, 12)}${pad(r.pushedMb.toFixed(0), 10)}${pad(`${r.endpointP50} ms`, 14)}${pad(`${r.endpointP99} ms`, 9)}${pad(`${r.vsP50} ms`, 10)}${pad(`${r.vsP99} ms`, 9)}${pad(`${r.rssMb.toFixed(0)} MB`, 11)}`,
    );
  const main = results.find((r) => r.services === 1000) ?? results[results.length - 1]!;
  console.log(
    `\nrequired at 1,000 services: full push <= 5 s (${main.fullPushS.toFixed(2)}), endpoint p99 <= 500 ms (${main.endpointP99}), VirtualService p99 <= 1000 ms (${main.vsP99}), RSS <= 1024 MB (${main.rssMb.toFixed(0)})`,
  );
  console.log(
    JSON.stringify({
      full_push_s: main.fullPushS,
      endpoint_converge_p99_ms: main.endpointP99,
      vs_converge_p99_ms: main.vsP99,
      rss_mb: Math.round(main.rssMb),
      growth: Object.fromEntries(
        results.map((r) => [
          r.services,
          {
            full_push_s: r.fullPushS,
            endpoint_converge_p99_ms: r.endpointP99,
            vs_converge_p99_ms: r.vsP99,
            rss_mb: Math.round(r.rssMb),
          },
        ]),
      ),
    }),
  );
}

const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
};
process.on("exit", cleanup);
main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  cleanup();
  process.exit(1);
});
