// Where the mesh's endpoints are, network-wise, as one control plane sees it: its own cluster and network, and
// for every other network how its endpoints are reached from here — through that network's east-west gateways
// (Istio's split horizon), or, for a private network that can only dial out, through the reverse tunnels its
// gateways hold to the gateways of this network. The registry carries it; the translator reads it.
import type { MeshService } from "../../api/analyze/context.ts";
import type { ServiceInstance } from "../model.ts";

/** Istio's labels: a gateway Service's network, and every endpoint's network and cluster (topology labels). */
export const NETWORK_LABEL = "topology.istio.io/network";
export const CLUSTER_LABEL = "topology.istio.io/cluster";
/** Istio's label on a network gateway Service naming its mTLS passthrough port; default 15443. */
export const GATEWAY_PORT_LABEL = "networking.istio.io/gatewayPort";
export const DEFAULT_GATEWAY_PORT = 15443;
/** Where public gateways accept reverse tunnels from private networks' gateways (Istio's HBONE port). */
export const TUNNEL_PORT = 15008;

export interface Address {
  readonly address: string;
  readonly port: number;
}

/** How endpoints on another network are reached from this cluster. */
export interface NetworkRoute {
  /** Gateways to dial with mutual TLS and the mesh SNI; passed through to the endpoint's sidecar. */
  readonly gateways: readonly Address[];
  /**
   * The network is private: its gateways dial ours and hold reverse tunnels named after the network, so its
   * endpoints are reached through this network's own east-west gateways (`gateways` is empty).
   */
  readonly tunnel: boolean;
  /** The cluster behind the network (for the topology.istio.io/cluster label of gateway endpoints). */
  readonly cluster?: string;
}

export interface MeshTopology {
  /** This control plane's cluster; "" when it runs alone. */
  readonly cluster: string;
  /** Its network; "" when the mesh is one network (no split horizon). */
  readonly network: string;
  /** Its network can only dial out (its east-west gateways dial the public ones' tunnel acceptors). */
  readonly private: boolean;
  /** Other networks, by name. */
  readonly networks: ReadonlyMap<string, NetworkRoute>;
  /** Other (public) networks' tunnel acceptors, which this network's gateways dial when it is private. */
  readonly tunnelAcceptors: readonly (Address & { readonly network: string })[];
}

export const SINGLE_NETWORK: MeshTopology = {
  cluster: "",
  network: "",
  private: false,
  networks: new Map(),
  tunnelAcceptors: [],
};

/** This network's east-west gateways and tunnel acceptors, as its own services declare them. */
export interface LocalGateways {
  readonly gateways: readonly Address[];
  readonly tunnelAcceptors: readonly Address[];
}

/**
 * Istio's discovery of network gateways: a Service labelled topology.istio.io/network=NETWORK is that network's
 * gateway; its instances on the port networking.istio.io/gatewayPort names (15443 by default) are the gateway
 * addresses, and (an isthmus addition) its instances on 15008 accept reverse tunnels.
 */
export function localGateways(
  services: readonly MeshService[],
  instances: (host: string, port: number) => readonly ServiceInstance[],
  network: string,
): LocalGateways {
  const gateways: Address[] = [];
  const tunnelAcceptors: Address[] = [];
  if (network === "") return { gateways, tunnelAcceptors };
  for (const s of services) {
    if (s.resource.labels[NETWORK_LABEL] !== network) continue;
    const gwPort = Number(s.resource.labels[GATEWAY_PORT_LABEL] ?? DEFAULT_GATEWAY_PORT);
    for (const p of s.ports) {
      const into = p.number === gwPort ? gateways : p.number === TUNNEL_PORT ? tunnelAcceptors : undefined;
      if (into === undefined) continue;
      for (const i of instances(s.host, p.number))
        if (i.healthy !== false && !into.some((a) => a.address === i.address && a.port === i.port))
          into.push({ address: i.address, port: i.port });
    }
  }
  return { gateways, tunnelAcceptors };
}
