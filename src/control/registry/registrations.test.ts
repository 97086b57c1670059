// Workload instances from a source (registrations through the config API, as the local runtime registers
// pods): validated field by field, made instances of the Services that select them (targetPort by number or
// name, WorkloadGroup templates), kept out of every proxy's config while not healthy; and end to end, a real
// control plane and sidecar: register -> traffic, unhealthy -> no endpoint, register again -> traffic.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseResources } from "../../api/load/parse-documents.ts";
import { validateResources } from "../../api/validate/index.ts";
import { closeAll, httpBackend, onClose, RawClient, spawnProxy } from "../../proxy/test-support.ts";
import { startControlPlane } from "../e2e-support.ts";
import { SidecarRenderer } from "../translate/sidecar-renderer.ts";
import { ServiceRegistry } from "./registry.ts";
import { REGISTRATION_LIMITS, RegistrationSource } from "./workload-source.ts";

after(closeAll);

const MESH = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: shop}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: ratings-vms, namespace: shop}
spec:
  metadata: {labels: {app: ratings, version: v2}}
  template: {serviceAccount: ratings, network: on-prem, locality: dc1/rack1}
`;

async function resources(text: string) {
  const { valid, diagnostics } = await validateResources(parseResources("mesh.yaml", text).resources);
  assert.deepEqual(
    diagnostics.filter((d) => d.severity === "error"),
    [],
  );
  return valid;
}

test("registrations are refused field by field, and nothing changes", () => {
  const src = new RegistrationSource();
  let changes = 0;
  src.onChange(() => changes++);
  assert.deepEqual(src.register("shop", "pod-1", { address: "not-an-ip" }), [
    'address "not-an-ip" is not an IP address',
  ]);
  const many = src.register("Shop", "pod_1", {
    address: "10.0.0.1",
    labels: { "bad key!": "x", app: "a".repeat(64) },
    weight: 0,
    ports: { http: 70000 },
    healthy: "yes",
    extra: 1,
  });
  assert.ok(many.includes('namespace "Shop" is not a DNS label'), many.join("\n"));
  assert.ok(many.includes('name "pod_1" is not a DNS label'));
  assert.ok(many.includes('unknown field "extra"'));
  assert.ok(many.includes('labels: "bad key!" is not a label key'));
  assert.ok(many.includes("labels.app must be a label value (at most 63 characters)"));
  assert.ok(many.includes("weight must be an integer from 1 to 1000000"));
  assert.ok(many.includes("ports.http must be a port number"));
  assert.ok(many.includes("healthy must be true or false"));
  assert.deepEqual(src.register("shop", "pod-1", []), ["the body must be a JSON object"]);
  const labels = Object.fromEntries(
    Array.from({ length: REGISTRATION_LIMITS.maxLabels + 1 }, (_, i) => [`k${i}`, "v"]),
  );
  assert.ok(src.register("shop", "pod-1", { address: "10.0.0.1", labels }).includes("at most 64 labels"));
  assert.equal(changes, 0);
  assert.equal(src.workloads().length, 0);

  assert.deepEqual(src.register("shop", "pod-1", { address: "10.0.0.1", labels: { app: "reviews" } }), []);
  assert.deepEqual(src.register("shop", "pod-1", { address: "10.0.0.1", labels: { app: "reviews" } }), []);
  assert.equal(changes, 1, "registering the same instance again is no change");
  assert.equal(src.deregister("shop", "pod-1"), true);
  assert.equal(src.deregister("shop", "pod-1"), false);
  assert.equal(changes, 2);
});

test("instances of the services that select them: named targetPort, WorkloadGroup template, health", async () => {
  const src = new RegistrationSource();
  src.register("shop", "reviews-1", {
    address: "10.0.0.1",
    labels: { app: "reviews" },
    ports: { web: 9081 },
  });
  src.register("shop", "reviews-2", {
    address: "10.0.0.2",
    labels: { app: "reviews" },
    ports: { web: 9081 },
    healthy: false,
  });
  src.register("shop", "vm-1", { address: "192.168.1.7", group: "ratings-vms" });
  src.register("other", "reviews-x", { address: "10.9.0.1", labels: { app: "reviews" } });
  const registry = new ServiceRegistry(await resources(MESH), [], undefined, src.workloads());
  const reviews = registry.instances("reviews.shop.svc.cluster.local", 9080);
  assert.deepEqual(
    reviews.map((i) => [i.address, i.port, i.healthy ?? true]),
    [
      ["10.0.0.1", 9081, true],
      ["10.0.0.2", 9081, false],
    ],
    "the other namespace's pod is not selected",
  );
  const [vm] = registry.instances("ratings.shop.svc.cluster.local", 9080);
  assert.deepEqual(vm, {
    host: "ratings.shop.svc.cluster.local",
    servicePort: 9080,
    address: "192.168.1.7",
    port: 8080,
    labels: { app: "ratings", version: "v2" },
    locality: "dc1/rack1",
    network: "on-prem",
    serviceAccount: "ratings",
  });

  const config = new SidecarRenderer(registry).render({ id: "c", namespace: "shop", labels: {} });
  const cluster = config.clusters!.find((c) => c.name === "outbound|9080||reviews.shop.svc.cluster.local")!;
  assert.deepEqual(
    cluster.endpoints.map((e) => e.address),
    ["10.0.0.1"],
    "the instance that is not healthy is sent to no proxy",
  );
});

test("end to end: a registered pod gets traffic, an unhealthy or deregistered one none", async () => {
  const backend = await httpBackend((_req, res) => res.end("registered-backend"));
  const dir = mkdtempSync(join(tmpdir(), "isthmus-registrations-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, "svc.yaml"),
    `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
`,
  );
  const token = "registrations-test-token";
  const cp = await startControlPlane([dir], token);
  const api = cp.server;
  const xds = String(cp.pushPort);
  const register = (body: unknown, method = "PUT") =>
    fetch(`${api}/apis/registrations/default/echo-1`, {
      method,
      headers: { authorization: `Bearer ${token}` },
      ...(method === "PUT" ? { body: JSON.stringify(body) } : {}),
    });

  const bad = await register({ address: "127.0.0.1", labels: { app: "echo" }, ports: { http: "x" } });
  assert.equal(bad.status, 400);
  assert.deepEqual(((await bad.json()) as { errors: string[] }).errors, ["ports.http must be a port number"]);
  const unauthorized = await fetch(`${api}/apis/registrations`, {
    headers: { authorization: "Bearer wrong" },
  });
  assert.equal(unauthorized.status, 401);

  await spawnProxy(
    [
      "--control-plane",
      `127.0.0.1:${xds}`,
      "--node-id",
      "reg-client",
      "--ip",
      "127.0.0.61",
      "--admin-port",
      "0",
    ],
    [],
  );
  const call = async (): Promise<{ status: number; body: string }> => {
    const c = await RawClient.connect(15001, "127.0.0.61");
    try {
      c.write(
        "GET http://echo.default.svc.cluster.local/ HTTP/1.1\r\nhost: echo.default.svc.cluster.local\r\n\r\n",
      );
      const r = await c.read("GET");
      return { status: r.status, body: r.body.toString() };
    } finally {
      c.destroy();
    }
  };
  const until = async (want: (r: { status: number; body: string }) => boolean, what: string) => {
    const end = Date.now() + 10_000;
    let last = { status: 0, body: "" };
    while (Date.now() < end) {
      try {
        last = await call();
        if (want(last)) return;
      } catch {}
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`${what}: last answer ${last.status} ${last.body.slice(0, 200)}`);
  };

  const ok = await register({ address: "127.0.0.1", labels: { app: "echo" }, ports: { http: backend.port } });
  assert.equal(ok.status, 200, await ok.text());
  await until((r) => r.body === "registered-backend", "the registered pod gets traffic");
  const listed = await fetch(`${api}/apis/registrations/default`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(((await listed.json()) as { items: Array<{ name: string }> }).items[0]!.name, "echo-1");

  await register({
    address: "127.0.0.1",
    labels: { app: "echo" },
    ports: { http: backend.port },
    healthy: false,
  });
  await until((r) => r.status === 503, "an unhealthy pod is no endpoint");
  await register({ address: "127.0.0.1", labels: { app: "echo" }, ports: { http: backend.port } });
  await until((r) => r.body === "registered-backend", "healthy again");
  assert.equal((await register(undefined, "DELETE")).status, 200);
  await until((r) => r.status === 503, "a deregistered pod is no endpoint");
  assert.equal((await register(undefined, "DELETE")).status, 404);
});
