// A sidecar's inbound side (inbound.ts) as SidecarRenderer renders it: the listener virtualInbound on the pod's
// address and port 15006, one mutual-TLS chain per port the app serves, chosen by the SNI names of every service
// port and DestinationRule subset that reaches this workload, its policies' filters decided for that port, and
// one inbound|PORT|| cluster per chain, appended after the shared outbound clusters as the proxy's own segment.
import assert from "node:assert/strict";
import { test } from "node:test";
import type {
  ClusterConfig,
  FilterChainConfig,
  ListenerConfig,
  NetworkFilter,
  ProxyConfig,
} from "../../proxy/config/types.ts";
import { validateProxyConfig } from "../../proxy/config/validate.ts";
import { configLists } from "../../proxy/xds/config-resources.ts";
import type { ProxyNode, WorkloadInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { meshSni } from "./mtls.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { resources } from "./translate-test-support.ts";

const REVIEWS = "reviews.shop.svc.cluster.local";
const WEB = "reviews-web.shop.svc.cluster.local";
const SIDECAR = { "security.istio.io/tlsMode": "istio" } as const;
const ADDRESS = "10.0.0.1";

/**
 * reviews: HTTP 9080 -> 8080, gRPC 9090 -> 9091, TCP 7000; reviews-web: HTTP 80 -> 8080 (the same app port);
 * ratings selects other workloads, and a Service of another namespace selects the same labels.
 */
const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: grpc-api, port: 9090, targetPort: 9091}
  - {name: tcp-stats, port: 7000, targetPort: 7000}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-web, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http-web, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080, targetPort: 6000}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: other}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 4000}]
`;

const LABELS = { app: "reviews", version: "v1", ...SIDECAR };

const server: ProxyNode = {
  id: "reviews-v1-1",
  namespace: "shop",
  labels: LABELS,
  serviceAccount: "reviews",
  appAddress: ADDRESS,
};

const workload = (over: Partial<WorkloadInstance> = {}): WorkloadInstance => ({
  name: "reviews-v1-1",
  namespace: "shop",
  address: ADDRESS,
  labels: LABELS,
  serviceAccount: "reviews",
  ...over,
});

const dr = (ns: string, name: string, spec: string) =>
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
const pa = (ns: string, name: string, spec: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;

async function render(
  docs: readonly string[] = [],
  proxy: ProxyNode = server,
  workloads: readonly WorkloadInstance[] = [workload()],
): Promise<ProxyConfig> {
  const registry = new ServiceRegistry(
    await resources([SERVICES, ...docs].join("---\n")),
    [],
    undefined,
    workloads,
  );
  const cfg = new SidecarRenderer(registry).render(proxy);
  // Whatever the inbound side holds, the proxy accepts the config.
  assert.deepEqual(
    validateProxyConfig(cfg).filter((p) => p.severity === "error"),
    [],
  );
  return cfg;
}

function inbound(cfg: ProxyConfig): ListenerConfig | undefined {
  return cfg.listeners.find((l) => l.name === "virtualInbound");
}

function chains(cfg: ProxyConfig): readonly FilterChainConfig[] {
  const l = inbound(cfg);
  assert.ok(l, "an inbound listener");
  return l.filterChains;
}

function chain(cfg: ProxyConfig, port: number): FilterChainConfig {
  const c = chains(cfg).find((x) => x.name === `inbound_${port}`);
  assert.ok(c, `a chain for ${port}`);
  return c;
}

const inboundClusters = (cfg: ProxyConfig): ClusterConfig[] =>
  (cfg.clusters ?? []).filter((c) => c.name.startsWith("inbound|"));

/** Chain name -> its SNI names. */
const serverNames = (cfg: ProxyConfig) =>
  Object.fromEntries(chains(cfg).map((c) => [c.name, c.match?.serverNames]));

/** The full SNI names for reviews:9080 and its subsets, as clients' clusters send them (mtls.ts). */
const sni = (host: string, port: number, subset = "") => meshSni(host, port, subset);

const SUBSET_RULES = [
  dr(
    "shop",
    "reviews",
    "{host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: all}]}",
  ),
  // Another namespace's rule for the same host: its subsets name this workload too.
  dr("other", "reviews-canary", `{host: ${REVIEWS}, subsets: [{name: canary, labels: {app: reviews}}]}`),
  // A short host in another namespace is that namespace's service, not this one.
  dr("other", "not-ours", "{host: reviews, subsets: [{name: nope, labels: {version: v1}}]}"),
  // A subset whose labels this workload lacks.
  dr("shop", "web", "{host: reviews-web, subsets: [{name: v1-blue, labels: {version: v1, color: blue}}]}"),
];

test("the inbound listener: pod address, 15006, one mutual-TLS chain per app port, one cluster each", async () => {
  const cfg = await render();
  const l = inbound(cfg);
  assert.ok(l);
  assert.equal(l.address, ADDRESS);
  assert.equal(l.port, 15006);
  assert.deepEqual(
    l.filterChains.map((c) => c.name),
    ["inbound_7000", "inbound_8080", "inbound_9091"],
  );
  for (const c of l.filterChains)
    assert.deepEqual(c.tls, {
      certificateSecret: "default",
      validationSecret: "ROOTCA",
      requireClientCertificate: true,
      alpnProtocols: ["h2", "http/1.1"],
    });
  const http = chain(cfg, 8080).filter;
  assert.equal(http.type, "http");
  if (http.type === "http") {
    assert.equal(http.mode, "server");
    assert.equal(http.reporter, "destination");
    assert.equal(http.statPrefix, "inbound_0.0.0.0_8080");
    assert.equal(http.setClientCertDetails, true);
    assert.deepEqual(http.routeConfig?.virtualHosts[0]?.routes[0]?.route?.cluster, "inbound|8080||");
    assert.equal(http.rbac, undefined, "no policy, no RBAC");
    assert.equal(http.jwtAuthn, undefined);
  }
  assert.deepEqual(inboundClusters(cfg), [
    { name: "inbound|7000||", endpoints: [{ address: ADDRESS, port: 7000 }] },
    { name: "inbound|8080||", endpoints: [{ address: ADDRESS, port: 8080 }] },
    { name: "inbound|9091||", protocol: "http2", endpoints: [{ address: ADDRESS, port: 9091 }] },
  ]);
});

test("a TCP port gets a TCP proxy chain to its inbound cluster", async () => {
  const c = chain(await render(), 7000);
  assert.deepEqual(c.filter, { type: "tcp", cluster: "inbound|7000||", statPrefix: "inbound_0.0.0.0_7000" });
  assert.deepEqual(c.match?.serverNames, [sni(REVIEWS, 7000)]);
});

test("SNI names: every service port and matching subset, from any namespace's rule; two services on one port merge", async () => {
  const cfg = await render(SUBSET_RULES);
  assert.deepEqual(serverNames(cfg), {
    inbound_7000: [
      sni(REVIEWS, 7000),
      sni(REVIEWS, 7000, "all"),
      sni(REVIEWS, 7000, "canary"),
      sni(REVIEWS, 7000, "v1"),
    ].sort(),
    // reviews:9080 and reviews-web:80 both reach 8080: one chain with both services' names.
    inbound_8080: [
      sni(REVIEWS, 9080),
      sni(REVIEWS, 9080, "all"),
      sni(REVIEWS, 9080, "canary"),
      sni(REVIEWS, 9080, "v1"),
      sni(WEB, 80),
    ].sort(),
    inbound_9091: [
      sni(REVIEWS, 9090),
      sni(REVIEWS, 9090, "all"),
      sni(REVIEWS, 9090, "canary"),
      sni(REVIEWS, 9090, "v1"),
    ].sort(),
  });
  const all = Object.values(serverNames(cfg)).flat().join(" ");
  for (const absent of ["_.v2_.", "_.nope_.", "_.v1-blue_.", "ratings.", "reviews.other."])
    assert.ok(!all.includes(absent), `${absent} is not this workload's`);
  // Subset names are Istio's literally.
  assert.ok(chain(cfg, 8080).match?.serverNames?.includes(`outbound_.9080_.v1_.${REVIEWS}`));
});

test("the target port is the proxy's own registered instance's", async () => {
  const cfg = await render([], server, [workload({ ports: { http: 18080 } })]);
  assert.deepEqual(
    chains(cfg).map((c) => c.name),
    ["inbound_7000", "inbound_8080", "inbound_9091", "inbound_18080"],
  );
  assert.deepEqual(chain(cfg, 18080).match?.serverNames, [sni(REVIEWS, 9080)]);
  assert.deepEqual(chain(cfg, 8080).match?.serverNames, [sni(WEB, 80)]);
  assert.deepEqual(inboundClusters(cfg).find((c) => c.name === "inbound|18080||")?.endpoints, [
    { address: ADDRESS, port: 18080 },
  ]);
});

test("a port both HTTP and TCP services reach is served as TCP", async () => {
  const extra = `apiVersion: v1
kind: Service
metadata: {name: reviews-raw, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: tcp-raw, port: 5000, targetPort: 8080}]
`;
  const c = chain(await render([extra]), 8080);
  assert.equal(c.filter.type, "tcp");
  assert.deepEqual(
    c.match?.serverNames,
    [sni(REVIEWS, 9080), sni("reviews-raw.shop.svc.cluster.local", 5000), sni(WEB, 80)].sort(),
  );
});

// PeerAuthentication: DISABLE drops a port's chain (and cluster): clients dial the app in plain text.
// STRICT and PERMISSIVE both keep it, the same.
const PEER_AUTHN: Array<[string, string[], string[]]> = [
  ["no policy", [], ["inbound_7000", "inbound_8080", "inbound_9091"]],
  [
    "mesh STRICT",
    [pa("istio-system", "default", "{mtls: {mode: STRICT}}")],
    ["inbound_7000", "inbound_8080", "inbound_9091"],
  ],
  [
    "namespace PERMISSIVE",
    [pa("shop", "default", "{mtls: {mode: PERMISSIVE}}")],
    ["inbound_7000", "inbound_8080", "inbound_9091"],
  ],
  [
    "portLevelMtls DISABLE on 8080: only that chain goes",
    [
      pa(
        "shop",
        "plain-http",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: DISABLE}}}",
      ),
    ],
    ["inbound_7000", "inbound_9091"],
  ],
  [
    "portLevelMtls on a service port (9080) is not a workload port",
    [
      pa(
        "shop",
        "plain-http",
        "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {'9080': {mode: DISABLE}}}",
      ),
    ],
    ["inbound_7000", "inbound_8080", "inbound_9091"],
  ],
  [
    "a workload STRICT with portLevelMtls DISABLE on 7000 inside a namespace DISABLE",
    [
      pa("shop", "default", "{mtls: {mode: DISABLE}}"),
      pa(
        "shop",
        "reviews",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'7000': {mode: DISABLE}}}",
      ),
    ],
    ["inbound_8080", "inbound_9091"],
  ],
  [
    "another workload's DISABLE",
    [pa("shop", "ratings", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}")],
    ["inbound_7000", "inbound_8080", "inbound_9091"],
  ],
];

for (const [name, docs, want] of PEER_AUTHN)
  test(`PeerAuthentication: ${name}`, async () => {
    const cfg = await render(docs);
    assert.deepEqual(
      chains(cfg).map((c) => c.name),
      want,
    );
    assert.deepEqual(
      inboundClusters(cfg).map((c) => c.name),
      want.map((n) => `inbound|${n.slice("inbound_".length)}||`),
      "a cluster per chain, none for a DISABLEd port",
    );
  });

test("STRICT and PERMISSIVE give the very same inbound side", async () => {
  const strict = await render([pa("shop", "default", "{mtls: {mode: STRICT}}")]);
  const permissive = await render([pa("shop", "default", "{mtls: {mode: PERMISSIVE}}")]);
  const none = await render();
  assert.deepEqual(inbound(strict), inbound(permissive));
  assert.deepEqual(inbound(strict), inbound(none));
  assert.deepEqual(inboundClusters(strict), inboundClusters(permissive));
});

const NO_INBOUND: Array<[string, string[]]> = [
  [
    "workload DISABLE",
    [pa("shop", "reviews", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}")],
  ],
  ["namespace DISABLE", [pa("shop", "default", "{mtls: {mode: DISABLE}}")]],
  ["mesh DISABLE", [pa("istio-system", "default", "{mtls: {mode: DISABLE}}")]],
];

for (const [name, docs] of NO_INBOUND)
  test(`PeerAuthentication ${name} on every port: no inbound listener, no inbound clusters`, async () => {
    const cfg = await render(docs);
    assert.equal(inbound(cfg), undefined);
    assert.deepEqual(inboundClusters(cfg), []);
    assert.deepEqual(
      cfg.listeners.map((l) => l.name),
      ["virtualOutbound"],
    );
  });

test("no appAddress: no inbound listener and no inbound clusters", async () => {
  const { appAddress: _, ...withoutAddress } = server;
  const cfg = await render([], withoutAddress);
  assert.equal(inbound(cfg), undefined);
  assert.deepEqual(inboundClusters(cfg), []);
});

test("a proxy no service selects: no inbound side", async () => {
  const lonely: ProxyNode = { ...server, id: "lonely-1", labels: { app: "lonely", ...SIDECAR } };
  const cfg = await render([], lonely, [workload({ name: "lonely-1", labels: lonely.labels })]);
  assert.equal(inbound(cfg), undefined);
  assert.deepEqual(inboundClusters(cfg), []);
});

test("only services of the proxy's own namespace select it", async () => {
  const elsewhere: ProxyNode = { ...server, id: "reviews-other-1", namespace: "other" };
  const cfg = await render(SUBSET_RULES, elsewhere, [
    workload({ name: "reviews-other-1", namespace: "other" }),
  ]);
  assert.deepEqual(serverNames(cfg), {
    // The other namespace's reviews (targetPort 4000), with the subset of the rule written for its short host.
    inbound_4000: [
      sni("reviews.other.svc.cluster.local", 9080),
      sni("reviews.other.svc.cluster.local", 9080, "nope"),
    ].sort(),
  });
});

// Policies on the chains: the port is the chain's, decided when rendering.
const ONLY_8080 = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-8080, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{to: [{operation: {ports: ["8080"]}}]}]
`;
const ALLOW_ANY = { permissions: [{ any: true }], principals: [{ any: true }] };
const ALLOW_NONE = { permissions: [{ notRule: { any: true } }], principals: [{ any: true }] };
const RULE = "ns[shop]-policy[only-8080]-rule[0]";

test("AuthorizationPolicy: each chain's RBAC with its own port decided statically", async () => {
  const cfg = await render([ONLY_8080]);
  const rbacOf = (port: number) => {
    return rbacOfFilter(chain(cfg, port).filter);
  };
  assert.deepEqual(rbacOf(8080), [{ rules: { action: "ALLOW", policies: { [RULE]: ALLOW_ANY } } }]);
  // A policy for another port allows nothing here (ALLOW semantics: what no rule allows is denied).
  assert.deepEqual(rbacOf(9091), [{ rules: { action: "ALLOW", policies: { [RULE]: ALLOW_NONE } } }]);
  assert.deepEqual(rbacOf(7000), [{ rules: { action: "ALLOW", policies: { [RULE]: ALLOW_NONE } } }]);
  assert.equal(chain(cfg, 7000).filter.type, "tcp");
});

test("AuthorizationPolicy ports name the workload port, not the service port", async () => {
  const cfg = await render([ONLY_8080.replaceAll("8080", "9080")]);
  const policies = (port: number) => rbacOfFilter(chain(cfg, port).filter)?.[0]?.rules?.policies;
  assert.deepEqual(Object.values(policies(8080) ?? {}), [ALLOW_NONE]);
});

test("a policy for other workloads puts nothing on the chains", async () => {
  const cfg = await render([ONLY_8080.replace("app: reviews", "app: ratings")]);
  for (const c of chains(cfg)) assert.equal(rbacOfFilter(c.filter), undefined, c.name);
});

test("RequestAuthentication: JWT on the HTTP chains only", async () => {
  const cfg = await render([
    `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://issuer.example", jwks: '{"keys":[]}'}]
`,
  ]);
  for (const port of [8080, 9091]) {
    const f = chain(cfg, port).filter;
    assert.ok(f.type === "http" && f.jwtAuthn !== undefined, `${port}`);
    if (f.type === "http")
      assert.deepEqual(
        f.jwtAuthn?.providers.map((p) => [p.name, p.issuer]),
        [["shop/jwt/0", "https://issuer.example"]],
      );
  }
  assert.equal(chain(cfg, 7000).filter.type, "tcp");
  assert.equal("jwtAuthn" in chain(cfg, 7000).filter, false);
});

test("the clusters: the shared scope's, then the proxy's own inbound ones, as two segments", async () => {
  const registry = new ServiceRegistry(
    await resources([SERVICES, ...SUBSET_RULES].join("---\n")),
    [],
    undefined,
    [workload()],
  );
  const renderer = new SidecarRenderer(registry);
  const cfg = renderer.render(server);
  // Another proxy of the namespace, without an inbound side: the same outbound scope.
  const peer = renderer.render({ id: "productpage-1", namespace: "shop", labels: { app: "productpage" } });
  const { lists } = configLists(cfg);
  const clusterLists = lists.filter((l) => l.prefix === "cluster/");
  assert.equal(clusterLists.length, 2);
  const [shared, own] = clusterLists as [(typeof lists)[number], (typeof lists)[number]];
  assert.equal(shared.items, peer.clusters, "the shared segment is the very list other proxies get");
  assert.ok(shared.items.every((c) => !c.name.startsWith("inbound|")));
  assert.deepEqual(
    own.items.map((c) => c.name),
    ["inbound|7000||", "inbound|8080||", "inbound|9091||"],
  );
  assert.deepEqual(
    cfg.clusters?.map((c) => c.name),
    [...shared.items, ...own.items].map((c) => c.name),
  );
  // Without an inbound side the whole list is the shared one, and the own segment is empty.
  const peerLists = configLists(peer).lists.filter((l) => l.prefix === "cluster/");
  assert.equal(peerLists[0]?.items, peer.clusters);
  assert.deepEqual(peerLists[1]?.items, []);
});

test("the inbound SNI names of a service port's default cluster are Istio's outbound_.PORT_._.HOST", async () => {
  assert.ok(chain(await render(), 8080).match?.serverNames?.includes(`outbound_.9080_._.${REVIEWS}`));
});

function rbacOfFilter(f: NetworkFilter) {
  return f.type === "reverse_tunnel_acceptor" ? undefined : f.rbac;
}
