// The service registry: services (Kubernetes Services and ServiceEntries, from the api layer's analysis of
// the loaded resources) and their instances. Instances come from sources: ServiceEntry endpoints and
// WorkloadEntries in the config, and workload sources (workload-source.ts: registrations, the local runtime's
// pod addresses; later Kubernetes watches) and service instances given as such (later peer clusters) — each
// adds instances without the translator knowing where they came from.
import { AnalysisContext, type MeshService, selectorMatches } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, obj, str } from "../../api/validate/checker.ts";
import type { ServiceInstance, WorkloadInstance } from "../model.ts";
import { type LocalGateways, localGateways, type MeshTopology, SINGLE_NETWORK } from "./topology.ts";

const NO_INSTANCES: readonly ServiceInstance[] = Object.freeze([]);

export class ServiceRegistry {
  readonly context: AnalysisContext;
  private readonly registered: ServiceInstance[];
  /** host -> service port -> instances (nested rather than one "host|port" key: no string built per lookup). */
  private readonly byHostPort = new Map<string, Map<number, readonly ServiceInstance[]>>();

  /**
   * `registered`: instances of services as such (a peer cluster's endpoints); `workloads`: instances of
   * workloads (pods, VMs) from the sources, made instances of the services that select them, like the config's
   * WorkloadEntries. `previous`: the registry this one replaces. A service port whose instances are unchanged
   * keeps the very list it had, so that what was rendered from it can be reused by identity
   * (translate/render-memo.ts).
   */
  constructor(
    resources: readonly Resource[],
    registered: readonly ServiceInstance[] = [],
    previous?: ServiceRegistry,
    workloads: readonly WorkloadInstance[] = [],
    topology: MeshTopology = SINGLE_NETWORK,
  ) {
    this.context = new AnalysisContext(resources);
    this.topology = topology;
    this.registered = [...registered];
    const all = [
      ...configInstances(this.context),
      ...workloadInstances(this.context, [...workloadEntries(this.context), ...workloads]),
      ...this.registered,
    ];
    for (const i of all) {
      let ports = this.byHostPort.get(i.host);
      if (ports === undefined) {
        ports = new Map();
        this.byHostPort.set(i.host, ports);
      }
      const list = ports.get(i.servicePort) as ServiceInstance[] | undefined;
      if (list) list.push(i);
      else ports.set(i.servicePort, [i]);
    }
    if (previous !== undefined)
      for (const [host, ports] of this.byHostPort)
        for (const [port, list] of ports) {
          const before = previous.instanceList(host, port);
          if (before !== NO_INSTANCES && sameInstances(before, list)) ports.set(port, before);
        }
  }

  /** This cluster's place in a multi-network mesh (SINGLE_NETWORK when it runs alone). */
  readonly topology: MeshTopology;
  private gatewaysOfNetwork: LocalGateways | undefined;

  /** This network's east-west gateways and tunnel acceptors (services labelled with its network). */
  get localGateways(): LocalGateways {
    this.gatewaysOfNetwork ??= localGateways(
      this.context.services,
      (h, p) => this.instanceList(h, p),
      this.topology.network,
    );
    return this.gatewaysOfNetwork;
  }

  /** Every instance of a service port, as one list that stays the same object while its instances do. */
  instanceList(host: string, servicePort: number): readonly ServiceInstance[] {
    return this.byHostPort.get(host)?.get(servicePort) ?? NO_INSTANCES;
  }

  get services(): readonly MeshService[] {
    return this.context.services;
  }

  /** Instances of a service port, optionally only those whose labels match a subset's. */
  instances(
    host: string,
    servicePort: number,
    subsetLabels?: Readonly<Record<string, string>>,
  ): readonly ServiceInstance[] {
    const all = this.instanceList(host, servicePort);
    return subsetLabels ? all.filter((i) => selectorMatches(subsetLabels, i.labels)) : all;
  }
}

/** Every field of an instance: a field added to ServiceInstance and not here is a compile error. */
const INSTANCE_FIELDS: Record<keyof ServiceInstance, true> = {
  host: true,
  servicePort: true,
  address: true,
  port: true,
  labels: true,
  locality: true,
  serviceAccount: true,
  network: true,
  cluster: true,
  weight: true,
  healthy: true,
};
const SCALAR_FIELDS = (Object.keys(INSTANCE_FIELDS) as (keyof ServiceInstance)[]).filter(
  (k) => k !== "labels",
);

function sameInstances(a: readonly ServiceInstance[], b: readonly ServiceInstance[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    for (const k of SCALAR_FIELDS) if (x[k] !== y[k]) return false;
    if (!sameLabels(x.labels, y.labels)) return false;
  }
  return true;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * Istio's reading of a WorkloadEntry or ServiceEntry endpoint (getTLSModeFromWorkloadEntry): one that names a
 * service account runs a sidecar bootstrapped with it, unless its labels say otherwise.
 */
function withSidecarMode(
  labels: Record<string, string>,
  serviceAccount: string | undefined,
): Record<string, string> {
  if (!serviceAccount || labels[TLS_MODE_LABEL] !== undefined) return labels;
  return { ...labels, [TLS_MODE_LABEL]: "istio" };
}

const TLS_MODE_LABEL = "security.istio.io/tlsMode";

/** Instances written in the config: ServiceEntry endpoints. */
function configInstances(ctx: AnalysisContext): ServiceInstance[] {
  const out: ServiceInstance[] = [];
  for (const s of ctx.services) {
    if (s.resource.kind !== "ServiceEntry") continue;
    const spec = obj(s.resource.object.spec);
    const resolution = str(spec?.resolution);
    if (
      (resolution === "DNS" || resolution === "DNS_ROUND_ROBIN") &&
      arr(spec?.endpoints).length === 0 &&
      !obj(spec?.workloadSelector) &&
      !s.host.includes("*")
    ) {
      // Istio: a DNS entry without endpoints has its host itself as the endpoint, resolved by the proxy.
      for (const p of s.ports) {
        const declared = arr(spec?.ports)
          .map(obj)
          .find((x) => num(x?.number) === p.number);
        out.push({
          host: s.host,
          servicePort: p.number,
          address: s.host,
          port: num(declared?.targetPort) || p.number,
          labels: {},
        });
      }
      continue;
    }
    for (const e of arr(spec?.endpoints)) {
      const ep = obj(e);
      const address = str(ep?.address);
      if (!ep || !address) continue;
      const ports = obj(ep.ports);
      for (const p of s.ports) {
        out.push({
          host: s.host,
          servicePort: p.number,
          address,
          port: num(ports?.[p.name ?? ""]) ?? p.number,
          labels: withSidecarMode(stringMap(ep.labels), str(ep.serviceAccount)),
          ...(str(ep.serviceAccount) ? { serviceAccount: str(ep.serviceAccount)! } : {}),
          ...(str(ep.locality) ? { locality: str(ep.locality)! } : {}),
          ...(str(ep.network) ? { network: str(ep.network)! } : {}),
          ...(num(ep.weight) ? { weight: num(ep.weight)! } : {}),
        });
      }
    }
  }
  return out;
}

/** The config's WorkloadEntries as workload instances. */
function workloadEntries(ctx: AnalysisContext): WorkloadInstance[] {
  const out: WorkloadInstance[] = [];
  for (const we of ctx.of("WorkloadEntry")) {
    const spec = obj(we.object.spec);
    const address = str(spec?.address);
    if (!address) continue;
    const ports = obj(spec?.ports);
    out.push({
      name: we.name,
      namespace: we.namespace,
      address,
      labels: withSidecarMode(stringMap(spec?.labels), str(spec?.serviceAccount)),
      ...(str(spec?.serviceAccount) ? { serviceAccount: str(spec?.serviceAccount)! } : {}),
      ...(str(spec?.locality) ? { locality: str(spec?.locality)! } : {}),
      ...(str(spec?.network) ? { network: str(spec?.network)! } : {}),
      ...(num(spec?.weight) ? { weight: num(spec?.weight)! } : {}),
      ...(ports ? { ports: numberMap(ports) } : {}),
    });
  }
  return out;
}

/**
 * Workload instances as instances of the services whose selector they match in their namespace (a Kubernetes
 * Service's selector, a ServiceEntry's workloadSelector); the port is the instance's own for the port's name,
 * else the service's targetPort. An instance naming a WorkloadGroup takes the group's labels and template for
 * what it leaves out (Istio's VM auto-registration).
 */
function workloadInstances(ctx: AnalysisContext, workloads: readonly WorkloadInstance[]): ServiceInstance[] {
  const out: ServiceInstance[] = [];
  if (workloads.length === 0) return out;
  const groups = new Map(ctx.of("WorkloadGroup").map((g) => [`${g.namespace}/${g.name}`, g]));
  const selecting = ctx.services.filter(
    (s) => s.selector !== undefined && Object.keys(s.selector).length > 0,
  );
  for (const raw of workloads) {
    const w = raw.group === undefined ? raw : withGroup(raw, groups.get(`${raw.namespace}/${raw.group}`));
    for (const s of selecting) {
      if (s.namespace !== w.namespace || !selectorMatches(s.selector!, w.labels)) continue;
      for (const p of s.ports) {
        const target = typeof p.targetPort === "number" ? p.targetPort : p.number;
        const named = typeof p.targetPort === "string" ? w.ports?.[p.targetPort] : undefined;
        out.push({
          host: s.host,
          servicePort: p.number,
          address: w.address,
          port: w.ports?.[p.name ?? ""] ?? named ?? target,
          labels: w.labels,
          ...(w.locality ? { locality: w.locality } : {}),
          ...(w.network ? { network: w.network } : {}),
          ...(w.serviceAccount ? { serviceAccount: w.serviceAccount } : {}),
          ...(w.cluster ? { cluster: w.cluster } : {}),
          ...(w.weight !== undefined ? { weight: w.weight } : {}),
          ...(w.healthy === false ? { healthy: false } : {}),
        });
      }
    }
  }
  return out;
}

/** An instance completed from its WorkloadGroup: the group's metadata labels and template under its own. */
function withGroup(w: WorkloadInstance, group: Resource | undefined): WorkloadInstance {
  if (group === undefined) return w;
  const spec = obj(group.object.spec);
  const template = obj(spec?.template);
  const ports = obj(template?.ports);
  return {
    ...w,
    labels: { ...stringMap(obj(spec?.metadata)?.labels), ...stringMap(template?.labels), ...w.labels },
    ...((w.serviceAccount ?? str(template?.serviceAccount))
      ? { serviceAccount: (w.serviceAccount ?? str(template?.serviceAccount))! }
      : {}),
    ...((w.locality ?? str(template?.locality))
      ? { locality: (w.locality ?? str(template?.locality))! }
      : {}),
    ...((w.network ?? str(template?.network)) ? { network: (w.network ?? str(template?.network))! } : {}),
    ...(ports || w.ports ? { ports: { ...numberMap(ports), ...w.ports } } : {}),
  };
}

function numberMap(v: unknown): Record<string, number> {
  const o = obj(v);
  const out: Record<string, number> = {};
  if (o) for (const [k, x] of Object.entries(o)) if (typeof x === "number") out[k] = x;
  return out;
}

function stringMap(v: unknown): Record<string, string> {
  const o = obj(v);
  const out: Record<string, string> = {};
  if (o) for (const [k, x] of Object.entries(o)) if (typeof x === "string") out[k] = x;
  return out;
}
