// Split horizon and east-west gateways as the translator renders them (networks.ts, east-west.ts), from the
// registry a control plane builds out of its own resources and its peers' exports (remote-clusters.ts): one
// public cluster (iks, network public) and one private (icp, network private) sharing the service reviews.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Resource } from "../../api/resource.ts";
import type { ClusterConfig, ProxyConfig } from "../../proxy/config/types.ts";
import type { ServiceInstance, WorkloadInstance } from "../model.ts";
import { ServiceRegistry } from "../registry/registry.ts";
import { type LocalCluster, localExport, meshInputs, type PeerState } from "../registry/remote-clusters.ts";
import { meshSni } from "./mtls.ts";
import { SidecarRenderer } from "./sidecar-renderer.ts";
import { assertValid, resources } from "./translate-test-support.ts";

const REVIEWS = "reviews.shop.svc.cluster.local";
const SIDECAR = { "security.istio.io/tlsMode": "istio" } as const;

const COMMON = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels: {topology.istio.io/network: NET}
spec:
  selector: {istio: eastwestgateway}
  ports:
  - {name: tls, port: 15443}
  - {name: tunnel, port: 15008}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
`;

const GATEWAY_WORKLOAD = (address: string): WorkloadInstance => ({
  name: "eastwest",
  namespace: "istio-system",
  address,
  labels: { istio: "eastwestgateway" },
  serviceAccount: "istio-eastwestgateway",
});

const reviews = (name: string, address: string, cluster: string): WorkloadInstance => ({
  name,
  namespace: "shop",
  address,
  labels: { app: "reviews", ...SIDECAR },
  serviceAccount: "reviews",
  cluster,
});

interface Side {
  readonly local: LocalCluster;
  readonly resources: Resource[];
  readonly workloads: WorkloadInstance[];
}

async function side(local: LocalCluster, gateway: string, pods: WorkloadInstance[]): Promise<Side> {
  return {
    local,
    resources: await resources(COMMON.replace("NET", local.network)),
    workloads: [GATEWAY_WORKLOAD(gateway), ...pods],
  };
}

/** A peer's state as it would arrive: its export from its own registry. */
function peerOf(s: Side): PeerState {
  const registry = new ServiceRegistry(
    s.resources,
    [],
    undefined,
    s.workloads,
    meshInputs(s.local, [], []).topology,
  );
  const ex = localExport(registry, s.local);
  return { ...s.local, ...ex, instances: ex.instances as ServiceInstance[] };
}

function registryOf(s: Side, peers: PeerState[]): ServiceRegistry {
  const inputs = meshInputs(s.local, s.resources, peers);
  return new ServiceRegistry(inputs.resources, inputs.instances, undefined, s.workloads, inputs.topology);
}

const cluster = (cfg: ProxyConfig, name: string): ClusterConfig => {
  const c = cfg.clusters?.find((x) => x.name === name);
  assert.ok(c, `no cluster ${name} in ${cfg.clusters?.map((x) => x.name).join(", ")}`);
  return c;
};

const sidecar = { id: "client", namespace: "shop", labels: { app: "client" }, appAddress: "10.1.0.9" };

async function mesh() {
  const iks = await side({ cluster: "iks", network: "public", private: false }, "10.1.0.2", [
    reviews("reviews-a", "10.1.1.1", "iks"),
  ]);
  const icp = await side({ cluster: "icp", network: "private", private: true }, "10.2.0.2", [
    reviews("reviews-b", "10.2.1.1", "icp"),
    reviews("reviews-c", "10.2.1.2", "icp"),
  ]);
  return { iks, icp };
}

test("a public sidecar reaches the private network's endpoints through its own east-west gateway, weighted by their count", async () => {
  const { iks, icp } = await mesh();
  const cfg = new SidecarRenderer(registryOf(iks, [peerOf(icp)])).render(sidecar);
  assertValid(cfg);
  const c = cluster(cfg, `outbound|9080||${REVIEWS}`);
  assert.deepEqual(
    c.endpoints.map((e) => [e.address, e.port, e.weight ?? 1, e.labels?.["topology.istio.io/network"] ?? ""]),
    [
      ["10.1.1.1", 15006, 1, "public"],
      // Its own gateway: the private network's tunnels land there.
      ["10.1.0.2", 15443, 2, "private"],
    ],
  );
  // The mesh SNI and both clusters' identities: the gateway passes the TLS through to the callee's sidecar.
  const tls = c.transportSocketMatches?.[0]?.tls;
  assert.equal(tls?.sni, meshSni(REVIEWS, 9080, ""));
  assert.deepEqual(tls?.matchSubjectAltNames, ["spiffe://cluster.local/ns/shop/sa/reviews"]);
});

test("a private sidecar reaches the public network's endpoints through the public east-west gateway", async () => {
  const { iks, icp } = await mesh();
  const cfg = new SidecarRenderer(registryOf(icp, [peerOf(iks)])).render(sidecar);
  assertValid(cfg);
  assert.deepEqual(
    cluster(cfg, `outbound|9080||${REVIEWS}`).endpoints.map((e) => [e.address, e.port, e.weight ?? 1]),
    [
      ["10.2.1.1", 15006, 1],
      ["10.2.1.2", 15006, 1],
      ["10.1.0.2", 15443, 1],
    ],
  );
});

test("the public east-west gateway: passthrough chains by SNI, local endpoints direct, private ones over the tunnel, and a tunnel acceptor", async () => {
  const { iks, icp } = await mesh();
  const cfg = new SidecarRenderer(registryOf(iks, [peerOf(icp)])).render({
    id: "eastwest",
    namespace: "istio-system",
    labels: { istio: "eastwestgateway" },
    serviceAccount: "istio-eastwestgateway",
    appAddress: "10.1.0.2",
  });
  assertValid(cfg);
  const sni = meshSni(REVIEWS, 9080, "");
  const l15443 = cfg.listeners.find((l) => l.port === 15443);
  const chain = l15443?.filterChains.find((c) => c.match?.serverNames?.includes(sni));
  assert.deepEqual(chain?.filter, { type: "tcp", cluster: sni, statPrefix: sni });
  assert.equal(chain?.tls, undefined, "AUTO_PASSTHROUGH does not terminate TLS");
  const c = cluster(cfg, sni);
  assert.deepEqual(c.tls, undefined);
  assert.deepEqual(
    c.endpoints.map((e) => [e.address, e.port, e.weight ?? 1, e.tunnel ?? ""]),
    [
      ["10.1.1.1", 15006, 1, ""],
      ["tunnel.private", 15443, 2, "private"],
    ],
  );
  const acceptor = cfg.listeners.find((l) => l.port === 15008);
  assert.equal(acceptor?.filterChains[0]?.filter.type, "reverse_tunnel_acceptor");
  assert.equal(acceptor?.filterChains[0]?.tls?.requireClientCertificate, true);
  assert.equal(cfg.reverseTunnels, undefined);
});

test("the private east-west gateway dials the public gateways' tunnel acceptors and sees only its own network", async () => {
  const { iks, icp } = await mesh();
  const cfg = new SidecarRenderer(registryOf(icp, [peerOf(iks)])).render({
    id: "eastwest",
    namespace: "istio-system",
    labels: { istio: "eastwestgateway" },
    serviceAccount: "istio-eastwestgateway",
    appAddress: "10.2.0.2",
  });
  assertValid(cfg);
  assert.deepEqual(
    cfg.reverseTunnels?.map((t) => [t.name, t.address, t.port, t.listener]),
    [["private", "10.1.0.2", 15008, "0.0.0.0_15443"]],
  );
  assert.deepEqual(cfg.reverseTunnels?.[0]?.tls.matchSubjectAltNames, [
    "spiffe://cluster.local/ns/istio-system/sa/istio-eastwestgateway",
  ]);
  assert.equal(
    cfg.listeners.some((l) => l.port === 15008),
    false,
    "a private network accepts no tunnels",
  );
  assert.deepEqual(
    cluster(cfg, meshSni(REVIEWS, 9080, "")).endpoints.map((e) => e.address),
    ["10.2.1.1", "10.2.1.2"],
  );
});

test("namespace sameness: a service only a peer defines is known with the peer's endpoints", async () => {
  const { iks, icp } = await mesh();
  const onlyThere = await resources(`apiVersion: v1
kind: Service
metadata: {name: analyzer, namespace: shop}
spec:
  selector: {app: analyzer}
  ports:
  - {name: http, port: 80, targetPort: 5000}
`);
  const icp2 = {
    ...icp,
    resources: [...icp.resources, ...onlyThere],
    workloads: [
      ...icp.workloads,
      {
        name: "analyzer",
        namespace: "shop",
        address: "10.2.1.7",
        labels: { app: "analyzer", ...SIDECAR },
        serviceAccount: "analyzer",
      },
    ],
  };
  const registry = registryOf(iks, [peerOf(icp2)]);
  assert.ok(registry.services.some((s) => s.host === "analyzer.shop.svc.cluster.local"));
  const cfg = new SidecarRenderer(registry).render(sidecar);
  assert.deepEqual(
    cluster(cfg, "outbound|80||analyzer.shop.svc.cluster.local").endpoints.map((e) => [e.address, e.port]),
    [["10.1.0.2", 15443]],
  );
});

test("an endpoint without a sidecar on another network is dropped: no gateway can pass it through", async () => {
  const { iks, icp } = await mesh();
  const plain = {
    ...icp,
    workloads: [
      GATEWAY_WORKLOAD("10.2.0.2"),
      { ...reviews("reviews-plain", "10.2.1.9", "icp"), labels: { app: "reviews" } },
    ],
  };
  const cfg = new SidecarRenderer(registryOf(iks, [peerOf(plain)])).render(sidecar);
  assert.deepEqual(
    cluster(cfg, `outbound|9080||${REVIEWS}`).endpoints.map((e) => e.address),
    ["10.1.1.1"],
  );
});

test("locality failover across clusters: the local cluster's endpoints first, the other network's gateway next", async () => {
  const { iks, icp } = await mesh();
  const dr = await resources(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: ${REVIEWS}
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
`);
  const at = (w: WorkloadInstance, locality: string): WorkloadInstance => ({ ...w, locality });
  const iksL = {
    ...iks,
    resources: [...iks.resources, ...dr],
    workloads: iks.workloads.map((w) => at(w, "jp-tok/jp-tok-1")),
  };
  const icpL = { ...icp, workloads: icp.workloads.map((w) => at(w, "jp-osa/jp-osa-1")) };
  const cfg = new SidecarRenderer(registryOf(iksL, [peerOf(icpL)])).render({
    ...sidecar,
    locality: "jp-tok/jp-tok-1",
  });
  assertValid(cfg);
  assert.deepEqual(
    cluster(cfg, `outbound|9080||${REVIEWS}`).endpoints.map((e) => [e.address, e.priority ?? 0, e.locality]),
    [
      ["10.1.1.1", 0, "jp-tok/jp-tok-1"],
      ["10.1.0.2", 1, "jp-osa/jp-osa-1"],
    ],
  );
});
