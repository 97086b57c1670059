// EnvoyFilter -> the proxy's local rate limit: Istio's "Enabling Rate Limits using Envoy" YAML (TypedStruct with
// a LocalRateLimit value) on a gateway's listeners and on a sidecar's outbound listener, per-route buckets from
// HTTP_ROUTE patches, selection (root namespace, namespace, workloadSelector) and the renderer's cache keys,
// and what is not applied (SIDECAR_INBOUND, less than 100% enforcement, other patches) leaving the config as
// it was. Live: requests beyond the bucket get 429 with flag RL through a real proxy, gateway and sidecar.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { readEnvoyFilter } from "../../api/analyze/analyzers/envoy-filter.ts";
import { loadPaths } from "../../api/load/index.ts";
import type { Resource } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import { closeAll, httpBackend, onClose } from "../../proxy/test-support.ts";
import type { ProxyNode, ServiceInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources, viaProxy, withHost } from "./translate-test-support.ts";

after(closeAll);

const BOOKINFO = join(import.meta.dirname, "..", "..", "..", "..", "shared", "istio-samples", "bookinfo");
const ingress: ProxyNode = {
  id: "istio-ingressgateway-1",
  namespace: "istio-system",
  labels: { istio: "ingressgateway" },
};
const node = (id: string, labels: Record<string, string>, namespace = "default"): ProxyNode => ({
  id,
  namespace,
  labels,
});
const REVIEWS_VHOST = "reviews.default.svc.cluster.local:9080";

async function bookinfo(): Promise<Resource[]> {
  const loaded = await loadPaths([
    join(BOOKINFO, "platform", "kube", "bookinfo.yaml"),
    join(BOOKINFO, "networking", "bookinfo-gateway.yaml"),
  ]);
  return (await validateResources(loaded.resources)).valid;
}

/** The LocalRateLimit of Istio's task, as a TypedStruct; `extra` lines go into its value. */
const typedStruct = (bucket: string, indent: number, extra = "") => {
  const pad = " ".repeat(indent);
  const lines = [
    `"@type": type.googleapis.com/udpa.type.v1.TypedStruct`,
    "type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "value:",
    "  stat_prefix: http_local_rate_limiter",
    ...(bucket ? [`  token_bucket: ${bucket}`] : []),
    ...(bucket
      ? [
          "  filter_enabled:",
          "    runtime_key: local_rate_limit_enabled",
          "    default_value: { numerator: 100, denominator: HUNDRED }",
          "  filter_enforced:",
          "    runtime_key: local_rate_limit_enforced",
          "    default_value: { numerator: 100, denominator: HUNDRED }",
        ]
      : []),
    ...extra
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => `  ${l}`),
  ];
  return lines.map((l) => pad + l).join("\n");
};

/** An HTTP_FILTER patch inserting the filter (with a bucket when `bucket` is given). */
const listenerFilter = (opts: {
  name: string;
  namespace: string;
  selector?: string;
  context: string;
  bucket?: string;
  extra?: string;
  routePatch?: string;
}) => `
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: ${opts.name}, namespace: ${opts.namespace} }
spec:
${opts.selector ? `  workloadSelector: { labels: ${opts.selector} }\n` : ""}  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: ${opts.context}
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
${typedStruct(opts.bucket ?? "", 12, opts.extra)}
${opts.routePatch ?? ""}`;

const GATEWAY_LIMIT = listenerFilter({
  name: "filter-local-ratelimit-gw",
  namespace: "istio-system",
  selector: "{ istio: ingressgateway }",
  context: "GATEWAY",
  bucket: "{ max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s }",
  extra: "response_headers_to_add: [{ append: false, header: { key: x-local-rate-limit, value: 'true' } }]",
});

/** Istio's per-route variant: the filter without a bucket, and a bucket for the routes of reviews:9080. */
const PER_ROUTE = listenerFilter({
  name: "filter-local-ratelimit-svc",
  namespace: "default",
  selector: "{ app: productpage }",
  context: "SIDECAR_OUTBOUND",
  routePatch: `    - applyTo: HTTP_ROUTE
      match:
        context: SIDECAR_OUTBOUND
        routeConfiguration:
          vhost:
            name: "${REVIEWS_VHOST}"
            route: { action: ANY }
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
${typedStruct("{ max_tokens: 2, tokens_per_fill: 2, fill_interval: 60s }", 14)}
`,
});

async function registry(extra: string, instances: ServiceInstance[] = []): Promise<ServiceRegistry> {
  return new ServiceRegistry([...(await bookinfo()), ...(extra ? await resources(extra) : [])], instances);
}

test("Istio's task YAML on a gateway: every HTTP chain of the selected gateway gets the bucket", async () => {
  const r = new SidecarRenderer(await registry(GATEWAY_LIMIT));
  const cfg = r.render(ingress);
  assertValid(cfg);
  const chains = cfg.listeners.flatMap((l) => l.filterChains);
  assert.ok(chains.length > 0);
  for (const c of chains) {
    assert.equal(c.filter.type, "http");
    if (c.filter.type === "http")
      assert.deepEqual(c.filter.localRateLimit, { maxTokens: 3, tokensPerFill: 3, fillIntervalMs: 60_000 });
  }
  // A GATEWAY patch leaves sidecars alone, and a gateway with other labels is not selected.
  const sidecar = r.render(node("productpage-1", { app: "productpage" }));
  assert.equal(JSON.stringify(sidecar).includes("localRateLimit"), false);
  const other = new SidecarRenderer(
    await registry(GATEWAY_LIMIT.replace("istio: ingressgateway }", "istio: egress }")),
  );
  assert.equal(JSON.stringify(other.render(ingress)).includes("localRateLimit"), false);
});

test("per-route variant on a sidecar: the routes of one virtual host get a bucket; scopes split by selector", async () => {
  const r = new SidecarRenderer(await registry(PER_ROUTE));
  // details renders first in the same namespace: its scope must not be reused for productpage, nor vice versa.
  const details = r.render(node("details-1", { app: "details" }));
  const productpage = node("productpage-1", { app: "productpage" });
  const pp = r.render(productpage);
  const details2 = r.render(node("details-2", { app: "details" }));
  assertValid(pp);
  assert.equal(JSON.stringify(details).includes("localRateLimit"), false);
  assert.equal(JSON.stringify(details2).includes("localRateLimit"), false);
  const chain = pp.listeners[0]!.filterChains[0]!.filter;
  assert.equal(chain.type === "http" && chain.localRateLimit, undefined, "the filter itself has no bucket");
  for (const vh of pp.routeConfigs![0]!.virtualHosts)
    for (const route of vh.routes)
      assert.deepEqual(
        route.route?.localRateLimit,
        vh.name === REVIEWS_VHOST ? { maxTokens: 2, tokensPerFill: 2, fillIntervalMs: 60_000 } : undefined,
        `${vh.name} ${route.name}`,
      );
  // The next render from the same inputs keeps the same objects (nothing to push).
  const next = new SidecarRenderer(r.registry, {}, r);
  const again = next.render(productpage);
  assert.equal(again.routeConfigs, pp.routeConfigs);
  assert.equal(again.listeners, pp.listeners);
  assert.equal(again.clusters, pp.clusters);
});

test("gateway per-route buckets: routeConfiguration port and route name select the routes", async () => {
  const routePatch = (port: number) => `    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          portNumber: ${port}
          vhost: { name: "*:8080", route: { name: bookinfo.default.0 } }
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
${typedStruct("{ max_tokens: 7, tokens_per_fill: 1, fill_interval: 1s }", 14)}
`;
  const yaml = (port: number) =>
    listenerFilter({
      name: "gw-routes",
      namespace: "istio-system",
      selector: "{ istio: ingressgateway }",
      context: "GATEWAY",
      routePatch: routePatch(port),
    });
  const cfg = new SidecarRenderer(await registry(yaml(8080))).render(ingress);
  assertValid(cfg);
  const routes = cfg.routeConfigs![0]!.virtualHosts[0]!.routes;
  assert.deepEqual(
    routes.map((r) => [r.name, r.route?.localRateLimit?.maxTokens]),
    routes.map((r) => [r.name, r.name === "bookinfo.default.0" ? 7 : undefined]),
  );
  assert.ok(routes.some((r) => r.route?.localRateLimit));
  const other = new SidecarRenderer(await registry(yaml(9090))).render(ingress);
  assert.equal(JSON.stringify(other).includes("localRateLimit"), false);
});

test("a route patch without the HTTP_FILTER patch, or for another context, changes nothing", async () => {
  const base = new SidecarRenderer(await registry("")).render(node("productpage-1", { app: "productpage" }));
  const routeOnly = PER_ROUTE.replace("applyTo: HTTP_FILTER", "applyTo: NETWORK_FILTER");
  for (const yaml of [routeOnly, PER_ROUTE.replaceAll("SIDECAR_OUTBOUND", "GATEWAY")]) {
    const cfg = new SidecarRenderer(await registry(yaml)).render(
      node("productpage-1", { app: "productpage" }),
    );
    assert.deepEqual(cfg, base);
  }
});

test("root namespace without selector: mesh-wide; tokens_per_fill defaults to 1 as Envoy's", async () => {
  const yaml = listenerFilter({
    name: "mesh-limit",
    namespace: "istio-system",
    context: "ANY",
    bucket: "{ max_tokens: 5, fill_interval: 0.5s }",
  });
  const r = new SidecarRenderer(await registry(yaml));
  const limit = { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 500 };
  for (const cfg of [r.render(ingress), r.render(node("x-1", { app: "x" }, "other"))]) {
    assertValid(cfg);
    const f = cfg.listeners[0]!.filterChains[0]!.filter;
    assert.deepEqual(f.type === "http" ? f.localRateLimit : undefined, limit);
  }
  // The same EnvoyFilter in a namespace applies to that namespace only.
  const local = new SidecarRenderer(
    await registry(yaml.replace("namespace: istio-system", "namespace: team-a")),
  );
  assert.equal(
    JSON.stringify(local.render(node("x-1", { app: "x" }, "other"))).includes("localRateLimit"),
    false,
  );
  assert.equal(
    JSON.stringify(local.render(node("a-1", { app: "a" }, "team-a"))).includes("localRateLimit"),
    true,
  );
});

test("not applied and reported: SIDECAR_INBOUND, enforcement below 100%, unset filter_enabled", async () => {
  const base = new SidecarRenderer(await registry("")).render(node("productpage-1", { app: "productpage" }));
  const bucket = "{ max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s }";
  const cases: Array<[string, string, string]> = [
    [
      listenerFilter({ name: "inbound", namespace: "default", context: "SIDECAR_INBOUND", bucket }),
      "match.context",
      "no inbound listener",
    ],
    [
      listenerFilter({ name: "half", namespace: "default", context: "SIDECAR_OUTBOUND", bucket }).replace(
        /(filter_enforced:\n\s+runtime_key: \S+\n\s+default_value: \{ numerator: )100/,
        "$1" + "50",
      ),
      "filter_enforced",
      "isthmus enforces it on every request",
    ],
    [
      listenerFilter({ name: "unset", namespace: "default", context: "SIDECAR_OUTBOUND", bucket }).replace(
        /\s+filter_enabled:\n\s+runtime_key: \S+\n\s+default_value: [^\n]+/,
        "",
      ),
      "value",
      "Envoy's default is 0%",
    ],
  ];
  for (const [yaml, field, message] of cases) {
    const [ef] = (await resources(yaml)).filter((x) => x.kind === "EnvoyFilter");
    const cfg = new SidecarRenderer(await registry(yaml)).render(
      node("productpage-1", { app: "productpage" }),
    );
    assert.deepEqual(cfg, base, `${ef!.name}: config unchanged`);
    const findings = readEnvoyFilter(ef!).findings;
    assert.ok(
      findings.some(
        (f) => f.code === "ISM0003" && f.path.join(".").endsWith(field) && f.message.includes(message),
      ),
      `${ef!.name}: ${JSON.stringify(findings)}`,
    );
  }
});

test("Istio's global rate limit sample (other filters, CLUSTER, VIRTUAL_HOST) changes nothing, reported", async () => {
  const sample = await loadPaths([join(BOOKINFO, "policy", "productpage_envoy_ratelimit.yaml")]);
  const { valid, diagnostics } = await validateResources(sample.resources);
  assert.deepEqual(diagnostics, []);
  const base = new SidecarRenderer(new ServiceRegistry(await bookinfo())).render(ingress);
  const cfg = new SidecarRenderer(new ServiceRegistry([...(await bookinfo()), ...valid])).render(ingress);
  assert.deepEqual(cfg, base);
  const reported = valid.flatMap((ef) =>
    readEnvoyFilter(ef).findings.map((f) => `${ef.name} ${f.path.join(".")}`),
  );
  assert.deepEqual(reported, [
    "filter-ratelimit spec.configPatches.0.patch.value.name",
    "filter-ratelimit spec.configPatches.1.applyTo",
    "filter-ratelimit-svc spec.configPatches.0.applyTo",
  ]);
});

// ------------------------------------------------------------------------------------------------- live

/** Runs a config in a real proxy (listeners on free ports of 127.0.0.1); the proxy too, for its stats. */
async function run(cfg: ProxyConfig): Promise<{ proxy: ProxyServer; ports: Record<string, number> }> {
  const proxy = new ProxyServer();
  onClose(() => proxy.shutdown(0));
  const r = await proxy.apply({
    ...cfg,
    listeners: cfg.listeners.map((l) => ({ ...l, address: "127.0.0.1", port: 0 })),
  });
  assert.deepEqual(r.errors, []);
  const ports: Record<string, number> = {};
  for (const l of cfg.listeners) ports[l.name] = proxy.listener(l.name)!.boundPort;
  return { proxy, ports };
}

const instance = (host: string, port: number, app: string): ServiceInstance => ({
  host: `${host}.default.svc.cluster.local`,
  servicePort: 9080,
  address: "127.0.0.1",
  port,
  labels: { app },
});

test("live: the gateway answers 429 (flag RL) beyond its bucket", async () => {
  const backend = await httpBackend((req, res) => res.end(`productpage ${req.url}`));
  const r = new SidecarRenderer(
    await registry(GATEWAY_LIMIT, [instance("productpage", backend.port, "productpage")]),
  );
  const { proxy, ports } = await run(r.render(ingress));
  const port = ports["0.0.0.0_8080"]!;
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++)
    statuses.push((await withHost(port, "bookinfo.example.com", "/productpage")).status);
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  assert.equal((await withHost(port, "x", "/productpage")).body.toString(), "local_rate_limited");
  assert.equal(backend.requests, 3, "limited requests never reach the service");
  assert.equal(proxy.stats.counter("http.outbound_0.0.0.0_8080.response_flag.RL").value, 3);
});

test("live: a sidecar's per-route bucket limits calls to reviews only", async () => {
  const reviews = await httpBackend((_req, res) => res.end("reviews"));
  const ratings = await httpBackend((_req, res) => res.end("ratings"));
  const r = new SidecarRenderer(
    await registry(PER_ROUTE, [
      instance("reviews", reviews.port, "reviews"),
      instance("ratings", ratings.port, "ratings"),
    ]),
  );
  const { proxy, ports } = await run(r.render(node("productpage-1", { app: "productpage" })));
  const port = ports.virtualOutbound!;
  const call = async (svc: string) =>
    (await viaProxy(port, `http://${svc}.default.svc.cluster.local:9080/`)).status;
  const statuses = [
    await call("reviews"),
    await call("reviews"),
    await call("reviews"),
    await call("ratings"),
  ];
  assert.deepEqual(statuses, [200, 200, 429, 200]);
  for (let i = 0; i < 3; i++) assert.equal(await call("ratings"), 200, "ratings has no bucket");
  assert.equal(reviews.requests, 2);
  assert.equal(proxy.stats.counter("http.outbound_0.0.0.0_15001.response_flag.RL").value, 1);
  // Another workload of the namespace is not selected: no limit.
  const { ports: other } = await run(r.render(node("details-1", { app: "details" })));
  for (let i = 0; i < 3; i++)
    assert.equal(
      (await viaProxy(other.virtualOutbound!, "http://reviews.default.svc.cluster.local:9080/")).status,
      200,
    );
});
