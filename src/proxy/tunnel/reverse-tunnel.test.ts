// Reverse tunnels between two real proxies over real mutual TLS on loopback: A (public) accepts tunnels and
// reaches an endpoint it cannot dial (10.255.0.1, never dialled: the bytes can only ride the tunnel); B (private)
// dials A and hands each stream to a local TCP listener in front of an echo server. Traffic, concurrency,
// large transfers with backpressure, B going away and coming back, a refused certificate, no tunnel at all,
// secrets arriving late, and HTTP/1 clusters over the tunnel.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import https from "node:https";
import net from "node:net";
import { after, before, test } from "node:test";
import tls from "node:tls";
import type { ProxyConfig, ReverseTunnelConfig } from "../config/types.ts";
import { type Pem, testPki } from "../test-pki.ts";
import {
  catchAll,
  closeAll,
  cluster,
  httpBackend,
  echo as httpEcho,
  json,
  keepAliveClient,
  netBackend,
  onClose,
  type RunningProxy,
  startProxy,
  waitFor,
} from "../test-support.ts";
import { tunnelLog } from "./tunnel-log.ts";

const pki = testPki();
const root = pki.ca("mesh-root");
const acceptorCert = pki.leaf(root, "eastwest-public", "DNS:eastwest.public.test,IP:127.0.0.1");
const initiatorCert = pki.leaf(
  root,
  "eastwest-private",
  "URI:spiffe://private.test/ns/istio-system/sa/eastwest",
);
const rogueRoot = pki.ca("rogue-root");
const rogueCert = pki.leaf(rogueRoot, "rogue", "URI:spiffe://rogue.test/ns/x/sa/y");

const logLines: string[] = [];
const originalWrite = tunnelLog.write;
before(() => {
  tunnelLog.write = (line) => {
    logLines.push(line);
  };
});
after(async () => {
  await closeAll();
  tunnelLog.write = originalWrite;
  pki.remove();
});

function stat(p: RunningProxy, name: string): number {
  return p.proxy.stats.snapshot().find(([k]) => k === name)?.[1] ?? 0;
}

/**
 * A (public): an mTLS acceptor listener first (its port is `port`), a TCP listener "front" and an HTTP listener
 * "web", both to clusters whose one endpoint is behind tunnel "private".
 */
async function startPublic(): Promise<{ a: RunningProxy; front: number; web: number }> {
  const cfg: ProxyConfig = {
    listeners: [
      {
        name: "tunnels",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            tls: {
              certificateChain: acceptorCert.cert,
              privateKey: acceptorCert.key,
              validationContext: root.cert,
              requireClientCertificate: true,
            },
            filter: { type: "reverse_tunnel_acceptor", statPrefix: "eastwest" },
          },
        ],
      },
      {
        name: "front",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "private-svc" } }],
      },
      {
        name: "front-tls",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "private-svc-tls" } }],
      },
      {
        name: "web",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              codec: "http1",
              routeConfig: {
                name: "web",
                virtualHosts: [
                  {
                    name: "secure",
                    domains: ["secure.test"],
                    routes: [{ match: { prefix: "/" }, route: { cluster: "private-web-tls" } }],
                  },
                  ...catchAll("private-web").virtualHosts,
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [
      { name: "private-web", endpoints: [{ address: "10.255.0.2", port: 8080, tunnel: "private" }] },
      {
        name: "private-svc-tls",
        tls: { validationContext: root.cert, sni: "eastwest.public.test" },
        endpoints: [{ address: "10.255.0.4", port: 15443, tunnel: "private" }],
      },
      {
        name: "private-web-tls",
        tls: { validationContext: root.cert, sni: "eastwest.public.test" },
        endpoints: [{ address: "10.255.0.3", port: 8443, tunnel: "private" }],
      },
      {
        name: "private-svc",
        connectTimeoutMs: 5000,
        endpoints: [{ address: "10.255.0.1", port: 15443, tunnel: "private" }],
      },
    ],
  };
  const a = await startProxy(cfg);
  return { a, front: a.proxy.listener("front")!.boundPort, web: a.proxy.listener("web")!.boundPort };
}

/** B (private): dials A's acceptor and hands streams to its listener "gateway", a TCP proxy to `backend`. */
async function startPrivate(
  acceptorPort: number,
  backend: number,
  cert: Pem = initiatorCert,
  extra: Partial<ReverseTunnelConfig> = {},
): Promise<RunningProxy> {
  return startProxy({
    listeners: [
      {
        name: "gateway",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "local" } }],
      },
    ],
    clusters: [cluster("local", [backend])],
    reverseTunnels: [
      {
        name: "private",
        address: "127.0.0.1",
        port: acceptorPort,
        tls: { certificateChain: cert.cert, privateKey: cert.key, validationContext: root.cert },
        listener: "gateway",
        ...extra,
      },
    ],
  });
}

/** An echo server: what it reads it writes back, with backpressure. */
function echoServer() {
  return netBackend((s) => s.pipe(s));
}

/**
 * Sends `data` through `port` and reads until as many bytes came back (or the peer closed), then closes. (The
 * proxy's listeners do not keep half-closed connections: a client's FIN closes its connection.)
 */
function roundTrip(port: number, data: Buffer, slowReader = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    onClose(() => {
      s.destroy();
    });
    const chunks: Buffer[] = [];
    let received = 0;
    s.on("data", (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      if (received >= data.length) s.destroy();
      else if (slowReader) {
        s.pause();
        setTimeout(() => s.resume(), 1);
      }
    });
    s.on("error", reject);
    s.once("close", () => resolve(Buffer.concat(chunks)));
    s.setTimeout(30_000, () => s.destroy(new Error("round trip timed out")));
    s.write(data);
  });
}

/** Whether a connection through `port` is closed without an echo of what it sent. */
async function refusedWithoutEcho(port: number): Promise<boolean> {
  const got = await roundTrip(port, Buffer.from("anyone there?")).catch(() => Buffer.alloc(0));
  return got.length === 0;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("traffic to A reaches B's server through the tunnel: many streams at once, large transfers", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  const acceptorPort = a.port;
  const b = await startPrivate(acceptorPort, echo.port, initiatorCert, { connections: 2 });
  await waitFor(
    () => stat(a, "reverse_tunnel.private.connections") === 2,
    10_000,
    "two tunnel connections at A",
  );
  await waitFor(
    () => stat(b, "reverse_tunnel.private.connections") === 2,
    10_000,
    "both connections up at B",
  );
  assert.equal(stat(a, "reverse_tunnel_acceptor.eastwest.accepted"), 2);

  const hello = await roundTrip(front, Buffer.from("hello through the tunnel"));
  assert.equal(hello.toString(), "hello through the tunnel");

  // Many concurrent connections, each a stream on one of the two tunnel connections.
  const payloads = Array.from({ length: 60 }, (_, i) =>
    Buffer.from(`${i}:${randomBytes(2000).toString("hex")}`),
  );
  const answers = await Promise.all(payloads.map((p) => roundTrip(front, p)));
  for (const [i, got] of answers.entries())
    assert.equal(sha(got), sha(payloads[i]!), `stream ${i} echoed whole`);

  // Large transfers both ways, read slowly: HTTP/2 flow control and the sockets' backpressure bound the buffers.
  const big = randomBytes(24 << 20);
  const [one, two] = await Promise.all([
    roundTrip(front, big, true),
    roundTrip(front, big.subarray(0, 8 << 20)),
  ]);
  assert.equal(one.length, big.length);
  assert.equal(sha(one), sha(big));
  assert.equal(sha(two), sha(big.subarray(0, 8 << 20)));

  await waitFor(() => stat(a, "reverse_tunnel.private.streams_active") === 0, 5000, "streams closed at A");
  await waitFor(() => stat(b, "reverse_tunnel.private.streams_active") === 0, 5000, "streams closed at B");
  assert.equal(stat(a, "reverse_tunnel.private.streams_total"), 63);
  assert.equal(stat(b, "reverse_tunnel.private.streams_total"), 63);
  assert.equal(stat(a, "tcp.private-svc.upstream_cx_connect_fail"), 0);

  // /config_dump shows both ends.
  const dumpA = a.proxy.dump() as { reverseTunnels: { accepted: Array<{ name: string }> } };
  assert.deepEqual(
    dumpA.reverseTunnels.accepted.map((t) => t.name),
    ["private", "private"],
  );
  const dumpB = b.proxy.dump() as {
    reverseTunnels: { initiated: Array<{ name: string; connections: Array<{ state: string }> }> };
  };
  assert.deepEqual(
    dumpB.reverseTunnels.initiated[0]!.connections.map((c) => c.state),
    ["up", "up"],
  );
  await b.close();
  await a.close();
});

test("B goes away mid-traffic: new connections fail only until it is back, then ride the new tunnel", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  let b = await startPrivate(a.port, echo.port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  assert.equal((await roundTrip(front, Buffer.from("before"))).toString(), "before");

  // A connection in flight when B stops: it is closed with the tunnel.
  const inFlight = net.connect({ port: front, host: "127.0.0.1" });
  inFlight.on("error", () => {});
  inFlight.write("partial");
  await new Promise<void>((r) => inFlight.once("data", () => r()));
  const inFlightClosed = new Promise<void>((r) => inFlight.once("close", () => r()));
  await b.close();
  await inFlightClosed;
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 0, 10_000, "tunnel gone at A");
  assert.ok(await refusedWithoutEcho(front), "no tunnel: the connection is closed");

  b = await startPrivate(a.port, echo.port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel back");
  assert.equal((await roundTrip(front, Buffer.from("after restart"))).toString(), "after restart");

  // The tunnel's socket cut from A's side: B notices and redials by itself.
  const dialsBefore = stat(a, "reverse_tunnel_acceptor.eastwest.accepted");
  a.proxy.tunnels!.closeAll();
  await waitFor(
    () => stat(a, "reverse_tunnel_acceptor.eastwest.accepted") > dialsBefore,
    10_000,
    "B redialled",
  );
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up again");
  assert.equal((await roundTrip(front, Buffer.from("after redial"))).toString(), "after redial");
  assert.ok(stat(b, "reverse_tunnel.private.disconnects") >= 1);
  await b.close();
  await a.close();
});

test("A refuses a certificate from another root: B says why, counts it and keeps retrying", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  const b = await startPrivate(a.port, echo.port, rogueCert);
  await waitFor(
    () => stat(b, "reverse_tunnel.private.handshake_fail") >= 3,
    15_000,
    "three refused attempts",
  );
  assert.equal(stat(b, "reverse_tunnel.private.connections"), 0);
  assert.equal(stat(a, "reverse_tunnel.private.connections"), 0);
  assert.ok(stat(a, "reverse_tunnel_acceptor.eastwest.handshake_fail") >= 3);
  const status = (
    b.proxy.dump() as { reverseTunnels: { initiated: Array<{ connections: Array<{ lastError: string }> }> } }
  ).reverseTunnels.initiated[0]!.connections[0]!;
  assert.match(status.lastError, /refused the tunnel: 403 Forbidden: client certificate not accepted/);
  assert.ok(
    logLines.some(
      (l) => l.includes("reverse tunnel private") && l.includes("client certificate not accepted"),
    ),
    `B's log says why:\n${logLines.join("")}`,
  );
  assert.ok(await refusedWithoutEcho(front));
  await b.close();
  await a.close();
});

test("no tunnel of that name: the connection to A is closed and counted as a connect failure (UF)", async () => {
  const { a, front } = await startPublic();
  const flags: string[] = [];
  a.proxy.telemetry.sink = {
    onHttpRequest: () => {},
    onTcpClose: (r) => {
      flags.push(r.responseFlags);
    },
  };
  assert.ok(await refusedWithoutEcho(front));
  await waitFor(() => flags.length === 1, 3000, "the connection reported");
  assert.deepEqual(flags, ["UF"]);
  assert.equal(stat(a, "tcp.private-svc.upstream_cx_connect_fail"), 1);
  assert.equal(stat(a, "reverse_tunnel.private.stream_no_tunnel"), 1);
  await a.close();
});

test("B's listener refuses the stream: the connection to A fails as a connect failure, the tunnel stays", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  const b = await startPrivate(a.port, echo.port, initiatorCert, { listener: "gateway" });
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  // The listener goes away (a config without it is refused by validation, so close its socket).
  b.proxy.listener("gateway")!.close();
  assert.ok(await refusedWithoutEcho(front));
  await waitFor(() => stat(a, "tcp.private-svc.upstream_cx_connect_fail") === 1, 3000, "UF counted");
  assert.equal(stat(b, "reverse_tunnel.private.streams_refused"), 1);
  assert.equal(stat(a, "reverse_tunnel.private.connections"), 1, "the tunnel itself is fine");
  await b.close();
  await a.close();
});

test("named secrets are read at each dial: the tunnel comes up once the certificate and roots arrive", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  const b = await startPrivate(a.port, echo.port, initiatorCert, {
    tls: { certificateSecret: "default", validationSecret: "ROOTCA" },
  });
  await waitFor(
    () => stat(b, "reverse_tunnel.private.handshake_fail") >= 1,
    10_000,
    "a dial without secrets fails",
  );
  assert.equal(stat(a, "reverse_tunnel.private.connections"), 0);
  b.proxy.secrets.setValidation("ROOTCA", { trustedCa: root.cert });
  b.proxy.secrets.setCertificate("default", {
    certificateChain: initiatorCert.cert,
    privateKey: initiatorCert.key,
  });
  await waitFor(
    () => stat(a, "reverse_tunnel.private.connections") === 1,
    10_000,
    "tunnel up with the secrets",
  );
  assert.equal((await roundTrip(front, Buffer.from("with secrets"))).toString(), "with secrets");
  await b.close();
  await a.close();
});

test("HTTP/1 clusters ride the tunnel too: pooled streams, and 503 UF while no tunnel is up", async () => {
  const backend = await httpBackend(httpEcho);
  const { a, web } = await startPublic();
  const noTunnel = await keepAliveClient(web);
  const refused = await noTunnel.get("/before", "reviews.test");
  assert.equal(refused.status, 503);
  assert.match(refused.body.toString(), /no reverse tunnel private is up/);
  const b = await startPrivate(a.port, backend.port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  const c = await keepAliveClient(web);
  for (const path of ["/one", "/two", "/three"]) {
    const r = await c.get(path, "reviews.test");
    assert.equal(r.status, 200);
    assert.equal(json(r).url, path);
  }
  assert.equal(backend.connections, 1, "one pooled upstream connection: one stream, kept alive");
  assert.equal(stat(a, "reverse_tunnel.private.streams_total"), 1);
  await b.close();
  await a.close();
});

test("TLS to the far endpoint rides inside the stream: the far server's certificate is verified end to end", async () => {
  const server = https.createServer({ cert: acceptorCert.cert, key: acceptorCert.key }, httpEcho);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const { a, web } = await startPublic();
  const b = await startPrivate(a.port, (server.address() as net.AddressInfo).port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  const c = await keepAliveClient(web);
  const r = await c.get("/tls-inside", "secure.test");
  assert.equal(r.status, 200);
  assert.equal(json(r).url, "/tls-inside");
  await b.close();
  await a.close();
});

test("a TCP proxy's TLS to the far endpoint rides inside the stream too", async () => {
  const server = tls.createServer({ cert: acceptorCert.cert, key: acceptorCert.key }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  const { a } = await startPublic();
  const frontTls = a.proxy.listener("front-tls")!.boundPort;
  assert.ok(await refusedWithoutEcho(frontTls), "no tunnel yet");
  assert.equal(stat(a, "tcp.private-svc-tls.upstream_cx_connect_fail"), 1);
  const b = await startPrivate(a.port, (server.address() as net.AddressInfo).port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  const data = randomBytes(256 << 10);
  assert.equal(sha(await roundTrip(frontTls, data)), sha(data));
  await b.close();
  await a.close();
});

test("config swaps: an unchanged tunnel keeps its connection, a refused config changes nothing, a removed one closes", async () => {
  const echo = await echoServer();
  const { a, front } = await startPublic();
  const b = await startPrivate(a.port, echo.port);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 1, 10_000, "tunnel up");
  const cfg = b.proxy.config!;
  assert.deepEqual((await b.proxy.apply({ ...cfg, version: "2" })).errors, []);
  const bad = await b.proxy.apply({
    ...cfg,
    reverseTunnels: [{ ...cfg.reverseTunnels![0]!, listener: "missing" }],
  });
  assert.equal(bad.ok, false);
  assert.match(bad.errors.join("\n"), /reverseTunnels\.0\.listener: listener "missing" is not defined/);
  assert.equal((await roundTrip(front, Buffer.from("still here"))).toString(), "still here");
  assert.equal(stat(a, "reverse_tunnel_acceptor.eastwest.accepted"), 1, "never redialled");
  assert.deepEqual((await b.proxy.apply({ ...cfg, reverseTunnels: [] })).errors, []);
  await waitFor(() => stat(a, "reverse_tunnel.private.connections") === 0, 10_000, "tunnel closed");
  await waitFor(() => stat(b, "reverse_tunnel.private.connections") === 0, 10_000, "and at B");
  assert.ok(await refusedWithoutEcho(front));
  await b.close();
  await a.close();
});
