// Rendering after a change reuses what the change did not touch (render-memo.ts), and only that: every test
// compares the incremental result with a render from scratch, so reuse can never serve stale config.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseResources } from "../../api/load/parse-documents.ts";
import type { Resource } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import type { ProxyNode, ServiceInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";

const proxy: ProxyNode = { id: "client-1", namespace: "shop", labels: { app: "client" } };

function serviceEntry(name: string, addresses: string[]): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: shop}
spec:
  hosts: [${name}.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [${addresses.map((a, i) => `{address: ${a}, labels: {version: v${(i % 2) + 1}}}`).join(", ")}]
`;
}

const RULE = (v1Label: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets: [{name: v1, labels: {version: ${v1Label}}}, {name: v2, labels: {version: v2}}]
`;

const ROUTE = (weight: number) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - route:
    - {destination: {host: cart, subset: v1}, weight: ${weight}}
    - {destination: {host: cart, subset: v2}, weight: ${100 - weight}}
`;

async function parse(text: string): Promise<Resource[]> {
  const parsed = parseResources("test.yaml", text);
  const { valid, diagnostics } = await validateResources(parsed.resources);
  assert.deepEqual(
    diagnostics.filter((d) => d.severity === "error"),
    [],
  );
  return valid;
}

/** Replaces resources of the same kind/namespace/name, as an apply does (new objects for those only). */
function applied(base: readonly Resource[], changes: readonly Resource[]): Resource[] {
  const key = (r: Resource) => `${r.kind}/${r.namespace}/${r.name}`;
  const byKey = new Map(changes.map((r) => [key(r), r]));
  return base.map((r) => byKey.get(key(r)) ?? r);
}

class Mesh {
  resources: Resource[];
  registered: ServiceInstance[] = [];
  registry: ServiceRegistry;
  renderer: SidecarRenderer;
  config: ProxyConfig;
  constructor(resources: Resource[]) {
    this.resources = resources;
    this.registry = new ServiceRegistry(resources);
    this.renderer = new SidecarRenderer(this.registry);
    this.config = this.renderer.render(proxy);
  }
  change(resources: Resource[], registered = this.registered): { before: ProxyConfig; after: ProxyConfig } {
    const before = this.config;
    this.resources = resources;
    this.registered = registered;
    this.registry = new ServiceRegistry(resources, registered, this.registry);
    this.renderer = new SidecarRenderer(this.registry, {}, this.renderer);
    this.config = this.renderer.render(proxy);
    // Whatever was reused, the result is exactly what a render from scratch gives.
    const scratch = new SidecarRenderer(new ServiceRegistry(resources, registered)).render(proxy);
    assert.deepEqual(this.config, scratch);
    return { before, after: this.config };
  }
}

const cluster = (c: ProxyConfig, name: string) => c.clusters!.find((x) => x.name === name)!;

async function mesh(): Promise<Mesh> {
  const names = Array.from({ length: 20 }, (_, i) => `svc${i}`);
  return new Mesh(
    await parse(
      [
        ...names.map((n, i) => serviceEntry(n, [`10.0.${i}.1`, `10.0.${i}.2`])),
        serviceEntry("cart", ["10.1.0.1", "10.1.0.2"]),
        RULE("v1"),
        ROUTE(90),
      ].join("---\n"),
    ),
  );
}

test("an endpoint change: that service's clusters are new, every other object is reused", async () => {
  const m = await mesh();
  const [changed] = await parse(serviceEntry("svc3", ["10.0.3.1", "10.9.9.9"]));
  const { before, after } = m.change(applied(m.resources, [changed!]));
  const name = "outbound|80||svc3.shop.svc.cluster.local";
  assert.notEqual(cluster(after, name), cluster(before, name));
  assert.deepEqual(
    cluster(after, name).endpoints.map((e) => e.address),
    ["10.0.3.1", "10.9.9.9"],
  );
  const other = "outbound|80|v1|cart.shop.svc.cluster.local";
  assert.equal(cluster(after, other), cluster(before, other), "untouched clusters are the same objects");
  assert.equal(after.routeConfigs, before.routeConfigs, "routes do not depend on endpoints: the same list");
});

test("nothing changed: the very same lists, so the push side has nothing to send", async () => {
  const m = await mesh();
  const { before, after } = m.change([...m.resources]);
  assert.equal(after.clusters, before.clusters);
  assert.equal(after.routeConfigs, before.routeConfigs);
});

test("a DestinationRule change rebuilds its host's subsets; a VirtualService change its routes only", async () => {
  const m = await mesh();
  const [rule] = await parse(RULE("v2"));
  let { before, after } = m.change(applied(m.resources, [rule!]));
  const v1 = "outbound|80|v1|cart.shop.svc.cluster.local";
  assert.deepEqual(
    cluster(after, v1).endpoints.map((e) => e.address),
    ["10.1.0.2"],
  );
  assert.notEqual(cluster(after, v1), cluster(before, v1));
  const svc0 = "outbound|80||svc0.shop.svc.cluster.local";
  assert.equal(cluster(after, svc0), cluster(before, svc0));

  const [route] = await parse(ROUTE(10));
  ({ before, after } = m.change(applied(m.resources, [route!])));
  assert.equal(after.clusters, before.clusters, "clusters do not depend on VirtualServices: the same list");
  assert.notEqual(after.routeConfigs, before.routeConfigs);
});

test("registered instances: a change to them rebuilds the service's clusters", async () => {
  const m = await mesh();
  const reg = (address: string): ServiceInstance => ({
    host: "cart.shop.svc.cluster.local",
    servicePort: 80,
    address,
    port: 8080,
    labels: { version: "v2" },
  });
  m.change(m.resources, [reg("10.2.0.1")]);
  const { before, after } = m.change(m.resources, [reg("10.2.0.1"), reg("10.2.0.2")]);
  const v2 = "outbound|80|v2|cart.shop.svc.cluster.local";
  assert.notEqual(cluster(after, v2), cluster(before, v2));
  assert.ok(cluster(after, v2).endpoints.some((e) => e.address === "10.2.0.2"));
  const same = m.change(m.resources, [reg("10.2.0.1"), reg("10.2.0.2")]);
  assert.equal(same.after.clusters, same.before.clusters, "equal registrations: the same list");
});
