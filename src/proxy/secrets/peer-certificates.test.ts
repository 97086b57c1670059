// Bad peer certificates on both sides of the proxy's mutual TLS, through real proxies, real sockets and real
// TLS: expired, not yet valid, from another root (a wrong trust anchor, also one that borrows the mesh root's
// name), for another trust domain, for another service account, self-signed, and (server side) none at all.
// Each is refused with its reason counted (listener.NAME.ssl.* / cluster.NAME.ssl.*) and logged, never served,
// and the proxy goes on serving good peers afterwards: no crash, no open door.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import tls from "node:tls";
import { createRoot, importSigningKey, randomSerial } from "../../control/ca/cacerts.ts";
import type { ProxyConfig } from "../config/types.ts";
import { generateEcKeyPair, privateKeyPem, x509 } from "../identity/x509.ts";
import { ProxyServer } from "../proxy.ts";
import { StatsStore } from "../stats/stats.ts";
import {
  closeAll,
  closedPort,
  get,
  onClose,
  sleep,
  spawnProxy,
  startAdmin,
  waitFor,
} from "../test-support.ts";
import { watchUpstreamTls } from "../upstream/tls-failure.ts";
import { tlsLog } from "./tls-failures.ts";

after(closeAll);

const SERVER_ID = "spiffe://cluster.local/ns/shop/sa/reviews";
const CLIENT_ID = "spiffe://cluster.local/ns/shop/sa/productpage";
const HOUR = 3_600_000;

// ------------------------------------------------------------------------------------------ certificates

interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A workload certificate as the mesh CA makes them (empty subject, one critical URI SAN), or self-signed. */
async function workload(
  issuer: Pem | undefined,
  spiffeId: string,
  notBefore = new Date(Date.now() - HOUR),
  notAfter = new Date(Date.now() + HOUR),
): Promise<Pem> {
  const keys = await generateEcKeyPair();
  const extensions = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectAlternativeNameExtension([{ type: "url", value: spiffeId }], true),
  ];
  const cert =
    issuer === undefined
      ? await x509.X509CertificateGenerator.createSelfSigned({
          serialNumber: randomSerial(),
          name: "O=cluster.local",
          keys,
          signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
          notBefore,
          notAfter,
          extensions,
        })
      : await x509.X509CertificateGenerator.create({
          serialNumber: randomSerial(),
          subject: "",
          issuer: new x509.X509Certificate(issuer.cert).subjectName,
          publicKey: keys.publicKey,
          signingKey: importSigningKey(issuer.key).key,
          signingAlgorithm: importSigningKey(issuer.key).algorithm,
          notBefore,
          notAfter,
          extensions,
        });
  return { cert: `${cert.toString("pem")}\n`, key: await privateKeyPem(keys.privateKey) };
}

const meshRoot = await createRoot({ trustDomain: "cluster.local", days: 1, commonName: "mesh root" });
const otherRoot = await createRoot({ trustDomain: "cluster.local", days: 1, commonName: "another root" });
/** Another key under the mesh root's very name: found as the issuer by name, its signature does not verify. */
const impostorRoot = await createRoot({ trustDomain: "cluster.local", days: 1, commonName: "mesh root" });
const goodServer = await workload(meshRoot, SERVER_ID);
const goodClient = await workload(meshRoot, CLIENT_ID);

type Kind = "fail_verify_no_cert" | "fail_verify_error" | "fail_verify_san";

interface BadCase {
  readonly name: string;
  /** The bad certificate standing in for the identity `id`; undefined: none at all. */
  readonly make: ((id: string) => Promise<Pem>) | undefined;
  readonly kind: Kind;
  /** What the log line and the failure reason say. */
  readonly reason: (id: string) => RegExp;
  /** Only a client can present no certificate. */
  readonly serverSideOnly?: boolean;
}

const otherDomain = (id: string) => id.replace("spiffe://cluster.local/", "spiffe://other.domain/");
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

const CASES: readonly BadCase[] = [
  {
    name: "expired",
    make: (id) => workload(meshRoot, id, new Date(Date.now() - 3 * HOUR), new Date(Date.now() - HOUR)),
    kind: "fail_verify_error",
    reason: () => /CERT_HAS_EXPIRED/,
  },
  {
    name: "not yet valid",
    make: (id) => workload(meshRoot, id, new Date(Date.now() + HOUR), new Date(Date.now() + 3 * HOUR)),
    kind: "fail_verify_error",
    reason: () => /CERT_NOT_YET_VALID/,
  },
  {
    name: "another root, same SPIFFE identity (wrong trust anchor)",
    make: (id) => workload(otherRoot, id),
    kind: "fail_verify_error",
    reason: () => /UNABLE_TO_VERIFY_LEAF_SIGNATURE/,
  },
  {
    name: "another root under the mesh root's name",
    make: (id) => workload(impostorRoot, id),
    kind: "fail_verify_error",
    reason: () => /CERT_SIGNATURE_FAILURE/,
  },
  {
    name: "the right root, another trust domain",
    make: (id) => workload(meshRoot, otherDomain(id)),
    kind: "fail_verify_san",
    reason: (id) => new RegExp(`peer identity "?(URI:)?${esc(otherDomain(id))}"? is not one of`),
  },
  {
    name: "the right root, another service account",
    make: () => workload(meshRoot, "spiffe://cluster.local/ns/shop/sa/ratings"),
    kind: "fail_verify_san",
    reason: () => /peer identity "?(URI:)?spiffe:\/\/cluster\.local\/ns\/shop\/sa\/ratings"? is not one of/,
  },
  {
    name: "self-signed leaf",
    make: (id) => workload(undefined, id),
    kind: "fail_verify_error",
    reason: () => /DEPTH_ZERO_SELF_SIGNED_CERT/,
  },
  {
    name: "no certificate",
    make: undefined,
    kind: "fail_verify_no_cert",
    reason: () => /no client certificate/,
    serverSideOnly: true,
  },
];

// ----------------------------------------------------------------------------------------------- the log

/**
 * The proxy's TLS log lines. Each proxy of a test gets listener and cluster names of its own, so that a summary
 * line another proxy writes a second later (of what its log held back) is never taken for one of its lines.
 */
const logged: string[] = [];
const write = tlsLog.write;
tlsLog.write = (line) => {
  logged.push(line);
};
onClose(() => {
  tlsLog.write = write;
});
/** Removes and returns the lines of one scope ("listener NAME", "cluster NAME"). */
function takeLog(scope: string): string {
  const mine = logged.filter((l) => l.startsWith(`isthmus proxy: tls: ${scope}: `));
  for (const l of mine) logged.splice(logged.indexOf(l), 1);
  return mine.join("");
}
let unique = 0;
const nextName = (base: string) => `${base}-${++unique}`;

// ---------------------------------------------------------------------------------------------- proxies

/** A sidecar's inbound side: TLS only, a client certificate from ROOTCA required, one caller allowed. */
function inbound(name: string, tlsMaterial: "secrets" | "inline" = "secrets"): ProxyConfig {
  return {
    listeners: [
      {
        name,
        address: "127.0.0.1",
        port: 0,
        limits: { requestHeadersTimeoutMs: 5000 },
        filterChains: [
          {
            tls: {
              ...(tlsMaterial === "secrets"
                ? { certificateSecret: "default", validationSecret: "ROOTCA" }
                : {
                    certificateChain: goodServer.cert,
                    privateKey: goodServer.key,
                    validationContext: meshRoot.cert,
                  }),
              requireClientCertificate: true,
              matchSubjectAltNames: [CLIENT_ID],
              alpnProtocols: ["http/1.1"],
            },
            filter: {
              type: "http",
              routeConfig: {
                name: "in",
                virtualHosts: [
                  {
                    name: "all",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, directResponse: { status: 200, body: "secure" } }],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
  };
}

/** A sidecar's outbound side: plain text in, mutual TLS to `port` expecting the server's identity. */
function outbound(port: number, cluster: string): ProxyConfig {
  return {
    listeners: [
      {
        name: "outbound",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              statPrefix: "outbound",
              routeConfig: {
                name: "out",
                virtualHosts: [
                  {
                    name: "reviews",
                    domains: ["*"],
                    routes: [
                      {
                        match: { prefix: "/" },
                        route: { cluster, retryPolicy: { numRetries: 0 } },
                      },
                    ],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [
      {
        name: cluster,
        connectTimeoutMs: 2000,
        endpoints: [{ address: "127.0.0.1", port }],
        tls: {
          sni: "outbound_.9080_._.reviews.shop.svc.cluster.local",
          certificateSecret: "default",
          validationSecret: "ROOTCA",
          matchSubjectAltNames: [SERVER_ID],
        },
      },
    ],
  };
}

async function proxy(config: ProxyConfig, cert: Pem): Promise<ProxyServer> {
  const p = new ProxyServer();
  onClose(() => p.shutdown(0));
  assert.deepEqual((await p.apply(config)).errors, []);
  p.secrets.setCertificate("default", { certificateChain: cert.cert, privateKey: cert.key });
  p.secrets.setValidation("ROOTCA", { trustedCa: meshRoot.cert });
  return p;
}

const stat = (p: ProxyServer, name: string) => p.stats.counter(name).value;

function sslStats(p: ProxyServer, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of p.stats.snapshot()) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}

interface TlsOutcome {
  /** Whether the client's handshake completed with the proxy's certificate verified as SERVER_ID. */
  readonly serverVerified: boolean;
  /** Everything the proxy sent back after the request. */
  readonly response: string;
}

/**
 * A client on a real TLS socket presenting `pem` (or nothing) to the proxy's inbound listener: it checks the
 * proxy's certificate (mesh root, SERVER_ID), sends a request and reads until the connection ends.
 */
function tlsClient(port: number, pem: Pem | undefined): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    let serverVerified = false;
    let response = "";
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      ca: meshRoot.cert,
      ...(pem ?? {}),
      ALPNProtocols: ["http/1.1"],
      checkServerIdentity: (_host, cert) =>
        cert.subjectaltname === `URI:${SERVER_ID}`
          ? undefined
          : new Error(`server is ${cert.subjectaltname}`),
    });
    onClose(() => {
      s.destroy();
    });
    s.once("secureConnect", () => {
      serverVerified = s.authorized;
      s.write("GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n");
    });
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      response += d;
    });
    s.on("error", () => {});
    s.once("close", () => resolve({ serverVerified, response }));
  });
}

// ----------------------------------------------------------------------------------------------- tests

test("server side: a client presenting a bad certificate is refused, counted and logged; good clients still served", async (t) => {
  for (const c of CASES) {
    await t.test(c.name, async () => {
      const name = nextName("inbound");
      const server = await proxy(inbound(name), goodServer);
      const port = server.listener(name)!.boundPort;
      const bad = c.make === undefined ? undefined : await c.make(CLIENT_ID);

      const refused = await tlsClient(port, bad);
      assert.equal(refused.serverVerified, true, "the proxy still presents its good certificate");
      assert.equal(refused.response, "", "no response: the connection is closed after the handshake");

      const prefix = `listener.${name}.ssl.`;
      const expected: Record<string, number> = {
        connection_error: 0,
        fail_verify_error: 0,
        fail_verify_no_cert: 0,
        fail_verify_san: 0,
        handshake: 0,
      };
      expected[c.kind] = 1;
      assert.deepEqual(sslStats(server, prefix), expected);
      assert.equal(server.listener(name)!.clientCertRejected, 1);

      const line = takeLog(`listener ${name}`);
      assert.match(
        line,
        new RegExp(`^isthmus proxy: tls: listener ${name}: refused client 127\\.0\\.0\\.1:\\d+: `),
      );
      assert.match(line, new RegExp(`: ssl\\.${c.kind}: `));
      assert.match(line, c.reason(CLIENT_ID));
      if (bad !== undefined) {
        assert.match(line, /; peer chain: \[0\] subject=/, "the chain is described");
        assert.doesNotMatch(line, /BEGIN|PRIVATE KEY/, "never a whole certificate or a key");
      } else assert.match(line, /; peer chain: none$/m);
      assert.equal(line.trimEnd().split("\n").length, 1, "one line");

      // No crash, no open door: the next good client is served, the bad one is still refused.
      const good = await tlsClient(port, goodClient);
      assert.equal(good.serverVerified, true);
      assert.match(good.response, /^HTTP\/1\.1 200 [\s\S]*secure$/);
      assert.equal(stat(server, `${prefix}handshake`), 1);
      assert.equal((await tlsClient(port, bad)).response, "");
      assert.equal(stat(server, `${prefix}${c.kind}`), 2);
    });
  }
});

test("client side: a server presenting a bad certificate is a 503 UF with the reason, counted and logged", async (t) => {
  for (const c of CASES) {
    if (c.serverSideOnly) continue;
    await t.test(c.name, async () => {
      const bad = await c.make!(SERVER_ID);
      const listener = nextName("inbound");
      const cluster = nextName("reviews");
      const server = await proxy(inbound(listener), bad);
      const client = await proxy(outbound(server.listener(listener)!.boundPort, cluster), goodClient);
      const port = client.listener("outbound")!.boundPort;

      const r = await get(port, "/");
      assert.equal(r.status, 503);
      const body = r.body.toString();
      assert.match(body, /reset reason: connection failure, transport failure reason: TLS error: /);
      assert.match(body, c.reason(SERVER_ID));
      assert.match(body, new RegExp(`\\(ssl\\.${c.kind}\\)$`));
      assert.equal(stat(client, "http.outbound.response_flag.UF"), 1);
      assert.equal(stat(client, `cluster.${cluster}.upstream_cx_connect_fail`), 1);
      assert.deepEqual(sslStats(client, `cluster.${cluster}.ssl.`), {
        connection_error: 0,
        fail_verify_error: c.kind === "fail_verify_error" ? 1 : 0,
        fail_verify_san: c.kind === "fail_verify_san" ? 1 : 0,
      });

      const line = takeLog(`cluster ${cluster}`);
      assert.match(
        line,
        new RegExp(
          `^isthmus proxy: tls: cluster ${cluster}: endpoint 127\\.0\\.0\\.1:\\d+ refused: ssl\\.${c.kind}: `,
        ),
      );
      assert.match(line, c.reason(SERVER_ID));
      assert.equal(line.trimEnd().split("\n").length, 1, "one line");
      assert.equal(stat(server, `listener.${listener}.ssl.handshake`), 0, "the server served nothing");

      // The same client reaches a good server afterwards: nothing stuck, nothing open before.
      server.secrets.setCertificate("default", {
        certificateChain: goodServer.cert,
        privateKey: goodServer.key,
      });
      const ok = await get(port, "/");
      assert.equal(ok.status, 200);
      assert.equal(ok.body.toString(), "secure");
    });
  }
});

test("a flood of bad clients: every one counted, one log line per reason per second, the rest summed up", async () => {
  const name = nextName("inbound");
  const server = await proxy(inbound(name), goodServer);
  const port = server.listener(name)!.boundPort;
  const expired = await CASES[0]!.make!(CLIENT_ID);
  const stranger = await CASES[5]!.make!(CLIENT_ID);
  const n = 20;
  await Promise.all(Array.from({ length: n }, (_, i) => tlsClient(port, i % 2 === 0 ? expired : stranger)));
  assert.equal(stat(server, `listener.${name}.ssl.fail_verify_error`), n / 2);
  assert.equal(stat(server, `listener.${name}.ssl.fail_verify_san`), n / 2);
  const first = takeLog(`listener ${name}`).trimEnd().split("\n");
  assert.equal(first.length, 2, "one line per reason at once");
  const scope = `isthmus proxy: tls: listener ${name}: `;
  await waitFor(() => logged.filter((l) => l.startsWith(scope)).length >= 2, 3000, "the summaries");
  const summaries = takeLog(`listener ${name}`);
  assert.match(summaries, /: 9 more fail_verify_error CERT_HAS_EXPIRED in the last \d+ ms/);
  assert.match(summaries, /: 9 more fail_verify_san SAN_MISMATCH in the last \d+ ms/);
  assert.match(
    summaries,
    /; the latest: refused client 127\.0\.0\.1:\d+: ssl\.fail_verify_san: peer identity/,
  );
  assert.match((await tlsClient(port, goodClient)).response, /secure$/);
  // Nothing more until new failures: the log is quiet when the flood is over.
  await sleep(1200);
  assert.equal(takeLog(`listener ${name}`), "");
});

test("admin /stats lists the ssl counters of listeners and clusters", async () => {
  const listener = nextName("inbound");
  const cluster = nextName("reviews");
  // The server presents a self-signed certificate first: the client refuses it, the server sees the abort.
  const server = await proxy(inbound(listener), await CASES[6]!.make!(SERVER_ID));
  const serverPort = server.listener(listener)!.boundPort;
  const client = await proxy(outbound(serverPort, cluster), goodClient);
  assert.equal((await get(client.listener("outbound")!.boundPort, "/")).status, 503);
  // Then its good one: an expired client is refused, the proxy client is served.
  server.secrets.setCertificate("default", { certificateChain: goodServer.cert, privateKey: goodServer.key });
  assert.equal((await tlsClient(serverPort, await CASES[0]!.make!(CLIENT_ID))).response, "");
  assert.equal((await get(client.listener("outbound")!.boundPort, "/")).status, 200);

  const clientStats = (await get(await startAdmin(client), "/stats?filter=ssl")).body.toString();
  assert.match(clientStats, new RegExp(`^cluster\\.${cluster}\\.ssl\\.fail_verify_error: 1$`, "m"));
  assert.match(clientStats, new RegExp(`^cluster\\.${cluster}\\.ssl\\.fail_verify_san: 0$`, "m"));
  assert.match(clientStats, new RegExp(`^cluster\\.${cluster}\\.ssl\\.connection_error: 0$`, "m"));
  const serverStats = (await get(await startAdmin(server), "/stats?filter=^listener")).body.toString();
  assert.match(serverStats, new RegExp(`^listener\\.${listener}\\.ssl\\.fail_verify_error: 1$`, "m"));
  assert.match(serverStats, new RegExp(`^listener\\.${listener}\\.ssl\\.fail_verify_no_cert: 0$`, "m"));
  assert.match(serverStats, new RegExp(`^listener\\.${listener}\\.ssl\\.handshake: 1$`, "m"));
  // The client aborted its handshake with the self-signed server: a handshake failure on the server's side.
  assert.match(serverStats, new RegExp(`^listener\\.${listener}\\.ssl\\.connection_error: [1-9]\\d*$`, "m"));
  await waitFor(() => takeLog(`listener ${listener}`).includes("ssl.connection_error"), 3000, "its log line");
});

test("isthmus proxy (a process): a refused client is logged on stderr and counted; the proxy serves on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-peer-certs-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "inbound.json");
  writeFileSync(file, JSON.stringify(inbound("inbound", "inline")), { mode: 0o600 });
  const child = await spawnProxy(["--config", file, "--admin-port", "0"], ["inbound"]);
  const port = child.ports.get("inbound")!;
  await child.waitForStderr(/admin on [^\s]+:\d+/);
  const adminPort = Number(/admin on [^\s]+:(\d+)/.exec(child.stderr())![1]);
  const expired = await CASES[0]!.make!(CLIENT_ID);
  assert.equal((await tlsClient(port, expired)).response, "");
  await child.waitForStderr(/isthmus proxy: tls: listener inbound: refused client 127\.0\.0\.1:\d+: /);
  assert.match(child.stderr(), /: ssl\.fail_verify_error: CERT_HAS_EXPIRED; peer chain: \[0\] subject=""/);
  assert.doesNotMatch(child.stderr(), /BEGIN|PRIVATE KEY/);
  assert.match((await tlsClient(port, goodClient)).response, /secure$/);
  const stats = (await get(adminPort, "/stats?filter=^listener")).body.toString();
  assert.match(stats, /^listener\.inbound\.ssl\.fail_verify_error: 1$/m);
  assert.match(stats, /^listener\.inbound\.ssl\.handshake: 1$/m);
  assert.equal(child.child.exitCode, null, "still running");
});

test("watchUpstreamTls (for the TCP proxy and HTTP/2 sessions): TLS failures counted and logged, others not", async () => {
  const name = nextName("inbound");
  const server = await proxy(inbound(name), await CASES[0]!.make!(SERVER_ID));
  const store = new StatsStore();
  const cluster = nextName("tcp-reviews");
  const dial = (port: number, checkServerIdentity?: tls.ConnectionOptions["checkServerIdentity"]) =>
    new Promise<void>((resolve) => {
      const s = tls.connect({
        host: "127.0.0.1",
        port,
        ca: meshRoot.cert,
        ...goodClient,
        ...(checkServerIdentity ? { checkServerIdentity } : {}),
      });
      watchUpstreamTls(s, store, cluster, `127.0.0.1:${port}`);
      s.on("error", () => {});
      s.once("close", () => resolve());
    });
  const port = server.listener(name)!.boundPort;
  await dial(port);
  assert.equal(store.counter(`cluster.${cluster}.ssl.fail_verify_error`).value, 1);
  assert.match(
    takeLog(`cluster ${cluster}`),
    /endpoint 127\.0\.0\.1:\d+ refused: ssl\.fail_verify_error: CERT_HAS_EXPIRED: certificate has expired\n$/,
  );
  server.secrets.setCertificate("default", { certificateChain: goodServer.cert, privateKey: goodServer.key });
  await dial(port, () => new Error("peer identity is not the expected one"));
  assert.equal(store.counter(`cluster.${cluster}.ssl.fail_verify_san`).value, 1);
  // Nothing listens there: a connect failure, not a TLS one.
  await dial(await closedPort());
  assert.equal(store.counter(`cluster.${cluster}.ssl.connection_error`).value, 0);
  assert.equal(store.counter(`cluster.${cluster}.ssl.fail_verify_error`).value, 1);
});

test("TCP proxy upstream: a server with a bad certificate is refused and counted", async () => {
  const wrongSan = CASES.find((c) => c.kind === "fail_verify_san" && !c.serverSideOnly)!;
  const bad = await wrongSan.make!(SERVER_ID);
  const listener = nextName("inbound");
  const server = await proxy(inbound(listener), bad);
  const cluster = nextName("tcp-reviews");
  const base = outbound(server.listener(listener)!.boundPort, cluster);
  const cfg: ProxyConfig = {
    ...base,
    listeners: [
      {
        name: "tcp-out",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster, statPrefix: "tcp-out" } }],
      },
    ],
  };
  const client = await proxy(cfg, goodClient);
  const socket = net.connect(client.listener("tcp-out")!.boundPort, "127.0.0.1");
  socket.on("error", () => {});
  socket.write("hello");
  await new Promise<void>((r) => socket.once("close", () => r()));
  await waitFor(() => stat(client, `cluster.${cluster}.ssl.fail_verify_san`) === 1, 3000, "counted");
  assert.match(takeLog(`cluster ${cluster}`), /ssl\.fail_verify_san: /);
  assert.equal(stat(server, `listener.${listener}.ssl.handshake`), 0, "nothing reached the server's app");
});

test("HTTP/2 upstream: a server with a bad certificate is a 503, counted, and the proxy lives on", async () => {
  const wrongSan = CASES.find((c) => c.kind === "fail_verify_san" && !c.serverSideOnly)!;
  const listener = nextName("inbound");
  const base = inbound(listener);
  const h2Inbound: ProxyConfig = {
    ...base,
    listeners: base.listeners.map((l) => ({
      ...l,
      filterChains: l.filterChains.map((fc) => ({
        ...fc,
        tls: { ...fc.tls!, alpnProtocols: ["h2", "http/1.1"] },
      })),
    })),
  };
  const server = await proxy(h2Inbound, await wrongSan.make!(SERVER_ID));
  const cluster = nextName("grpc-reviews");
  const out = outbound(server.listener(listener)!.boundPort, cluster);
  const client = await proxy(
    { ...out, clusters: out.clusters!.map((c) => ({ ...c, protocol: "http2" as const })) },
    goodClient,
  );
  const port = client.listener("outbound")!.boundPort;
  for (let i = 0; i < 3; i++) assert.equal((await get(port, "/")).status, 503);
  await waitFor(() => stat(client, `cluster.${cluster}.ssl.fail_verify_san`) >= 1, 3000, "counted");
  assert.match(takeLog(`cluster ${cluster}`), /ssl\.fail_verify_san: /);
  // A good certificate later: served over HTTP/2 with mutual TLS.
  server.secrets.setCertificate("default", { certificateChain: goodServer.cert, privateKey: goodServer.key });
  const ok = await get(port, "/");
  assert.equal(ok.status, 200);
  assert.equal(ok.body.toString(), "secure");
});
