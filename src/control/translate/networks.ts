// Istio's split horizon: a proxy dials endpoints on its own network directly, and endpoints on another network
// through that network's east-west gateways — one gateway endpoint per gateway, weighted by the number of
// endpoints behind it, dialled with the endpoint's own mutual TLS and mesh SNI so that the gateway passes the
// connection through to the workload's sidecar untouched (AUTO_PASSTHROUGH). A private network cannot be
// dialled: its gateways hold reverse tunnels to this network's gateways, so its endpoints are reached through
// this network's own gateways, and from those gateways over the tunnel named after the network. An east-west
// gateway sees only its own network's endpoints and the tunnelled ones (Istio's REQUESTED_NETWORK_VIEW), so
// that traffic never bounces between gateways.
import type { EndpointConfig } from "../../proxy/config/types.ts";
import type { ServiceInstance } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { type Address, CLUSTER_LABEL, DEFAULT_GATEWAY_PORT, NETWORK_LABEL } from "../registry/topology.ts";
import { ENDPOINT_TLS_MODE } from "./mtls.ts";

/** Where a proxy stands: what decides which endpoints it dials directly and how it ranks localities. */
export interface Vantage {
  /** "" when the mesh is one network. */
  readonly network: string;
  readonly cluster: string;
  /** region/zone[/subzone], "" when unknown. */
  readonly locality: string;
  /** An east-west gateway: sees its own network's endpoints, and private networks' through their tunnels. */
  readonly eastWest: boolean;
}

export const NO_VANTAGE: Vantage = { network: "", cluster: "", locality: "", eastWest: false };

export function vantageKey(v: Vantage): string {
  return `${v.network}\u0002${v.cluster}\u0002${v.locality}\u0002${v.eastWest ? "ew" : ""}`;
}

/** An endpoint as the translator first makes it, with the instance it came from. */
export interface Candidate {
  readonly instance: ServiceInstance;
  readonly endpoint: EndpointConfig;
  /** Dialled with mutual TLS to its sidecar (only such endpoints can be reached through a gateway). */
  readonly mutual: boolean;
}

/** Where an endpoint is, for locality load balancing: its locality, network and cluster. */
export interface Placed {
  readonly endpoint: EndpointConfig;
  readonly network: string;
  readonly cluster: string;
  readonly locality: string;
}

/** On endpoints that stand for another network's endpoints: "gateway" or "tunnel" (for proxy-config). */
export const VIA_LABEL = "isthmus.io/via";

/** The host an endpoint reached over a reverse tunnel names (the tunnel's far side ignores it). */
export function tunnelHost(network: string): string {
  return `tunnel.${network}`;
}

/**
 * The endpoints a proxy at `vantage` dials for these candidates: its network's directly, other networks'
 * replaced by their gateways (or tunnels), those it cannot reach dropped.
 */
export function splitHorizon(
  candidates: readonly Candidate[],
  vantage: Vantage,
  registry: ServiceRegistry,
): Placed[] {
  const topology = registry.topology;
  const here = vantage.network || topology.network;
  const direct: Placed[] = [];
  // network -> the candidates behind it, reached through gateways.
  const remote = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const net = c.instance.network || topology.network;
    const place = {
      network: net,
      cluster: c.instance.cluster || (net === topology.network ? topology.cluster : ""),
      locality: c.instance.locality ?? "",
    };
    if (here === "" || net === "" || net === here) {
      // Labelled with where it is (Istio's topology labels), for subsets, failoverPriority and proxy-config.
      const endpoint =
        net === ""
          ? c.endpoint
          : {
              ...c.endpoint,
              labels: {
                ...c.endpoint.labels,
                [NETWORK_LABEL]: net,
                ...(place.cluster ? { [CLUSTER_LABEL]: place.cluster } : {}),
              },
            };
      direct.push({ endpoint, ...place });
      continue;
    }
    // Only a sidecar can be reached through a gateway: the gateway routes on the mesh SNI of its mutual TLS.
    if (!c.mutual) continue;
    let list = remote.get(net);
    if (list === undefined) {
      list = [];
      remote.set(net, list);
    }
    list.push(c);
  }
  if (remote.size === 0) return direct;
  const groups: Array<{
    readonly net: string;
    readonly via: readonly Address[];
    readonly members: Candidate[];
  }> = [];
  for (const [net, members] of [...remote].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const route = topology.networks.get(net);
    if (route === undefined) continue;
    if (route.tunnel && vantage.eastWest) {
      groups.push({ net, via: [{ address: tunnelHost(net), port: DEFAULT_GATEWAY_PORT }], members });
      continue;
    }
    // An east-west gateway does not forward to other networks' gateways (no hairpin between gateways).
    if (vantage.eastWest) continue;
    const via = route.tunnel ? registry.localGateways.gateways : route.gateways;
    if (via.length > 0) groups.push({ net, via, members });
  }
  if (groups.length === 0) return direct;
  // Each gateway gets its share of the endpoints behind it; weights are scaled by the least common multiple of
  // the gateway counts so that every share is a whole number and direct endpoints keep their proportion.
  const scale = groups.reduce((m, g) => lcm(m, g.via.length), 1);
  const out: Placed[] =
    scale === 1
      ? direct
      : direct.map((p) => ({ ...p, endpoint: { ...p.endpoint, weight: (p.endpoint.weight ?? 1) * scale } }));
  for (const g of groups) {
    const total = g.members.reduce((n, c) => n + (c.endpoint.weight ?? 1), 0);
    const locality = majority(g.members.map((c) => c.instance.locality ?? ""));
    const cluster = majority(g.members.map((c) => c.instance.cluster ?? ""));
    const tunnelled = vantage.eastWest;
    for (const gw of g.via)
      out.push({
        network: g.net,
        cluster,
        locality,
        endpoint: {
          address: gw.address,
          port: gw.port,
          weight: Math.max(1, (total * scale) / g.via.length),
          labels: {
            ...(tunnelled ? {} : { [ENDPOINT_TLS_MODE]: "istio" }),
            [VIA_LABEL]: tunnelled ? "tunnel" : "gateway",
            [NETWORK_LABEL]: g.net,
            ...(cluster ? { [CLUSTER_LABEL]: cluster } : {}),
          },
          ...(locality ? { locality } : {}),
          ...(tunnelled ? { tunnel: g.net } : {}),
        },
      });
  }
  return out;
}

function majority(values: readonly string[]): string {
  const count = new Map<string, number>();
  let best = "";
  let bestN = 0;
  for (const v of values) {
    const n = (count.get(v) ?? 0) + 1;
    count.set(v, n);
    if (n > bestN) [best, bestN] = [v, n];
  }
  return best;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}
