// One sidecar's ProxyConfig from the registry and the Istio resources: the outbound side (what the app behind
// the proxy can call). Every service port visible from the proxy's namespace gets a virtual host on the
// outbound listener (the app reaches it with HTTP_PROXY, so requests carry the authority with its port) and a
// cluster per port and DestinationRule subset; VirtualServices bound to the mesh replace the default route.
import { hostMatches, type MeshService, resolveHost } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, obj, str } from "../../api/validate/checker.ts";
import type {
  ClusterConfig,
  ProxyConfig,
  RouteConfig,
  RouteConfiguration,
  VirtualHostConfig,
} from "../../proxy/config/types.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import {
  clusterSettings,
  findDestinationRule,
  hashPolicy,
  subsetLabels,
  trafficPolicy,
} from "./destination-rule.ts";
import { OUTBOUND_LISTENER, OUTBOUND_PORT, outboundCluster } from "./names.ts";
import { translateHttpRoutes } from "./virtual-service.ts";

/**
 * What a sidecar can reach: the outbound route table and clusters. It depends only on the proxy's namespace and
 * on those of its labels that some VirtualService's sourceLabels names (sidecar-renderer.ts shares it between
 * proxies on that basis).
 */
export interface OutboundScope {
  readonly routeConfigs: readonly RouteConfiguration[];
  readonly clusters: readonly ClusterConfig[];
}

export function sidecarConfig(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  scope: OutboundScope = outboundScope(registry, proxy),
): ProxyConfig {
  return {
    node: {
      id: proxy.id,
      ...(proxy.cluster ? { cluster: proxy.cluster } : {}),
      metadata: { namespace: proxy.namespace, ...proxy.labels },
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
    routeConfigs: scope.routeConfigs,
    clusters: scope.clusters,
  };
}

export function outboundScope(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
): OutboundScope {
  const ctx = registry.context;
  const services = registry.services.filter(
    (s) => !s.host.includes("*") && visible(s.resource, s.exportTo, proxy.namespace),
  );
  const rules = ctx.of("DestinationRule");
  const virtualServices = ctx
    .of("VirtualService")
    .filter((vs) => boundToMesh(vs) && visibleResource(vs, proxy.namespace));
  const byHost = new Map<string, MeshService>(services.map((s) => [s.host, s]));
  const onlyPort = (host: string) => {
    const s = byHost.get(host);
    return s && s.ports.length === 1 ? s.ports[0]!.number : undefined;
  };
  const hp = (host: string, port: number, subset: string) => {
    const s = byHost.get(host);
    const rule = findDestinationRule(rules, host, proxy.namespace, s?.namespace ?? proxy.namespace);
    return hashPolicy(trafficPolicy(rule, port, subset));
  };

  const virtualHosts: VirtualHostConfig[] = [];
  const clusters: ClusterConfig[] = [];
  for (const s of services) {
    const rule = findDestinationRule(rules, s.host, proxy.namespace, s.namespace);
    for (const p of s.ports) {
      const vs = virtualServices.find((v) => vsHosts(v).some((h) => hostMatches(h, s.host)));
      let routes: RouteConfig[];
      if (vs) {
        routes = translateHttpRoutes(obj(vs.object.spec) ?? {}, `${vs.name}.${vs.namespace}`, {
          namespace: vs.namespace,
          port: p.number,
          sourceLabels: proxy.labels,
          onlyPort,
          hashPolicy: hp,
        });
      } else {
        const h = hashPolicy(trafficPolicy(rule, p.number, ""));
        routes = [
          {
            name: "default",
            match: { prefix: "/" },
            route: { cluster: outboundCluster(s.host, p.number), ...(h ? { hashPolicy: h } : {}) },
          },
        ];
      }
      virtualHosts.push({
        name: `${s.host}:${p.number}`,
        domains: domains(s, p.number, proxy.namespace),
        routes,
      });
      clusters.push(cluster(registry, s, p.number, "", rule));
      for (const sub of arr(rule?.spec.subsets)) {
        const name = str(obj(sub)?.name);
        if (name) clusters.push(cluster(registry, s, p.number, name, rule));
      }
    }
  }
  return { routeConfigs: [{ name: "outbound", virtualHosts }], clusters };
}

function cluster(
  registry: ServiceRegistry,
  s: MeshService,
  port: number,
  subset: string,
  rule: ReturnType<typeof findDestinationRule>,
): ClusterConfig {
  const labels = subset === "" ? undefined : subsetLabels(rule, subset);
  const settings = clusterSettings(trafficPolicy(rule, port, subset));
  const protocol = s.ports.find((p) => p.number === port);
  const h2 = /^(grpc|http2|h2c)/i.test(protocol?.protocol ?? protocol?.name ?? "");
  return {
    name: outboundCluster(s.host, port, subset),
    ...settings,
    ...(h2 ? { protocol: "http2" as const } : {}),
    endpoints: registry.instances(s.host, port, labels).map((i) => ({
      address: i.address,
      port: i.port,
      ...(i.weight !== undefined ? { weight: i.weight } : {}),
      labels: { ...i.labels },
      ...(i.locality ? { locality: i.locality } : {}),
    })),
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

function vsHosts(vs: Resource): string[] {
  return arr(obj(vs.object.spec)?.hosts)
    .filter((h): h is string => typeof h === "string")
    .map((h) => resolveHost(h, vs.namespace));
}

function boundToMesh(vs: Resource): boolean {
  const gw = arr(obj(vs.object.spec)?.gateways).filter((g): g is string => typeof g === "string");
  return gw.length === 0 || gw.includes("mesh");
}

function visibleResource(r: Resource, ns: string): boolean {
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
