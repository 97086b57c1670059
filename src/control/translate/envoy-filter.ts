// EnvoyFilter -> the proxy's local rate limit. Which EnvoyFilters apply to a proxy is Istio's rule: those of
// the root namespace (istio-system) and of the proxy's namespace, without workloadSelector or with one its
// labels match, in Istio's order (priority, creation time, name). What of each one is applied is read by the
// api layer (src/api/analyze/analyzers/envoy-filter.ts, whose analyzer reports the rest): an HTTP_FILTER
// patch inserting envoy.filters.http.local_ratelimit puts the filter, with its bucket if it has one, into the
// HTTP chains of the listeners it matches (GATEWAY: the gateway's listeners, by port or name;
// SIDECAR_OUTBOUND: the sidecar's outbound listener; ANY: both), and an HTTP_ROUTE patch merging the filter's
// typed_per_filter_config gives the routes it matches a bucket of their own, on listeners the filter is in
// (Envoy ignores a per-route config of a filter not in the chain); only routes that forward get one (the
// proxy's per-route bucket is part of the route action: redirects and direct responses, such as httpsRedirect
// or REGISTRY_ONLY's block_all, have none). Two listener patches on one chain: the first with a bucket wins
// (Envoy would run both); two route patches on one route: the last wins (MERGE). Each chain's and each
// route's bucket is its own, as in Envoy.
import {
  envoyFilterOrder,
  envoyFilterSelects,
  type ListenerRateLimitPatch,
  type RateLimitPatch,
  type RouteRateLimitPatch,
  readEnvoyFilter,
} from "../../api/analyze/analyzers/envoy-filter.ts";
import type { Resource } from "../../api/resource.ts";
import type {
  ListenerConfig,
  LocalRateLimit,
  ProxyConfig,
  RouteConfig,
  RouteConfiguration,
  VirtualHostConfig,
} from "../../proxy/config/types.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { OUTBOUND_LISTENER, OUTBOUND_PORT } from "./names.ts";
import type { RenderMemo } from "./render-memo.ts";
import type { OutboundScope, SidecarOwnParts } from "./sidecar.ts";

export type ProxySide = "GATEWAY" | "SIDECAR_OUTBOUND";

/** The local rate limit patches that apply to one proxy, on its side, in Istio's order. */
export interface ProxyRateLimits {
  /** The EnvoyFilters they come from. */
  readonly filters: readonly Resource[];
  /** Their names ("" when none): part of the renderer's cache keys. */
  readonly key: string;
  readonly listener: readonly ListenerRateLimitPatch[];
  readonly route: readonly RouteRateLimitPatch[];
}

const NONE: ProxyRateLimits = { filters: [], key: "", listener: [], route: [] };

const onSide = (p: RateLimitPatch, side: ProxySide) => p.context === "ANY" || p.context === side;

export function proxyRateLimits(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  side: ProxySide,
): ProxyRateLimits {
  const all = registry.context.of("EnvoyFilter");
  if (all.length === 0) return NONE;
  const filters = all
    .filter((r) => envoyFilterSelects(r, proxy) && readEnvoyFilter(r).patches.some((p) => onSide(p, side)))
    .sort(envoyFilterOrder);
  if (filters.length === 0) return NONE;
  const patches = filters.flatMap((r) => readEnvoyFilter(r).patches.filter((p) => onSide(p, side)));
  return {
    filters,
    key: filters.map((r) => `${r.namespace}/${r.name}`).join(","),
    listener: patches.filter((p): p is ListenerRateLimitPatch => p.kind === "listener"),
    route: patches.filter((p): p is RouteRateLimitPatch => p.kind === "route"),
  };
}

/** Whether the filter is in a listener's HTTP chains, and their bucket (the first matching patch with one). */
function listenerLimit(
  rl: ProxyRateLimits,
  name: string,
  port: number,
): { inserted: boolean; limit: LocalRateLimit | undefined } {
  let inserted = false;
  let limit: LocalRateLimit | undefined;
  for (const p of rl.listener) {
    if (p.portNumber !== undefined && p.portNumber !== port) continue;
    if (p.listenerName !== undefined && p.listenerName !== name) continue;
    inserted = true;
    limit ??= p.limit && { ...p.limit };
  }
  return { inserted, limit };
}

function withChainLimit(l: ListenerConfig, limit: LocalRateLimit | undefined): ListenerConfig {
  if (!limit) return l;
  return {
    ...l,
    filterChains: l.filterChains.map((c) =>
      c.filter.type === "http" ? { ...c, filter: { ...c.filter, localRateLimit: limit } } : c,
    ),
  };
}

/** What a route patch's routeConfiguration match is compared with. */
interface RouteConfigInfo {
  readonly name: string;
  readonly port: number | undefined;
  readonly portName?: string;
  readonly gateway?: string;
}

/** The buckets of a route table's routes, or undefined when no patch matches any of them. */
function patchVirtualHosts(
  vhosts: readonly VirtualHostConfig[],
  patches: readonly RouteRateLimitPatch[],
  infoOf: (vh: VirtualHostConfig) => RouteConfigInfo | undefined,
): VirtualHostConfig[] | undefined {
  if (patches.length === 0) return undefined;
  let changed = false;
  const out = vhosts.map((vh) => {
    const info = infoOf(vh);
    if (!info) return vh;
    const applicable = patches.filter(
      (p) =>
        (p.portNumber === undefined || p.portNumber === info.port) &&
        (p.portName === undefined || p.portName === info.portName) &&
        (p.gateway === undefined || p.gateway === info.gateway) &&
        (p.routeConfigName === undefined || p.routeConfigName === info.name) &&
        (p.vhostName === undefined || p.vhostName === vh.name) &&
        (p.domainName === undefined || vh.domains.includes(p.domainName)),
    );
    if (applicable.length === 0) return vh;
    let routesChanged = false;
    const routes = vh.routes.map((r) => {
      // The proxy's per-route bucket is part of the route action: redirects and direct responses have none.
      if (r.route === undefined) return r;
      let limit: LocalRateLimit | undefined;
      // MERGE: a later patch replaces an earlier one's config.
      for (const p of applicable) if (routeMatches(p, r)) limit = p.limit;
      if (!limit) return r;
      routesChanged = true;
      return { ...r, route: { ...r.route, localRateLimit: { ...limit } } } satisfies RouteConfig;
    });
    if (!routesChanged) return vh;
    changed = true;
    return { ...vh, routes };
  });
  return changed ? out : undefined;
}

function routeMatches(p: RouteRateLimitPatch, r: RouteConfig): boolean {
  return (
    (p.routeName === undefined || p.routeName === r.name) && (p.action === "ANY" || p.action === "ROUTE")
  );
}

/**
 * A gateway's listeners and route tables with the rate limits applied. Route tables are named as Istio's:
 * "http.PORT" and "https.PORT.PORTNAME.GATEWAY.NAMESPACE" (gateway.ts).
 */
export function applyGatewayRateLimits<T extends Pick<ProxyConfig, "listeners" | "routeConfigs">>(
  cfg: T,
  rl: ProxyRateLimits,
): T {
  if (rl.listener.length === 0) return cfg;
  const withFilter = new Set<number>();
  const listeners = cfg.listeners.map((l) => {
    const { inserted, limit } = listenerLimit(rl, l.name, l.port);
    if (inserted) withFilter.add(l.port);
    return withChainLimit(l, limit);
  });
  const routeConfigs = cfg.routeConfigs?.map((rc) => {
    const info = gatewayRouteConfigInfo(rc.name);
    if (info.port === undefined || !withFilter.has(info.port)) return rc;
    const vhosts = patchVirtualHosts(rc.virtualHosts, rl.route, () => info);
    return vhosts ? ({ ...rc, virtualHosts: vhosts } satisfies RouteConfiguration) : rc;
  });
  return { ...cfg, listeners, ...(routeConfigs ? { routeConfigs } : {}) };
}

/** Istio's ParseGatewayRDSRouteName: port, and for HTTPS tables the port name and the gateway ("ns/name"). */
function gatewayRouteConfigInfo(name: string): RouteConfigInfo {
  const parts = name.split(".");
  const port = /^\d+$/.test(parts[1] ?? "") ? Number(parts[1]) : undefined;
  if (parts[0] === "https" && parts.length >= 5)
    return {
      name,
      port,
      portName: parts[2]!,
      gateway: `${parts[parts.length - 1]}/${parts.slice(3, -1).join(".")}`,
    };
  return { name, port };
}

/** A sidecar's own parts with the outbound chain's bucket, when a listener patch gives it one. */
export function applySidecarListenerRateLimit(own: SidecarOwnParts, rl: ProxyRateLimits): SidecarOwnParts {
  const { limit } = listenerLimit(rl, OUTBOUND_LISTENER, OUTBOUND_PORT);
  if (!limit) return own;
  return {
    ...own,
    listeners: own.listeners.map((l) => (l.name === OUTBOUND_LISTENER ? withChainLimit(l, limit) : l)),
  };
}

/**
 * A sidecar scope with the routes' buckets, when the filter is in the outbound chain. Istio's outbound route
 * tables are named by port ("9080") and hold the virtual hosts of that port; here one table holds them all, so
 * a route patch's portNumber or name selects the virtual hosts of that port (named HOST:PORT). The result keeps
 * its identity across renders while it comes out the same (the push side then has nothing to send).
 */
export function applySidecarRouteRateLimits(
  scope: OutboundScope,
  rl: ProxyRateLimits,
  memo?: RenderMemo,
  key = "",
): OutboundScope {
  if (rl.route.length === 0 || !listenerLimit(rl, OUTBOUND_LISTENER, OUTBOUND_PORT).inserted) return scope;
  let changed = false;
  const routeConfigs = scope.routeConfigs.map((rc) => {
    const vhosts = patchVirtualHosts(rc.virtualHosts, rl.route, (vh) => {
      const m = /:(\d+)$/.exec(vh.name);
      const port = m ? Number(m[1]) : undefined;
      return { name: port === undefined ? rc.name : String(port), port };
    });
    if (!vhosts) return rc;
    changed = true;
    return { ...rc, virtualHosts: vhosts };
  });
  if (!changed) return scope;
  return {
    ...scope,
    routeConfigs: memo ? memo.same(`rate-limited-routes\u0001${key}`, routeConfigs) : routeConfigs,
  };
}
