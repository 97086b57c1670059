// Bad references between resources, served as Istio serves them and reported as `istioctl analyze` reports them:
// two mesh VirtualServices for one host (one is used: the first in the order the control plane holds them, the
// stand-in for Istio's creation time; IST0109), gateway VirtualServices of one host (merged, no finding), a
// route to a subset no DestinationRule defines (the config is still pushed, that route answers 503 with flag NC,
// everything else keeps working; IST0101), a VirtualService naming a Gateway that does not exist (not applied
// to sidecars unless `mesh` is listed too; IST0101), a DestinationRule for a host that does not exist (IST0174)
// and a destination host that does not exist (503 NC; IST0101). Every config passes the proxy's validator and
// runs in a real ProxyServer with live traffic; analysis runs through the real CLI (bin/isthmus.js analyze).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Diagnostic } from "../../api/diagnostic.ts";
import type { ProxyConfig, RouteConfig } from "../../proxy/config/types.ts";
import { validateProxyConfig } from "../../proxy/config/validate.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import type { HttpRequestRecord } from "../../proxy/telemetry/request-record.ts";
import { closeAll, httpBackend, onClose, waitFor } from "../../proxy/test-support.ts";
import type { ProxyNode } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { ConfigStore } from "../store/config-store.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources, viaProxy, withHost } from "./translate-test-support.ts";

const BIN = join(import.meta.dirname, "..", "..", "..", "bin", "isthmus.js");
const dir = mkdtempSync(join(tmpdir(), "isthmus-bad-refs-"));
after(() => rmSync(dir, { recursive: true, force: true }));
after(closeAll);

const productpage: ProxyNode = { id: "productpage-1", namespace: "default", labels: { app: "productpage" } };
const ingress: ProxyNode = {
  id: "istio-ingressgateway-1",
  namespace: "istio-system",
  labels: { istio: "ingressgateway" },
};
const REVIEWS = "reviews.default.svc.cluster.local";
const RATINGS = "ratings.default.svc.cluster.local";
const DETAILS = "details.default.svc.cluster.local";

/** Backend ports by name; each backend answers with its name. */
const ports: Record<string, number> = {};
before(async () => {
  for (const name of ["reviews-v1", "reviews-v2", "ratings", "details"])
    ports[name] = (await httpBackend((_req, res) => res.end(name))).port;
});

/**
 * reviews (endpoints v1 and v2, a DestinationRule with both subsets), ratings and details (no rule), one port
 * 9080 each, and a Gateway selecting the ingress proxy; with `extra` documents after them.
 */
const mesh = (...extra: string[]) =>
  [
    `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [${REVIEWS}]
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints:
    - { address: 127.0.0.1, ports: { http: ${ports["reviews-v1"]} }, labels: { version: v1 } }
    - { address: 127.0.0.1, ports: { http: ${ports["reviews-v2"]} }, labels: { version: v2 } }
`,
    ...["ratings", "details"].map(
      (name) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.default.svc.cluster.local]
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${ports[name]} } }]
`,
    ),
    `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets: [{ name: v1, labels: { version: v1 } }, { name: v2, labels: { version: v2 } }]
`,
    `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: ["*"] }]
`,
    ...extra,
  ].join("---\n");

/** A mesh VirtualService document: `hosts`, `http` and optionally `gateways` as YAML flow text. */
const vs = (name: string, body: string, namespace = "default") => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${body
  .trim()
  .split("\n")
  .map((l) => `  ${l}`)
  .join("\n")}
`;

async function render(yaml: string, node: ProxyNode): Promise<ProxyConfig> {
  const cfg = new SidecarRenderer(new ServiceRegistry(await resources(yaml))).render(node);
  assertValid(cfg);
  return cfg;
}

interface Running {
  /** Bound port by listener name. */
  readonly port: Record<string, number>;
  /** What the proxy reported for each request, in order. */
  readonly records: HttpRequestRecord[];
}

/** Runs the config in a real proxy, listeners on free ports of 127.0.0.1, recording every request. */
async function run(cfg: ProxyConfig): Promise<Running> {
  const proxy = new ProxyServer();
  onClose(() => proxy.shutdown(0));
  const r = await proxy.apply({
    ...cfg,
    listeners: cfg.listeners.map((l) => ({ ...l, address: "127.0.0.1", port: 0 })),
  });
  assert.deepEqual(r.errors, []);
  const records: HttpRequestRecord[] = [];
  proxy.telemetry.sink = { onHttpRequest: (rec) => records.push({ ...rec }) };
  const port: Record<string, number> = {};
  for (const l of cfg.listeners) port[l.name] = proxy.listener(l.name)!.boundPort;
  return { port, records };
}

/** One call through the sidecar's outbound listener (HTTP_PROXY style): status and body. */
async function call(s: Running, url: string): Promise<string> {
  const res = await viaProxy(s.port.virtualOutbound!, url);
  return `${res.status} ${res.body.toString()}`;
}

/** The last request's response flags, once the proxy has reported it. */
async function lastFlags(s: Running, count: number): Promise<string> {
  await waitFor(() => s.records.length >= count, 3000, `${count} request records`);
  return s.records[count - 1]!.responseFlags;
}

/** `isthmus analyze -o json` over the YAML as one file: exit status and findings. */
function analyze(name: string, yaml: string): { code: number | null; diagnostics: Diagnostic[] } {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  const r = spawnSync(process.execPath, [BIN, "analyze", "-o", "json", file], {
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.ok(r.stdout, `no output; stderr: ${r.stderr}`);
  return { code: r.status, diagnostics: (JSON.parse(r.stdout) as { diagnostics: Diagnostic[] }).diagnostics };
}

/** Findings of one code as "Kind ns/name field: message". */
function findings(ds: readonly Diagnostic[], code: string): string[] {
  return ds
    .filter((d) => d.code === code)
    .map((d) => `${d.kind} ${d.namespace}/${d.name} ${d.field}: ${d.message}`)
    .sort();
}

const warnings = (cfg: ProxyConfig) =>
  validateProxyConfig(cfg)
    .filter((p) => p.severity === "warning")
    .map((p) => p.message);

const vhost = (cfg: ProxyConfig, name: string) =>
  cfg.routeConfigs![0]!.virtualHosts.find((v) => v.name === name)!;
const clusters = (routes: readonly RouteConfig[]) => routes.map((r) => r.route?.cluster);

// ------------------------------------------------------------------------ two VirtualServices for one host

const TO_V1 = vs(
  "first",
  "hosts: [reviews]\nhttp: [{ route: [{ destination: { host: reviews, subset: v1 } }] }]",
);
const TO_V2 = vs(
  "second",
  `hosts: [${REVIEWS}]\nhttp: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]`,
);

test("two mesh VirtualServices for one host: the first one is used, deterministically; live traffic follows it", async () => {
  const yaml = mesh(TO_V1, TO_V2);
  const cfg = await render(yaml, productpage);
  // Only one VirtualService can own the service's virtual host; the other is dropped, not merged.
  assert.deepEqual(
    vhost(cfg, `${REVIEWS}:9080`).routes.map((r) => [r.name, r.route?.cluster]),
    [["first.default.0", `outbound|9080|v1|${REVIEWS}`]],
  );
  // The same input renders the same config, from a fresh registry and renderer.
  assert.deepEqual(await render(yaml, productpage), cfg);
  const s = await run(cfg);
  for (let i = 0; i < 4; i++) {
    assert.equal(await call(s, `http://reviews:9080/r${i}`), "200 reviews-v1");
    assert.equal(await call(s, `http://${REVIEWS}:9080/`), "200 reviews-v1");
  }
  // The other order, the other VirtualService (the short host and the FQDN are the same host).
  const swapped = await render(mesh(TO_V2, TO_V1), productpage);
  assert.deepEqual(clusters(vhost(swapped, `${REVIEWS}:9080`).routes), [`outbound|9080|v2|${REVIEWS}`]);
  const t = await run(swapped);
  assert.equal(await call(t, "http://reviews:9080/"), "200 reviews-v2");
});

test("two mesh VirtualServices for one host in the control plane's store: apply order, kept across updates", async () => {
  // Istio uses the oldest by creation time; an update keeps a resource's creation time, a delete and re-create
  // does not. The store's order is the stand-in: an apply of an existing resource keeps its place.
  const store = new ConfigStore();
  const ok = async (text: string) => assert.equal((await store.apply("t", text)).ok, true);
  const owner = () => {
    const cfg = new SidecarRenderer(new ServiceRegistry(store.all())).render(productpage);
    assertValid(cfg);
    return clusters(vhost(cfg, `${REVIEWS}:9080`).routes);
  };
  await ok(mesh());
  await ok(TO_V1);
  await ok(TO_V2);
  assert.deepEqual(owner(), [`outbound|9080|v1|${REVIEWS}`]);
  // "first" changed: still the older one.
  await ok(vs("first", "hosts: [reviews]\nhttp: [{ route: [{ destination: { host: ratings } }] }]"));
  assert.deepEqual(owner(), [`outbound|9080||${RATINGS}`]);
  // Deleted and created again: now the newer one.
  assert.equal(store.delete("VirtualService", "default", "first").ok, true);
  assert.deepEqual(owner(), [`outbound|9080|v2|${REVIEWS}`]);
  await ok(TO_V1);
  assert.deepEqual(owner(), [`outbound|9080|v2|${REVIEWS}`]);
});

test("analyze: two mesh VirtualServices for one host are IST0109 on each, naming both", () => {
  const r = analyze("conflict", mesh(TO_V1, TO_V2));
  assert.equal(r.code, 1);
  const message = (subject: string) =>
    `VirtualService ${subject} spec.hosts[0]: The VirtualServices default/first,default/second associated with mesh gateway define the same host ${REVIEWS} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`;
  assert.deepEqual(findings(r.diagnostics, "IST0109"), [message("default/first"), message("default/second")]);
  assert.ok(
    r.diagnostics.every((d) => d.severity !== "error" || d.code === "IST0109"),
    "nothing else is wrong",
  );
});

test("two mesh VirtualServices, one exported only to its namespace: Istio prefers it there over an older public one", async () => {
  const local = vs(
    "local",
    `hosts: [reviews]\nexportTo: ["."]\nhttp: [{ route: [{ destination: { host: reviews, subset: v2 } }] }]`,
  );
  const cfg = await render(mesh(TO_V1, local), productpage);
  assert.deepEqual(clusters(vhost(cfg, `${REVIEWS}:9080`).routes), [`outbound|9080|v2|${REVIEWS}`]);
});

test("a wildcard and an exact mesh VirtualService covering one service: Istio uses the most specific host", async () => {
  const wildcard = vs(
    "wildcard",
    `hosts: ["*.default.svc.cluster.local"]\nhttp: [{ route: [{ destination: { host: details } }] }]`,
  );
  const cfg = await render(mesh(wildcard, TO_V2), productpage);
  assert.deepEqual(clusters(vhost(cfg, `${REVIEWS}:9080`).routes), [`outbound|9080|v2|${REVIEWS}`]);
  assert.deepEqual(clusters(vhost(cfg, `${RATINGS}:9080`).routes), [`outbound|9080||${DETAILS}`]);
});

// ------------------------------------------------------------------- two VirtualServices on one gateway host

const SHOP_A = vs(
  "shop-a",
  `hosts: [shop.example.com]
gateways: [istio-system/edge]
http:
  - { match: [{ uri: { prefix: /a } }], route: [{ destination: { host: ratings.default.svc.cluster.local } }] }
  - { match: [{ uri: { prefix: /shared } }], route: [{ destination: { host: ratings.default.svc.cluster.local } }] }`,
  "shop",
);
const SHOP_B = vs(
  "shop-b",
  `hosts: [shop.example.com]
gateways: [istio-system/edge]
http:
  - { match: [{ uri: { prefix: /b } }], route: [{ destination: { host: details.default.svc.cluster.local } }] }
  - { match: [{ uri: { prefix: /shared } }], route: [{ destination: { host: details.default.svc.cluster.local } }] }
  - route: [{ destination: { host: reviews.default.svc.cluster.local, subset: v1 } }]`,
  "shop",
);

test("gateway: VirtualServices of one host are merged in order (Istio merges at gateways); live", async () => {
  const cfg = await render(mesh(SHOP_A, SHOP_B), ingress);
  const vh = cfg.routeConfigs![0]!.virtualHosts;
  assert.deepEqual(
    vh.map((v) => v.domains),
    [["shop.example.com"]],
  );
  assert.deepEqual(
    vh[0]!.routes.map((r) => [r.name, r.match.prefix]),
    [
      ["shop-a.shop.0", "/a"],
      ["shop-a.shop.1", "/shared"],
      ["shop-b.shop.0", "/b"],
      ["shop-b.shop.1", "/shared"],
      ["shop-b.shop.2", "/"],
    ],
  );
  const s = await run(cfg);
  const get = async (path: string) => {
    const r = await withHost(s.port["0.0.0.0_8080"]!, "shop.example.com", path);
    return `${r.status} ${r.body.toString()}`;
  };
  assert.equal(await get("/a"), "200 ratings");
  assert.equal(await get("/b"), "200 details");
  assert.equal(await get("/shared"), "200 ratings", "the earlier VirtualService's route comes first");
  assert.equal(await get("/elsewhere"), "200 reviews-v1");
  assert.equal((await withHost(s.port["0.0.0.0_8080"]!, "other.example.com", "/a")).status, 404);
  // The other order: the other VirtualService's /shared first.
  const swapped = await render(mesh(SHOP_B, SHOP_A), ingress);
  const t = await run(swapped);
  const shared = await withHost(t.port["0.0.0.0_8080"]!, "shop.example.com", "/shared");
  assert.equal(shared.body.toString(), "details");
  // Not a conflict for analysis: IST0109 is about mesh VirtualServices only.
  assert.deepEqual(findings(analyze("gateway-merge", mesh(SHOP_A, SHOP_B)).diagnostics, "IST0109"), []);
});

// ---------------------------------------------------------------------------------------- missing subsets

const MISSING_SUBSET = [
  vs(
    "reviews",
    `hosts: [reviews]
http:
  - { match: [{ uri: { prefix: /v9 } }], route: [{ destination: { host: reviews, subset: v9 } }] }
  - route: [{ destination: { host: reviews, subset: v1 } }]`,
  ),
  vs("ratings", "hosts: [ratings]\nhttp: [{ route: [{ destination: { host: ratings, subset: v1 } }] }]"),
];

test("a route to a missing subset: pushed with a warning, that route answers 503 NC, the rest works", async () => {
  const cfg = await render(mesh(...MISSING_SUBSET), productpage);
  // The proxy validates a route to an undefined cluster as a warning, not an error (assertValid above).
  assert.deepEqual(warnings(cfg), [
    `cluster "outbound|9080|v9|${REVIEWS}" is not defined; requests will get 503 (NC)`,
    `cluster "outbound|9080|v1|${RATINGS}" is not defined; requests will get 503 (NC)`,
  ]);
  const names = cfg.clusters!.map((c) => c.name);
  assert.ok(!names.includes(`outbound|9080|v9|${REVIEWS}`) && names.includes(`outbound|9080|v1|${REVIEWS}`));
  const s = await run(cfg);
  assert.equal(await call(s, "http://reviews:9080/v9/x"), "503 ");
  assert.equal(await lastFlags(s, 1), "NC");
  assert.equal(await call(s, "http://reviews:9080/other"), "200 reviews-v1");
  assert.equal(await lastFlags(s, 2), "-");
  // A subset of a host without any DestinationRule: the same.
  assert.equal(await call(s, "http://ratings:9080/"), "503 ");
  assert.equal(await lastFlags(s, 3), "NC");
  assert.equal(await call(s, "http://details:9080/"), "200 details");
  // The broken route broke nothing else: it answers the same again, and its neighbours still work.
  assert.equal(await call(s, "http://reviews:9080/v9/again"), "503 ");
  assert.equal(await call(s, `http://${REVIEWS}:9080/`), "200 reviews-v1");
});

test("analyze: a missing subset is IST0101, with or without a DestinationRule for the host", () => {
  const r = analyze("subset", mesh(...MISSING_SUBSET));
  assert.equal(r.code, 1);
  assert.deepEqual(findings(r.diagnostics, "IST0101"), [
    'VirtualService default/ratings spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "ratings+v1" (no DestinationRule for this host)',
    'VirtualService default/reviews spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"',
  ]);
});

// ---------------------------------------------------------------------------------------- missing gateways

const MISSING_GATEWAY = [
  // Bound only to a gateway that does not exist: for no proxy at all.
  vs(
    "reviews-nope",
    "hosts: [reviews]\ngateways: [nope]\nhttp: [{ route: [{ destination: { host: details } }] }]",
  ),
  // A missing gateway and mesh: for sidecars.
  vs(
    "ratings-nope-mesh",
    "hosts: [ratings]\ngateways: [nope, mesh]\nhttp: [{ route: [{ destination: { host: details } }] }]",
  ),
  // A mesh VirtualService whose match names a missing gateway: that match applies to no proxy.
  vs(
    "details-match",
    `hosts: [details]
http:
  - { match: [{ gateways: [nope], uri: { prefix: /x } }], route: [{ destination: { host: ratings } }] }
  - route: [{ destination: { host: details } }]`,
  ),
  // A missing gateway next to an existing one: bound to the existing one.
  vs(
    "shop",
    `hosts: [shop.example.com]
gateways: [istio-system/edge, istio-system/missing]
http: [{ route: [{ destination: { host: details.default.svc.cluster.local } }] }]`,
    "shop",
  ),
];

test("a VirtualService naming a missing gateway: not for sidecars unless mesh is listed; no crash; live", async () => {
  const cfg = await render(mesh(...MISSING_GATEWAY), productpage);
  assert.deepEqual(
    vhost(cfg, `${REVIEWS}:9080`).routes.map((r) => r.name),
    ["default"],
    "reviews-nope is not applied",
  );
  assert.deepEqual(clusters(vhost(cfg, `${RATINGS}:9080`).routes), [`outbound|9080||${DETAILS}`]);
  assert.deepEqual(
    vhost(cfg, `${DETAILS}:9080`).routes.map((r) => r.name),
    ["details-match.default.1"],
  );
  assert.deepEqual(warnings(cfg), []);
  const s = await run(cfg);
  const reviews = new Set<string>();
  for (let i = 0; i < 4; i++) reviews.add(await call(s, "http://reviews:9080/"));
  assert.deepEqual([...reviews].sort(), ["200 reviews-v1", "200 reviews-v2"], "the service's default route");
  assert.equal(await call(s, "http://ratings:9080/"), "200 details");
  assert.equal(await call(s, "http://details:9080/x"), "200 details");

  // The ingress gateway: the existing Gateway's VirtualService is served, nothing binds to the missing ones.
  const gw = await render(mesh(...MISSING_GATEWAY), ingress);
  assert.deepEqual(
    gw.routeConfigs!.map((rc) => [rc.name, rc.virtualHosts.map((v) => v.name)]),
    [["http.8080", ["shop.example.com:8080"]]],
  );
  const g = await run(gw);
  const shop = await withHost(g.port["0.0.0.0_8080"]!, "shop.example.com", "/");
  assert.equal(`${shop.status} ${shop.body.toString()}`, "200 details");
  assert.equal((await withHost(g.port["0.0.0.0_8080"]!, "reviews", "/")).status, 404);
});

test("analyze: a missing gateway is IST0101, in spec.gateways and in a match", () => {
  const r = analyze("gateway", mesh(...MISSING_GATEWAY));
  assert.equal(r.code, 1);
  assert.deepEqual(findings(r.diagnostics, "IST0101"), [
    'VirtualService default/details-match spec.http[0].match[0].gateways[0]: Referenced gateway not found: "nope"',
    'VirtualService default/ratings-nope-mesh spec.gateways[0]: Referenced gateway not found: "nope"',
    'VirtualService default/reviews-nope spec.gateways[0]: Referenced gateway not found: "nope"',
    'VirtualService shop/shop spec.gateways[1]: Referenced gateway not found: "istio-system/missing"',
  ]);
});

// ------------------------------------------------------------------------------------------ missing hosts

const MISSING_HOSTS = [
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ghost, namespace: default }
spec:
  host: ghost
  trafficPolicy: { loadBalancer: { simple: RANDOM } }
  subsets: [{ name: v1, labels: { version: v1 } }]
`,
  vs(
    "details",
    `hosts: [details]
http:
  - { match: [{ uri: { prefix: /ghost } }], route: [{ destination: { host: ghost } }] }
  - route: [{ destination: { host: details } }]`,
  ),
];

test("a DestinationRule for a missing host, a destination host that does not exist: valid; that route 503 NC", async () => {
  const cfg = await render(mesh(...MISSING_HOSTS), productpage);
  // The rule makes no cluster; the route names the cluster Istio would (outbound|PORT||FQDN, the route's port).
  assert.ok(!cfg.clusters!.some((c) => c.name.includes("ghost")));
  assert.deepEqual(warnings(cfg), [
    'cluster "outbound|9080||ghost.default.svc.cluster.local" is not defined; requests will get 503 (NC)',
  ]);
  const s = await run(cfg);
  assert.equal(await call(s, "http://details:9080/ghost"), "503 ");
  assert.equal(await lastFlags(s, 1), "NC");
  assert.equal(await call(s, "http://details:9080/"), "200 details");
  assert.equal(await call(s, "http://reviews:9080/").then((x) => x.startsWith("200 reviews-v")), true);
});

test("analyze: the DestinationRule's unknown host is IST0174, the destination host IST0101", () => {
  const r = analyze("hosts", mesh(...MISSING_HOSTS));
  assert.equal(r.code, 1);
  assert.deepEqual(findings(r.diagnostics, "IST0174"), [
    "DestinationRule default/ghost spec.host: The host ghost defined in the DestinationRule does not match any services in the mesh.",
  ]);
  assert.equal(r.diagnostics.find((d) => d.code === "IST0174")!.severity, "warning");
  assert.deepEqual(findings(r.diagnostics, "IST0101"), [
    'VirtualService default/details spec.http[0].route[0].destination.host: Referenced host not found: "ghost"',
  ]);
});
