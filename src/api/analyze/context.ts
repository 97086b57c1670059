// What analyzers know about a set of resources: services and their ports, workloads and their labels,
// and Istio's rules for resolving short host names. Built once per analysis.
import { isIP } from "node:net";
import type { Resource } from "../resource.ts";
import { arr, obj, str } from "../validate/checker.ts";

export const DOMAIN_SUFFIX = "cluster.local";

export interface ServicePort {
  readonly number: number;
  readonly name?: string;
  readonly protocol?: string;
  readonly targetPort?: number | string;
}

export interface MeshService {
  /** FQDN (Kubernetes Service) or the host as written (ServiceEntry, maybe "*.example.com"). */
  readonly host: string;
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  readonly selector?: Readonly<Record<string, string>>;
  readonly resource: Resource;
  readonly exportTo: readonly string[];
}

export interface Workload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ports: readonly number[];
  /** Container ports by name (a Service's named targetPort refers to these). */
  readonly portNames: ReadonlyMap<string, number>;
  readonly resource: Resource;
}

export class AnalysisContext {
  /** Every resource loaded, in load order, duplicates included. */
  readonly all: readonly Resource[];
  /** The effective set: where a kind/namespace/name is defined twice, the later one, as kubectl apply does. */
  readonly resources: readonly Resource[];
  readonly services: MeshService[] = [];
  readonly workloads: Workload[] = [];
  readonly namespaces = new Set<string>();
  private readonly byKind = new Map<string, Resource[]>();

  constructor(all: readonly Resource[]) {
    this.all = all;
    const last = new Map<string, Resource>();
    for (const r of all) last.set(`${r.kind}/${r.namespace}/${r.name}`, r);
    this.resources = all.filter((r) => last.get(`${r.kind}/${r.namespace}/${r.name}`) === r);
    for (const r of this.resources) {
      const list = this.byKind.get(r.kind) ?? [];
      list.push(r);
      this.byKind.set(r.kind, list);
      if (r.namespace) this.namespaces.add(r.namespace);
      if (r.kind === "Namespace") this.namespaces.add(r.name);
    }
    for (const r of this.of("Service")) this.services.push(kubernetesService(r));
    for (const r of this.of("ServiceEntry")) this.services.push(...serviceEntryServices(r));
    for (const r of this.of("Deployment")) this.workloads.push(deploymentWorkload(r));
    for (const r of this.of("WorkloadEntry")) {
      const spec = obj(r.object.spec);
      this.workloads.push({
        namespace: r.namespace,
        labels: stringMap(spec?.labels),
        ports: [],
        portNames: new Map(),
        resource: r,
      });
    }
  }

  of(kind: string): readonly Resource[] {
    return this.byKind.get(kind) ?? [];
  }

  /** Whether the load says which workloads exist; selector analyzers stay quiet otherwise. */
  get workloadsKnown(): boolean {
    return this.workloads.length > 0;
  }

  /** Whether any service is defined; host analyzers stay quiet otherwise. */
  get servicesKnown(): boolean {
    return this.services.length > 0;
  }

  /** The services a host names, as seen from `namespace` (short names resolve there). */
  findServices(host: string, namespace: string): MeshService[] {
    const fqdn = resolveHost(host, namespace);
    return this.services.filter((s) => visibleFrom(s, namespace) && hostMatches(s.host, fqdn));
  }

  workloadsMatching(namespace: string | undefined, selector: Readonly<Record<string, string>>): Workload[] {
    return this.workloads.filter(
      (w) => (namespace === undefined || w.namespace === namespace) && selectorMatches(selector, w.labels),
    );
  }
}

/**
 * Istio's short-name rule: a host without a dot ("reviews") is a Kubernetes service in the rule's namespace,
 * reviews.default.svc.cluster.local; anything with a dot is taken as written.
 */
export function resolveHost(host: string, namespace: string): string {
  if (host === "*" || host.includes(".") || isIP(host) !== 0) return host;
  return `${host}.${namespace}.svc.${DOMAIN_SUFFIX}`;
}

/** Host `pattern` (maybe "*.x.com") covers host `h`. */
export function hostMatches(pattern: string, h: string): boolean {
  if (pattern === h || pattern === "*") return true;
  if (pattern.startsWith("*")) return h.endsWith(pattern.slice(1));
  if (h.startsWith("*")) return pattern.endsWith(h.slice(1));
  return false;
}

/** Two hosts, either maybe wildcarded, can name the same name. */
export function hostsOverlap(a: string, b: string): boolean {
  return hostMatches(a, b) || hostMatches(b, a);
}

/**
 * Where a resource's hosts are visible, as Istio's analyzers scope them when they look for conflicts
 * (ConflictingMeshGatewayHostsAnalyzer, ConflictingServiceEntryProtocolAnalyzer): "all" when exportTo is unset
 * or contains "*"; otherwise the namespaces it names, with "." read as the resource's own namespace. "~"
 * (exported nowhere) names no namespace, so such a resource conflicts with nothing.
 */
export type ExportScope = "all" | ReadonlySet<string>;

export function exportScope(exportTo: unknown, namespace: string): ExportScope {
  const list = arr(exportTo).filter((x): x is string => typeof x === "string");
  if (list.length === 0 || list.includes("*")) return "all";
  return new Set(list.filter((x) => x !== "~").map((x) => (x === "." ? namespace : x)));
}

/**
 * Two resources can conflict when some namespace sees both: either is exported everywhere, or they are
 * exported to a namespace in common.
 */
export function scopesOverlap(a: ExportScope, b: ExportScope): boolean {
  if (a === "all") return b === "all" || b.size > 0;
  if (b === "all") return a.size > 0;
  for (const ns of a) if (b.has(ns)) return true;
  return false;
}

export function selectorMatches(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function visibleFrom(s: MeshService, namespace: string): boolean {
  if (s.exportTo.length === 0 || s.exportTo.includes("*")) return true;
  if (s.exportTo.includes("~")) return false;
  return s.exportTo.includes(namespace) || (s.exportTo.includes(".") && s.namespace === namespace);
}

function kubernetesService(r: Resource): MeshService {
  const spec = obj(r.object.spec);
  const ports = arr(spec?.ports).flatMap((p) => {
    const o = obj(p);
    if (!o || typeof o.port !== "number") return [];
    const port: ServicePort = {
      number: o.port,
      ...(str(o.name) ? { name: str(o.name)! } : {}),
      ...(str(o.appProtocol) ? { protocol: str(o.appProtocol)! } : {}),
      ...(typeof o.targetPort === "number" || typeof o.targetPort === "string"
        ? { targetPort: o.targetPort }
        : {}),
    };
    return [port];
  });
  return {
    host: `${r.name}.${r.namespace}.svc.${DOMAIN_SUFFIX}`,
    namespace: r.namespace,
    ports,
    selector: stringMap(spec?.selector),
    resource: r,
    exportTo: [],
  };
}

function serviceEntryServices(r: Resource): MeshService[] {
  const spec = obj(r.object.spec);
  const ports = arr(spec?.ports).flatMap((p) => {
    const o = obj(p);
    if (!o || typeof o.number !== "number") return [];
    return [
      {
        number: o.number,
        ...(str(o.name) ? { name: str(o.name)! } : {}),
        ...(str(o.protocol) ? { protocol: str(o.protocol)! } : {}),
      },
    ];
  });
  const exportTo = arr(spec?.exportTo).filter((x): x is string => typeof x === "string");
  const selector = stringMap(obj(spec?.workloadSelector)?.labels);
  return arr(spec?.hosts)
    .filter((h): h is string => typeof h === "string")
    .map((host) => ({
      host,
      namespace: r.namespace,
      ports,
      resource: r,
      exportTo,
      ...(Object.keys(selector).length > 0 ? { selector } : {}),
    }));
}

function deploymentWorkload(r: Resource): Workload {
  const template = obj(obj(r.object.spec)?.template);
  const labels = stringMap(obj(template?.metadata)?.labels);
  const ports: number[] = [];
  const portNames = new Map<string, number>();
  for (const c of arr(obj(template?.spec)?.containers)) {
    for (const p of arr(obj(c)?.ports)) {
      const n = obj(p)?.containerPort;
      if (typeof n !== "number") continue;
      ports.push(n);
      const name = str(obj(p)?.name);
      if (name) portNames.set(name, n);
    }
  }
  return { namespace: r.namespace, labels, ports, portNames, resource: r };
}

/** app=reviews,version=v1 — labels as Istio's messages print them. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

export function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const o = obj(v);
  if (o) for (const [k, val] of Object.entries(o)) if (typeof val === "string") out[k] = val;
  return out;
}
