// TLS to upstream clusters over real sockets: the cluster's CA and SNI verify the backend's certificate (a
// backend signed by another CA is a connection failure, 503 UF, never a response), client certificates for
// backends that require them (mTLS), and HTTP/2 over TLS to a gRPC-style backend.
import assert from "node:assert/strict";
import http2 from "node:http2";
import https from "node:https";
import { after, test } from "node:test";
import type tls from "node:tls";
import type { ClusterConfig, UpstreamTlsConfig } from "../config/types.ts";
import { testPki } from "../test-pki.ts";
import { catchAll, closeAll, config, get, onClose, startProxy } from "../test-support.ts";

after(closeAll);

const pki = testPki();
onClose(() => pki.remove());
const meshCa = pki.ca("mesh-ca");
const otherCa = pki.ca("other-ca");
const backendCert = pki.leaf(meshCa, "backend", "DNS:backend.example.test");
const proxyClient = pki.leaf(meshCa, "proxy-client", "URI:spiffe://cluster.local/ns/default/sa/proxy");
const strangerBackend = pki.leaf(otherCa, "backend", "DNS:backend.example.test");

/** An HTTPS backend that answers with the CN of the client certificate it saw ("-" for none). */
async function httpsBackend(
  pem: { cert: string; key: string },
  opts: { requireClientCert?: boolean } = {},
): Promise<number> {
  const server = https.createServer(
    {
      ...pem,
      ca: meshCa.cert,
      requestCert: opts.requireClientCert === true,
      rejectUnauthorized: opts.requireClientCert === true,
    },
    (req, res) => {
      const peer = (req.socket as tls.TLSSocket).getPeerCertificate();
      res.end(
        `client=${peer?.subject?.CN ?? "-"} sni=${(req.socket as tls.TLSSocket & { servername?: string }).servername}`,
      );
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return (server.address() as { port: number }).port;
}

function tlsCluster(
  port: number,
  tlsConfig: UpstreamTlsConfig,
  extra: Partial<ClusterConfig> = {},
): ClusterConfig {
  return { name: "backend", endpoints: [{ address: "127.0.0.1", port }], tls: tlsConfig, ...extra };
}

async function proxyTo(c: ClusterConfig) {
  return startProxy(config({ routes: catchAll("backend"), clusters: [c], statPrefix: "tls" }));
}

test("upstream TLS: the backend's certificate verifies against the cluster CA for the SNI name", async () => {
  const port = await httpsBackend(backendCert);
  const p = await proxyTo(tlsCluster(port, { sni: "backend.example.test", validationContext: meshCa.cert }));
  const r = await get(p.port, "/");
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), "client=- sni=backend.example.test");
});

test("upstream TLS: a backend signed by another CA is a connection failure (503 UF), not a response", async () => {
  const port = await httpsBackend(strangerBackend);
  const p = await proxyTo(tlsCluster(port, { sni: "backend.example.test", validationContext: meshCa.cert }));
  const r = await get(p.port, "/");
  assert.equal(r.status, 503);
  assert.match(r.body.toString(), /connection failure/);
  assert.equal(p.proxy.stats.counter("http.tls.response_flag.UF").value, 1);
});

test("upstream TLS: a certificate for another name than the SNI is refused (503 UF)", async () => {
  const port = await httpsBackend(backendCert);
  const p = await proxyTo(tlsCluster(port, { sni: "other.example.test", validationContext: meshCa.cert }));
  const r = await get(p.port, "/");
  assert.equal(r.status, 503);
  assert.equal(p.proxy.stats.counter("http.tls.response_flag.UF").value, 1);
});

test("upstream mTLS: the cluster's client certificate is presented; without it the backend refuses", async () => {
  const port = await httpsBackend(backendCert, { requireClientCert: true });
  const withCert = await proxyTo(
    tlsCluster(port, {
      sni: "backend.example.test",
      validationContext: meshCa.cert,
      certificateChain: proxyClient.cert,
      privateKey: proxyClient.key,
    }),
  );
  const ok = await get(withCert.port, "/");
  assert.equal(ok.status, 200);
  assert.match(ok.body.toString(), /^client=proxy-client /);

  const without = await proxyTo(
    tlsCluster(port, { sni: "backend.example.test", validationContext: meshCa.cert }),
  );
  const refused = await get(without.port, "/");
  assert.ok(refused.status === 503, `expected 503, got ${refused.status}`);
});

test("upstream HTTP/2 over TLS (ALPN h2) to a verified backend", async () => {
  const server = http2.createSecureServer({ ...backendCert, allowHTTP1: false }, (req, res) => {
    res.end(`h2 ${req.httpVersion} ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const p = await proxyTo(
    tlsCluster(port, { sni: "backend.example.test", validationContext: meshCa.cert }, { protocol: "http2" }),
  );
  const r = await get(p.port, "/grpc.Echo/Say");
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), "h2 2.0 /grpc.Echo/Say");
});
