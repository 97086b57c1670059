// Translation of Istio's own Bookinfo samples (../shared/istio-samples) into a sidecar's ProxyConfig: the
// config is valid for the proxy, names follow Istio's (outbound|PORT|SUBSET|HOST), subsets pick endpoints
// by label, and a real proxy running the result routes live traffic as Istio documents for
// virtual-service-reviews-80-20 and -jason-v2-v3.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { loadPaths } from "../../api/load/index.ts";
import { validateResources } from "../../api/validate/index.ts";
import { validateProxyConfig } from "../../proxy/config/validate.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import { closeAll, httpBackend, onClose, RawClient } from "../../proxy/test-support.ts";
import type { ProxyNode, ServiceInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { sidecarConfig } from "./sidecar.ts";

after(closeAll);

const SAMPLES = join(import.meta.dirname, "..", "..", "..", "..", "shared", "istio-samples", "bookinfo");
const productpage: ProxyNode = {
  id: "productpage-v1-1",
  namespace: "default",
  labels: { app: "productpage", version: "v1" },
};
const REVIEWS = "reviews.default.svc.cluster.local";

async function load(...files: string[]) {
  const loaded = await loadPaths([
    join(SAMPLES, "platform", "kube", "bookinfo.yaml"),
    ...files.map((f) => join(SAMPLES, "networking", f)),
  ]);
  const { valid } = await validateResources(loaded.resources);
  return valid;
}

function reviewsInstances(ports: Record<string, number>): ServiceInstance[] {
  return Object.entries(ports).map(([version, port]) => ({
    host: REVIEWS,
    servicePort: 9080,
    address: "127.0.0.1",
    port,
    labels: { app: "reviews", version },
  }));
}

test("Bookinfo + destination-rule-all + reviews-80-20: a valid config with Istio's names", async () => {
  const resources = await load("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml");
  const registry = new ServiceRegistry(resources, reviewsInstances({ v1: 1001, v2: 1002, v3: 1003 }));
  const cfg = sidecarConfig(registry, productpage);
  const problems = validateProxyConfig(cfg).filter((p) => p.severity === "error");
  assert.deepEqual(problems, []);
  const names = cfg.clusters!.map((c) => c.name);
  for (const n of [`outbound|9080||${REVIEWS}`, `outbound|9080|v1|${REVIEWS}`, `outbound|9080|v3|${REVIEWS}`])
    assert.ok(names.includes(n), n);
  const v2 = cfg.clusters!.find((c) => c.name === `outbound|9080|v2|${REVIEWS}`)!;
  assert.deepEqual(
    v2.endpoints.map((e) => e.port),
    [1002],
    "the subset's endpoints are those with its labels",
  );
  const vh = cfg.routeConfigs![0]!.virtualHosts.find((v) => v.name === `${REVIEWS}:9080`)!;
  assert.ok(vh.domains.includes("reviews:9080") && vh.domains.includes(`${REVIEWS}:9080`));
  assert.deepEqual(
    vh.routes[0]!.route!.weightedClusters!.map((w) => [w.name, w.weight]),
    [
      [`outbound|9080|v1|${REVIEWS}`, 80],
      [`outbound|9080|v2|${REVIEWS}`, 20],
    ],
  );
});

test("fault injection sample: ratings delay for jason becomes the route's fault", async () => {
  const resources = await load("destination-rule-all.yaml", "virtual-service-ratings-test-delay.yaml");
  const registry = new ServiceRegistry(resources);
  const cfg = sidecarConfig(registry, productpage);
  const vh = cfg.routeConfigs![0]!.virtualHosts.find((v) => v.name.startsWith("ratings."))!;
  const jason = vh.routes[0]!;
  assert.deepEqual(jason.match.headers, [{ name: "end-user", exact: "jason" }]);
  assert.deepEqual(jason.route!.fault, { delay: { fixedDelayMs: 7000, percentage: 100 } });
  assert.equal(vh.routes[1]!.route!.fault, undefined);
});

/** Starts a proxy with the translated config, its outbound listener on a free port. */
async function runSidecar(cfg: ReturnType<typeof sidecarConfig>) {
  const proxy = new ProxyServer();
  const l = cfg.listeners[0]!;
  const r = await proxy.apply({ ...cfg, listeners: [{ ...l, port: 0 }] });
  assert.deepEqual(r.errors, []);
  onClose(() => proxy.shutdown(0));
  return proxy.listener(l.name)!.boundPort;
}

async function versions() {
  const out: Record<string, number> = {};
  for (const v of ["v1", "v2", "v3"]) out[v] = (await httpBackend((_req, res) => res.end(v))).port;
  return out;
}

async function call(port: number, headers = ""): Promise<string> {
  const c = await RawClient.connect(port);
  try {
    // The app reaches its sidecar as an HTTP proxy: absolute-form with the service's short name.
    c.write(`GET http://reviews:9080/reviews/0 HTTP/1.1\r\nhost: reviews:9080\r\n${headers}\r\n`);
    return (await c.read("GET")).body.toString();
  } finally {
    c.destroy();
  }
}

test("live traffic: reviews-80-20 splits about 80/20 between v1 and v2", async () => {
  const ports = await versions();
  const resources = await load("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml");
  const port = await runSidecar(
    sidecarConfig(new ServiceRegistry(resources, reviewsInstances(ports)), productpage),
  );
  const seen: Record<string, number> = { v1: 0, v2: 0, v3: 0 };
  for (let i = 0; i < 300; i++) seen[await call(port)]!++;
  assert.equal(seen.v3, 0);
  assert.ok(seen.v1! > 200 && seen.v1! < 280, `v1 ${seen.v1} of 300`);
});

test("live traffic: reviews-jason-v2-v3 sends jason to v2 and everyone else to v3", async () => {
  const ports = await versions();
  const resources = await load("destination-rule-all.yaml", "virtual-service-reviews-jason-v2-v3.yaml");
  const port = await runSidecar(
    sidecarConfig(new ServiceRegistry(resources, reviewsInstances(ports)), productpage),
  );
  for (let i = 0; i < 5; i++) {
    assert.equal(await call(port, "end-user: jason\r\n"), "v2");
    assert.equal(await call(port), "v3");
  }
});
