// Gateways: a proxy whose labels a Gateway selects gets that gateway's listeners and route tables, with Istio's
// binding of VirtualServices (gateways: names, server hosts with namespaces, host intersection), HTTPS from a
// credentialName Secret, httpsRedirect and TCP servers; VirtualServices bound only to gateways leave sidecars.
// Live: Istio's Bookinfo gateway sample through a real proxy, and HTTPS with SNI.
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import tls from "node:tls";
import { loadPaths } from "../../api/load/index.ts";
import { validateResources } from "../../api/validate/index.ts";
import { testPki } from "../../proxy/test-pki.ts";
import { closeAll, httpBackend, netBackend, onClose } from "../../proxy/test-support.ts";
import type { ProxyNode, ServiceInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources, runProxy, withHost } from "./translate-test-support.ts";

after(closeAll);

const BOOKINFO = join(import.meta.dirname, "..", "..", "..", "..", "shared", "istio-samples", "bookinfo");
const ingress: ProxyNode = {
  id: "istio-ingressgateway-1",
  namespace: "istio-system",
  labels: { istio: "ingressgateway" },
  appAddress: "127.0.0.9",
};
const productpage: ProxyNode = {
  id: "productpage-v1-1",
  namespace: "default",
  labels: { app: "productpage" },
};
const PRODUCTPAGE = "productpage.default.svc.cluster.local";

async function bookinfo() {
  const loaded = await loadPaths([
    join(BOOKINFO, "platform", "kube", "bookinfo.yaml"),
    join(BOOKINFO, "networking", "bookinfo-gateway.yaml"),
  ]);
  return (await validateResources(loaded.resources)).valid;
}

test("Bookinfo gateway sample: the ingress proxy gets the server's listener and the bound routes", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await bookinfo()));
  const cfg = r.render(ingress);
  assertValid(cfg);
  assert.deepEqual(
    cfg.listeners.map((l) => [l.name, l.address, l.port]),
    [["0.0.0.0_8080", "127.0.0.9", 8080]],
  );
  const [rc] = cfg.routeConfigs!;
  assert.equal(rc!.name, "http.8080");
  assert.deepEqual(
    rc!.virtualHosts.map((v) => [v.name, v.domains]),
    [["*:8080", ["*"]]],
  );
  const routes = rc!.virtualHosts[0]!.routes;
  assert.deepEqual(
    routes.map((x) => x.match.path ?? x.match.prefix),
    ["/productpage", "/static", "/login", "/logout", "/api/v1/products"],
  );
  assert.ok(routes.every((x) => x.route?.cluster === `outbound|9080||${PRODUCTPAGE}`));
  assert.ok(cfg.clusters!.some((c) => c.name === `outbound|9080||${PRODUCTPAGE}`));
  assert.ok(!cfg.listeners.some((l) => l.port === 15001), "a gateway has no sidecar outbound listener");
});

test("a VirtualService bound only to a gateway does not apply to sidecars", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await bookinfo()));
  const cfg = r.render(productpage);
  assertValid(cfg);
  // bookinfo's hosts: ["*"] would cover every service, were it bound to the mesh.
  for (const vh of cfg.routeConfigs![0]!.virtualHosts.filter((v) => v.name.endsWith(":9080")))
    assert.deepEqual(
      vh.routes.map((x) => x.name),
      ["default"],
      vh.name,
    );
  assert.equal(cfg.listeners[0]!.port, 15001);
});

const HOSTS = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: shared, namespace: edge }
spec:
  selector: { app: edge-gw }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["team-a/*.example.com", "./admin.example.com", "*/open.example.com"]
---
apiVersion: v1
kind: Service
metadata: { name: a, namespace: team-a }
spec: { ports: [{ name: http, port: 8000 }] }
---
apiVersion: v1
kind: Service
metadata: { name: b, namespace: team-b }
spec: { ports: [{ name: http, port: 8000 }] }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: a, namespace: team-a }
spec:
  hosts: [a.example.com, other.org, a]
  gateways: [edge/shared, mesh]
  http:
    - match: [{ gateways: [mesh], uri: { prefix: /mesh-only } }]
      route: [{ destination: { host: b.team-b.svc.cluster.local } }]
    - match: [{ sourceLabels: { app: nobody }, uri: { prefix: /labels } }]
      route: [{ destination: { host: b.team-b.svc.cluster.local } }]
    - route: [{ destination: { host: a } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: b, namespace: team-b }
spec:
  hosts: [b.example.com, open.example.com]
  gateways: [edge/shared]
  http: [{ route: [{ destination: { host: b } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: admin, namespace: edge }
spec:
  hosts: ["*.example.com"]
  gateways: [shared]
  http: [{ route: [{ destination: { host: a.team-a.svc.cluster.local } }] }]
`;

test("server hosts: ns/host binds only that namespace's VirtualServices, ./ the Gateway's, */ any", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await resources(HOSTS)));
  const cfg = r.render({ id: "edge-1", namespace: "edge", labels: { app: "edge-gw" } });
  assertValid(cfg);
  const vhosts = cfg.routeConfigs![0]!.virtualHosts;
  const byName = new Map(vhosts.map((v) => [v.domains[0], v]));
  // team-a's a.example.com is inside team-a/*.example.com; other.org is in no server host; team-b's
  // b.example.com is not admitted (team-a/ only); the admin VS's *.example.com narrows to the hosts that admit
  // namespace edge (./admin.example.com and */open.example.com), the more specific of each pair.
  assert.deepEqual([...byName.keys()].sort(), ["a.example.com", "admin.example.com", "open.example.com"]);
  assert.deepEqual(
    byName.get("a.example.com")!.routes.map((x) => x.route?.cluster),
    ["outbound|8000||a.team-a.svc.cluster.local"],
    "mesh-only and sourceLabels matches do not apply at the gateway",
  );
  assert.deepEqual(
    byName.get("admin.example.com")!.routes.map((x) => x.route?.cluster),
    ["outbound|8000||a.team-a.svc.cluster.local"],
  );
  // Two VirtualServices on one host at a gateway: their routes are concatenated (Istio merges at gateways).
  assert.deepEqual(
    byName.get("open.example.com")!.routes.map((x) => x.route?.cluster),
    ["outbound|8000||b.team-b.svc.cluster.local", "outbound|8000||a.team-a.svc.cluster.local"],
  );
});

test("match gateways and sourceLabels still apply to the sidecar side of a mesh + gateway VirtualService", async () => {
  const r = new SidecarRenderer(new ServiceRegistry(await resources(HOSTS)));
  const cfg = r.render({ id: "a-1", namespace: "team-a", labels: { app: "a" } });
  assertValid(cfg);
  const vh = cfg.routeConfigs![0]!.virtualHosts.find((v) => v.name === "a.team-a.svc.cluster.local:8000");
  // The mesh-only match applies here, the sourceLabels one does not (app: a), the catch-all does.
  assert.deepEqual(
    vh!.routes.map((x) => [x.name, x.route?.cluster]),
    [
      ["a.team-a.0", "outbound|8000||b.team-b.svc.cluster.local"],
      ["a.team-a.2", "outbound|8000||a.team-a.svc.cluster.local"],
    ],
  );
});

test("live: Bookinfo's gateway routes /productpage to productpage and 404s the rest", async () => {
  const backend = await httpBackend((req, res) => res.end(`productpage ${req.url}`));
  const instances: ServiceInstance[] = [
    {
      host: PRODUCTPAGE,
      servicePort: 9080,
      address: "127.0.0.1",
      port: backend.port,
      labels: { app: "productpage" },
    },
  ];
  const r = new SidecarRenderer(new ServiceRegistry(await bookinfo(), instances));
  const ports = await runProxy(r.render(ingress));
  const port = ports["0.0.0.0_8080"]!;
  const ok = await withHost(port, "bookinfo.example.com", "/productpage");
  assert.equal(ok.status, 200);
  assert.equal(ok.body.toString(), "productpage /productpage");
  assert.equal(
    (await withHost(port, "x", "/api/v1/products/1")).body.toString(),
    "productpage /api/v1/products/1",
  );
  assert.equal((await withHost(port, "x", "/admin")).status, 404);
});

test("live: HTTPS server with a credentialName Secret, SNI-selected; httpsRedirect; a TCP server", async () => {
  const pki = testPki();
  onClose(() => pki.remove());
  const ca = pki.ca("test-ca");
  const leaf = pki.leaf(ca, "shop.example.com", "DNS:shop.example.com");
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const web = await httpBackend((req, res) => res.end(`web ${req.headers.host}`));
  const db = await netBackend((s) => s.on("data", (d) => s.write(Buffer.concat([Buffer.from("db:"), d]))));
  const yaml = `
apiVersion: v1
kind: Secret
metadata: { name: shop-cert, namespace: istio-system }
type: kubernetes.io/tls
data: { tls.crt: ${b64(leaf.cert)}, tls.key: ${b64(leaf.key)} }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: shop, namespace: shop }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: [shop.example.com]
      tls: { mode: SIMPLE, credentialName: shop-cert }
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [shop.example.com]
      tls: { httpsRedirect: true }
    - port: { number: 5432, name: tcp, protocol: TCP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: shop }
spec:
  hosts: [web.shop.internal]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${web.port} } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: shop }
spec:
  hosts: [db.shop.internal]
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { tcp: ${db.port} } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: shop }
spec:
  hosts: [shop.example.com]
  gateways: [shop]
  http: [{ route: [{ destination: { host: web.shop.internal } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: shop }
spec:
  hosts: ["*"]
  gateways: [shop]
  tcp: [{ match: [{ port: 5432 }], route: [{ destination: { host: db.shop.internal, port: { number: 5432 } } }] }]
`;
  const r = new SidecarRenderer(new ServiceRegistry(await resources(yaml)));
  const cfg = r.render(ingress);
  assertValid(cfg);
  const https = cfg.listeners.find((l) => l.port === 443)!;
  assert.deepEqual(https.filterChains[0]!.match, { serverNames: ["shop.example.com"] });
  assert.equal(https.filterChains[0]!.filter.type, "http");
  const ports = await runProxy(cfg);

  const body = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({
      port: ports["0.0.0.0_443"]!,
      host: "127.0.0.1",
      servername: "shop.example.com",
      ca: ca.cert,
    });
    onClose(() => {
      s.destroy();
    });
    let got = "";
    s.on("secureConnect", () =>
      s.write("GET / HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n\r\n"),
    );
    s.on("data", (d: Buffer) => {
      got += d.toString();
    });
    s.on("end", () => resolve(got));
    s.on("error", reject);
  });
  assert.match(body, /^HTTP\/1\.1 200/);
  assert.match(body, /web shop\.example\.com$/);

  const redirect = await withHost(ports["0.0.0.0_80"]!, "shop.example.com", "/cart?x=1");
  assert.equal(redirect.status, 301);
  assert.equal(redirect.header("location"), "https://shop.example.com/cart?x=1");

  const echoed = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ port: ports["0.0.0.0_5432"]!, host: "127.0.0.1" }, () => s.write("ping"));
    onClose(() => {
      s.destroy();
    });
    s.once("data", (d: Buffer) => resolve(d.toString()));
    s.on("error", reject);
  });
  assert.equal(echoed, "db:ping");
  // The gateway answers only as a gateway: it has no outbound listener for HTTP_PROXY calls.
  assert.equal(ports.virtualOutbound, undefined);
});
