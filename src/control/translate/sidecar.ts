// One sidecar's ProxyConfig from the registry and the Istio resources: the outbound side (what the app behind
// the proxy can call). Every service port visible from the proxy's namespace and imported by its Sidecar
// resource gets a virtual host on the outbound listener (the app reaches it with HTTP_PROXY, so requests carry
// the authority with its port) and a cluster per port and DestinationRule subset; VirtualServices bound to the
// mesh (delegates merged in) replace the default route. Other hosts reach the catch-all virtual host:
// PassthroughCluster (ALLOW_ANY, Istio's default) or a 502 (REGISTRY_ONLY), as Istio's sidecars do.
import { hostMatches, type MeshService, resolveHost, type ServicePort } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, type Obj, obj, str } from "../../api/validate/checker.ts";
import type {
  ClusterConfig,
  EndpointConfig,
  ProxyConfig,
  RouteConfig,
  RouteConfiguration,
  UpstreamTlsConfig,
  VirtualHostConfig,
} from "../../proxy/config/types.ts";
import type { ProxyNode, ServiceInstance } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { mergeDelegates } from "./delegate.ts";
import {
  clusterSettings,
  findDestinationRule,
  hashPolicy,
  subsetLabels,
  trafficPolicy,
} from "./destination-rule.ts";
import { localityLb, readLocalityLbSetting } from "./locality.ts";
import {
  type ClientTlsMode,
  ENDPOINT_TLS_MODE,
  type MeshTls,
  meshSni,
  meshTransportSocket,
  mutualTls,
  spiffeId,
  usesMeshTls,
} from "./mtls.ts";
import {
  BLACKHOLE_CLUSTER,
  INBOUND_PORT,
  OUTBOUND_LISTENER,
  OUTBOUND_PORT,
  outboundCluster,
  PASSTHROUGH_CLUSTER,
} from "./names.ts";
import {
  type Candidate,
  NO_VANTAGE,
  type Placed,
  splitHorizon,
  type Vantage,
  vantageKey,
} from "./networks.ts";
import type { RenderMemo } from "./render-memo.ts";
import { type EgressScope, egressScope, sidecarEgress } from "./sidecar-scope.ts";
import { type RouteContext, translateHttpRoutes } from "./virtual-service.ts";

/**
 * What a sidecar can reach: the outbound route table and clusters. It depends only on the proxy's namespace, on
 * those of its labels that some VirtualService's sourceLabels names, and on which Sidecar resource applies
 * (sidecar-renderer.ts shares it between proxies on that basis).
 */
export interface OutboundScope {
  readonly routeConfigs: readonly RouteConfiguration[];
  readonly clusters: readonly ClusterConfig[];
}

export function sidecarConfig(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  scope: OutboundScope = outboundScope(registry, proxy, { egress: sidecarEgress(registry, proxy) }),
  own: SidecarOwnParts = sidecarOwnParts(proxy),
): ProxyConfig {
  return {
    node: own.node,
    listeners: own.listeners,
    routeConfigs: scope.routeConfigs,
    clusters: scope.clusters,
  };
}

/** What a sidecar's config holds of its own, apart from its scope: its identity and its outbound listener. */
export interface SidecarOwnParts {
  readonly node: NonNullable<ProxyConfig["node"]>;
  readonly listeners: ProxyConfig["listeners"];
}

export function sidecarOwnParts(proxy: ProxyNode, trustDomain = "cluster.local"): SidecarOwnParts {
  return {
    node: {
      id: proxy.id,
      ...(proxy.cluster ? { cluster: proxy.cluster } : {}),
      metadata: nodeMetadata(proxy, trustDomain),
    },
    listeners: [
      {
        name: OUTBOUND_LISTENER,
        address: proxy.appAddress ?? "127.0.0.1",
        port: OUTBOUND_PORT,
        filterChains: [
          {
            name: "outbound_http",
            filter: {
              type: "http",
              routeConfigName: "outbound",
              mode: "http_proxy",
              reporter: "source",
              statPrefix: "outbound_0.0.0.0_15001",
            },
          },
        ],
      },
    ],
  };
}

/**
 * What a proxy reports of itself in telemetry, with Istio's names: its labels, namespace, workload (the node
 * id: Istio names a pod without an owner by itself), canonical service and revision (Istio's label
 * precedence), and its identity (destination_principal at the server, source_principal at the client).
 */
export function nodeMetadata(
  proxy: Pick<ProxyNode, "id" | "namespace" | "labels" | "serviceAccount" | "cluster">,
  trustDomain: string,
): Record<string, string> {
  const l = proxy.labels;
  return {
    ...l,
    namespace: proxy.namespace,
    workload: proxy.id,
    canonical_service:
      l["service.istio.io/canonical-name"] ?? l["app.kubernetes.io/name"] ?? l.app ?? proxy.id,
    canonical_revision:
      l["service.istio.io/canonical-revision"] ?? l["app.kubernetes.io/version"] ?? l.version ?? "latest",
    ...(proxy.cluster ? { cluster: proxy.cluster } : {}),
    ...(proxy.serviceAccount
      ? { principal: spiffeId(trustDomain, proxy.namespace, proxy.serviceAccount) }
      : {}),
  };
}

export interface ScopeOptions {
  /** What the applicable Sidecar imports, and the outbound traffic policy. Default: everything, ALLOW_ANY. */
  readonly egress?: EgressScope;
  /** What the previous render made, to reuse what did not change (with `key`, naming this scope). */
  readonly memo?: RenderMemo;
  readonly key?: string;
  /** The mesh's mTLS settings; without them no cluster uses mutual TLS. */
  readonly mesh?: MeshTls;
  /** Where the proxies of the scope stand (network, cluster, locality). */
  readonly vantage?: Vantage;
}

/** The mesh's services as one proxy namespace sees them: visible ones, one per host (Istio's precedence). */
export function visibleServices(registry: ServiceRegistry, namespace: string): MeshService[] {
  const byHost = new Map<string, MeshService>();
  for (const s of registry.services) {
    if (!visible(s.resource, s.exportTo, namespace)) continue;
    // A wildcard host can only be served by passing traffic through (resolution NONE).
    if (s.host.includes("*") && !passthroughEntry(s)) continue;
    const seen = byHost.get(s.host);
    // The same host from two namespaces: the client's own wins, then a Kubernetes Service over a ServiceEntry.
    if (
      !seen ||
      (s.namespace === namespace && seen.namespace !== namespace) ||
      (seen.namespace !== namespace && seen.resource.kind !== "Service" && s.resource.kind === "Service")
    )
      byHost.set(s.host, s);
  }
  return [...byHost.values()];
}

export function outboundScope(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  options: ScopeOptions = {},
): OutboundScope {
  const egress = options.egress ?? egressScope(undefined, "ALLOW_ANY", proxy.namespace);
  const memo = options.memo;
  const ctx = registry.context;
  const all = visibleServices(registry, proxy.namespace);
  const rules = ctx.of("DestinationRule");
  const virtualServices = selectVirtualServices(
    ctx
      .of("VirtualService")
      .filter(
        (vs) =>
          boundToMesh(vs) &&
          visibleResource(vs, proxy.namespace) &&
          egress.importsVirtualService(vs, vsHosts(vs)),
      ),
    proxy.namespace,
  );
  // As Istio's most specific host match: a service goes to the VirtualService with its exact host, else to the
  // one with the longest wildcard covering it; among equals, the first in selection order. Each
  // VirtualService's hosts are resolved once per scope rather than once per service.
  const exactVs = new Map<string, number>();
  const wildcardVs: Array<[number, string]> = [];
  virtualServices.forEach((v, i) => {
    for (const h of vsHosts(v)) {
      if (h.includes("*")) wildcardVs.push([i, h]);
      else if (!exactVs.has(h)) exactVs.set(h, i);
    }
  });
  const virtualServiceFor = (host: string): Resource | undefined => {
    const exact = host.includes("*") ? undefined : exactVs.get(host);
    if (exact !== undefined) return virtualServices[exact];
    let best: [number, string] | undefined;
    for (const [i, h] of wildcardVs)
      if (hostMatches(h, host) && (best === undefined || h.length > best[1].length)) best = [i, h];
    if (best !== undefined) return virtualServices[best[0]];
    // A wildcard service host (a NONE ServiceEntry): the first VirtualService with an exact host it covers.
    return host.includes("*")
      ? virtualServices.find((v) => vsHosts(v).some((h) => hostMatches(h, host)))
      : undefined;
  };
  const find = virtualServiceFinder(registry);
  const specs = new Map(virtualServices.map((vs) => [vs, mergeDelegates(vs, find)]));
  const byHost = new Map<string, MeshService>(all.map((s) => [s.host, s]));
  const routeOptions = routeContextFactory(registry, byHost, rules, proxy, new Set(["mesh"]));

  const virtualHosts: VirtualHostConfig[] = [];
  const clusters: ClusterConfig[] = [...SPECIAL_CLUSTERS];
  for (const s of all) {
    const rule = findDestinationRule(rules, s.host, proxy.namespace, s.namespace);
    for (const p of s.ports) {
      // As Istio's sidecar scope: a port the Sidecar does not import gets neither routes nor clusters.
      if (!egress.importsService(s, p.number)) continue;
      const vs = virtualServiceFor(s.host);
      let routes: RouteConfig[] = [];
      if (vs && isHttpPort(p))
        routes = translateHttpRoutes(
          specs.get(vs)!,
          `${vs.name}.${vs.namespace}`,
          routeOptions(vs, p.number),
        );
      else if (vs) routes = tcpRoutes(specs.get(vs)!, vs.namespace, p.number, routeOptions(vs, p.number));
      const vhostKey = `vhost\u0001${proxy.namespace}\u0001${s.host}\u0001${p.number}\u0001${ruleName(rule)}`;
      if (routes.length === 0) {
        // A VirtualService without a route for this port leaves the service's default route (Istio). It
        // depends only on the service and the rule, so it is reused while they are the same objects.
        // (A new ServiceEntry object whose endpoints alone changed yields the same route: kept by content.)
        const build = () => defaultVirtualHost(s, p.number, proxy.namespace, rule);
        virtualHosts.push(memo ? memo.get(vhostKey, [s.resource, rule?.resource], build, true) : build());
      } else {
        const vhost: VirtualHostConfig = {
          name: `${s.host}:${p.number}`,
          domains: domains(s, p.number, proxy.namespace),
          routes,
        };
        // Routes depend on more than their VirtualService (other services' ports and rules): rebuilt, and kept
        // as the same object only when they come out the same.
        virtualHosts.push(memo ? memo.same(`${vhostKey}\u0001${options.key ?? ""}`, vhost) : vhost);
      }
      clusters.push(...serviceClusters(registry, s, p.number, rule, memo, options.mesh, options.vantage));
    }
  }
  virtualHosts.push(egress.policy === "REGISTRY_ONLY" ? BLOCK_ALL : ALLOW_ANY);
  if (!memo || options.key === undefined)
    return { routeConfigs: [{ name: "outbound", virtualHosts }], clusters };
  // The lists keep their identity while they hold the same objects: the push side then has nothing to diff.
  return {
    routeConfigs: memo.get(`routes\u0001${options.key}`, virtualHosts, () => [
      { name: "outbound", virtualHosts },
    ]),
    clusters: memo.list(`clusters\u0001${options.key}`, clusters),
  };
}

/** Names the rule in memo keys, so that scopes seeing different rules for a host do not evict each other. */
function ruleName(rule: ReturnType<typeof findDestinationRule>): string {
  return rule ? `${rule.resource.namespace}/${rule.resource.name}` : "";
}

function defaultVirtualHost(
  s: MeshService,
  port: number,
  clientNs: string,
  rule: ReturnType<typeof findDestinationRule>,
): VirtualHostConfig {
  const h = hashPolicy(trafficPolicy(rule, port, ""));
  return {
    name: `${s.host}:${port}`,
    domains: domains(s, port, clientNs),
    routes: [
      {
        name: "default",
        match: { prefix: "/" },
        route: { cluster: outboundCluster(s.host, port), ...(h ? { hashPolicy: h } : {}) },
      },
    ],
  };
}

/**
 * Whether a service port carries HTTP (Istio's protocol selection: the port's protocol or appProtocol, else its
 * name's prefix; unknown is sniffed as HTTP in Istio, and taken as HTTP here).
 */
export function isHttpPort(p: ServicePort): boolean {
  const proto = (p.protocol ?? p.name?.split("-")[0] ?? "").toUpperCase();
  return !NON_HTTP.has(proto);
}

const NON_HTTP = new Set(["HTTPS", "TLS", "TCP", "MONGO", "MYSQL", "REDIS", "UDP"]);

/**
 * A non-HTTP port reached through the outbound HTTP proxy (CONNECT): the first tcp or tls rule of the
 * VirtualService that applies to the port becomes one route to its destination (the SNI of tls matches cannot be
 * seen before the tunnel; weighted destinations keep their weights).
 */
function tcpRoutes(spec: Obj, namespace: string, port: number, ctx: RouteContext): RouteConfig[] {
  for (const r of [...arr(spec.tls), ...arr(spec.tcp)]) {
    const rule = obj(r);
    const matches = arr(rule?.match)
      .map(obj)
      .filter((m): m is Obj => m !== undefined);
    const applies =
      matches.length === 0 ||
      matches.some((m) => {
        const mp = typeof m.port === "number" ? m.port : 0;
        const gws = arr(m.gateways).filter((g): g is string => typeof g === "string");
        return (mp === 0 || mp === port) && (gws.length === 0 || gws.includes("mesh"));
      });
    if (!rule || !applies) continue;
    const dests = arr(rule.route)
      .map(obj)
      .filter((d): d is Obj => d !== undefined);
    const weighted = dests.flatMap((d) => {
      const dest = obj(d.destination);
      const host = str(dest?.host);
      if (!host) return [];
      const fqdn = resolveHost(host, namespace);
      const p = num(obj(dest?.port)?.number) ?? ctx.onlyPort(fqdn) ?? port;
      return [
        {
          name: outboundCluster(fqdn, p, str(dest?.subset) ?? ""),
          weight: num(d.weight) ?? (dests.length === 1 ? 100 : 0),
        },
      ];
    });
    if (weighted.length === 0 || weighted.every((w) => w.weight === 0)) continue;
    return [
      {
        name: "tcp",
        match: { prefix: "/" },
        route: weighted.length === 1 ? { cluster: weighted[0]!.name } : { weightedClusters: weighted },
      },
    ];
  }
  return [];
}

/** The cluster of a service port and one per subset of its DestinationRule. */
export function serviceClusters(
  registry: ServiceRegistry,
  s: MeshService,
  port: number,
  rule: ReturnType<typeof findDestinationRule>,
  memo?: RenderMemo,
  mesh?: MeshTls,
  vantage: Vantage = NO_VANTAGE,
): readonly ClusterConfig[] {
  const build = () => {
    const out = [cluster(registry, s, port, "", rule, mesh, vantage)];
    for (const sub of arr(rule?.spec.subsets)) {
      const name = str(obj(sub)?.name);
      if (name) out.push(cluster(registry, s, port, name, rule, mesh, vantage));
    }
    return out;
  };
  // A service port's clusters depend on its definition, its DestinationRule, its instances, the mesh's mTLS
  // settings (trust domain, PeerAuthentications) and, across networks and localities, where the proxy stands
  // and the mesh's topology; nothing else.
  return memo
    ? memo.get(
        `clusters\u0001${s.host}\u0001${port}\u0001${ruleName(rule)}\u0001${vantageKey(vantage)}`,
        [s.resource, rule?.resource, registry.instanceList(s.host, port), mesh?.key, registry.topology],
        build,
      )
    : build();
}

/** Builds the RouteContext for a VirtualService's routes on a port, as one proxy sees them. */
export function routeContextFactory(
  registry: ServiceRegistry,
  byHost: ReadonlyMap<string, MeshService>,
  rules: readonly Resource[],
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  gateways: ReadonlySet<string>,
): (vs: Resource, port: number) => RouteContext {
  const onlyPort = (host: string) => {
    const s = byHost.get(host) ?? registry.services.find((x) => x.host === host);
    return s && s.ports.length === 1 ? s.ports[0]!.number : undefined;
  };
  const hp = (host: string, port: number, subset: string) => {
    const s = byHost.get(host);
    const rule = findDestinationRule(rules, host, proxy.namespace, s?.namespace ?? proxy.namespace);
    return hashPolicy(trafficPolicy(rule, port, subset));
  };
  return (vs, port) => ({
    namespace: vs.namespace,
    port,
    sourceLabels: proxy.labels,
    sourceNamespace: proxy.namespace,
    gateways,
    onlyPort,
    hashPolicy: hp,
  });
}

/** Looks VirtualServices up by namespace and name (for delegates). */
export function virtualServiceFinder(
  registry: ServiceRegistry,
): (ns: string, name: string) => Resource | undefined {
  let index: Map<string, Resource> | undefined;
  return (ns, name) => {
    index ??= new Map(registry.context.of("VirtualService").map((r) => [`${r.namespace}/${r.name}`, r]));
    return index.get(`${ns}/${name}`);
  };
}

/** Istio's catch-all outbound routes: ALLOW_ANY passes unknown hosts through, REGISTRY_ONLY answers 502. */
const ALLOW_ANY: VirtualHostConfig = {
  name: "allow_any",
  domains: ["*"],
  routes: [{ name: "allow_any", match: { prefix: "/" }, route: { cluster: PASSTHROUGH_CLUSTER } }],
};
const BLOCK_ALL: VirtualHostConfig = {
  name: "block_all",
  domains: ["*"],
  routes: [{ name: "block_all", match: { prefix: "/" }, directResponse: { status: 502 } }],
};
/** Istio's PassthroughCluster (to the request's own destination) and BlackHoleCluster (no endpoints). */
const SPECIAL_CLUSTERS: readonly ClusterConfig[] = [
  { name: PASSTHROUGH_CLUSTER, type: "original_dst", endpoints: [] },
  { name: BLACKHOLE_CLUSTER, endpoints: [] },
];

/** A ServiceEntry with resolution NONE: traffic goes where the client sent it. */
function passthroughEntry(s: MeshService): boolean {
  return s.resource.kind === "ServiceEntry" && str(obj(s.resource.object.spec)?.resolution) === "NONE";
}

function cluster(
  registry: ServiceRegistry,
  s: MeshService,
  port: number,
  subset: string,
  rule: ReturnType<typeof findDestinationRule>,
  mesh: MeshTls | undefined,
  vantage: Vantage,
): ClusterConfig {
  const labels = subset === "" ? undefined : subsetLabels(rule, subset);
  const settings = clusterSettings(trafficPolicy(rule, port, subset));
  const protocol = s.ports.find((p) => p.number === port);
  const h2 = /^(grpc|http2|h2c)/i.test(protocol?.protocol ?? protocol?.name ?? "");
  if (passthroughEntry(s))
    return {
      name: outboundCluster(s.host, port, subset),
      type: "original_dst",
      ...settings,
      ...(h2 ? { protocol: "http2" as const } : {}),
      endpoints: [],
    };
  const policy = trafficPolicy(rule, port, subset);
  const tls = originatedTls(policy, s.host);
  const mode = clientTlsMode(policy);
  const internal = str(obj(s.resource.object.spec)?.location) !== "MESH_EXTERNAL";
  // A DestinationRule's ISTIO_MUTUAL applies to every endpoint (Istio's); auto mTLS to those with a sidecar.
  const allMutual = mode === "ISTIO_MUTUAL" && internal && mesh !== undefined;
  const identities = new Set<string>();
  const identify = (i: ServiceInstance) => {
    for (const td of [mesh!.trustDomain, ...mesh!.aliases])
      identities.add(spiffeId(td, s.namespace, i.serviceAccount || "default"));
  };
  // An instance that is not ready is sent to no proxy (Envoy would hold it as unhealthy and skip it).
  const candidates: Candidate[] = registry
    .instances(s.host, port, labels)
    .filter((i) => i.healthy !== false)
    .map((i) => {
      // Mutual TLS goes to the instance's sidecar (its inbound port), which forwards to the app's port.
      const sidecar = internal && usesMeshTls(mesh, mode, s.namespace, i);
      if (sidecar || allMutual) identify(i);
      return {
        instance: i,
        mutual: sidecar,
        endpoint: {
          address: i.address,
          port: sidecar ? INBOUND_PORT : i.port,
          ...(i.weight !== undefined ? { weight: i.weight } : {}),
          labels: sidecar ? { ...i.labels, [ENDPOINT_TLS_MODE]: "istio" } : { ...i.labels },
          ...(i.locality ? { locality: i.locality } : {}),
        },
      };
    });
  const endpoints = withLocality(splitHorizon(candidates, vantage, registry), vantage, policy);
  let mutual: UpstreamTlsConfig | undefined;
  if (identities.size > 0) {
    const drTls = obj(policy.tls);
    // The rule's own sni and subjectAltNames, when ISTIO_MUTUAL names them; else Istio's automatic ones.
    const sans = allMutual
      ? arr(drTls?.subjectAltNames).filter((x): x is string => typeof x === "string")
      : [];
    mutual = mutualTls(
      (allMutual ? str(drTls?.sni) : undefined) || meshSni(s.host, port, subset),
      sans.length > 0 ? sans : [...identities].sort(),
      h2,
    );
  }
  return {
    name: outboundCluster(s.host, port, subset),
    ...settings,
    ...(h2 ? { protocol: "http2" as const } : {}),
    ...(tls ? { tls } : {}),
    ...(mutual && allMutual ? { tls: mutual } : {}),
    ...(mutual && !allMutual ? { transportSocketMatches: [meshTransportSocket(mutual)] } : {}),
    endpoints,
  };
}

/**
 * Istio's locality load balancing: each endpoint's priority (failover, failoverPriority; only with outlier
 * detection, which is what moves traffic off a failing locality) and weight (distribute), from where the proxy
 * stands. Endpoints a `distribute` gives no share are left out.
 */
function withLocality(placed: readonly Placed[], vantage: Vantage, policy: Obj): EndpointConfig[] {
  if (placed.length === 0) return [];
  const setting = readLocalityLbSetting(obj(policy.loadBalancer)?.localityLbSetting);
  const ranked = localityLb(
    vantage,
    placed.map((p) => ({
      locality: p.locality,
      network: p.network,
      cluster: p.cluster,
      labels: p.endpoint.labels,
      weight: p.endpoint.weight ?? 1,
    })),
    setting,
    obj(policy.outlierDetection) !== undefined,
  );
  const out: EndpointConfig[] = [];
  placed.forEach((p, i) => {
    const { priority, weight } = ranked[i]!;
    if (weight === 0) return;
    const same = priority === 0 && weight === (p.endpoint.weight ?? 1);
    out.push(
      same
        ? p.endpoint
        : {
            ...p.endpoint,
            ...(weight !== 1 || p.endpoint.weight !== undefined ? { weight } : {}),
            ...(priority > 0 ? { priority } : {}),
          },
    );
  });
  return out;
}

/** How a DestinationRule's tls asks clients to connect: AUTO when it says nothing. */
function clientTlsMode(policy: Obj): ClientTlsMode {
  const mode = str(obj(policy.tls)?.mode);
  if (mode === "SIMPLE" || mode === "MUTUAL") return "ORIGINATE";
  if (mode === "ISTIO_MUTUAL" || mode === "DISABLE") return mode;
  return "AUTO";
}

/**
 * TLS origination (a DestinationRule's tls mode SIMPLE): SNI is the rule's or else the service's host (Istio's
 * auto SNI); the server is verified against the system's CAs unless insecureSkipVerify. caCertificates and
 * credentialName are not read yet (MUTUAL and ISTIO_MUTUAL need them).
 */
function originatedTls(policy: Obj, host: string): UpstreamTlsConfig | undefined {
  const tls = obj(policy.tls);
  if (str(tls?.mode) !== "SIMPLE") return undefined;
  return {
    sni: str(tls?.sni) || host,
    ...(tls?.insecureSkipVerify === true ? { insecureSkipVerify: true } : {}),
  };
}

/** The authorities a client may use for a service port: FQDN, and short names within its namespace. */
function domains(s: MeshService, port: number, clientNs: string): string[] {
  const names = [s.host];
  const m = /^([^.]+)\.([^.]+)\.svc\.(.+)$/.exec(s.host);
  if (m) {
    names.push(`${m[1]}.${m[2]}`, `${m[1]}.${m[2]}.svc`);
    if (m[2] === clientNs) names.push(m[1]!);
  }
  return names.flatMap((n) => (port === 80 ? [n, `${n}:80`] : [`${n}:${port}`]));
}

export function vsHosts(vs: Resource): string[] {
  return arr(obj(vs.object.spec)?.hosts)
    .filter((h): h is string => typeof h === "string")
    .map((h) => resolveHost(h, vs.namespace));
}

/**
 * VirtualServices in the order Istio's SelectVirtualServices gives a proxy in `namespace`: those private to its
 * namespace (exportTo "."), then those exported to it by name, then public ones; load order within each.
 */
function selectVirtualServices(list: readonly Resource[], namespace: string): Resource[] {
  const rank = (vs: Resource): number => {
    const exportTo = arr(obj(vs.object.spec)?.exportTo).filter((x): x is string => typeof x === "string");
    if (exportTo.length === 0 || exportTo.includes("*")) return 2;
    if (vs.namespace === namespace && exportTo.includes(".")) return 0;
    return exportTo.includes(namespace) ? 1 : 2;
  };
  return list
    .map((vs, i) => [rank(vs), i, vs] as const)
    .sort((a, b) => a[0] - b[0] || a[1] - b[1])
    .map(([, , vs]) => vs);
}

function boundToMesh(vs: Resource): boolean {
  const gw = arr(obj(vs.object.spec)?.gateways).filter((g): g is string => typeof g === "string");
  return gw.length === 0 || gw.includes("mesh");
}

export function visibleResource(r: Resource, ns: string): boolean {
  return visible(
    r,
    arr(obj(r.object.spec)?.exportTo).filter((x): x is string => typeof x === "string"),
    ns,
  );
}

function visible(r: Resource, exportTo: readonly string[], ns: string): boolean {
  if (exportTo.length === 0 || exportTo.includes("*")) return true;
  if (exportTo.includes("~")) return false;
  return exportTo.includes(ns) || (exportTo.includes(".") && r.namespace === ns);
}
