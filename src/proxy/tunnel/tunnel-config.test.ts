// The config rules of reverse tunnels (config/validate.ts): a dialled tunnel names a listener of the config and
// a name no other tunnel has, and carries a client certificate; names can be announced in a handshake; an
// endpoint's tunnel needs no local definition (its initiators are elsewhere); http2 clusters cannot ride one.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ProxyConfig, ReverseTunnelConfig } from "../config/types.ts";
import { validateProxyConfig } from "../config/validate.ts";
import { testPki } from "../test-pki.ts";

const pki = testPki();
const ca = pki.ca("config-root");
const leaf = pki.leaf(ca, "initiator", "URI:spiffe://t/ns/a/sa/b");
pki.remove();

const tunnel = (extra: Partial<ReverseTunnelConfig> = {}): ReverseTunnelConfig => ({
  name: "private",
  address: "198.51.100.7",
  port: 15008,
  tls: { certificateChain: leaf.cert, privateKey: leaf.key, validationContext: ca.cert },
  listener: "gateway",
  ...extra,
});

const base = (extra: Partial<ProxyConfig> = {}): ProxyConfig => ({
  listeners: [
    {
      name: "gateway",
      address: "127.0.0.1",
      port: 0,
      filterChains: [{ filter: { type: "tcp", cluster: "svc" } }],
    },
  ],
  clusters: [{ name: "svc", endpoints: [{ address: "10.1.2.3", port: 15443, tunnel: "elsewhere" }] }],
  ...extra,
});

const errors = (c: ProxyConfig) =>
  validateProxyConfig(c)
    .filter((p) => p.severity === "error")
    .map((p) => `${p.path.join(".")}: ${p.message}`);

test("a good tunnel config, and an endpoint tunnel with no local definition, pass", () => {
  assert.deepEqual(errors(base({ reverseTunnels: [tunnel()] })), []);
  // One name announced to two acceptors (a private network dials every public gateway).
  assert.deepEqual(errors(base({ reverseTunnels: [tunnel(), tunnel({ port: tunnel().port + 1 })] })), []);
});

test("tunnel config errors name the field", () => {
  assert.deepEqual(errors(base({ reverseTunnels: [tunnel(), tunnel({ listener: "nope" })] })), [
    `reverseTunnels.1.name: reverse tunnel "private" to ${tunnel().address}:${tunnel().port} is listed twice`,
    'reverseTunnels.1.listener: listener "nope" is not defined; the tunnel\'s streams are handed to it',
  ]);
  const noCert = errors(
    base({ reverseTunnels: [tunnel({ name: "bad name", tls: { validationContext: ca.cert } })] }),
  );
  assert.equal(noCert.length, 2);
  assert.match(noCert[0]!, /^reverseTunnels\.0\.name: the tunnel name may hold only/);
  assert.match(noCert[1]!, /^reverseTunnels\.0\.tls: an acceptor requires a client certificate/);
  const h2 = errors(
    base({
      clusters: [
        { name: "svc", protocol: "http2", endpoints: [{ address: "10.1.2.3", port: 1, tunnel: "x" }] },
      ],
    }),
  );
  assert.deepEqual(h2, [
    "clusters.0.endpoints.0.tunnel: an http2 cluster cannot reach endpoints through a reverse tunnel (tcp proxies and http1 clusters can)",
  ]);
  const warned = validateProxyConfig(
    base({ reverseTunnels: [tunnel({ tls: { ...tunnel().tls, alpnProtocols: ["h2"] } })] }),
  );
  assert.deepEqual(
    warned.map((p) => [p.severity, p.path.join(".")]),
    [["warning", "reverseTunnels.0.tls.alpnProtocols"]],
  );
});

test("the proxy's own calls (ext_authz, JWKS) cannot use a cluster behind a tunnel", () => {
  const c = base({
    listeners: [
      {
        name: "gateway",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              routeConfig: { name: "r", virtualHosts: [] },
              extAuthz: [{ cluster: "svc" }],
              jwtAuthn: {
                providers: [{ name: "p", remoteJwks: { uri: "https://idp.test/jwks", cluster: "svc" } }],
              },
            },
          },
        ],
      },
    ],
  });
  assert.deepEqual(errors(c), [
    'listeners.0.filterChains.0.filter.extAuthz.0.cluster: cluster "svc" has endpoints behind a reverse tunnel, which the proxy\'s own calls cannot reach',
    'listeners.0.filterChains.0.filter.jwtAuthn.providers.0.remoteJwks.cluster: cluster "svc" has endpoints behind a reverse tunnel, which the proxy\'s own calls cannot reach',
  ]);
});
