// A sidecar's inbound side: what other proxies reach the app behind it through. One listener on the pod's
// address, port 15006, mutual TLS only (the workload certificate and the mesh roots, a client certificate
// required); one filter chain per port the app serves, chosen by the SNI the client's cluster sends
// (outbound_.PORT_.SUBSET_.HOST, every service port and subset this workload is part of), with the
// RequestAuthentication and AuthorizationPolicy filters of the workload and port before the app; one cluster
// inbound|PORT|| to the app on the pod address.
//
// PeerAuthentication decides per port: STRICT and PERMISSIVE get the chain (a sidecar-to-sidecar call is
// mutual TLS either way); DISABLE gets none, and clients dial that port in plain text (mtls.ts). Plain text from
// callers without a sidecar reaches the app's own port directly: no traffic is captured locally, so what
// PERMISSIVE admits in plain text is not policed by the sidecar, and STRICT needs the app port closed to
// others at the network level (docs/security.md).
import { hostMatches, type MeshService, resolveHost, selectorMatches } from "../../api/analyze/context.ts";
import { arr, obj, str } from "../../api/validate/checker.ts";
import type { ClusterConfig, FilterChainConfig, ListenerConfig } from "../../proxy/config/types.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { type MeshTls, meshSni, ROOT_SECRET, WORKLOAD_SECRET } from "./mtls.ts";
import { INBOUND_LISTENER, INBOUND_PORT, inboundCluster } from "./names.ts";
import {
  type ApplicablePolicies,
  httpSecurityFrom,
  type SecurityOptions,
  tcpSecurityFrom,
} from "./security/index.ts";
import { peerAuthenticationMode } from "./security/peer-authentication.ts";
import { isHttpPort } from "./sidecar.ts";

export interface InboundParts {
  readonly listeners: readonly ListenerConfig[];
  readonly clusters: readonly ClusterConfig[];
}

const NONE: InboundParts = { listeners: [], clusters: [] };

/** One port the app listens on, with every service port (and subset) that reaches it. */
interface AppPort {
  readonly port: number;
  http: boolean;
  h2: boolean;
  readonly serverNames: Set<string>;
}

/** The services of a namespace that select workloads (Kubernetes Services, ServiceEntries with a selector). */
export function selectingServices(registry: ServiceRegistry): Map<string, MeshService[]> {
  const out = new Map<string, MeshService[]>();
  for (const s of registry.services) {
    if (s.selector === undefined || Object.keys(s.selector).length === 0) continue;
    let list = out.get(s.namespace);
    if (list === undefined) {
      list = [];
      out.set(s.namespace, list);
    }
    list.push(s);
  }
  return out;
}

export function inboundParts(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  services: readonly MeshService[],
  mesh: MeshTls,
  policies: ApplicablePolicies,
  security: SecurityOptions = {},
): InboundParts {
  const address = proxy.appAddress;
  // Without an address of its own a sidecar cannot tell its app's traffic from its neighbours'.
  if (address === undefined) return NONE;
  const ports = new Map<number, AppPort>();
  const rules = registry.context.of("DestinationRule");
  for (const s of services) {
    if (s.namespace !== proxy.namespace || !selectorMatches(s.selector!, proxy.labels)) continue;
    for (const sp of s.ports) {
      const own = registry.instanceList(s.host, sp.number).find((i) => i.address === address);
      const target = own?.port ?? (typeof sp.targetPort === "number" ? sp.targetPort : sp.number);
      let p = ports.get(target);
      if (p === undefined) {
        p = { port: target, http: true, h2: false, serverNames: new Set() };
        ports.set(target, p);
      }
      // One port carrying both: plain TCP is what serves both.
      if (!isHttpPort(sp)) p.http = false;
      if (/^(grpc|http2|h2c)/i.test(sp.protocol ?? sp.name ?? "")) p.h2 = true;
      p.serverNames.add(meshSni(s.host, sp.number, ""));
      for (const subset of subsetsOf(rules, s.host, proxy.labels))
        p.serverNames.add(meshSni(s.host, sp.number, subset));
    }
  }
  const chains: FilterChainConfig[] = [];
  const clusters: ClusterConfig[] = [];
  for (const p of [...ports.values()].sort((a, b) => a.port - b.port)) {
    const mode = peerAuthenticationMode(mesh.peerAuthentications, proxy, p.port, mesh.rootNamespace);
    if (mode === "DISABLE") continue;
    const cluster = inboundCluster(p.port);
    const statPrefix = `inbound_0.0.0.0_${p.port}`;
    chains.push({
      name: `inbound_${p.port}`,
      match: { serverNames: [...p.serverNames].sort() },
      tls: {
        certificateSecret: WORKLOAD_SECRET,
        validationSecret: ROOT_SECRET,
        requireClientCertificate: true,
        alpnProtocols: ["h2", "http/1.1"],
      },
      filter: p.http
        ? {
            type: "http",
            mode: "server",
            reporter: "destination",
            statPrefix,
            setClientCertDetails: true,
            routeConfig: {
              name: cluster,
              virtualHosts: [
                {
                  name: `inbound|http|${p.port}`,
                  domains: ["*"],
                  routes: [{ name: "default", match: { prefix: "/" }, route: { cluster, timeoutMs: 0 } }],
                },
              ],
            },
            ...httpSecurityFrom(policies, p.port, security),
          }
        : { type: "tcp", cluster, statPrefix, ...tcpSecurityFrom(policies, p.port, security) },
    });
    clusters.push({
      name: cluster,
      ...(p.h2 ? { protocol: "http2" as const } : {}),
      endpoints: [{ address, port: p.port }],
    });
  }
  if (chains.length === 0) return NONE;
  return {
    listeners: [{ name: INBOUND_LISTENER, address, port: INBOUND_PORT, filterChains: chains }],
    clusters,
  };
}

/** Subsets of the DestinationRules for `host` (in any namespace) whose labels this workload's match. */
function subsetsOf(
  rules: ReturnType<ServiceRegistry["context"]["of"]>,
  host: string,
  labels: Readonly<Record<string, string>>,
): string[] {
  const out: string[] = [];
  for (const r of rules) {
    const spec = obj(r.object.spec);
    const h = str(spec?.host);
    if (h === undefined) continue;
    if (!hostMatches(resolveHost(h, r.namespace), host)) continue;
    for (const sub of arr(spec?.subsets)) {
      const name = str(obj(sub)?.name);
      const sl = obj(obj(sub)?.labels) as Record<string, string> | undefined;
      if (name && (sl === undefined || selectorMatches(sl, labels))) out.push(name);
    }
  }
  return out;
}
