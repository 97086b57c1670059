// Filter-chain selection over real sockets: by destination port, and by the ALPN protocol a TLS client
// negotiated; the most specific chain wins and a chain without conditions catches the rest.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, test } from "node:test";
import tls from "node:tls";
import type { FilterChainConfig, ProxyConfig, RouteConfiguration } from "../config/types.ts";
import { testPki } from "../test-pki.ts";
import { closeAll, closedPort, get, onClose, startProxy } from "../test-support.ts";

after(closeAll);

const pki = testPki();
onClose(() => pki.remove());
const cert = pki.selfSigned("svc", "DNS:svc.example.test");

const direct = (body: string): RouteConfiguration => ({
  name: body,
  virtualHosts: [
    {
      name: body,
      domains: ["*"],
      routes: [{ match: { prefix: "/" }, directResponse: { status: 200, body } }],
    },
  ],
});

function listenerOn(port: number, chains: FilterChainConfig[]): ProxyConfig {
  return { listeners: [{ name: "main", address: "127.0.0.1", port, filterChains: chains }] };
}

test("destinationPort: the chain for the connection's port wins over the catch-all", async () => {
  const port = await closedPort();
  const p = await startProxy(
    listenerOn(port, [
      { name: "any", filter: { type: "http", routeConfig: direct("catch-all") } },
      {
        name: "mine",
        match: { destinationPort: port },
        filter: { type: "http", routeConfig: direct("by-port") },
      },
    ]),
  );
  assert.equal((await get(p.port, "/")).body.toString(), "by-port");
});

test("destinationPort: a chain for another port is skipped", async () => {
  const port = await closedPort();
  const p = await startProxy(
    listenerOn(port, [
      {
        name: "other",
        match: { destinationPort: port === 65535 ? 1 : port + 1 },
        filter: { type: "http", routeConfig: direct("other-port") },
      },
      { name: "any", filter: { type: "http", routeConfig: direct("catch-all") } },
    ]),
  );
  assert.equal((await get(p.port, "/")).body.toString(), "catch-all");
});

test("destinationPort: no chain matches and none catches all: the connection is closed", async () => {
  const port = await closedPort();
  const p = await startProxy(
    listenerOn(port, [
      { name: "other", match: { destinationPort: 1 }, filter: { type: "http", routeConfig: direct("x") } },
    ]),
  );
  await assert.rejects(get(p.port, "/"));
});

test("applicationProtocols: an h2 client gets the h2 chain, an HTTP/1.1 client the other", async () => {
  const tlsConfig = { certificateChain: cert.cert, privateKey: cert.key };
  const p = await startProxy(
    listenerOn(0, [
      { name: "http1", tls: tlsConfig, filter: { type: "http", routeConfig: direct("any-alpn") } },
      {
        name: "h2",
        match: { applicationProtocols: ["h2"] },
        tls: tlsConfig,
        filter: { type: "http", routeConfig: direct("h2-chain") },
      },
    ]),
  );
  const c = http2.connect(`https://127.0.0.1:${p.port}`, { servername: "svc.example.test", ca: cert.cert });
  onClose(() => c.destroy());
  const h2Body = await new Promise<string>((resolve, reject) => {
    c.on("error", reject);
    const req = c.request({ ":path": "/" });
    let d = "";
    req.setEncoding("utf8");
    req.on("data", (x: string) => {
      d += x;
    });
    req.on("end", () => resolve(d));
    req.on("error", reject);
  });
  assert.equal(h2Body, "h2-chain");

  const h1 = await new Promise<string>((resolve, reject) => {
    const s = tls.connect(
      {
        host: "127.0.0.1",
        port: p.port,
        servername: "svc.example.test",
        ca: cert.cert,
        ALPNProtocols: ["http/1.1"],
      },
      () => s.write("GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"),
    );
    let d = "";
    s.setEncoding("utf8");
    s.on("data", (x: string) => {
      d += x;
    });
    s.on("end", () => resolve(d));
    s.on("error", reject);
    onClose(() => {
      s.destroy();
    });
  });
  assert.match(h1, /^HTTP\/1\.1 200 /);
  assert.match(h1, /any-alpn$/);
});
