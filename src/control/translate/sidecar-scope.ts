// The Sidecar resource, with Istio's semantics: which one applies to a proxy (a Sidecar in its namespace whose
// workloadSelector matches its labels, else the namespace's Sidecar without selector, else the root namespace's
// one without selector as the mesh default), which services and VirtualServices its egress hosts import, and
// its outboundTrafficPolicy. Egress hosts are "namespace/dnsName": namespace "*" (any), "." (the proxy's own,
// also for the root namespace's default), or a name; "~" before the namespace excludes instead of imports
// ("~/*" imports nothing); dnsName may be "*" or "*.suffix". No applicable Sidecar: everything visible is
// imported and the mesh default policy applies.
import { type MeshService, selectorMatches } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, obj, str } from "../../api/validate/checker.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { ROOT_NAMESPACE } from "./destination-rule.ts";

export type OutboundPolicy = "ALLOW_ANY" | "REGISTRY_ONLY";

/** What one Sidecar imports; `undefined` hosts means no Sidecar applies (everything). */
export interface EgressScope {
  /** The applicable Sidecar as "namespace/name", or "" (none); part of the renderer's cache key. */
  readonly key: string;
  readonly policy: OutboundPolicy;
  importsService(s: MeshService, port: number): boolean;
  /** `hosts`: the VirtualService's hosts, resolved to FQDNs. */
  importsVirtualService(vs: Resource, hosts: readonly string[]): boolean;
}

/** The Sidecar that applies to a proxy, Istio's order; among equals the first by name, for stability. */
export function applicableSidecar(
  sidecars: readonly Resource[],
  proxy: Pick<ProxyNode, "namespace" | "labels">,
): Resource | undefined {
  let selected: Resource | undefined;
  let namespaceWide: Resource | undefined;
  let meshDefault: Resource | undefined;
  const first = (a: Resource | undefined, b: Resource) => (a === undefined || b.name < a.name ? b : a);
  for (const r of sidecars) {
    const sel = stringMap(obj(obj(r.object.spec)?.workloadSelector)?.labels);
    const wide = Object.keys(sel).length === 0;
    if (r.namespace === proxy.namespace) {
      if (!wide && selectorMatches(sel, proxy.labels)) selected = first(selected, r);
      else if (wide) namespaceWide = first(namespaceWide, r);
    } else if (r.namespace === ROOT_NAMESPACE && wide) meshDefault = first(meshDefault, r);
  }
  return selected ?? namespaceWide ?? meshDefault;
}

interface HostImport {
  readonly namespace: string;
  readonly host: string;
  readonly exclude: boolean;
  /** The egress listener's port, when it has one (then only that service port is imported). */
  readonly port: number | undefined;
}

/** The egress scope of the Sidecar that applies to a proxy (the mesh default policy when none says). */
export function sidecarEgress(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  meshPolicy: OutboundPolicy = "ALLOW_ANY",
): EgressScope {
  return egressScope(applicableSidecar(registry.context.of("Sidecar"), proxy), meshPolicy, proxy.namespace);
}

export function egressScope(
  sidecar: Resource | undefined,
  meshPolicy: OutboundPolicy,
  proxyNamespace: string,
): EgressScope {
  const spec = obj(sidecar?.object.spec);
  const mode = str(obj(spec?.outboundTrafficPolicy)?.mode);
  const policy: OutboundPolicy = mode === "REGISTRY_ONLY" || mode === "ALLOW_ANY" ? mode : meshPolicy;
  const egress = arr(spec?.egress);
  if (!sidecar || egress.length === 0)
    return {
      key: sidecar ? `${sidecar.namespace}/${sidecar.name}` : "",
      policy,
      importsService: () => true,
      importsVirtualService: () => true,
    };
  const imports: HostImport[] = [];
  for (const e of egress) {
    const l = obj(e);
    const p = obj(l?.port);
    // An HTTP_PROXY egress listener is a generic proxy: its hosts are not restricted to its port (Istio).
    const port = str(p?.protocol)?.toUpperCase() === "HTTP_PROXY" ? undefined : num(p?.number);
    for (const h of arr(l?.hosts)) {
      if (typeof h !== "string") continue;
      const slash = h.indexOf("/");
      if (slash === -1 || h.indexOf("/", slash + 1) !== -1) continue;
      let ns = h.slice(0, slash);
      const exclude = ns.startsWith("~");
      if (exclude) ns = ns.slice(1) || "*";
      if (ns === ".") ns = proxyNamespace;
      imports.push({ namespace: ns, host: h.slice(slash + 1).toLowerCase(), exclude, port });
    }
  }
  const excluded = (ns: string, host: string) =>
    imports.some((i) => i.exclude && (i.namespace === "*" || i.namespace === ns) && subsetOf(host, i.host));
  return {
    key: `${sidecar.namespace}/${sidecar.name}`,
    policy,
    importsService(s, port) {
      const host = s.host.toLowerCase();
      if (excluded(s.namespace, host)) return false;
      return imports.some(
        (i) =>
          !i.exclude &&
          (i.namespace === "*" || i.namespace === s.namespace) &&
          (i.port === undefined || i.port === port) &&
          subsetOf(host, i.host),
      );
    },
    importsVirtualService(vs, hosts) {
      // Istio selects a VirtualService by its own namespace, and its hosts match imports either way round.
      return hosts.some((raw) => {
        const h = raw.toLowerCase();
        if (excluded(vs.namespace, h)) return false;
        return imports.some(
          (i) =>
            !i.exclude &&
            (i.namespace === "*" || i.namespace === vs.namespace) &&
            (subsetOf(h, i.host) || subsetOf(i.host, h)),
        );
      });
    },
  };
}

/** Host `h` (maybe "*.x") is covered by `pattern` (maybe "*" or "*.x"): Istio's host.Name.SubsetOf. */
export function subsetOf(h: string, pattern: string): boolean {
  if (pattern === "*") return true;
  if (pattern.startsWith("*")) {
    const suffix = pattern.slice(1);
    return h.startsWith("*") ? h.slice(1).endsWith(suffix) : h.endsWith(suffix);
  }
  return !h.startsWith("*") && h === pattern;
}

function stringMap(v: unknown): Record<string, string> {
  const o = obj(v);
  const out: Record<string, string> = {};
  if (o) for (const [k, x] of Object.entries(o)) if (typeof x === "string") out[k] = x;
  return out;
}
