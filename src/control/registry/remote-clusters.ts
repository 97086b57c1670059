// The registry's inputs from peer clusters (src/control/peering/ brings their exports), and what this cluster
// exports to them. Namespace sameness, as Istio's multi-cluster: a Service ns/name in two clusters is one
// service (one host) whose instances are both clusters' endpoints; the local definition wins, and a service
// only a peer defines is known here by the peer's definition. Every peer instance carries its cluster and
// network (Istio's topology labels too, for subsets and failoverPriority); the topology says how each other
// network is reached (its gateways, or the tunnels of a private one).
import type { Resource } from "../../api/resource.ts";
import type { ServiceInstance } from "../model.ts";
import type { ServiceRegistry } from "./registry.ts";
import {
  type Address,
  CLUSTER_LABEL,
  type MeshTopology,
  NETWORK_LABEL,
  type NetworkRoute,
} from "./topology.ts";

export interface LocalCluster {
  readonly cluster: string;
  readonly network: string;
  readonly private: boolean;
}

/** What one peer cluster told us (validated). */
export interface PeerState extends LocalCluster {
  readonly locality?: string;
  readonly gateways: readonly Address[];
  readonly tunnelAcceptors: readonly Address[];
  /** Its Services, as loaded resources. */
  readonly services: readonly Resource[];
  readonly instances: readonly ServiceInstance[];
}

export interface MeshInputs {
  readonly resources: readonly Resource[];
  readonly instances: readonly ServiceInstance[];
  readonly topology: MeshTopology;
}

const key = (r: Resource) => `${r.kind}\u0001${r.namespace}\u0001${r.name}`;

/** The registry's resources, peer instances and topology, given the local resources and the peers' states. */
export function meshInputs(
  local: LocalCluster,
  localResources: readonly Resource[],
  peers: readonly PeerState[],
): MeshInputs {
  const defined = new Set(localResources.map(key));
  const resources = [...localResources];
  const instances: ServiceInstance[] = [];
  const routes = new Map<string, { gateways: Address[]; tunnel: boolean; cluster?: string }>();
  const tunnelAcceptors: Array<Address & { network: string }> = [];
  for (const peer of [...peers].sort((a, b) => (a.cluster < b.cluster ? -1 : 1))) {
    for (const s of peer.services)
      if (!defined.has(key(s))) {
        defined.add(key(s));
        resources.push(s);
      }
    for (const i of peer.instances) {
      const network = i.network || peer.network;
      instances.push({
        ...i,
        network,
        cluster: peer.cluster,
        labels: {
          ...i.labels,
          [CLUSTER_LABEL]: peer.cluster,
          ...(network ? { [NETWORK_LABEL]: network } : {}),
        },
      });
    }
    if (peer.network === "" || peer.network === local.network) continue;
    // Two private networks cannot reach each other: neither dials in.
    if (peer.private && local.private) continue;
    let route = routes.get(peer.network);
    if (route === undefined) {
      route = { gateways: [], tunnel: peer.private, cluster: peer.cluster };
      routes.set(peer.network, route);
    }
    for (const g of peer.private ? [] : peer.gateways)
      if (!route.gateways.some((x) => x.address === g.address && x.port === g.port)) route.gateways.push(g);
    if (!peer.private)
      for (const a of peer.tunnelAcceptors) tunnelAcceptors.push({ ...a, network: peer.network });
  }
  const networks = new Map<string, NetworkRoute>(routes);
  return {
    resources,
    instances,
    topology: { ...local, networks, tunnelAcceptors },
  };
}

/** What this cluster exports to its peers: its Services and their local instances, its gateways. */
export interface LocalExport {
  readonly services: readonly Resource[];
  readonly instances: readonly ServiceInstance[];
  readonly gateways: readonly Address[];
  readonly tunnelAcceptors: readonly Address[];
}

export function localExport(registry: ServiceRegistry, local: LocalCluster): LocalExport {
  const services: Resource[] = [];
  const instances: ServiceInstance[] = [];
  for (const s of registry.services) {
    // Kubernetes Services only (ServiceEntries are config every cluster holds), and not the gateways'
    // own Services, which are infrastructure of one network.
    if (s.resource.kind !== "Service" || s.resource.labels[NETWORK_LABEL] !== undefined) continue;
    if (s.resource.origin.file.startsWith(PEER_ORIGIN)) continue;
    services.push(s.resource);
    for (const p of s.ports)
      for (const i of registry.instanceList(s.host, p.number)) {
        if (i.cluster !== undefined && i.cluster !== local.cluster) continue;
        instances.push({
          ...i,
          cluster: local.cluster,
          ...(i.network || local.network ? { network: i.network || local.network } : {}),
        });
      }
  }
  const gw = registry.localGateways;
  return {
    services,
    instances,
    gateways: local.private ? [] : gw.gateways,
    tunnelAcceptors: local.private ? [] : gw.tunnelAcceptors,
  };
}

/** The origin file name of resources a peer sent ("peer:CLUSTER"). */
export const PEER_ORIGIN = "peer:";
