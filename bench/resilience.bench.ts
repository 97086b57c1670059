// npm run bench:resilience — retries and outlier detection under load, through a real isthmus process.
//
// 1. Retries. A service of three endpoints, one of which (the flaky backend) fails 30% of its requests with
//    503. The route retries 5xx up to 3 times (Istio's attempts: 3), each retry on another endpoint where one
//    exists. Reported: the share of client requests that succeed, with the retries and (for scale) without,
//    and for a harsher case where every endpoint fails 30% independently (bounded by 1 - 0.3^4).
// 2. Ejection. Three healthy endpoints under steady load; at t0 one of them starts hanging (accepts requests,
//    never answers). Per-try timeouts turn its requests into 504s, outlier detection (consecutive 5xx 3,
//    interval 1 s) ejects it. Reported: seconds from t0 until /clusters shows it ejected (required: within one
//    interval), requests that reached it after the ejection, and the client success rate meanwhile.
// The backends are node:http servers in this process; the load is 16 keep-alive clients in a closed loop.
// Ends with one JSON line {"success_pct","ejection_s"}.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "isthmus-bench-resilience-"));
const children: ChildProcess[] = [];
const servers: http.Server[] = [];
const CONCURRENCY = 16;
const INTERVAL_MS = 1000;

interface Backend {
  port: number;
  requests: number;
  mode: "ok" | "flaky" | "hang";
}

async function backend(mode: Backend["mode"]): Promise<Backend> {
  const b: Backend = { port: 0, requests: 0, mode };
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    b.requests++;
    if (b.mode === "hang") return;
    if (b.mode === "flaky" && Math.random() < 0.3) {
      res.writeHead(503);
      res.end("flaky");
      return;
    }
    res.end("ok");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

async function startProxy(name: string, cfg: unknown): Promise<{ port: number; admin: number }> {
  const file = join(work, `${name}.json`);
  writeFileSync(file, JSON.stringify(cfg));
  const child = spawn(
    process.execPath,
    [join(root, "bin", "isthmus.js"), "proxy", "--config", file, "--admin-port", "0"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  children.push(child);
  let err = "";
  child.stderr!.setEncoding("utf8");
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`proxy did not start:\n${err}`)), 20_000);
    child.stderr!.on("data", (d: string) => {
      err += d;
      const l = /listener main on [^\s]+:(\d+)/.exec(err);
      const a = /admin on [^\s]+:(\d+)/.exec(err);
      if (l && a) {
        clearTimeout(t);
        resolve({ port: Number(l[1]), admin: Number(a[1]) });
      }
    });
    child.once("exit", (code) => reject(new Error(`proxy exited ${code}:\n${err}`)));
  });
}

function proxyConfig(ports: number[], route: Record<string, unknown>, cluster: Record<string, unknown> = {}) {
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "http", routeConfigName: "r", codec: "http1" } }],
      },
    ],
    routeConfigs: [
      {
        name: "r",
        virtualHosts: [
          {
            name: "svc",
            domains: ["*"],
            routes: [{ match: { prefix: "/" }, route: { cluster: "svc", ...route } }],
          },
        ],
      },
    ],
    clusters: [{ name: "svc", endpoints: ports.map((port) => ({ address: "127.0.0.1", port })), ...cluster }],
  };
}

/** CONCURRENCY closed-loop clients; stops when `until()` is true. Counts 2xx and the rest. */
async function load(port: number, until: () => boolean): Promise<{ ok: number; failed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const counts = { ok: 0, failed: 0 };
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get({ host: "127.0.0.1", port, path: "/", agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) counts.ok++;
          else counts.failed++;
          resolve();
        });
      });
      req.on("error", () => {
        counts.failed++;
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (!until()) await one();
    }),
  );
  agent.destroy();
  return counts;
}

async function retries(
  numRetries: number,
  requests: number,
  allFlaky = false,
): Promise<{ pct: number; flakyShare: number }> {
  const flaky = await backend("flaky");
  const others = [await backend(allFlaky ? "flaky" : "ok"), await backend(allFlaky ? "flaky" : "ok")];
  const p = await startProxy(
    `retries-${numRetries}`,
    proxyConfig([flaky.port, ...others.map((b) => b.port)], {
      retryPolicy: { numRetries, retryOn: ["5xx"] },
    }),
  );
  let started = 0;
  const r = await load(p.port, () => started++ >= requests);
  const total = r.ok + r.failed;
  return {
    pct: (100 * r.ok) / total,
    flakyShare: flaky.requests / (flaky.requests + others[0]!.requests + others[1]!.requests),
  };
}

async function ejection(): Promise<{ seconds: number; afterEjection: number; successPct: number }> {
  const bs = [await backend("ok"), await backend("ok"), await backend("ok")];
  const victim = bs[0]!;
  const p = await startProxy(
    "ejection",
    proxyConfig(
      bs.map((b) => b.port),
      { retryPolicy: { numRetries: 2, perTryTimeoutMs: 200, retryOn: ["5xx", "reset"] } },
      {
        outlierDetection: {
          consecutive5xxErrors: 3,
          intervalMs: INTERVAL_MS,
          baseEjectionTimeMs: 30_000,
          maxEjectionPercent: 50,
        },
      },
    ),
  );
  let stop = false;
  const running = load(p.port, () => stop);
  await new Promise((r) => setTimeout(r, 1000));
  const t0 = performance.now();
  victim.mode = "hang";
  let ejectedAt = 0;
  while (ejectedAt === 0 && performance.now() - t0 < 10_000) {
    const res = await fetch(`http://127.0.0.1:${p.admin}/clusters?format=json`);
    const cj = (await res.json()) as {
      cluster_statuses: Array<{ host_statuses: Array<{ address: string; health_status: string }> }>;
    };
    const h = cj.cluster_statuses[0]!.host_statuses.find((x) => x.address.endsWith(`:${victim.port}`));
    if (h?.health_status === "UNHEALTHY") ejectedAt = performance.now();
    else await new Promise((r) => setTimeout(r, 10));
  }
  const atEjection = victim.requests;
  await new Promise((r) => setTimeout(r, 1500));
  const afterEjection = victim.requests - atEjection;
  stop = true;
  const r = await running;
  return {
    seconds: ejectedAt === 0 ? Number.NaN : (ejectedAt - t0) / 1000,
    afterEjection,
    successPct: (100 * r.ok) / (r.ok + r.failed),
  };
}

async function main(): Promise<void> {
  const N = Number(process.env.BENCH_REQUESTS ?? 20_000);
  console.log(`bench:resilience — ${N} requests per retry run, ${CONCURRENCY} concurrent clients\n`);
  const without = await retries(0, N);
  const withRetries = await retries(3, N);
  const allFlaky = await retries(3, N, true);
  const ej = await ejection();
  const row = (a: string, b: string) => console.log(`${a.padEnd(58)}${b.padStart(14)}`);
  row("flaky endpoint (30% 503) among 3, no retries: success", `${without.pct.toFixed(2)} %`);
  row("same, retries on 5xx (3 attempts, another endpoint): success", `${withRetries.pct.toFixed(2)} %`);
  row("every endpoint flaky (independent 30%), same retries: success", `${allFlaky.pct.toFixed(2)} %`);
  row("  (expected 1 - 0.3^4 = 99.19 %: four attempts, each failing alone)", "");
  row("hanging endpoint ejected after", `${ej.seconds.toFixed(3)} s`);
  row("requests reaching it in the 1.5 s after ejection", String(ej.afterEjection));
  row("client success while it hung (retries + per-try timeout)", `${ej.successPct.toFixed(2)} %`);
  console.log(
    `\nrequired: success >= 99.5 % (got ${withRetries.pct.toFixed(2)}), ejection within one interval ${INTERVAL_MS / 1000} s (got ${ej.seconds.toFixed(3)})`,
  );
  const result = {
    success_pct: Number(withRetries.pct.toFixed(3)),
    ejection_s: Number(ej.seconds.toFixed(3)),
  };
  const out = join(root, "bench", "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, "resilience.json"),
    `${JSON.stringify({ ...result, without_retries_pct: without.pct, all_flaky_pct: allFlaky.pct, after_ejection_requests: ej.afterEjection, at: new Date().toISOString() })}\n`,
  );
  console.log(JSON.stringify(result));
}

try {
  await main();
} finally {
  for (const c of children) c.kill("SIGKILL");
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  rmSync(work, { recursive: true, force: true });
}
