// Mutual TLS between two real proxies with certificates held as named secrets (never in the config): the
// client's cluster presents "default" and checks the server's SPIFFE identity, the server's chain requires a
// client certificate from the "ROOTCA" roots with an expected identity. A rotated secret is used by the next
// connection without a config push; a wrong identity on either side is refused; before its secret arrives a
// chain completes no handshake.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { ProxyConfig } from "../config/types.ts";
import { ProxyServer } from "../proxy.ts";
import { testPki } from "../test-pki.ts";
import { closeAll, get, onClose } from "../test-support.ts";

after(closeAll);

const SERVER_ID = "spiffe://cluster.local/ns/shop/sa/reviews";
const CLIENT_ID = "spiffe://cluster.local/ns/shop/sa/productpage";

function pki() {
  const p = testPki();
  onClose(() => p.remove());
  const ca = p.ca("mesh-root");
  return {
    ca,
    leaf: (id: string) => p.leaf(ca, id.split("/").pop()!, `URI:${id}`),
    other: p.ca("other-root"),
    p,
  };
}

function serverConfig(allowed: string[]): ProxyConfig {
  return {
    listeners: [
      {
        name: "inbound",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            tls: {
              certificateSecret: "default",
              validationSecret: "ROOTCA",
              requireClientCertificate: true,
              matchSubjectAltNames: allowed,
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

function clientConfig(serverPort: number, expect: string[]): ProxyConfig {
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
              routeConfig: {
                name: "out",
                virtualHosts: [
                  {
                    name: "reviews",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, route: { cluster: "reviews" } }],
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
        name: "reviews",
        connectTimeoutMs: 2000,
        endpoints: [{ address: "127.0.0.1", port: serverPort }],
        tls: {
          sni: "outbound_.9080_._.reviews.shop.svc.cluster.local",
          certificateSecret: "default",
          validationSecret: "ROOTCA",
          matchSubjectAltNames: expect,
        },
      },
    ],
  };
}

async function proxies(allowed: string[], expected: string[]) {
  const server = new ProxyServer();
  onClose(() => server.shutdown(0));
  assert.deepEqual((await server.apply(serverConfig(allowed))).errors, []);
  const serverPort = server.listener("inbound")!.boundPort;
  const client = new ProxyServer();
  onClose(() => client.shutdown(0));
  assert.deepEqual((await client.apply(clientConfig(serverPort, expected))).errors, []);
  return { server, client, port: client.listener("outbound")!.boundPort };
}

test("mTLS from named secrets: identities checked both ways; rotation without a push", async () => {
  const { ca, leaf } = pki();
  const { server, client, port } = await proxies([CLIENT_ID], [SERVER_ID]);
  // No secrets yet: the server completes no handshake, the client's request fails.
  assert.equal((await get(port, "/")).status, 503, "no certificate yet");

  const s1 = leaf(SERVER_ID);
  const c1 = leaf(CLIENT_ID);
  server.secrets.setCertificate("default", { certificateChain: s1.cert, privateKey: s1.key });
  server.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  client.secrets.setCertificate("default", { certificateChain: c1.cert, privateKey: c1.key });
  client.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  const r = await get(port, "/");
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), "secure");

  // Rotation: new certificates on both sides; requests keep working, no config applied.
  const s2 = leaf(SERVER_ID);
  const c2 = leaf(CLIENT_ID);
  server.secrets.setCertificate("default", { certificateChain: s2.cert, privateKey: s2.key });
  client.secrets.setCertificate("default", { certificateChain: c2.cert, privateKey: c2.key });
  for (let i = 0; i < 5; i++) assert.equal((await get(port, `/after-rotation/${i}`)).status, 200);
});

test("a server with an unexpected identity, or a client the server does not allow, is refused", async () => {
  const { ca, leaf, other, p } = pki();
  // The client expects another service account behind the cluster.
  const a = await proxies([CLIENT_ID], ["spiffe://cluster.local/ns/shop/sa/ratings"]);
  for (const [proxy, id] of [
    [a.server, SERVER_ID],
    [a.client, CLIENT_ID],
  ] as const) {
    const l = leaf(id);
    proxy.secrets.setCertificate("default", { certificateChain: l.cert, privateKey: l.key });
    proxy.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  }
  assert.equal((await get(a.port, "/")).status, 503, "wrong server identity");

  // The server allows only another client identity.
  const b = await proxies(["spiffe://cluster.local/ns/shop/sa/admin"], [SERVER_ID]);
  for (const [proxy, id] of [
    [b.server, SERVER_ID],
    [b.client, CLIENT_ID],
  ] as const) {
    const l = leaf(id);
    proxy.secrets.setCertificate("default", { certificateChain: l.cert, privateKey: l.key });
    proxy.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  }
  assert.equal((await get(b.port, "/")).status, 503, "client identity not allowed");

  // A client whose certificate comes from another root.
  const c = await proxies([CLIENT_ID], [SERVER_ID]);
  const s = leaf(SERVER_ID);
  c.server.secrets.setCertificate("default", { certificateChain: s.cert, privateKey: s.key });
  c.server.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  const foreign = p.leaf(other, "productpage", `URI:${CLIENT_ID}`);
  c.client.secrets.setCertificate("default", { certificateChain: foreign.cert, privateKey: foreign.key });
  c.client.secrets.setValidation("ROOTCA", { trustedCa: ca.cert });
  assert.equal((await get(c.port, "/")).status, 503, "client certificate from another root");
});
