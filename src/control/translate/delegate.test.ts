// Delegate VirtualServices, as Istio merges them: the delegate's routes under the root route's match (each
// delegate match must be a subset of a root match, else the route is dropped), names joined, root fields
// inherited, short names resolved in the delegate's namespace; missing or unexported delegates drop the route.
// Live: a sidecar routes by the merged table.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { closeAll, httpBackend } from "../../proxy/test-support.ts";
import type { ProxyNode } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources, runProxy, viaProxy } from "./translate-test-support.ts";

after(closeAll);

const client: ProxyNode = { id: "client-1", namespace: "default", labels: { app: "client" } };

function entry(name: string, ns: string, port: number): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [${name}.${ns}.svc.cluster.local]
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`;
}

function mesh(ports: { reviews: number; backend: number; ratings: number }): string {
  return [
    entry("reviews", "default", ports.reviews),
    entry("backend", "team-r", ports.backend),
    entry("ratings", "default", ports.ratings),
    `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
    - name: root
      match: [{ uri: { prefix: /reviews } }, { uri: { prefix: /api/reviews } }]
      timeout: 5s
      delegate: { name: reviews, namespace: team-r }
    - match: [{ uri: { prefix: /gone } }]
      delegate: { name: missing, namespace: team-r }
    - match: [{ uri: { prefix: /private } }]
      delegate: { name: private, namespace: team-r }
    - route: [{ destination: { host: ratings } }]
`,
    `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: team-r }
spec:
  http:
    - name: v1
      match: [{ uri: { prefix: /reviews/v1 }, headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews.default.svc.cluster.local } }]
      timeout: 1s
    - match: [{ uri: { prefix: /other } }]
      route: [{ destination: { host: reviews.default.svc.cluster.local } }]
    - route: [{ destination: { host: backend } }]
`,
    `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: private, namespace: team-r }
spec:
  exportTo: ["."]
  http: [{ route: [{ destination: { host: backend } }] }]
`,
  ].join("---\n");
}

test("delegate routes merge under the root route's matches, with Istio's conflict and inheritance rules", async () => {
  const r = new SidecarRenderer(
    new ServiceRegistry(await resources(mesh({ reviews: 1, backend: 2, ratings: 3 }))),
  );
  const cfg = r.render(client);
  assertValid(cfg);
  const vh = cfg.routeConfigs![0]!.virtualHosts.find(
    (v) => v.name === "reviews.default.svc.cluster.local:9080",
  )!;
  const summary = vh.routes.map((x) => ({
    name: x.name,
    prefix: x.match.prefix,
    headers: x.match.headers,
    cluster: x.route?.cluster,
    timeoutMs: x.route?.timeoutMs,
  }));
  assert.deepEqual(summary, [
    // v1's match is a subset of the first root match only; its own timeout wins.
    {
      name: "root-v1",
      prefix: "/reviews/v1",
      headers: [{ name: "end-user", exact: "jason" }],
      cluster: "outbound|9080||reviews.default.svc.cluster.local",
      timeoutMs: 1000,
    },
    // /other is under neither /reviews nor /api/reviews: dropped. The catch-all takes both root matches, the
    // root's timeout, and its short name resolves in the delegate's namespace (team-r).
    {
      name: "root",
      prefix: "/reviews",
      headers: undefined,
      cluster: "outbound|9080||backend.team-r.svc.cluster.local",
      timeoutMs: 5000,
    },
    {
      name: "root",
      prefix: "/api/reviews",
      headers: undefined,
      cluster: "outbound|9080||backend.team-r.svc.cluster.local",
      timeoutMs: 5000,
    },
    // The missing delegate and the one not exported to default drop their routes; the root's own rule stays.
    {
      name: "reviews.default.2",
      prefix: "/",
      headers: undefined,
      cluster: "outbound|9080||ratings.default.svc.cluster.local",
      timeoutMs: undefined,
    },
  ]);
  // A delegate has no hosts: it makes no virtual host of its own.
  assert.ok(
    !cfg.routeConfigs![0]!.virtualHosts.some(
      (v) => v.name.includes("team-r") && v.name.startsWith("reviews"),
    ),
  );
});

test("live: a sidecar routes by the merged delegate table", async () => {
  const backends = {
    reviews: await httpBackend((_q, s) => s.end("reviews")),
    backend: await httpBackend((_q, s) => s.end("backend")),
    ratings: await httpBackend((_q, s) => s.end("ratings")),
  };
  const yaml = mesh({
    reviews: backends.reviews.port,
    backend: backends.backend.port,
    ratings: backends.ratings.port,
  });
  const r = new SidecarRenderer(new ServiceRegistry(await resources(yaml)));
  const port = (await runProxy(r.render(client))).virtualOutbound!;
  const get = async (path: string, headers: Record<string, string> = {}) =>
    (await viaProxy(port, `http://reviews:9080${path}`, headers)).body.toString();
  assert.equal(await get("/reviews/v1", { "end-user": "jason" }), "reviews");
  assert.equal(await get("/reviews/v1"), "backend");
  assert.equal(await get("/api/reviews/9"), "backend");
  assert.equal(await get("/other"), "ratings");
  assert.equal(await get("/private"), "ratings");
});
