// npm run bench:mtls — the proxy-to-proxy path with mutual TLS against the same path in plain text, and against
// nginx with TLS on both sides, in one run on this machine.
//
// Each path is client proxy -> server proxy -> backend (nginx, one worker, core 1, with wrk). The proxies of a
// path share core 0. isthmus' mTLS path is what a mesh hop is: TLS 1.3, ALPN, a client certificate required
// by the server and checked against the expected SPIFFE identity, the server's SPIFFE identity checked by the
// client (URI SANs, matchSubjectAltNames), keep-alive connections between the proxies. nginx's: proxy_ssl with
// a client certificate, ssl_verify_client on, upstream keepalive. Certificates (EC P-256) come from openssl
// for this run. Reports requests/s (best of ROUNDS alternating runs), mtls/plain, and the p50/p99 latency at a
// fixed 1,000 requests/s; ends with one JSON line. Required: mtls_vs_plain >= 0.7.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testPki } from "../src/proxy/test-pki.ts";
import { fixedRate } from "./lib/fixed-rate.ts";
import { children, ensureTools, freePort, killChildren, startNginx, waitPort, wrk } from "./lib/processes.ts";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = 64;
const PROFILE_DIR = process.env.BENCH_CPU_PROF;
const proxies: ReturnType<typeof spawn>[] = [];
const root = join(import.meta.dirname, "..");
const work = mkdtempSync(join(tmpdir(), "isthmus-bench-mtls-"));
const SERVER_ID = "spiffe://cluster.local/ns/default/sa/reviews";
const CLIENT_ID = "spiffe://cluster.local/ns/default/sa/productpage";
const SNI = "outbound_.9080_._.reviews.default.svc.cluster.local";

interface Pem {
  cert: string;
  key: string;
}

function listener(port: number, cluster: string, tls?: Record<string, unknown>) {
  return {
    name: "main",
    address: "127.0.0.1",
    port,
    filterChains: [
      {
        ...(tls ? { tls } : {}),
        filter: {
          type: "http",
          routeConfig: {
            name: "r",
            virtualHosts: [
              { name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster } }] },
            ],
          },
        },
      },
    ],
  };
}

function startIsthmus(name: string, config: unknown) {
  const file = join(work, `${name}.json`);
  writeFileSync(file, JSON.stringify({ admin: { port: 0 }, ...(config as object) }));
  const child = spawn(
    "taskset",
    [
      "-c",
      "0",
      process.execPath,
      // BENCH_CPU_PROF=DIR: each proxy writes a V8 CPU profile there when it stops (for finding hot spots).
      ...(PROFILE_DIR
        ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`]
        : []),
      join(root, "bin", "isthmus.js"),
      "proxy",
      "--config",
      file,
      "--admin-port",
      "0",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  children.push(child);
  proxies.push(child);
  let err = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    err += d;
  });
  child.on("exit", (code) => {
    if (code) console.error(`${name} exited ${code}:\n${err}`);
  });
}

async function main(): Promise<void> {
  ensureTools("bench:mtls");
  const pki = testPki();
  const ca = pki.ca("mesh-root");
  // nginx verifies the upstream's name (it has no SPIFFE check): the SNI as a DNS SAN beside the SPIFFE ID.
  const server: Pem = pki.leaf(ca, "reviews", `URI:${SERVER_ID},DNS:${SNI}`);
  const client: Pem = pki.leaf(ca, "productpage", `URI:${CLIENT_ID}`);
  const files = {
    ca: join(work, "ca.pem"),
    sCert: join(work, "s.pem"),
    sKey: join(work, "s.key"),
    cCert: join(work, "c.pem"),
    cKey: join(work, "c.key"),
  };
  writeFileSync(files.ca, ca.cert);
  writeFileSync(files.sCert, server.cert);
  writeFileSync(files.sKey, server.key);
  writeFileSync(files.cCert, client.cert);
  writeFileSync(files.cKey, client.key);

  const [backend, plainServer, plainClient, mtlsServer, mtlsClient, nginxServer, nginxClient] =
    (await Promise.all(Array.from({ length: 7 }, () => freePort()))) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
  startNginx(
    work,
    "backend",
    1,
    `  server { listen 127.0.0.1:${backend} backlog=4096; keepalive_requests 1000000;\n    location / { return 200 "hello from the backend\\n"; } }`,
  );
  const backendCluster = { name: "backend", endpoints: [{ address: "127.0.0.1", port: backend }] };
  startIsthmus("plain-server", { listeners: [listener(plainServer, "backend")], clusters: [backendCluster] });
  startIsthmus("plain-client", {
    listeners: [listener(plainClient, "reviews")],
    clusters: [{ name: "reviews", endpoints: [{ address: "127.0.0.1", port: plainServer }] }],
  });
  startIsthmus("mtls-server", {
    listeners: [
      listener(mtlsServer, "backend", {
        certificateChain: server.cert,
        privateKey: server.key,
        validationContext: ca.cert,
        requireClientCertificate: true,
        matchSubjectAltNames: [CLIENT_ID],
        alpnProtocols: ["http/1.1"],
      }),
    ],
    clusters: [backendCluster],
  });
  startIsthmus("mtls-client", {
    listeners: [listener(mtlsClient, "reviews")],
    clusters: [
      {
        name: "reviews",
        endpoints: [{ address: "127.0.0.1", port: mtlsServer }],
        tls: {
          sni: SNI,
          certificateChain: client.cert,
          privateKey: client.key,
          validationContext: ca.cert,
          matchSubjectAltNames: [SERVER_ID],
        },
      },
    ],
  });
  startNginx(
    work,
    "nginx-server",
    0,
    `  upstream backend { server 127.0.0.1:${backend}; keepalive 128; keepalive_requests 1000000; }\n` +
      `  server { listen 127.0.0.1:${nginxServer} ssl backlog=4096; keepalive_requests 1000000;\n` +
      `    ssl_certificate ${files.sCert}; ssl_certificate_key ${files.sKey}; ssl_protocols TLSv1.3;\n` +
      `    ssl_client_certificate ${files.ca}; ssl_verify_client on;\n` +
      `    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  startNginx(
    work,
    "nginx-client",
    0,
    `  upstream reviews { server 127.0.0.1:${nginxServer}; keepalive 128; keepalive_requests 1000000; }\n` +
      `  server { listen 127.0.0.1:${nginxClient} backlog=4096; keepalive_requests 1000000;\n` +
      `    location / { proxy_pass https://reviews; proxy_http_version 1.1; proxy_set_header Connection "";\n` +
      `      proxy_ssl_certificate ${files.cCert}; proxy_ssl_certificate_key ${files.cKey};\n` +
      `      proxy_ssl_trusted_certificate ${files.ca}; proxy_ssl_verify on; proxy_ssl_name ${SNI};\n` +
      `      proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on; } }`,
  );
  await Promise.all(
    [backend, plainServer, plainClient, mtlsServer, mtlsClient, nginxServer, nginxClient].map(waitPort),
  );

  const load = { host: "reviews", seconds: SECONDS, connections: CONNECTIONS, path: "/api/items?id=7" };
  console.log(
    `bench:mtls — ${SECONDS}s per run, ${CONNECTIONS} keep-alive connections, proxies on core 0, wrk and backend on core 1\n`,
  );
  // Each path answers before it is measured (a misconfigured path would only show as wrk's error count).
  for (const [name, port] of [
    ["plain", plainClient],
    ["mtls", mtlsClient],
    ["nginx", nginxClient],
  ] as const) {
    const r = await fetch(`http://127.0.0.1:${port}/`, { headers: { host: "reviews" } });
    if (r.status !== 200) throw new Error(`the ${name} path answers ${r.status}: ${await r.text()}`);
    wrk(port, { ...load, seconds: 2 }); // warm-up
  }
  const runs = { plain: [] as number[], mtls: [] as number[], nginx: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    runs.plain.push(wrk(plainClient, load));
    runs.mtls.push(wrk(mtlsClient, load));
    runs.nginx.push(wrk(nginxClient, load));
  }
  const best = (xs: number[]) => Math.max(...xs);
  const rate = {
    rps: 1000,
    seconds: SECONDS,
    connections: 32,
    path: "/",
    hostHeader: "reviews",
    host: "127.0.0.1",
  };
  const lat = {
    direct: await fixedRate({ ...rate, port: backend }),
    plain: await fixedRate({ ...rate, port: plainClient }),
    mtls: await fixedRate({ ...rate, port: mtlsClient }),
    nginx: await fixedRate({ ...rate, port: nginxClient }),
  };
  for (const [name, l] of Object.entries(lat))
    if (l.errors > 0) throw new Error(`${l.errors} failed requests at a fixed rate through ${name}`);
  const plainRps = best(runs.plain);
  const mtlsRps = best(runs.mtls);
  const nginxRps = best(runs.nginx);
  const ms = (x: number) => `${x.toFixed(3)} ms`;
  const row = (a: string, b: string, c: string, d: string) =>
    console.log(`${a.padEnd(36)}${b.padStart(12)}${c.padStart(12)}${d.padStart(12)}`);
  row("path (two proxies, keep-alive)", "req/s", "p50", "p99");
  row("direct to the backend", "", ms(lat.direct.p50Ms), ms(lat.direct.p99Ms));
  row("isthmus -> isthmus, plain text", plainRps.toFixed(0), ms(lat.plain.p50Ms), ms(lat.plain.p99Ms));
  row("isthmus -> isthmus, mutual TLS", mtlsRps.toFixed(0), ms(lat.mtls.p50Ms), ms(lat.mtls.p99Ms));
  row("nginx -> nginx, TLS both sides", nginxRps.toFixed(0), ms(lat.nginx.p50Ms), ms(lat.nginx.p99Ms));
  const mtlsVsPlain = mtlsRps / plainRps;
  console.log(
    `\nmTLS / plain: ${mtlsVsPlain.toFixed(3)} (required >= 0.7); mTLS / nginx TLS: ${(mtlsRps / nginxRps).toFixed(3)}; ` +
      `runs: plain ${runs.plain.map((x) => x.toFixed(0)).join(", ")}, mtls ${runs.mtls.map((x) => x.toFixed(0)).join(", ")}, nginx ${runs.nginx.map((x) => x.toFixed(0)).join(", ")}`,
  );
  console.log(
    JSON.stringify({
      mtls_rps: Math.round(mtlsRps),
      plain_rps: Math.round(plainRps),
      mtls_vs_plain: Number(mtlsVsPlain.toFixed(3)),
      nginx_tls_rps: Math.round(nginxRps),
      mtls_added_p99_ms: Number((lat.mtls.p99Ms - lat.plain.p99Ms).toFixed(3)),
    }),
  );
  pki.remove();
}

process.on("exit", () => {
  killChildren();
  rmSync(work, { recursive: true, force: true });
});
/** With BENCH_CPU_PROF, the proxies stop on SIGTERM (writing their profiles) before the rest is killed. */
async function stopProxies(): Promise<void> {
  if (!PROFILE_DIR) return;
  await Promise.all(
    proxies.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null) return resolve();
          p.once("exit", () => resolve());
          p.kill("SIGTERM");
        }),
    ),
  );
}
main().then(
  async () => {
    await stopProxies();
    process.exit(0);
  },
  (e: Error) => {
    console.error(e.stack ?? e.message);
    process.exit(1);
  },
);
