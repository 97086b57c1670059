// An east-west gateway, as Istio's samples/multicluster/expose-services.yaml declares it: a Gateway server with
// tls.mode AUTO_PASSTHROUGH (port 15443, hosts "*.local") makes the gateway route connections by their mesh
// SNI (outbound_.PORT_.SUBSET_.HOST) to that service port's endpoints on its own network, without terminating
// the TLS: the caller's mutual TLS reaches the callee's sidecar, identities and all. One filter chain per
// service port and subset, each to a cluster of the same name (Istio's names for these clusters).
//
// isthmus's addition for networks that can only dial out: a private network's east-west gateway dials the
// public networks' gateways on 15008 and holds reverse tunnels there (ReverseTunnelConfig), handing each
// stream opened on them to its own passthrough listener; a public gateway accepts them (a
// reverse_tunnel_acceptor chain, mutual TLS with the gateways' identity) and reaches the private network's
// endpoints over the tunnel named after the network (networks.ts gives such endpoints `tunnel`).
import { hostMatches } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, obj, str } from "../../api/validate/checker.ts";
import type {
  ClusterConfig,
  FilterChainConfig,
  ListenerConfig,
  ReverseTunnelConfig,
} from "../../proxy/config/types.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { DEFAULT_GATEWAY_PORT, TUNNEL_PORT } from "../registry/topology.ts";
import { findDestinationRule } from "./destination-rule.ts";
import { ENDPOINT_TLS_MODE, type MeshTls, meshSni, ROOT_SECRET, spiffeId, WORKLOAD_SECRET } from "./mtls.ts";
import type { Vantage } from "./networks.ts";
import type { RenderMemo } from "./render-memo.ts";
import { serviceClusters, visibleServices } from "./sidecar.ts";

export interface PassthroughServer {
  readonly port: number;
  readonly hosts: readonly string[];
}

/** The AUTO_PASSTHROUGH servers of the Gateways that select a proxy: it is then an east-west gateway. */
export function autoPassthroughServers(gateways: readonly Resource[]): PassthroughServer[] {
  const out: PassthroughServer[] = [];
  for (const g of gateways)
    for (const x of arr(obj(g.object.spec)?.servers)) {
      const s = obj(x);
      const port = num(obj(s?.port)?.number);
      if (port === undefined || str(obj(s?.tls)?.mode) !== "AUTO_PASSTHROUGH") continue;
      const hosts = arr(s?.hosts)
        .filter((h): h is string => typeof h === "string")
        // "ns/host" binds VirtualServices; for passthrough only the host part matters.
        .map((h) => (h.includes("/") ? h.slice(h.indexOf("/") + 1) : h));
      out.push({ port, hosts });
    }
  return out;
}

export interface EastWestParts {
  readonly listeners: readonly ListenerConfig[];
  readonly clusters: readonly ClusterConfig[];
  readonly reverseTunnels: readonly ReverseTunnelConfig[];
}

/** The passthrough listeners and clusters of an east-west gateway, its tunnel acceptor or its tunnels. */
export function eastWestParts(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  servers: readonly PassthroughServer[],
  vantage: Vantage,
  mesh: MeshTls,
  memo?: RenderMemo,
): EastWestParts {
  const address = proxy.appAddress ?? "127.0.0.1";
  const rules = registry.context.of("DestinationRule");
  const clusters = new Map<string, ClusterConfig>();
  const listeners: ListenerConfig[] = [];
  const services = visibleServices(registry, proxy.namespace).filter((s) => !s.host.includes("*"));
  for (const port of [...new Set(servers.map((s) => s.port))].sort((a, b) => a - b)) {
    const hosts = servers.filter((s) => s.port === port).flatMap((s) => s.hosts);
    const chains: FilterChainConfig[] = [];
    for (const s of services) {
      if (!hosts.some((h) => h === "*" || hostMatches(h, s.host))) continue;
      const rule = findDestinationRule(rules, s.host, proxy.namespace, s.namespace);
      const subsets = [
        "",
        ...arr(rule?.spec.subsets)
          .map((x) => str(obj(x)?.name))
          .filter((n): n is string => !!n),
      ];
      for (const p of s.ports) {
        const built = serviceClusters(registry, s, p.number, rule, memo, mesh, vantage);
        subsets.forEach((subset, k) => {
          const sni = meshSni(s.host, p.number, subset);
          const c = built[k];
          if (c === undefined || clusters.has(sni)) return;
          clusters.set(sni, passthroughCluster(sni, c));
          chains.push({
            name: sni,
            match: { serverNames: [sni] },
            filter: { type: "tcp", cluster: sni, statPrefix: sni },
          });
        });
      }
    }
    // An empty listener cannot exist; a chain that matches no SNI keeps the port open and closes strangers.
    if (chains.length === 0) continue;
    listeners.push({ name: `0.0.0.0_${port}`, address, port, filterChains: chains });
  }
  const topology = registry.topology;
  const identities = [mesh.trustDomain, ...mesh.aliases].map((td) =>
    spiffeId(td, proxy.namespace, proxy.serviceAccount || "default"),
  );
  const tunnelled = [...topology.networks].filter(([, r]) => r.tunnel).map(([n]) => n);
  if (!topology.private && topology.network !== "")
    listeners.push({
      name: `tunnel_${TUNNEL_PORT}`,
      address,
      port: TUNNEL_PORT,
      filterChains: [
        {
          name: "reverse-tunnels",
          // East-west gateways run under one identity (Istio's istio-eastwestgateway): only they may attach.
          tls: {
            certificateSecret: WORKLOAD_SECRET,
            validationSecret: ROOT_SECRET,
            requireClientCertificate: true,
            matchSubjectAltNames: identities,
            alpnProtocols: ["http/1.1"],
          },
          filter: { type: "reverse_tunnel_acceptor", statPrefix: "reverse_tunnels", allowedNames: tunnelled },
        },
      ],
    });
  const passthrough = servers.some((s) => s.port === DEFAULT_GATEWAY_PORT)
    ? `0.0.0.0_${DEFAULT_GATEWAY_PORT}`
    : listeners[0]?.name;
  const reverseTunnels: ReverseTunnelConfig[] =
    topology.private && topology.network !== "" && passthrough !== undefined
      ? topology.tunnelAcceptors.map((a) => ({
          name: topology.network,
          address: a.address,
          port: a.port,
          tls: {
            certificateSecret: WORKLOAD_SECRET,
            validationSecret: ROOT_SECRET,
            matchSubjectAltNames: identities,
            alpnProtocols: ["http/1.1"],
          },
          // Two connections to each acceptor: when one drops, its streams' retries ride the other at once.
          connections: 2,
          listener: passthrough,
        }))
      : [];
  return { listeners, clusters: [...clusters.values()], reverseTunnels };
}

/**
 * The cluster a passthrough chain forwards to: the service cluster's endpoints that have a sidecar (the only
 * ones that can take the caller's TLS) and the tunnelled ones, dialled in plain TCP — the bytes are the
 * caller's TLS already.
 */
function passthroughCluster(name: string, c: ClusterConfig): ClusterConfig {
  return {
    name,
    ...(c.lbPolicy ? { lbPolicy: c.lbPolicy } : {}),
    ...(c.connectTimeoutMs ? { connectTimeoutMs: c.connectTimeoutMs } : {}),
    ...(c.outlierDetection ? { outlierDetection: c.outlierDetection } : {}),
    endpoints: c.endpoints
      .filter((e) => e.tunnel !== undefined || e.labels?.[ENDPOINT_TLS_MODE] === "istio")
      .map(({ labels: _, ...e }) => e),
  };
}
