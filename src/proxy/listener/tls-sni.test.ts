// TLS filter chains over real sockets: a certificate and routes per SNI name, plain text on the same port
// (first-byte sniffing), and ALPN choosing HTTP/2. Certificates are made by openssl for each run.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, test } from "node:test";
import tls from "node:tls";
import type { ProxyConfig, RouteConfiguration } from "../config/types.ts";
import { testPki } from "../test-pki.ts";
import { closeAll, get, onClose, startProxy } from "../test-support.ts";

after(closeAll);

const pki = testPki();
onClose(() => pki.remove());

const direct = (name: string, body: string): RouteConfiguration => ({
  name,
  virtualHosts: [
    { name, domains: ["*"], routes: [{ match: { prefix: "/" }, directResponse: { status: 200, body } }] },
  ],
});

const a = pki.selfSigned("a", "DNS:a.example.test");
const b = pki.selfSigned("b", "DNS:*.b.example.test");

const config: ProxyConfig = {
  listeners: [
    {
      name: "main",
      address: "127.0.0.1",
      port: 0,
      filterChains: [
        {
          name: "a",
          match: { serverNames: ["a.example.test"] },
          tls: { certificateChain: a.cert, privateKey: a.key },
          filter: { type: "http", routeConfig: direct("ra", "chain a") },
        },
        {
          name: "b",
          match: { serverNames: ["*.b.example.test"] },
          tls: { certificateChain: b.cert, privateKey: b.key },
          filter: { type: "http", routeConfig: direct("rb", "chain b") },
        },
        { name: "plain", filter: { type: "http", routeConfig: direct("rp", "plain") } },
      ],
    },
  ],
};

function httpsGet(port: number, servername: string, ca: string): Promise<{ body: string; subject: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ca, ALPNProtocols: ["http/1.1"] }, () => {
      const subject = String(s.getPeerCertificate().subject?.CN ?? "");
      s.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
      let data = "";
      s.on("data", (d) => {
        data += d;
      });
      s.on("end", () => resolve({ body: data.slice(data.indexOf("\r\n\r\n") + 4), subject }));
    });
    s.on("error", reject);
    onClose(() => {
      s.destroy();
    });
  });
}

test("SNI selects the chain: its certificate and its routes", async () => {
  const { port } = await startProxy(config);
  const ra = await httpsGet(port, "a.example.test", a.cert);
  assert.equal(ra.subject, "a");
  assert.equal(ra.body, "chain a");
  const rb = await httpsGet(port, "x.b.example.test", b.cert);
  assert.equal(rb.subject, "b");
  assert.equal(rb.body, "chain b");
});

test("plain text on the same port still reaches the plain chain", async () => {
  const { port } = await startProxy(config);
  const r = await get(port, "/");
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), "plain");
});

test("ALPN h2 over TLS is served as HTTP/2", { timeout: 5000 }, async () => {
  const { port } = await startProxy(config);
  const c = http2.connect(`https://127.0.0.1:${port}`, { servername: "a.example.test", ca: a.cert });
  onClose(() => c.destroy());
  const { status, body, alpn } = await new Promise<{ status: number; body: string; alpn: string | false }>(
    (resolve, reject) => {
      c.on("error", reject);
      const req = c.request({ ":path": "/" });
      let s = 0;
      let data = "";
      req.on("response", (h) => {
        s = Number(h[":status"]);
      });
      req.setEncoding("utf8");
      req.on("data", (d: string) => {
        data += d;
      });
      req.on("end", () => resolve({ status: s, body: data, alpn: c.alpnProtocol ?? false }));
      req.on("error", reject);
    },
  );
  assert.equal(alpn, "h2");
  assert.equal(status, 200);
  assert.equal(body, "chain a");
});

// ------------------------------------------------------------------------------ client certificates (mTLS)

const meshCa = pki.ca("mesh-ca");
const otherCa = pki.ca("other-ca");
const server = pki.leaf(meshCa, "server", "DNS:svc.example.test");
const goodClient = pki.leaf(meshCa, "client-good", "URI:spiffe://cluster.local/ns/default/sa/client");
const strangerClient = pki.leaf(otherCa, "client-stranger", "URI:spiffe://evil.example/ns/x/sa/y");

const mtlsConfig: ProxyConfig = {
  listeners: [
    {
      name: "main",
      address: "127.0.0.1",
      port: 0,
      filterChains: [
        {
          name: "mtls",
          tls: {
            certificateChain: server.cert,
            privateKey: server.key,
            validationContext: meshCa.cert,
            requireClientCertificate: true,
          },
          filter: { type: "http", routeConfig: direct("rm", "mutual") },
        },
      ],
    },
  ],
};

/** GET / over TLS with an optional client certificate: the body, or the error that ended the connection. */
function mtlsGet(port: number, client: { cert: string; key: string } | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      {
        host: "127.0.0.1",
        port,
        servername: "svc.example.test",
        ca: meshCa.cert,
        ALPNProtocols: ["http/1.1"],
        ...(client ?? {}),
      },
      () => s.write("GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"),
    );
    let data = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      data += d;
    });
    s.on("end", () => (data === "" ? reject(new Error("closed without a response")) : resolve(data)));
    s.on("error", reject);
    onClose(() => {
      s.destroy();
    });
  });
}

test("requireClientCertificate: a client certificate signed by the validation CA is accepted", async () => {
  const { port } = await startProxy(mtlsConfig);
  const r = await mtlsGet(port, goodClient);
  assert.match(r, /^HTTP\/1\.1 200 /);
  assert.match(r, /mutual$/);
});

test("requireClientCertificate: no client certificate, or one from another CA, gets no response", async () => {
  const { port, proxy } = await startProxy(mtlsConfig);
  await assert.rejects(mtlsGet(port, undefined), /certificate required|alert|ECONNRESET|closed without/i);
  await assert.rejects(mtlsGet(port, strangerClient), /unknown ca|alert|ECONNRESET|closed without/i);
  assert.equal(proxy.listener("main")!.clientCertRejected, 2, "both were cut right after the handshake");
  // The listener still serves the next good client.
  assert.match(await mtlsGet(port, goodClient), /mutual$/);
});

test("a TLS handshake that stalls is closed after requestHeadersTimeoutMs", async () => {
  const cfg: ProxyConfig = {
    listeners: [{ ...mtlsConfig.listeners[0]!, limits: { requestHeadersTimeoutMs: 200 } }],
  };
  const { port } = await startProxy(cfg);
  const s = net.connect(port, "127.0.0.1");
  onClose(() => {
    s.destroy();
  });
  s.on("error", () => {});
  s.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello, then silence
  const started = Date.now();
  await new Promise((r) => s.once("close", r));
  assert.ok(Date.now() - started < 3000, "closed by the handshake timeout");
});
