// `isthmus tls-check` rows (tls-check.ts): the client's mode (its DestinationRule's tls, AUTO without one)
// against the server's (the PeerAuthentication of the service's workloads that have a sidecar), CONFLICT where
// they cannot meet, and the policy and rule that decided each side. Table-driven on one service with sidecars
// (two ports) and one without.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { WorkloadInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { type TlsCheckRow, tlsCheck } from "./tls-check.ts";
import { resources } from "./translate-test-support.ts";

const SIDECAR = { "security.istio.io/tlsMode": "istio" } as const;

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: tcp-stats, port: 9000, targetPort: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

const WORKLOADS: WorkloadInstance[] = [
  {
    name: "reviews-v1",
    namespace: "shop",
    address: "10.0.0.1",
    labels: { app: "reviews", version: "v1", ...SIDECAR },
  },
  {
    name: "reviews-v2",
    namespace: "shop",
    address: "10.0.0.2",
    labels: { app: "reviews", version: "v2", ...SIDECAR },
  },
  { name: "legacy", namespace: "shop", address: "10.0.0.3", labels: { app: "legacy" } },
];

const client = { namespace: "shop", labels: { app: "productpage" } };

const pa = (ns: string, name: string, spec: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
const dr = (name: string, spec: string, ns = "shop") =>
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
const tlsRule = (host: string, mode: string) =>
  dr(host, `{host: ${host}, trafficPolicy: {tls: {mode: ${mode}}}}`);

const NS_STRICT = pa("shop", "default", "{mtls: {mode: STRICT}}");
const NS_PERMISSIVE = pa("shop", "default", "{mtls: {mode: PERMISSIVE}}");
const MESH_STRICT = pa("istio-system", "default", "{mtls: {mode: STRICT}}");
const REVIEWS_DISABLE = pa(
  "shop",
  "reviews-plain",
  "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}",
);
const V2_DISABLE = pa("shop", "v2-plain", "{selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}");

async function registry(docs: readonly string[], extraServices = ""): Promise<ServiceRegistry> {
  const text = [SERVICES + extraServices, ...docs].join("---\n");
  return new ServiceRegistry(await resources(text), [], undefined, WORKLOADS);
}

/** STATUS SERVER CLIENT AUTHN-POLICY DESTINATION-RULE */
type Cells = [string, string, string, string, string];
const cells = (r: TlsCheckRow): Cells => [r.status, r.server, r.client, r.authnPolicy, r.destinationRule];
const short = (host: string) => host.replace(".shop.svc.cluster.local", "");

/** Rows by short HOST:PORT (reviews:9080). */
async function check(docs: readonly string[], options: Parameters<typeof tlsCheck>[2] = {}) {
  const rows = tlsCheck(await registry(docs), client, options);
  return Object.fromEntries(rows.map((r) => [short(r.host), cells(r)]));
}

const CASES: Array<[string, string[], Record<string, Cells>, Parameters<typeof tlsCheck>[2]?]> = [
  [
    "nothing configured: AUTO against the mesh default; no sidecar: -",
    [],
    {
      "reviews:9080": ["OK", "PERMISSIVE", "AUTO", "-", "-"],
      "reviews:9000": ["OK", "PERMISSIVE", "AUTO", "-", "-"],
      "legacy:80": ["OK", "-", "AUTO", "-", "-"],
    },
  ],
  [
    "ISTIO_MUTUAL against DISABLE conflicts",
    [tlsRule("reviews", "ISTIO_MUTUAL"), REVIEWS_DISABLE],
    {
      "reviews:9080": ["CONFLICT", "DISABLE", "ISTIO_MUTUAL", "shop/reviews-plain", "reviews.shop"],
      "reviews:9000": ["CONFLICT", "DISABLE", "ISTIO_MUTUAL", "shop/reviews-plain", "reviews.shop"],
      "legacy:80": ["OK", "-", "AUTO", "-", "-"],
    },
  ],
  [
    "ISTIO_MUTUAL against STRICT is OK",
    [tlsRule("reviews", "ISTIO_MUTUAL"), NS_STRICT],
    { "reviews:9080": ["OK", "STRICT", "ISTIO_MUTUAL", "shop/default", "reviews.shop"] },
  ],
  [
    "ISTIO_MUTUAL against PERMISSIVE is OK",
    [tlsRule("reviews", "ISTIO_MUTUAL"), NS_PERMISSIVE],
    { "reviews:9080": ["OK", "PERMISSIVE", "ISTIO_MUTUAL", "shop/default", "reviews.shop"] },
  ],
  [
    "DISABLE against STRICT (mesh-wide) conflicts",
    [tlsRule("reviews", "DISABLE"), MESH_STRICT],
    {
      "reviews:9080": ["CONFLICT", "STRICT", "DISABLE", "istio-system/default", "reviews.shop"],
      "legacy:80": ["OK", "-", "AUTO", "-", "-"],
    },
  ],
  [
    "DISABLE against PERMISSIVE is OK",
    [tlsRule("reviews", "DISABLE"), NS_PERMISSIVE],
    { "reviews:9080": ["OK", "PERMISSIVE", "DISABLE", "shop/default", "reviews.shop"] },
  ],
  [
    "DISABLE against DISABLE is OK",
    [tlsRule("reviews", "DISABLE"), REVIEWS_DISABLE],
    { "reviews:9080": ["OK", "DISABLE", "DISABLE", "shop/reviews-plain", "reviews.shop"] },
  ],
  [
    "SIMPLE against STRICT conflicts",
    [tlsRule("reviews", "SIMPLE"), NS_STRICT],
    { "reviews:9080": ["CONFLICT", "STRICT", "SIMPLE", "shop/default", "reviews.shop"] },
  ],
  [
    "SIMPLE against PERMISSIVE is OK",
    [tlsRule("reviews", "SIMPLE")],
    { "reviews:9080": ["OK", "PERMISSIVE", "SIMPLE", "-", "reviews.shop"] },
  ],
  [
    "AUTO never conflicts: STRICT",
    [NS_STRICT],
    { "reviews:9080": ["OK", "STRICT", "AUTO", "shop/default", "-"] },
  ],
  [
    "AUTO never conflicts: DISABLE",
    [REVIEWS_DISABLE],
    { "reviews:9080": ["OK", "DISABLE", "AUTO", "shop/reviews-plain", "-"] },
  ],
  [
    "a rule without tls is AUTO, and still named",
    [dr("reviews", "{host: reviews, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}"), NS_STRICT],
    { "reviews:9080": ["OK", "STRICT", "AUTO", "shop/default", "reviews.shop"] },
  ],
  [
    "no sidecar: ISTIO_MUTUAL conflicts",
    [tlsRule("legacy", "ISTIO_MUTUAL")],
    {
      "legacy:80": ["CONFLICT", "-", "ISTIO_MUTUAL", "-", "legacy.shop"],
      "reviews:9080": ["OK", "PERMISSIVE", "AUTO", "-", "-"],
    },
  ],
  [
    "no sidecar: DISABLE is OK, whatever the namespace's policy",
    [tlsRule("legacy", "DISABLE"), NS_STRICT],
    { "legacy:80": ["OK", "-", "DISABLE", "-", "legacy.shop"] },
  ],
  [
    "no sidecar: SIMPLE is OK",
    [tlsRule("legacy", "SIMPLE")],
    { "legacy:80": ["OK", "-", "SIMPLE", "-", "legacy.shop"] },
  ],
  [
    "a mesh-wide ISTIO_MUTUAL rule in the root namespace: OK with sidecars, CONFLICT without",
    [dr("mesh-mtls", '{host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}', "istio-system")],
    {
      "reviews:9080": ["OK", "PERMISSIVE", "ISTIO_MUTUAL", "-", "mesh-mtls.istio-system"],
      "legacy:80": ["CONFLICT", "-", "ISTIO_MUTUAL", "-", "mesh-mtls.istio-system"],
    },
  ],
  [
    "MIXED instances: AUTO is OK, both deciding policies named",
    [NS_STRICT, V2_DISABLE],
    { "reviews:9080": ["OK", "MIXED", "AUTO", "shop/default,shop/v2-plain", "-"] },
  ],
  [
    "MIXED with a DISABLE instance: ISTIO_MUTUAL conflicts",
    [NS_STRICT, V2_DISABLE, tlsRule("reviews", "ISTIO_MUTUAL")],
    { "reviews:9080": ["CONFLICT", "MIXED", "ISTIO_MUTUAL", "shop/default,shop/v2-plain", "reviews.shop"] },
  ],
  [
    "MIXED with a STRICT instance: DISABLE conflicts",
    [NS_STRICT, V2_DISABLE, tlsRule("reviews", "DISABLE")],
    { "reviews:9080": ["CONFLICT", "MIXED", "DISABLE", "shop/default,shop/v2-plain", "reviews.shop"] },
  ],
  [
    "MIXED PERMISSIVE and DISABLE: DISABLE is OK (the mesh default named -)",
    [V2_DISABLE, tlsRule("reviews", "DISABLE")],
    { "reviews:9080": ["OK", "MIXED", "DISABLE", "-,shop/v2-plain", "reviews.shop"] },
  ],
  [
    "portLevelMtls: per workload port",
    [
      pa(
        "shop",
        "reviews-ports",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'8080': {mode: DISABLE}}}",
      ),
      tlsRule("reviews", "ISTIO_MUTUAL"),
    ],
    {
      "reviews:9080": ["CONFLICT", "DISABLE", "ISTIO_MUTUAL", "shop/reviews-ports", "reviews.shop"],
      "reviews:9000": ["OK", "STRICT", "ISTIO_MUTUAL", "shop/reviews-ports", "reviews.shop"],
    },
  ],
  [
    "a rule's port level tls: per service port",
    [
      dr(
        "reviews",
        "{host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9000}, tls: {mode: DISABLE}}]}}",
      ),
      NS_STRICT,
    ],
    {
      "reviews:9080": ["OK", "STRICT", "ISTIO_MUTUAL", "shop/default", "reviews.shop"],
      "reviews:9000": ["CONFLICT", "STRICT", "DISABLE", "shop/default", "reviews.shop"],
    },
  ],
  [
    "the root namespace option decides which policy is mesh-wide",
    [pa("mesh-root", "default", "{mtls: {mode: STRICT}}"), tlsRule("reviews", "DISABLE")],
    { "reviews:9080": ["CONFLICT", "STRICT", "DISABLE", "mesh-root/default", "reviews.shop"] },
    { rootNamespace: "mesh-root" },
  ],
  [
    "another root namespace's policy is just that namespace's",
    [pa("mesh-root", "default", "{mtls: {mode: STRICT}}"), tlsRule("reviews", "DISABLE")],
    { "reviews:9080": ["OK", "PERMISSIVE", "DISABLE", "-", "reviews.shop"] },
  ],
];

for (const [name, docs, want, options] of CASES)
  test(`tls-check: ${name}`, async () => {
    const got = await check(docs, options);
    for (const [host, row] of Object.entries(want)) assert.deepEqual(got[host], row, host);
  });

test("rows: one per visible service port, sorted by HOST:PORT, FQDN hosts", async () => {
  const rows = tlsCheck(await registry([]), client);
  assert.deepEqual(
    rows.map((r) => r.host),
    [
      "legacy.shop.svc.cluster.local:80",
      "reviews.shop.svc.cluster.local:9000",
      "reviews.shop.svc.cluster.local:9080",
    ],
  );
});

const WEB = `---
apiVersion: v1
kind: Service
metadata: {name: reviews-web, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

const HOSTS: Array<[string, string[]]> = [
  ["reviews", ["reviews:9000", "reviews:9080"]],
  ["reviews.shop", ["reviews:9000", "reviews:9080"]],
  ["reviews.shop.svc.cluster.local", ["reviews:9000", "reviews:9080"]],
  // HOST:PORT asks for the host (the CLI documents "HOST:PORT's host"); names are case-insensitive.
  ["REVIEWS.shop.svc.cluster.local:9080", ["reviews:9000", "reviews:9080"]],
  ["reviews-web", ["reviews-web:80"]],
  ["rev", []],
  ["shop", []],
  ["reviews.shop.svc", ["reviews:9000", "reviews:9080"]],
];

for (const [host, want] of HOSTS)
  test(`tls-check host filter: ${JSON.stringify(host)}`, async () => {
    const reg = await registry([], WEB);
    const rows = tlsCheck(reg, client, { host });
    assert.deepEqual(rows.map((r) => short(r.host)).sort(), want);
  });
