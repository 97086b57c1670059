// What a mesh of several clusters adds to each cluster, derived from the Mesh file, as an operator would
// install it by hand (Istio's multi-primary on different networks): the cluster's east-west gateway (Istio's
// gen-eastwest-gateway.sh: a Service labelled with the network, ports 15443 and 15008, and the gateway
// workload), the Gateway that exposes services through it (samples/multicluster/expose-services.yaml,
// AUTO_PASSTHROUGH on 15443), and MeshLinks to the other clusters' control planes. A private cluster's links
// name the peers' addresses (it dials out); a public cluster's link to a private one names none (it waits to
// be dialled); between two public clusters the later one in the Mesh file dials the earlier.
import type { MeshCluster } from "./mesh-file.ts";
import type { ClusterPlan } from "./plan.ts";

/** The control planes' peering port (Istio's 15012 is its secure xDS port; isthmus peers there). */
export const PEER_PORT = 15012;
export const EAST_WEST_LABELS = { istio: "eastwestgateway", app: "istio-eastwestgateway" } as const;
export const EAST_WEST_NAMESPACE = "istio-system";
export const EAST_WEST_SERVICE_ACCOUNT = "istio-eastwestgateway";

/** Whether the mesh needs east-west gateways and links: more than one cluster. */
export function isMultiCluster(clusters: readonly ClusterPlan[]): boolean {
  return clusters.length > 1;
}

/** The control plane's peering listen address, or undefined for a private cluster (nothing dials in). */
export function peerListen(c: ClusterPlan): string | undefined {
  return c.cluster.private ? undefined : `${c.controlPlaneAddress}:${PEER_PORT}`;
}

/** How `from` links to `to`: dial its address, or wait; undefined when they cannot link (both private). */
export function linkBetween(
  from: ClusterPlan,
  to: ClusterPlan,
): { readonly cluster: string; readonly address?: string } | undefined {
  if (from.cluster.private && to.cluster.private) return undefined;
  const dial = !to.cluster.private && (from.cluster.private || from.index > to.index);
  return dial
    ? { cluster: to.cluster.name, address: `${to.controlPlaneAddress}:${PEER_PORT}` }
    : { cluster: to.cluster.name };
}

/** The manifests the runtime adds to a cluster of a multi-cluster mesh (YAML text). */
export function multiClusterManifests(c: ClusterPlan, all: readonly ClusterPlan[]): string {
  const docs = [eastWestService(c.cluster), EXPOSE_SERVICES];
  for (const other of all) {
    if (other === c) continue;
    const link = linkBetween(c, other);
    if (link === undefined) continue;
    docs.push(
      [
        "apiVersion: isthmus.io/v1alpha1",
        "kind: MeshLink",
        `metadata: {name: ${link.cluster}, namespace: istio-system}`,
        "spec:",
        `  cluster: ${link.cluster}`,
        ...(link.address ? [`  address: "${link.address}"`] : []),
      ].join("\n"),
    );
  }
  return `# Written by isthmus up for cluster ${c.cluster.name}; regenerated on every start.\n${docs.join("\n---\n")}\n`;
}

function eastWestService(cluster: MeshCluster): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: istio-eastwestgateway
  namespace: ${EAST_WEST_NAMESPACE}
  labels:
    topology.istio.io/network: ${cluster.network}
spec:
  selector:
    istio: eastwestgateway
  ports:
  - {name: tls, port: 15443}
${cluster.private ? "" : "  - {name: tls-tunnel, port: 15008}\n"}`.trimEnd();
}

const EXPOSE_SERVICES = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: cross-network-gateway
  namespace: ${EAST_WEST_NAMESPACE}
spec:
  selector:
    istio: eastwestgateway
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]`;
