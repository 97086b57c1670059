// Auto mTLS as the clusters a client's sidecar gets (mtls.ts, applied by sidecar.ts's cluster()): which
// endpoints are dialled on the server's sidecar (port 15006, endpoint label tlsMode=istio) and which in plain
// text on their own port, the transport socket match that carries the SNI and the SPIFFE identities, and how
// DestinationRule tls modes and PeerAuthentication (mesh, namespace, workload, port level) change it. Table-driven
// on one service whose instances mix sidecars and none, and service accounts.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Resource } from "../../api/resource.ts";
import type { ClusterConfig, ProxyConfig } from "../../proxy/config/types.ts";
import type { ProxyNode, WorkloadInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { meshSni } from "./mtls.ts";
import { type RendererOptions, SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources } from "./translate-test-support.ts";

const REVIEWS = "reviews.shop.svc.cluster.local";
const SIDECAR = { "security.istio.io/tlsMode": "istio" } as const;

/** reviews: an HTTP port (9080 -> 8080) and a gRPC port (9090 -> 9091). */
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: grpc-api, port: 9090, targetPort: 9091}
`;

/**
 * Three instances with a sidecar (two sharing a service account, listed first so that sorting shows) and one
 * without.
 */
const WORKLOADS: WorkloadInstance[] = [
  {
    name: "reviews-v1-a",
    namespace: "shop",
    address: "10.0.0.1",
    labels: { app: "reviews", version: "v1", ...SIDECAR },
    serviceAccount: "reviews-v1",
  },
  {
    name: "reviews-v2",
    namespace: "shop",
    address: "10.0.0.2",
    labels: { app: "reviews", version: "v2", ...SIDECAR },
    serviceAccount: "reviews",
  },
  {
    name: "reviews-v1-b",
    namespace: "shop",
    address: "10.0.0.3",
    labels: { app: "reviews", version: "v1", ...SIDECAR },
    serviceAccount: "reviews-v1",
  },
  {
    name: "reviews-legacy",
    namespace: "shop",
    address: "10.0.0.4",
    labels: { app: "reviews", version: "v1" },
    serviceAccount: "legacy",
  },
];

const client: ProxyNode = { id: "productpage-1", namespace: "shop", labels: { app: "productpage" } };
const gateway: ProxyNode = { id: "ingress-1", namespace: "shop", labels: { istio: "ingressgateway" } };

const pa = (ns: string, name: string, spec: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
const dr = (name: string, spec: string, ns = "shop") =>
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
const SUBSETS = "[{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]";
const ruleWith = (tls: string) =>
  dr("reviews", `{host: reviews, trafficPolicy: {tls: {mode: ${tls}}}, subsets: ${SUBSETS}}`);

async function registryOf(docs: readonly string[], previous?: ServiceRegistry): Promise<ServiceRegistry> {
  return new ServiceRegistry(await parse(docs), [], previous, WORKLOADS);
}

async function parse(docs: readonly string[]): Promise<Resource[]> {
  return resources([SERVICE, ...docs].join("---\n"));
}

async function render(
  docs: readonly string[] = [],
  options: RendererOptions = {},
  proxy: ProxyNode = client,
): Promise<ProxyConfig> {
  const cfg = new SidecarRenderer(await registryOf(docs), options).render(proxy);
  assertValid(cfg);
  return cfg;
}

function cluster(cfg: ProxyConfig, name: string): ClusterConfig {
  const c = cfg.clusters?.find((x) => x.name === name);
  assert.ok(c, `no cluster ${name} in ${cfg.clusters?.map((x) => x.name).join(", ")}`);
  return c;
}

const outbound = (port: number, subset = "", host = REVIEWS) => `outbound|${port}|${subset}|${host}`;

/**
 * The SNI of a service port's default cluster, as mtls.ts spells it (the inbound side matches the same function's
 * names). Istio's own spelling, outbound_.PORT_._.HOST, is pinned by a test below.
 */
const defaultSni = (port: number, host = REVIEWS) => meshSni(host, port, "");

/** Each endpoint as ADDRESS:PORT, with " mtls" when it carries the label the transport socket match keys on. */
function dialled(c: ClusterConfig): string[] {
  return c.endpoints.map((e) => `${e.address}:${e.port}${e.labels?.tlsMode === "istio" ? " mtls" : ""}`);
}

/** The SANs of the cluster's mesh transport socket, or undefined when it has none. */
function sans(c: ClusterConfig): readonly string[] | undefined {
  if (c.transportSocketMatches === undefined) return undefined;
  assert.equal(c.transportSocketMatches.length, 1);
  return c.transportSocketMatches[0]!.tls?.matchSubjectAltNames;
}

const id = (sa: string, td = "cluster.local", ns = "shop") => `spiffe://${td}/ns/${ns}/sa/${sa}`;

/** Every sidecar instance on 15006 with mTLS, the legacy one in plain text on the target port. */
const AUTO = (target: number) => [
  "10.0.0.1:15006 mtls",
  "10.0.0.2:15006 mtls",
  "10.0.0.3:15006 mtls",
  `10.0.0.4:${target}`,
];
const PLAIN = (target: number) => [1, 2, 3, 4].map((n) => `10.0.0.${n}:${target}`);
const ALL_SANS = [id("reviews"), id("reviews-v1")];

test("auto mTLS: sidecar instances on 15006 with the tlsMode label, the others on their own port", async () => {
  const cfg = await render();
  const http = cluster(cfg, outbound(9080));
  assert.deepEqual(dialled(http), AUTO(8080));
  assert.deepEqual(http.endpoints[0], {
    address: "10.0.0.1",
    port: 15006,
    labels: { app: "reviews", version: "v1", ...SIDECAR, tlsMode: "istio" },
  });
  assert.deepEqual(http.endpoints[3], {
    address: "10.0.0.4",
    port: 8080,
    labels: { app: "reviews", version: "v1" },
  });
  assert.equal(http.tls, undefined, "no cluster-wide TLS: only the matching endpoints use it");
  assert.deepEqual(http.transportSocketMatches, [
    {
      name: "tlsMode-istio",
      match: { tlsMode: "istio" },
      tls: {
        sni: defaultSni(9080),
        certificateSecret: "default",
        validationSecret: "ROOTCA",
        // Sorted and deduplicated; the legacy instance's account is not among them.
        matchSubjectAltNames: ALL_SANS,
        alpnProtocols: ["http/1.1"],
      },
    },
  ]);
});

test("the default cluster's SNI is Istio's: outbound_.PORT_._.HOST (an empty subset name)", async () => {
  assert.equal(meshSni(REVIEWS, 9080, ""), `outbound_.9080_._.${REVIEWS}`);
  const tls = cluster(await render(), outbound(9080)).transportSocketMatches?.[0]?.tls;
  assert.equal(tls?.sni, `outbound_.9080_._.${REVIEWS}`);
});

test("auto mTLS on a grpc port: h2 upstream and h2 ALPN, SNI names that port", async () => {
  const grpc = cluster(await render(), outbound(9090));
  assert.equal(grpc.protocol, "http2");
  assert.deepEqual(dialled(grpc), AUTO(9091));
  const tls = grpc.transportSocketMatches?.[0]?.tls;
  assert.deepEqual(tls?.alpnProtocols, ["h2"]);
  assert.equal(tls?.sni, defaultSni(9090));
  assert.deepEqual(tls?.matchSubjectAltNames, ALL_SANS);
});

test("a subset cluster: the subset in its SNI, only its instances' identities", async () => {
  const cfg = await render([dr("reviews", `{host: reviews, subsets: ${SUBSETS}}`)]);
  const v1 = cluster(cfg, outbound(9080, "v1"));
  assert.deepEqual(dialled(v1), ["10.0.0.1:15006 mtls", "10.0.0.3:15006 mtls", "10.0.0.4:8080"]);
  assert.deepEqual(v1.transportSocketMatches?.[0]?.tls, {
    sni: `outbound_.9080_.v1_.${REVIEWS}`,
    certificateSecret: "default",
    validationSecret: "ROOTCA",
    matchSubjectAltNames: [id("reviews-v1")],
    alpnProtocols: ["http/1.1"],
  });
  const v2 = cluster(cfg, outbound(9090, "v2"));
  assert.deepEqual(dialled(v2), ["10.0.0.2:15006 mtls"]);
  assert.equal(v2.transportSocketMatches?.[0]?.tls?.sni, `outbound_.9090_.v2_.${REVIEWS}`);
  assert.deepEqual(v2.transportSocketMatches?.[0]?.tls?.alpnProtocols, ["h2"]);
  assert.deepEqual(sans(v2), [id("reviews")]);
});

test("no instance with a sidecar: plain text everywhere, no transport socket match", async () => {
  const only = ["reviews-legacy"];
  const registry = new ServiceRegistry(
    await parse([]),
    [],
    undefined,
    WORKLOADS.filter((w) => only.includes(w.name)),
  );
  const c = cluster(new SidecarRenderer(registry).render(client), outbound(9080));
  assert.deepEqual(dialled(c), ["10.0.0.4:8080"]);
  assert.equal(c.transportSocketMatches, undefined);
});

test("an instance with a sidecar and no service account is the namespace's default identity", async () => {
  const registry = new ServiceRegistry(await parse([]), [], undefined, [
    { name: "anon", namespace: "shop", address: "10.0.0.9", labels: { app: "reviews", ...SIDECAR } },
  ]);
  const c = cluster(new SidecarRenderer(registry).render(client), outbound(9080));
  assert.deepEqual(dialled(c), ["10.0.0.9:15006 mtls"]);
  assert.deepEqual(sans(c), [id("default")]);
});

test("the renderer's trust domain names the identities", async () => {
  const c = cluster(await render([], { trustDomain: "example.org" }), outbound(9080));
  assert.deepEqual(sans(c), [id("reviews", "example.org"), id("reviews-v1", "example.org")]);
});

// PeerAuthentication: what each instance's port accepts, as the client sees it. The mode decided for an instance
// port DISABLE means plain text to that port; anything else leaves auto mTLS on.
interface Expect {
  readonly http: string[];
  readonly grpc: string[];
  /** SANs of the 9080 cluster; undefined: no transport socket match. */
  readonly sans: readonly string[] | undefined;
}

const ALL_AUTO: Expect = { http: AUTO(8080), grpc: AUTO(9091), sans: ALL_SANS };
const ALL_PLAIN: Expect = { http: PLAIN(8080), grpc: PLAIN(9091), sans: undefined };

const PEER_AUTHN: Array<[string, string[], Expect, RendererOptions?]> = [
  ["no policy (PERMISSIVE)", [], ALL_AUTO],
  ["mesh-wide STRICT", [pa("istio-system", "default", "{mtls: {mode: STRICT}}")], ALL_AUTO],
  ["mesh-wide DISABLE", [pa("istio-system", "default", "{mtls: {mode: DISABLE}}")], ALL_PLAIN],
  ["namespace-wide DISABLE", [pa("shop", "default", "{mtls: {mode: DISABLE}}")], ALL_PLAIN],
  ["another namespace's DISABLE", [pa("other", "default", "{mtls: {mode: DISABLE}}")], ALL_AUTO],
  [
    "namespace STRICT over mesh DISABLE",
    [
      pa("istio-system", "default", "{mtls: {mode: DISABLE}}"),
      pa("shop", "default", "{mtls: {mode: STRICT}}"),
    ],
    ALL_AUTO,
  ],
  [
    "a workload selector DISABLEs only its instances (and drops their identity)",
    [pa("shop", "v2-plain", "{selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}")],
    {
      http: ["10.0.0.1:15006 mtls", "10.0.0.2:8080", "10.0.0.3:15006 mtls", "10.0.0.4:8080"],
      grpc: ["10.0.0.1:15006 mtls", "10.0.0.2:9091", "10.0.0.3:15006 mtls", "10.0.0.4:9091"],
      sans: [id("reviews-v1")],
    },
  ],
  [
    "a workload STRICT inside a namespace DISABLE",
    [
      pa("shop", "default", "{mtls: {mode: DISABLE}}"),
      pa("shop", "v1-strict", "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}"),
    ],
    {
      http: ["10.0.0.1:15006 mtls", "10.0.0.2:8080", "10.0.0.3:15006 mtls", "10.0.0.4:8080"],
      grpc: ["10.0.0.1:15006 mtls", "10.0.0.2:9091", "10.0.0.3:15006 mtls", "10.0.0.4:9091"],
      sans: [id("reviews-v1")],
    },
  ],
  [
    "portLevelMtls DISABLE on the target port: that service port only",
    [
      pa(
        "shop",
        "http-plain",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: DISABLE}}}",
      ),
    ],
    { http: PLAIN(8080), grpc: AUTO(9091), sans: undefined },
  ],
  [
    "portLevelMtls keyed by the service port does not apply (it names workload ports)",
    [
      pa(
        "shop",
        "http-plain",
        "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {'9080': {mode: DISABLE}}}",
      ),
    ],
    ALL_AUTO,
  ],
  [
    "the configured root namespace is mesh-wide",
    [pa("mesh-root", "default", "{mtls: {mode: DISABLE}}")],
    ALL_PLAIN,
    { security: { rootNamespace: "mesh-root" } },
  ],
  [
    "another root namespace is just a namespace",
    [pa("mesh-root", "default", "{mtls: {mode: DISABLE}}")],
    ALL_AUTO,
  ],
];

for (const [name, docs, want, options] of PEER_AUTHN)
  test(`PeerAuthentication: ${name}`, async () => {
    const cfg = await render(docs, options);
    const http = cluster(cfg, outbound(9080));
    assert.deepEqual(dialled(http), want.http);
    assert.deepEqual(dialled(cluster(cfg, outbound(9090))), want.grpc);
    assert.deepEqual(sans(http), want.sans);
  });

// DestinationRule tls: unset is auto; ISTIO_MUTUAL forces mTLS to sidecars whatever the server's policy;
// DISABLE is plain text whatever it is; SIMPLE originates TLS to the instances' own ports.
interface DrExpect {
  /** Cluster name -> dialled endpoints. */
  readonly dialled: Readonly<Record<string, string[]>>;
  /** Cluster name -> cluster-wide TLS (origination), when set. */
  readonly tls?: Readonly<Record<string, unknown>>;
}

const DR_CASES: Array<[string, string[], DrExpect]> = [
  [
    "no tls (AUTO)",
    [
      dr(
        "reviews",
        `{host: reviews, trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}, subsets: ${SUBSETS}}`,
      ),
    ],
    {
      dialled: {
        [outbound(9080)]: AUTO(8080),
        [outbound(9080, "v1")]: ["10.0.0.1:15006 mtls", "10.0.0.3:15006 mtls", "10.0.0.4:8080"],
      },
    },
  ],
  [
    // Only subsets of sidecar instances here: what Istio does with the others is a test below.
    "ISTIO_MUTUAL: mTLS to sidecars",
    [ruleWith("ISTIO_MUTUAL")],
    {
      dialled: {
        [outbound(9080, "v2")]: ["10.0.0.2:15006 mtls"],
        [outbound(9090, "v2")]: ["10.0.0.2:15006 mtls"],
      },
    },
  ],
  [
    "ISTIO_MUTUAL wins over the server's DISABLE (the call fails, as in Istio)",
    [ruleWith("ISTIO_MUTUAL"), pa("shop", "default", "{mtls: {mode: DISABLE}}")],
    {
      dialled: {
        [outbound(9080, "v2")]: ["10.0.0.2:15006 mtls"],
        [outbound(9090, "v2")]: ["10.0.0.2:15006 mtls"],
      },
    },
  ],
  [
    "DISABLE: plain text to every instance",
    [ruleWith("DISABLE")],
    { dialled: { [outbound(9080)]: PLAIN(8080), [outbound(9090, "v2")]: ["10.0.0.2:9091"] } },
  ],
  [
    "DISABLE wins over the server's STRICT",
    [ruleWith("DISABLE"), pa("istio-system", "default", "{mtls: {mode: STRICT}}")],
    { dialled: { [outbound(9080)]: PLAIN(8080) } },
  ],
  [
    "SIMPLE: TLS origination to the instances' own ports, no mesh transport socket",
    [ruleWith("SIMPLE")],
    {
      dialled: {
        [outbound(9080)]: PLAIN(8080),
        [outbound(9080, "v1")]: ["10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.4:8080"],
      },
      tls: { [outbound(9080)]: { sni: REVIEWS }, [outbound(9080, "v1")]: { sni: REVIEWS } },
    },
  ],
  [
    "SIMPLE with the rule's SNI",
    [dr("reviews", "{host: reviews, trafficPolicy: {tls: {mode: SIMPLE, sni: reviews.example.com}}}")],
    { dialled: { [outbound(9080)]: PLAIN(8080) }, tls: { [outbound(9080)]: { sni: "reviews.example.com" } } },
  ],
  [
    "port level DISABLE: that port only",
    [
      dr(
        "reviews",
        "{host: reviews, trafficPolicy: {portLevelSettings: [{port: {number: 9090}, tls: {mode: DISABLE}}]}}",
      ),
    ],
    { dialled: { [outbound(9080)]: AUTO(8080), [outbound(9090)]: PLAIN(9091) } },
  ],
  [
    "subset level DISABLE: that subset only",
    [
      dr(
        "reviews",
        "{host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}, trafficPolicy: {tls: {mode: DISABLE}}}]}",
      ),
    ],
    {
      dialled: {
        [outbound(9080)]: AUTO(8080),
        [outbound(9080, "v1")]: ["10.0.0.1:15006 mtls", "10.0.0.3:15006 mtls", "10.0.0.4:8080"],
        [outbound(9080, "v2")]: ["10.0.0.2:8080"],
      },
    },
  ],
];

for (const [name, docs, want] of DR_CASES)
  test(`DestinationRule tls: ${name}`, async () => {
    const cfg = await render(docs);
    for (const [n, endpoints] of Object.entries(want.dialled)) {
      const c = cluster(cfg, n);
      assert.deepEqual(dialled(c), endpoints, n);
      const mtls = endpoints.some((e) => e.endsWith(" mtls"));
      if (name.startsWith("ISTIO_MUTUAL")) {
        // The rule's mode covers every endpoint: the mesh's mTLS is the cluster's own TLS, no match needed.
        assert.equal(c.transportSocketMatches, undefined, n);
        assert.equal(c.tls?.certificateSecret, "default", `${n}: cluster-wide mesh mTLS`);
        assert.equal(c.tls?.sni, meshSni(REVIEWS, Number(n.split("|")[1]), n.split("|")[2]!), n);
        continue;
      }
      assert.equal(c.transportSocketMatches !== undefined, mtls, `${n}: a transport socket match iff mTLS`);
      assert.deepEqual(c.tls, want.tls?.[n], `${n}: cluster-wide TLS`);
    }
  });

test("DestinationRule ISTIO_MUTUAL: no instance is dialled in plain text", async () => {
  const c = cluster(await render([ruleWith("ISTIO_MUTUAL")]), outbound(9080));
  const plain = c.tls === undefined ? c.endpoints.filter((e) => e.labels?.tlsMode !== "istio") : [];
  assert.deepEqual(
    plain.map((e) => `${e.address}:${e.port}`),
    [],
  );
});

test("DestinationRule ISTIO_MUTUAL with subjectAltNames and sni: the rule's are used", async () => {
  const cfg = await render([
    dr(
      "reviews",
      "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: reviews.internal, subjectAltNames: ['spiffe://cluster.local/ns/shop/sa/pinned']}}}",
    ),
  ]);
  const tls = cluster(cfg, outbound(9080)).tls;
  assert.equal(tls?.sni, "reviews.internal");
  assert.deepEqual(tls?.matchSubjectAltNames, ["spiffe://cluster.local/ns/shop/sa/pinned"]);
});

const SERVICE_ENTRY = (location: string, endpoint: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  location: ${location}
  resolution: STATIC
  ports: [{number: 8443, name: http, protocol: HTTP}]
  endpoints: [${endpoint}]
`;

test("a MESH_EXTERNAL ServiceEntry is never dialled with the mesh's mTLS, labels or not", async () => {
  const cfg = await render([
    SERVICE_ENTRY("MESH_EXTERNAL", "{address: 192.0.2.1, labels: {security.istio.io/tlsMode: istio}}"),
  ]);
  const c = cluster(cfg, outbound(8443, "", "api.example.com"));
  assert.deepEqual(dialled(c), ["192.0.2.1:8443"]);
  assert.equal(c.transportSocketMatches, undefined);
  assert.equal(c.tls, undefined);
});

test("a MESH_INTERNAL ServiceEntry endpoint labelled as a sidecar gets auto mTLS", async () => {
  const cfg = await render([
    SERVICE_ENTRY("MESH_INTERNAL", "{address: 192.0.2.1, labels: {security.istio.io/tlsMode: istio}}"),
  ]);
  const c = cluster(cfg, outbound(8443, "", "api.example.com"));
  assert.deepEqual(dialled(c), ["192.0.2.1:15006 mtls"]);
  assert.equal(c.transportSocketMatches?.[0]?.tls?.sni, defaultSni(8443, "api.example.com"));
  assert.deepEqual(sans(c), [id("default")]);
});

test("a ServiceEntry endpoint with a serviceAccount has a sidecar with that identity", async () => {
  const cfg = await render([SERVICE_ENTRY("MESH_INTERNAL", "{address: 192.0.2.1, serviceAccount: api-sa}")]);
  const c = cluster(cfg, outbound(8443, "", "api.example.com"));
  assert.deepEqual(dialled(c), ["192.0.2.1:15006 mtls"]);
  assert.deepEqual(sans(c), [id("api-sa")]);
});

test("the gateway's clusters get auto mTLS the same way", async () => {
  const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
`;
  const cfg = await render([GATEWAY, dr("reviews", `{host: reviews, subsets: ${SUBSETS}}`)], {}, gateway);
  assert.ok(
    cfg.listeners.some((l) => l.port === 8080),
    "rendered as the gateway",
  );
  const http = cluster(cfg, outbound(9080));
  assert.deepEqual(dialled(http), AUTO(8080));
  assert.equal(http.transportSocketMatches?.[0]?.tls?.sni, defaultSni(9080));
  assert.deepEqual(sans(http), ALL_SANS);
  assert.equal(
    cluster(cfg, outbound(9080, "v1")).transportSocketMatches?.[0]?.tls?.sni,
    `outbound_.9080_.v1_.${REVIEWS}`,
  );
  const disabled = await render([GATEWAY, pa("shop", "default", "{mtls: {mode: DISABLE}}")], {}, gateway);
  assert.deepEqual(dialled(cluster(disabled, outbound(9080))), PLAIN(8080));
});

// The render memo keys a service port's clusters on the mesh's mTLS inputs: a PeerAuthentication change rebuilds
// them, a change that does not touch them keeps the very same objects. Resources that did not change are the same
// objects from one render to the next, as after an apply.
class Renders {
  registry: ServiceRegistry | undefined;
  renderer: SidecarRenderer | undefined;
  config: ProxyConfig | undefined;
  next(list: readonly Resource[]): { before: ProxyConfig; after: ProxyConfig } {
    const before = this.config;
    this.registry = new ServiceRegistry(list, [], this.registry, WORKLOADS);
    this.renderer = new SidecarRenderer(this.registry, {}, this.renderer);
    const after = this.renderer.render(client);
    this.config = after;
    // Whatever was reused, the result is what a render from scratch gives.
    assert.deepEqual(
      after,
      new SidecarRenderer(new ServiceRegistry(list, [], undefined, WORKLOADS)).render(client),
    );
    return { before: before ?? after, after };
  }
}

test("a PeerAuthentication change re-renders the clusters; an unrelated change reuses them", async () => {
  const base = await parse([dr("reviews", `{host: reviews, subsets: ${SUBSETS}}`)]);
  const policy = async (mode: string) =>
    resources(pa("shop", "v2-plain", `{selector: {matchLabels: {version: v2}}, mtls: {mode: ${mode}}}`));
  const unrelated = await resources(
    [
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, rules: [{}]}
`,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
`,
    ].join("---\n"),
  );
  const r = new Renders();
  r.next(base);
  // A PeerAuthentication: the mTLS decisions change, so do the clusters (new objects).
  let { before, after } = r.next([...base, ...(await policy("DISABLE"))]);
  for (const n of [outbound(9080), outbound(9080, "v2"), outbound(9090)])
    assert.notEqual(cluster(after, n), cluster(before, n), n);
  assert.deepEqual(dialled(cluster(after, outbound(9080, "v2"))), ["10.0.0.2:8080"]);
  assert.deepEqual(dialled(cluster(before, outbound(9080, "v2"))), ["10.0.0.2:15006 mtls"]);
  // The same policy again, as a new object: the same clusters.
  const same = await policy("DISABLE");
  ({ before, after } = r.next([...base, ...same]));
  assert.equal(after.clusters, before.clusters);
  // An AuthorizationPolicy and a VirtualService touch no cluster: the very same objects.
  ({ before, after } = r.next([...base, ...same, ...unrelated]));
  for (const n of [outbound(9080), outbound(9080, "v1"), outbound(9080, "v2"), outbound(9090)])
    assert.equal(cluster(after, n), cluster(before, n), n);
  assert.equal(after.clusters, before.clusters);
  // The policy's mode changed (same name): rebuilt again.
  ({ before, after } = r.next([...base, ...(await policy("STRICT")), ...unrelated]));
  assert.notEqual(cluster(after, outbound(9080, "v2")), cluster(before, outbound(9080, "v2")));
  assert.deepEqual(dialled(cluster(after, outbound(9080, "v2"))), ["10.0.0.2:15006 mtls"]);
});
