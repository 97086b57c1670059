// Gateways, with Istio's semantics: a proxy whose labels match a Gateway's selector (a Gateway in any
// namespace, as with PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false) is that gateway. It gets a listener per server
// port; HTTP servers share the route table "http.PORT", each HTTPS server (SIMPLE or MUTUAL TLS, certificate
// from the Secret its credentialName names in the gateway's namespace) gets its own chain, chosen by SNI, and
// table "https.PORT.PORTNAME.GATEWAY.NAMESPACE"; TCP servers and TLS servers that terminate TLS forward to the
// first tcp route of a bound VirtualService. A VirtualService binds to a gateway that its `gateways` names
// ("ns/name", or "name" in the VirtualService's namespace) and serves, on each server, the hosts its own hosts
// share with the server's ("ns/host": only VirtualServices of namespace ns, "./host": the Gateway's namespace,
// "*/host" or "host": any), most specific of each pair, each a virtual host. httpsRedirect answers every
// request of the server's hosts with a 301 to https. Clusters: every service visible from the gateway's
// namespace (Istio ignores Sidecar resources for gateways).
import { type MeshService, resolveHost, selectorMatches } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, type Obj, obj, str } from "../../api/validate/checker.ts";
import type {
  ClusterConfig,
  DownstreamTlsConfig,
  FilterChainConfig,
  ListenerConfig,
  ProxyConfig,
  RouteConfig,
  RouteConfiguration,
  VirtualHostConfig,
} from "../../proxy/config/types.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { mergeDelegates } from "./delegate.ts";
import { findDestinationRule } from "./destination-rule.ts";
import type { MeshTls } from "./mtls.ts";
import { outboundCluster } from "./names.ts";
import { NO_VANTAGE, type Vantage, vantageKey } from "./networks.ts";
import type { RenderMemo } from "./render-memo.ts";
import {
  routeContextFactory,
  serviceClusters,
  virtualServiceFinder,
  visibleResource,
  visibleServices,
  vsHosts,
} from "./sidecar.ts";
import { subsetOf } from "./sidecar-scope.ts";
import { resolveGatewayName, translateHttpRoutes } from "./virtual-service.ts";

/** The Gateways that select a proxy: a non-empty selector that its labels match. */
export function selectingGateways(
  registry: ServiceRegistry,
  labels: Readonly<Record<string, string>>,
): Resource[] {
  return registry.context.of("Gateway").filter((g) => {
    const sel = stringMap(obj(obj(g.object.spec)?.selector));
    return Object.keys(sel).length > 0 && selectorMatches(sel, labels);
  });
}

/** The clusters a gateway in `namespace` gets: every visible service port and subset. */
export function gatewayClusters(
  registry: ServiceRegistry,
  namespace: string,
  memo?: RenderMemo,
  mesh?: MeshTls,
  vantage: Vantage = NO_VANTAGE,
): readonly ClusterConfig[] {
  const rules = registry.context.of("DestinationRule");
  const out: ClusterConfig[] = [];
  for (const s of visibleServices(registry, namespace)) {
    const rule = findDestinationRule(rules, s.host, namespace, s.namespace);
    for (const p of s.ports) out.push(...serviceClusters(registry, s, p.number, rule, memo, mesh, vantage));
  }
  return memo ? memo.list(`gateway-clusters\u0001${namespace}\u0001${vantageKey(vantage)}`, out) : out;
}

interface Server {
  readonly gateway: Resource;
  /** "ns/name", as VirtualServices' gateways name it once resolved. */
  readonly gatewayName: string;
  readonly spec: Obj;
  readonly port: number;
  readonly portName: string;
  readonly protocol: string;
  readonly hosts: readonly string[];
  readonly tls: Obj | undefined;
}

const HTTP_PROTOCOLS = new Set(["HTTP", "HTTP2", "GRPC", "GRPC-WEB"]);

/** The gateway proxy's config: listeners and route tables of its Gateways' servers; clusters given. */
export function gatewayConfig(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  gateways: readonly Resource[],
  clusters: readonly ClusterConfig[],
): ProxyConfig {
  const servers: Server[] = [];
  for (const g of gateways)
    for (const x of arr(obj(g.object.spec)?.servers)) {
      const spec = obj(x);
      const port = obj(spec?.port);
      const number = num(port?.number);
      if (!spec || number === undefined) continue;
      servers.push({
        gateway: g,
        gatewayName: `${g.namespace}/${g.name}`,
        spec,
        port: number,
        portName: str(port?.name) ?? String(number),
        protocol: (str(port?.protocol) ?? "HTTP").toUpperCase(),
        hosts: arr(spec.hosts).filter((h): h is string => typeof h === "string"),
        tls: obj(spec.tls),
      });
    }
  const bound = boundVirtualServices(registry, proxy.namespace);
  const routeConfigs: RouteConfiguration[] = [];
  const listeners: ListenerConfig[] = [];
  const ports = [...new Set(servers.map((s) => s.port))].sort((a, b) => a - b);
  for (const port of ports) {
    const chains: FilterChainConfig[] = [];
    const matches = new Set<string>();
    const addChain = (c: FilterChainConfig) => {
      // Two servers with the same match (the same SNI names, or two plain-text ones) cannot both be served; the
      // first wins, as Istio keeps the first of conflicting servers.
      const key = JSON.stringify([c.match ?? {}, c.tls !== undefined]);
      if (matches.has(key)) return;
      matches.add(key);
      chains.push(c);
    };
    const onPort = servers.filter((s) => s.port === port);
    const plainHttp = onPort.filter((s) => HTTP_PROTOCOLS.has(s.protocol));
    if (plainHttp.length > 0) {
      const name = `http.${port}`;
      routeConfigs.push(httpRouteConfig(registry, proxy, name, plainHttp, bound));
      addChain({ name, filter: httpFilter(name, port) });
    }
    for (const s of onPort) {
      if (HTTP_PROTOCOLS.has(s.protocol)) continue;
      const mode = str(s.tls?.mode) ?? "PASSTHROUGH";
      const terminates = s.tls !== undefined && (mode === "SIMPLE" || mode === "MUTUAL");
      let tls: DownstreamTlsConfig | undefined;
      if (s.protocol === "HTTPS" || s.protocol === "TLS") {
        // PASSTHROUGH and ISTIO_MUTUAL need what the proxy has not (SNI routing without termination, mesh certs).
        if (!terminates) continue;
        tls = serverTls(registry, proxy.namespace, s.tls!, mode);
        if (!tls) continue;
      }
      const names = s.hosts.map(dnsPart).filter((h) => h !== "*");
      const match = tls && names.length > 0 ? { match: { serverNames: names } } : {};
      const tlsPart = tls ? { tls } : {};
      if (s.protocol === "HTTPS") {
        const name = `https.${port}.${s.portName}.${s.gateway.name}.${s.gateway.namespace}`;
        routeConfigs.push(httpRouteConfig(registry, proxy, name, [s], bound));
        addChain({ name, ...match, ...tlsPart, filter: httpFilter(name, port) });
      } else {
        const cluster = tcpCluster(s, bound, registry);
        if (cluster === undefined) continue;
        addChain({
          name: `tcp.${port}.${s.portName}.${s.gateway.name}.${s.gateway.namespace}`,
          ...match,
          ...tlsPart,
          filter: { type: "tcp", cluster, statPrefix: `outbound_0.0.0.0_${port}` },
        });
      }
    }
    if (chains.length > 0)
      listeners.push({
        name: `0.0.0.0_${port}`,
        address: proxy.appAddress ?? "127.0.0.1",
        port,
        filterChains: chains,
      });
  }
  return {
    node: {
      id: proxy.id,
      ...(proxy.cluster ? { cluster: proxy.cluster } : {}),
      metadata: { namespace: proxy.namespace, ...proxy.labels },
    },
    listeners,
    routeConfigs,
    clusters,
  };
}

function httpFilter(routeConfigName: string, port: number) {
  return {
    type: "http" as const,
    routeConfigName,
    // A gateway reports as the source of the requests it sends into the mesh, as Istio's gateways do.
    reporter: "source" as const,
    statPrefix: `outbound_0.0.0.0_${port}`,
  };
}

interface BoundVirtualService {
  readonly vs: Resource;
  readonly spec: Obj;
  /** Resolved gateway names ("ns/name"). */
  readonly gateways: ReadonlySet<string>;
  readonly hosts: readonly string[];
}

/** VirtualServices visible from the gateway's namespace that name some gateway, delegates merged in. */
function boundVirtualServices(registry: ServiceRegistry, namespace: string): BoundVirtualService[] {
  const find = virtualServiceFinder(registry);
  const out: BoundVirtualService[] = [];
  for (const vs of registry.context.of("VirtualService")) {
    const spec = obj(vs.object.spec);
    const gws = arr(spec?.gateways).filter((g): g is string => typeof g === "string");
    if (!spec || gws.length === 0 || !visibleResource(vs, namespace)) continue;
    const names = new Set(gws.map((g) => resolveGatewayName(g, vs.namespace)));
    names.delete("mesh");
    if (names.size === 0) continue;
    out.push({ vs, spec: mergeDelegates(vs, find), gateways: names, hosts: vsHosts(vs) });
  }
  return out;
}

/** The server's hosts that a VirtualService of `vsNamespace` may bind to, without their namespace part. */
function serverHostsFor(s: Server, vsNamespace: string): string[] {
  const out: string[] = [];
  for (const h of s.hosts) {
    const slash = h.indexOf("/");
    if (slash === -1) {
      out.push(h.toLowerCase());
      continue;
    }
    const ns = h.slice(0, slash);
    const name = h.slice(slash + 1).toLowerCase();
    if (ns === "*" || ns === vsNamespace || (ns === "." && s.gateway.namespace === vsNamespace))
      out.push(name);
  }
  return out;
}

function dnsPart(h: string): string {
  const slash = h.indexOf("/");
  return (slash === -1 ? h : h.slice(slash + 1)).toLowerCase();
}

/** Istio's host.Names.Intersection: for each pair that match, the more specific of the two. */
function intersect(serverHosts: readonly string[], vsHosts: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of serverHosts)
    for (const raw of vsHosts) {
      const b = raw.toLowerCase();
      const pick = subsetOf(a, b) ? a : subsetOf(b, a) ? b : undefined;
      if (pick !== undefined && !out.includes(pick)) out.push(pick);
    }
  return out;
}

function httpRouteConfig(
  registry: ServiceRegistry,
  proxy: ProxyNode,
  name: string,
  servers: readonly Server[],
  bound: readonly BoundVirtualService[],
): RouteConfiguration {
  const byHost = new Map<string, MeshService>(
    visibleServices(registry, proxy.namespace).map((s) => [s.host, s]),
  );
  const routeContext = routeContextFactory(
    registry,
    byHost,
    registry.context.of("DestinationRule"),
    proxy,
    new Set(servers.map((s) => s.gatewayName)),
  );
  const vhosts = new Map<string, { port: number; routes: RouteConfig[] }>();
  const translated = new Map<string, RouteConfig[]>();
  for (const s of servers) {
    for (const b of bound) {
      if (!b.gateways.has(s.gatewayName)) continue;
      const hosts = intersect(serverHostsFor(s, b.vs.namespace), b.hosts);
      if (hosts.length === 0) continue;
      // Routes are translated once per VirtualService and gateway (Istio's gatewayRoutes cache).
      const key = `${s.gatewayName}|${b.vs.namespace}/${b.vs.name}`;
      let routes = translated.get(key);
      if (routes === undefined) {
        routes = translateHttpRoutes(b.spec, `${b.vs.name}.${b.vs.namespace}`, {
          ...routeContext(b.vs, s.port),
          gateways: new Set([s.gatewayName]),
        });
        translated.set(key, routes);
      }
      for (const h of hosts) {
        const vh = vhosts.get(h);
        if (vh) vh.routes.push(...routes);
        else vhosts.set(h, { port: s.port, routes: [...routes] });
      }
    }
    if (s.tls?.httpsRedirect === true)
      for (const h of s.hosts.map(dnsPart))
        vhosts.set(h, {
          port: s.port,
          routes: [
            {
              name: "https_redirect",
              match: { prefix: "/" },
              redirect: { scheme: "https", port: 443, responseCode: 301 },
            },
          ],
        });
  }
  const virtualHosts: VirtualHostConfig[] = [...vhosts].map(([h, v]) => ({
    name: `${h}:${v.port}`,
    domains: [h],
    routes: v.routes,
  }));
  return { name, virtualHosts };
}

/** The cluster of the first tcp route of a VirtualService bound to the server that applies to its port. */
function tcpCluster(
  s: Server,
  bound: readonly BoundVirtualService[],
  registry: ServiceRegistry,
): string | undefined {
  for (const b of bound) {
    if (!b.gateways.has(s.gatewayName)) continue;
    if (intersect(serverHostsFor(s, b.vs.namespace), b.hosts).length === 0) continue;
    for (const r of arr(b.spec.tcp)) {
      const rule = obj(r);
      const matches = arr(rule?.match)
        .map(obj)
        .filter((m): m is Obj => m !== undefined);
      const applies =
        matches.length === 0 ||
        matches.some((m) => {
          const port = num(m.port);
          if (port !== undefined && port !== 0 && port !== s.port) return false;
          const gws = arr(m.gateways).filter((g): g is string => typeof g === "string");
          return gws.length === 0 || gws.some((g) => resolveGatewayName(g, b.vs.namespace) === s.gatewayName);
        });
      if (!applies) continue;
      // The proxy's TCP filter has one cluster: weighted TCP destinations are not split (the first is used).
      const dest = obj(obj(arr(rule?.route)[0])?.destination);
      if (!dest || !str(dest.host)) continue;
      const host = resolveHost(str(dest.host)!, b.vs.namespace);
      const svc = registry.services.find((x) => x.host === host);
      const port =
        num(obj(dest.port)?.number) ?? (svc && svc.ports.length === 1 ? svc.ports[0]!.number : s.port);
      return outboundCluster(host, port, str(dest.subset) ?? "");
    }
  }
  return undefined;
}

/**
 * The server's certificate from the Secret its credentialName names, in the gateway's namespace (Istio's
 * SDS for gateways): tls.crt / tls.key (or cert / key), and for MUTUAL the CA from ca.crt (or cacert) or the
 * NAME-cacert Secret. undefined when it is missing: Istio leaves such a server out too.
 */
function serverTls(
  registry: ServiceRegistry,
  namespace: string,
  tls: Obj,
  mode: string,
): DownstreamTlsConfig | undefined {
  const credential = str(tls.credentialName);
  if (!credential) return undefined;
  const secret = (name: string) =>
    registry.context.of("Secret").find((r) => r.namespace === namespace && r.name === name);
  const data = secretData(secret(credential));
  const cert = data["tls.crt"] ?? data.cert;
  const key = data["tls.key"] ?? data.key;
  if (!cert || !key) return undefined;
  let ca: string | undefined;
  if (mode === "MUTUAL") {
    const caData = secretData(secret(`${credential}-cacert`));
    ca = data["ca.crt"] ?? data.cacert ?? caData["ca.crt"] ?? caData.cacert;
    if (!ca) return undefined;
  }
  return {
    certificateChain: cert,
    privateKey: key,
    ...(ca ? { validationContext: ca, requireClientCertificate: true } : {}),
  };
}

function secretData(r: Resource | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!r) return out;
  for (const [k, v] of Object.entries(obj(r.object.data) ?? {}))
    if (typeof v === "string") out[k] = Buffer.from(v, "base64").toString("utf8");
  for (const [k, v] of Object.entries(obj(r.object.stringData) ?? {})) if (typeof v === "string") out[k] = v;
  return out;
}

function stringMap(v: unknown): Record<string, string> {
  const o = obj(v);
  const out: Record<string, string> = {};
  if (o) for (const [k, x] of Object.entries(o)) if (typeof x === "string") out[k] = x;
  return out;
}
