// `isthmus tls-check`: for each service port a proxy can call, how the client side connects (its
// DestinationRule's tls mode, or auto mTLS) against what the server side accepts (PeerAuthentication of the
// service's workloads), and whether the two agree — istioctl's former `authn tls-check`, computed from the
// same inputs the translation uses (mtls.ts, inbound.ts), so it tells what the proxies were given.
import type { Resource } from "../../api/resource.ts";
import { obj, str } from "../../api/validate/checker.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { findDestinationRule, trafficPolicy } from "./destination-rule.ts";
import { TLS_MODE_LABEL } from "./mtls.ts";
import { type MtlsMode, peerAuthenticationDecision } from "./security/peer-authentication.ts";
import { visibleServices } from "./sidecar.ts";

export interface TlsCheckRow {
  /** HOST:PORT */
  readonly host: string;
  /** OK, or CONFLICT when the client's mode cannot reach the server's (the call fails). */
  readonly status: "OK" | "CONFLICT";
  /** STRICT, PERMISSIVE, DISABLE, or MIXED when the service's workloads differ; "-" without a sidecar. */
  readonly server: string;
  /** ISTIO_MUTUAL, DISABLE, SIMPLE, MUTUAL, or AUTO (mTLS to workloads with a sidecar, else plain text). */
  readonly client: string;
  /** NAMESPACE/NAME of the PeerAuthentication that decided the server's mode, "-" for the mesh default. */
  readonly authnPolicy: string;
  /** NAME.NAMESPACE of the DestinationRule applied, or "-". */
  readonly destinationRule: string;
}

export function tlsCheck(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  options: { readonly rootNamespace?: string; readonly host?: string } = {},
): TlsCheckRow[] {
  const policies = registry.context.of("PeerAuthentication");
  const rules = registry.context.of("DestinationRule");
  const rows: TlsCheckRow[] = [];
  for (const s of visibleServices(registry, proxy.namespace)) {
    if (options.host !== undefined && !matchesHost(s.host, options.host)) continue;
    const rule = findDestinationRule(rules, s.host, proxy.namespace, s.namespace);
    for (const p of s.ports) {
      const tls = str(obj(trafficPolicy(rule, p.number, "").tls)?.mode);
      const client = tls === undefined || tls === "" ? "AUTO" : tls;
      const modes = new Set<MtlsMode>();
      const deciders = new Set<string>();
      let sidecars = 0;
      for (const i of registry.instances(s.host, p.number)) {
        if (i.labels[TLS_MODE_LABEL] !== "istio") continue;
        sidecars++;
        const d = peerAuthenticationDecision(
          policies,
          { namespace: s.namespace, labels: i.labels },
          i.port,
          options.rootNamespace,
        );
        modes.add(d.mode);
        deciders.add(d.policy ? `${d.policy.namespace}/${d.policy.name}` : "-");
      }
      const server = sidecars === 0 ? "-" : modes.size === 1 ? [...modes][0]! : "MIXED";
      rows.push({
        host: `${s.host}:${p.number}`,
        status: conflict(client, modes, sidecars) ? "CONFLICT" : "OK",
        server,
        client,
        authnPolicy: deciders.size === 0 ? "-" : [...deciders].sort().join(","),
        destinationRule: rule ? ruleName(rule.resource) : "-",
      });
    }
  }
  return rows.sort((a, b) => a.host.localeCompare(b.host));
}

/**
 * Istio's conflicts: mTLS to a server that only takes plain text, or plain text / other TLS to one that only
 * takes the mesh's mTLS (STRICT; PERMISSIVE takes both). AUTO follows the server, so it never conflicts.
 */
function conflict(client: string, modes: ReadonlySet<MtlsMode>, sidecars: number): boolean {
  if (sidecars === 0) return client === "ISTIO_MUTUAL";
  if (client === "ISTIO_MUTUAL") return modes.has("DISABLE");
  if (client === "AUTO") return false;
  return modes.has("STRICT");
}

function matchesHost(serviceHost: string, asked: string): boolean {
  const h = asked.toLowerCase().replace(/:\d+$/, "");
  return serviceHost === h || serviceHost.startsWith(`${h}.`);
}

function ruleName(r: Resource): string {
  return `${r.name}.${r.namespace}`;
}
