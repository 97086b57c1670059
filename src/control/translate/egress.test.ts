// What a sidecar can reach, with Istio's semantics: the Sidecar resource's egress hosts ("ns/host" with "*",
// ".", "~"; workloadSelector over namespace-wide over the root namespace's default), outboundTrafficPolicy
// (ALLOW_ANY passes unknown hosts through to where the client sent them, REGISTRY_ONLY answers 502), and
// ServiceEntries for external hosts (resolution DNS: the host itself is the endpoint; NONE: passthrough).
// Live traffic through a real proxy for each.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { MeshService } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { closeAll, httpBackend, RawClient } from "../../proxy/test-support.ts";
import type { ProxyNode } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { egressScope } from "./sidecar-scope.ts";
import { assertValid, resources, runProxy, viaProxy } from "./translate-test-support.ts";

after(closeAll);

const services = (ports: Record<string, number> = {}) =>
  ["default/reviews", "default/ratings", "team-b/orders", "istio-system/telemetry"]
    .map((s) => {
      const [ns, name] = s.split("/");
      return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [${name}.${ns}.svc.cluster.local]
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${ports[name!] ?? 1} } }]
`;
    })
    .join("---\n");

const SIDECARS = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: istio-system }
spec:
  egress: [{ hosts: ["./*", "istio-system/*"] }]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: team-b }
spec:
  egress: [{ hosts: ["*/*", "~default/ratings.default.svc.cluster.local"] }]
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: locked, namespace: team-b }
spec:
  workloadSelector: { labels: { app: locked } }
  egress: [{ hosts: ["~*/*"] }]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: reviews-only, namespace: default }
spec:
  workloadSelector: { labels: { app: productpage } }
  egress: [{ port: { number: 9080, protocol: HTTP, name: http }, hosts: ["default/reviews.default.svc.cluster.local"] }]
`;

const node = (id: string, namespace: string, labels: Record<string, string>): ProxyNode => ({
  id,
  namespace,
  labels,
});

function hosts(r: SidecarRenderer, n: ProxyNode): string[] {
  const cfg = r.render(n);
  assertValid(cfg);
  return cfg.routeConfigs![0]!.virtualHosts.map((v) => v.name);
}

test("Sidecar egress hosts: root default with '.', namespace-wide with '*' and '~ns/host', selector, '~*/*'", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await resources(`${services()}---\n${SIDECARS}`)));
  // default namespace, no Sidecar of its own: istio-system's default, "." being the proxy's namespace.
  assert.deepEqual(hosts(r, node("details-1", "default", { app: "details" })), [
    "reviews.default.svc.cluster.local:9080",
    "ratings.default.svc.cluster.local:9080",
    "telemetry.istio-system.svc.cluster.local:9080",
    "allow_any",
  ]);
  // team-b's namespace-wide Sidecar imports everything but default's ratings, and blocks unknown hosts.
  assert.deepEqual(hosts(r, node("orders-1", "team-b", { app: "orders" })), [
    "reviews.default.svc.cluster.local:9080",
    "orders.team-b.svc.cluster.local:9080",
    "telemetry.istio-system.svc.cluster.local:9080",
    "block_all",
  ]);
  // A workloadSelector Sidecar wins over the namespace's; "~*/*" imports nothing. Its policy: the mesh default.
  assert.deepEqual(hosts(r, node("locked-1", "team-b", { app: "locked" })), ["allow_any"]);
  // One exact host; the clusters follow the imported services.
  const pp = r.render(node("productpage-1", "default", { app: "productpage" }));
  assert.deepEqual(
    pp.clusters!.map((c) => c.name),
    ["PassthroughCluster", "BlackHoleCluster", "outbound|9080||reviews.default.svc.cluster.local"],
  );
});

test("'~/*' (no namespace) imports nothing, as Istio reads it", () => {
  // The api layer refuses "~/*" today (Istio accepts it), so the resource is made here.
  const sidecar = {
    kind: "Sidecar",
    namespace: "default",
    name: "none",
    object: { spec: { egress: [{ hosts: ["~/*"] }] } },
  } as unknown as Resource;
  const scope = egressScope(sidecar, "ALLOW_ANY", "default");
  const svc = { host: "reviews.default.svc.cluster.local", namespace: "default" } as MeshService;
  assert.equal(scope.importsService(svc, 9080), false);
  assert.equal(scope.key, "default/none");
});

test("the renderer shares a scope between proxies with the same namespace and Sidecar, not otherwise", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await resources(`${services()}---\n${SIDECARS}`)));
  const a = r.render(node("orders-1", "team-b", { app: "orders" }));
  const b = r.render(node("orders-2", "team-b", { app: "orders", version: "v2" }));
  const locked = r.render(node("locked-1", "team-b", { app: "locked" }));
  assert.equal(a.routeConfigs, b.routeConfigs);
  assert.equal(a.clusters, b.clusters);
  assert.notEqual(a.routeConfigs, locked.routeConfigs);
});

test("VirtualServices follow the Sidecar's imports: a VS of an unimported namespace is not applied", async () => {
  const yaml = `${services()}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-from-b, namespace: team-b }
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{ route: [{ destination: { host: orders.team-b.svc.cluster.local } }] }]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: default }
spec:
  egress: [{ hosts: ["default/*", "team-b/orders.team-b.svc.cluster.local"] }]
`;
  const r = new SidecarRenderer(new ServiceRegistry(await resources(yaml)));
  const route = (n: ProxyNode) =>
    r.render(n).routeConfigs![0]!.virtualHosts.find((v) => v.name.startsWith("reviews."))!.routes[0]!.route!
      .cluster;
  // The VS in team-b names reviews.default..., which the default Sidecar imports only from namespace default.
  assert.equal(route(node("p-1", "default", {})), "outbound|9080||reviews.default.svc.cluster.local");
  assert.equal(route(node("o-1", "team-b", {})), "outbound|9080||orders.team-b.svc.cluster.local");
});

test("live: ALLOW_ANY passes an unknown host through; REGISTRY_ONLY answers 502 and still reaches services", async () => {
  const outside = await httpBackend((req, res) => res.end(`outside ${req.url}`));
  const reviews = await httpBackend((_req, res) => res.end("reviews"));
  const reg = new ServiceRegistry(await resources(`${services({ reviews: reviews.port })}---\n${SIDECARS}`));
  const r = new SidecarRenderer(reg);
  const open = (await runProxy(r.render(node("details-1", "default", { app: "details" })))).virtualOutbound!;
  const passed = await viaProxy(open, `http://127.0.0.1:${outside.port}/x`);
  assert.equal(passed.status, 200);
  assert.equal(passed.body.toString(), "outside /x");

  const closed = (await runProxy(r.render(node("orders-1", "team-b", { app: "orders" })))).virtualOutbound!;
  const blocked = await viaProxy(closed, `http://127.0.0.1:${outside.port}/x`);
  assert.equal(blocked.status, 502);
  assert.equal(outside.requests, 1, "the blocked request never left");
  // CONNECT (an HTTPS call through HTTP_PROXY) to an unknown host is refused too; ALLOW_ANY tunnels it.
  const connect = async (p: number) => {
    const c = await RawClient.connect(p);
    c.write(`CONNECT 127.0.0.1:${outside.port} HTTP/1.1\r\nhost: 127.0.0.1:${outside.port}\r\n\r\n`);
    const status = (await c.read("CONNECT")).status;
    c.destroy();
    return status;
  };
  assert.equal(await connect(closed), 503);
  assert.equal(await connect(open), 200);
  // A service the Sidecar does not import is as unknown as any other host.
  assert.equal((await viaProxy(closed, "http://ratings.default.svc.cluster.local:9080/")).status, 502);
  const ok = await viaProxy(closed, "http://reviews.default.svc.cluster.local:9080/");
  assert.equal(ok.body.toString(), "reviews");

  // The mesh default can be REGISTRY_ONLY too (MeshConfig's outboundTrafficPolicy).
  const strict = new SidecarRenderer(reg, { outboundTrafficPolicy: "REGISTRY_ONLY" });
  const p = (await runProxy(strict.render(node("details-2", "default", { app: "details" }))))
    .virtualOutbound!;
  assert.equal((await viaProxy(p, `http://127.0.0.1:${outside.port}/`)).status, 502);
});

const REGISTRY_ONLY = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: default, namespace: default }
spec:
  outboundTrafficPolicy: { mode: REGISTRY_ONLY }
`;

test("live: MESH_EXTERNAL ServiceEntries with resolution DNS and a VirtualService, under REGISTRY_ONLY", async () => {
  const dns = await httpBackend((req, res) =>
    res.end(`dns ${req.headers.host} ${req.headers["x-route"] ?? "-"}`),
  );
  const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: default }
spec:
  hosts: [api.external.test]
  location: MESH_EXTERNAL
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: DNS
  endpoints: [{ address: localhost, ports: { http: ${dns.port} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: google, namespace: default }
spec:
  hosts: [www.googleapis.com]
  location: MESH_EXTERNAL
  ports: [{ number: 443, name: https, protocol: HTTPS }]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: default }
spec:
  hosts: [api.external.test]
  http: [{ headers: { request: { set: { x-route: via-vs } } }, route: [{ destination: { host: api.external.test } }] }]
---
${REGISTRY_ONLY}`;
  const r = new SidecarRenderer(new ServiceRegistry(await resources(yaml)));
  const cfg = r.render(node("app-1", "default", { app: "app" }));
  assertValid(cfg);
  const google = cfg.clusters!.find((c) => c.name === "outbound|443||www.googleapis.com")!;
  assert.deepEqual(
    google.endpoints.map((e) => `${e.address}:${e.port}`),
    ["www.googleapis.com:443"],
    "DNS without endpoints: the host itself, resolved by the proxy",
  );
  const api = cfg.clusters!.find((c) => c.name === "outbound|80||api.external.test")!;
  assert.deepEqual(
    api.endpoints.map((e) => `${e.address}:${e.port}`),
    [`localhost:${dns.port}`],
  );
  const port = (await runProxy(cfg)).virtualOutbound!;
  // The app calls the external name through its sidecar; the endpoint's DNS name is resolved on connect.
  const viaDns = await viaProxy(port, "http://api.external.test/");
  assert.equal(viaDns.status, 200);
  assert.equal(viaDns.body.toString(), "dns api.external.test via-vs");
  assert.equal((await viaProxy(port, "http://example.invalid/")).status, 502);
});

test("live: a ServiceEntry with resolution NONE forwards to where the client sent it, under REGISTRY_ONLY", async () => {
  const none = await httpBackend((req, res) => res.end(`none ${req.url}`));
  const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: anything-local, namespace: default }
spec:
  hosts: [localhost, "*.local.test"]
  location: MESH_EXTERNAL
  ports: [{ number: ${none.port}, name: http, protocol: HTTP }]
  resolution: NONE
---
${REGISTRY_ONLY}`;
  const r = new SidecarRenderer(new ServiceRegistry(await resources(yaml)));
  const cfg = r.render(node("app-1", "default", { app: "app" }));
  assertValid(cfg);
  for (const host of ["localhost", "*.local.test"]) {
    const c = cfg.clusters!.find((x) => x.name === `outbound|${none.port}||${host}`)!;
    assert.equal(c.type, "original_dst", host);
  }
  assert.ok(
    cfg.routeConfigs![0]!.virtualHosts.some((v) => v.domains.includes(`*.local.test:${none.port}`)),
    "a wildcard NONE entry gets a wildcard virtual host",
  );
  const port = (await runProxy(cfg)).virtualOutbound!;
  const r1 = await viaProxy(port, `http://localhost:${none.port}/a`);
  assert.equal(r1.status, 200);
  assert.equal(r1.body.toString(), "none /a");
  // The wildcard entry routes any of its names to where the client sent it: x.local.test does not resolve,
  // so that is a connect failure (503), not the 502 of a host outside the registry.
  assert.equal((await viaProxy(port, `http://x.local.test:${none.port}/`)).status, 503);
  // Another port of the same host is not in the entry: blocked.
  assert.equal((await viaProxy(port, `http://localhost:${none.port === 1 ? 2 : 1}/`)).status, 502);
});
