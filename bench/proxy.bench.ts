// npm run bench:proxy — the proxy's hot path against nginx, in one run on this machine.
//
// A small-response backend (nginx, one worker) is reached directly, through isthmus and through nginx as a
// reverse proxy (worker_processes 1, access_log off, upstream keepalive 128, proxy_http_version 1.1). Each
// proxy is pinned to core 0 with taskset; wrk and the backend share core 1. isthmus does full L7 work: a route
// table with several virtual hosts and header/regex routes, weighted clusters, response header rewriting,
// and its stats counters. Reports requests/s, the isthmus/nginx ratio, the latency added over direct at a
// fixed 1,000 requests/s (open loop, p50/p99), and isthmus' peak RSS. Ends with one JSON line.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixedRate } from "./lib/fixed-rate.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 64;
const root = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "isthmus-bench-proxy-"));
const children: ChildProcess[] = [];

function ensureTools(): void {
  const missing = ["wrk", "nginx", "taskset"].filter((t) => {
    try {
      execFileSync("sh", ["-c", `command -v ${t} || test -x /usr/sbin/${t}`], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    console.error(`bench:proxy needs ${missing.join(", ")}: apt-get install wrk nginx-light util-linux`);
    process.exit(1);
  }
  console.error(`installing ${missing.join(", ")} with apt-get ...`);
  execFileSync(
    "sh",
    [
      "-c",
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light util-linux",
    ],
    {
      stdio: "inherit",
    },
  );
}

function nginxBin(): string {
  return existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

function startNginx(name: string, core: number, conf: string): ChildProcess {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "nginx.conf");
  writeFileSync(
    file,
    `worker_processes 1;\ndaemon off;\nerror_log ${dir}/error.log;\npid ${dir}/nginx.pid;\nevents { worker_connections 4096; }\n` +
      `http {\n  access_log off;\n  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};\n${conf}\n}\n`,
  );
  const p = spawn("taskset", ["-c", String(core), nginxBin(), "-c", file, "-p", dir], { stdio: "ignore" });
  children.push(p);
  return p;
}

function wrk(port: number, host: string): number {
  const out = execFileSync(
    "taskset",
    [
      "-c",
      "1",
      "wrk",
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${SECONDS}s`,
      "-H",
      `Host: ${host}`,
      "-H",
      "x-user: bench",
      `http://127.0.0.1:${port}/api/items?id=7`,
    ],
    { encoding: "utf8" },
  );
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk output not understood:\n${out}`);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (errors) throw new Error(`wrk saw ${errors[1]} error responses on port ${port}`);
  return Number(m[1]);
}

function proxyConfig(port: number, backend: number): string {
  // A realistic sidecar route table: several services, the benchmark's host in the middle.
  const vhosts = ["ratings", "details", "reviews", "productpage", "payments"].map((svc, i) => ({
    name: svc,
    domains: [svc, `${svc}.default.svc.cluster.local`, `${svc}:9080`],
    routes: [
      {
        name: `${svc}-canary`,
        match: { prefix: "/", headers: [{ name: "x-canary", exact: "true" }] },
        route: { cluster: `${svc}-v2` },
      },
      {
        name: `${svc}-admin`,
        match: { regex: "/admin/[a-z]+", caseSensitive: false },
        directResponse: { status: 403, body: "no" },
      },
      {
        name: `${svc}-split`,
        match: { prefix: "/api/" },
        route: {
          weightedClusters: [
            { name: `${svc}-v1`, weight: 90 },
            { name: `${svc}-v2`, weight: 10 },
          ],
        },
        responseHeadersToAdd: [{ name: "x-route", value: `${svc}-${i}` }],
      },
      { name: `${svc}-default`, match: { prefix: "/" }, route: { cluster: `${svc}-v1` } },
    ],
  }));
  const clusters = ["ratings", "details", "reviews", "productpage", "payments"].flatMap((svc) => [
    { name: `${svc}-v1`, endpoints: [{ address: "127.0.0.1", port: backend }] },
    { name: `${svc}-v2`, lbPolicy: "LEAST_REQUEST", endpoints: [{ address: "127.0.0.1", port: backend }] },
  ]);
  return JSON.stringify({
    admin: { port: 0 },
    listeners: [
      {
        name: "bench",
        address: "127.0.0.1",
        port,
        filterChains: [{ filter: { type: "http", routeConfigName: "routes" } }],
      },
    ],
    routeConfigs: [{ name: "routes", virtualHosts: vhosts }],
    clusters,
  });
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function main(): Promise<void> {
  ensureTools();
  // Measure the compiled proxy, as installed (bin/isthmus.js falls back to the sources when dist/ is stale).
  execFileSync(process.execPath, [join(root, "scripts", "build.ts")], { stdio: "ignore" });
  const [backendPort, nginxPort, isthmusPort] = [await freePort(), await freePort(), await freePort()];
  startNginx(
    "backend",
    1,
    `  server { listen 127.0.0.1:${backendPort} backlog=4096; keepalive_requests 1000000;\n    location / { return 200 "hello from the backend\\n"; } }`,
  );
  startNginx(
    "proxy",
    0,
    `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 128; keepalive_requests 1000000; }\n` +
      `  server { listen 127.0.0.1:${nginxPort} backlog=4096; keepalive_requests 1000000;\n` +
      `    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  const configFile = join(work, "isthmus.json");
  writeFileSync(configFile, proxyConfig(isthmusPort, backendPort));
  const node = process.execPath;
  const isthmus = spawn(
    "taskset",
    ["-c", "0", node, join(root, "bin", "isthmus.js"), "proxy", "--config", configFile, "--admin-port", "0"],
    {
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  children.push(isthmus);
  let isthmusStderr = "";
  isthmus.stderr!.setEncoding("utf8");
  isthmus.stderr!.on("data", (d: string) => {
    isthmusStderr += d;
  });
  await Promise.all([waitPort(backendPort), waitPort(nginxPort), waitPort(isthmusPort)]);
  // taskset execs node in place, so the child is the proxy itself.
  const isthmusPid = isthmus.pid!;

  const host = "reviews";
  console.log(
    `bench:proxy — ${SECONDS}s per run, ${CONNECTIONS} connections, wrk and backend on core 1, proxies on core 0\n`,
  );
  // Warm-up (JIT, connection pools), not measured.
  const warm = Math.max(2, Math.round(SECONDS / 4));
  execFileSync(
    "taskset",
    [
      "-c",
      "1",
      "wrk",
      "-t1",
      "-c64",
      `-d${warm}s`,
      "-H",
      `Host: ${host}`,
      `http://127.0.0.1:${isthmusPort}/api/items`,
    ],
    { stdio: "ignore" },
  );
  execFileSync(
    "taskset",
    ["-c", "1", "wrk", "-t1", "-c64", `-d${warm}s`, `http://127.0.0.1:${nginxPort}/api/items`],
    { stdio: "ignore" },
  );

  const directRps = wrk(backendPort, host);
  // Alternate the two proxies and keep each one's best of two, so a noisy moment does not decide the ratio.
  const isthmusRuns = [wrk(isthmusPort, host)];
  const nginxRuns = [wrk(nginxPort, host)];
  isthmusRuns.push(wrk(isthmusPort, host));
  nginxRuns.push(wrk(nginxPort, host));
  const isthmusRps = Math.max(...isthmusRuns);
  const rssAfterThroughput = peakRssMb(isthmusPid);
  const nginxRps = Math.max(...nginxRuns);

  const rate = {
    rps: 1000,
    seconds: SECONDS,
    connections: 32,
    path: "/api/items?id=7",
    hostHeader: host,
    host: "127.0.0.1",
  };
  const direct = await fixedRate({ ...rate, port: backendPort });
  const viaIsthmus = await fixedRate({ ...rate, port: isthmusPort });
  const viaNginx = await fixedRate({ ...rate, port: nginxPort });
  const rssMb = peakRssMb(isthmusPid);

  const ratio = isthmusRps / nginxRps;
  const addedP50 = viaIsthmus.p50Ms - direct.p50Ms;
  const addedP99 = viaIsthmus.p99Ms - direct.p99Ms;
  const row = (a: string, b: string, c: string, d: string) =>
    console.log(`${a.padEnd(22)}${b.padStart(14)}${c.padStart(14)}${d.padStart(14)}`);
  row("path", "requests/s", "p50 @1k/s", "p99 @1k/s");
  row("direct", directRps.toFixed(0), `${direct.p50Ms.toFixed(3)} ms`, `${direct.p99Ms.toFixed(3)} ms`);
  row(
    "nginx (1 core)",
    nginxRps.toFixed(0),
    `${viaNginx.p50Ms.toFixed(3)} ms`,
    `${viaNginx.p99Ms.toFixed(3)} ms`,
  );
  row(
    "isthmus (1 core)",
    isthmusRps.toFixed(0),
    `${viaIsthmus.p50Ms.toFixed(3)} ms`,
    `${viaIsthmus.p99Ms.toFixed(3)} ms`,
  );
  console.log(
    `\nruns (requests/s): isthmus ${isthmusRuns.map((x) => x.toFixed(0)).join(", ")}; nginx ${nginxRuns.map((x) => x.toFixed(0)).join(", ")}`,
  );
  console.log(`isthmus/nginx ratio: ${ratio.toFixed(2)}   (required >= 0.5)`);
  console.log(
    `added latency over direct at 1,000 req/s: p50 ${addedP50.toFixed(3)} ms (<= 0.5), p99 ${addedP99.toFixed(3)} ms (<= 2)`,
  );
  console.log(
    `isthmus peak RSS: ${rssMb.toFixed(1)} MB (<= 80); after the throughput runs: ${rssAfterThroughput.toFixed(1)} MB`,
  );
  const adminPort = /admin on [^\s]+:(\d+)/.exec(isthmusStderr)?.[1];
  if (adminPort) {
    const stats = await (await fetch(`http://127.0.0.1:${adminPort}/stats?filter=^server\\.memory`)).text();
    const stat = (name: string) =>
      /: (\d+)/.exec(stats.split("\n").find((l) => l.startsWith(name)) ?? "")?.[1];
    console.log(
      `heap governor: ${stat("server.memory_forced_gc:")} forced collections, ${stat("server.memory_forced_gc_ms:")} ms in all`,
    );
  }
  const errors = direct.errors + viaIsthmus.errors + viaNginx.errors;
  if (errors > 0) console.log(`errors in fixed-rate runs: ${errors}`);
  const result = {
    isthmus_rps: Math.round(isthmusRps),
    nginx_rps: Math.round(nginxRps),
    ratio: Number(ratio.toFixed(3)),
    added_p50_ms: Number(addedP50.toFixed(3)),
    added_p99_ms: Number(addedP99.toFixed(3)),
    rss_mb: Number(rssMb.toFixed(1)),
  };
  const out = join(root, "bench", "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, "proxy.json"),
    `${JSON.stringify({ ...result, direct_rps: Math.round(directRps), at: new Date().toISOString() })}\n`,
  );
  console.log(JSON.stringify(result));
}

try {
  await main();
} finally {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch {}
  }
  // nginx's master forks workers; make sure none outlive the run.
  try {
    execFileSync("pkill", ["-f", work], { stdio: "ignore" });
  } catch {}
  rmSync(work, { recursive: true, force: true });
}
