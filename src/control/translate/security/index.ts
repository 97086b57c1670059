// Which AuthorizationPolicies and RequestAuthentications apply to a proxy (Istio's scoping: the root
// namespace's selector-less policies mesh-wide, a root-namespace selector on matching workloads of every
// namespace, the proxy's namespace without selector, or with one its labels match; targetRef policies are for
// Gateway API targets and apply to none of these), and the security filters of one chain:
// httpSecurity(registry, proxy, port) for an HTTP connection manager, tcpSecurity for a TCP proxy chain.
import { selectorMatches } from "../../../api/analyze/context.ts";
import type { Resource } from "../../../api/resource.ts";
import { obj } from "../../../api/validate/checker.ts";
import type {
  FilterChainConfig,
  HttpConnectionManagerConfig,
  ProxyConfig,
  TcpProxyConfig,
} from "../../../proxy/config/types.ts";
import type { ProxyNode } from "../../model.ts";
import type { ServiceRegistry } from "../../registry/registry.ts";
import { authorizationFilters, type ExtAuthzProvider } from "./authorization.ts";
import { jwtAuthnConfig } from "./request-authentication.ts";

export { authorizationFilters, type ExtAuthzProvider } from "./authorization.ts";
export { jwtAuthnConfig } from "./request-authentication.ts";

export interface SecurityOptions {
  /** Istio's root namespace. Default istio-system. */
  readonly rootNamespace?: string;
  /** CUSTOM providers (MeshConfig extensionProviders) by name; a CUSTOM policy naming another denies all. */
  readonly providers?: Readonly<Record<string, ExtAuthzProvider>>;
  /** The trust domain first, then its aliases: principals in policies match in each (Istio's). */
  readonly trustDomains?: readonly string[];
}

export interface ApplicablePolicies {
  readonly authorization: readonly Resource[];
  readonly authentication: readonly Resource[];
  /** Names the policies, for cache keys of what is rendered from them. */
  readonly key: string;
}

export function applicablePolicies(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  options: SecurityOptions = {},
): ApplicablePolicies {
  const root = options.rootNamespace ?? "istio-system";
  const applies = (r: Resource): boolean => {
    const spec = obj(r.object.spec) ?? {};
    if (spec.targetRef !== undefined || spec.targetRefs !== undefined) return false;
    if (r.namespace !== root && r.namespace !== proxy.namespace) return false;
    const selector = obj(obj(spec.selector)?.matchLabels) as Record<string, string> | undefined;
    if (selector === undefined || Object.keys(selector).length === 0) return true;
    return selectorMatches(selector, proxy.labels);
  };
  const authorization = registry.context.of("AuthorizationPolicy").filter(applies);
  const authentication = registry.context.of("RequestAuthentication").filter(applies);
  const key = [...authorization, ...authentication]
    .map((r) => `${r.kind}/${r.namespace}/${r.name}`)
    .join(",");
  return { authorization, authentication, key };
}

export type HttpSecurityFields = Pick<HttpConnectionManagerConfig, "jwtAuthn" | "extAuthz" | "rbac">;

/** The security filters of an HTTP chain of `proxy` serving `port`: only the fields that are set. */
export function httpSecurity(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  port: number,
  options: SecurityOptions = {},
): HttpSecurityFields {
  const p = applicablePolicies(registry, proxy, options);
  return httpSecurityFrom(p, port, options);
}

export function httpSecurityFrom(
  p: ApplicablePolicies,
  port: number,
  options: SecurityOptions = {},
): HttpSecurityFields {
  const jwt = jwtAuthnConfig(p.authentication);
  const { extAuthz, rbac } = authorizationFilters(p.authorization, {
    forTcp: false,
    port,
    ...(options.providers ? { providers: options.providers } : {}),
    ...(options.trustDomains ? { trustDomains: options.trustDomains } : {}),
  });
  return {
    ...(jwt ? { jwtAuthn: jwt } : {}),
    ...(extAuthz.length > 0 ? { extAuthz } : {}),
    ...(rbac.length > 0 ? { rbac } : {}),
  };
}

/** The network RBAC of a TCP chain of `proxy` serving `port`. */
export function tcpSecurity(
  registry: ServiceRegistry,
  proxy: Pick<ProxyNode, "namespace" | "labels">,
  port: number,
  options: SecurityOptions = {},
): Pick<TcpProxyConfig, "rbac"> {
  return tcpSecurityFrom(applicablePolicies(registry, proxy, options), port, options);
}

export function tcpSecurityFrom(
  p: ApplicablePolicies,
  port: number,
  options: SecurityOptions = {},
): Pick<TcpProxyConfig, "rbac"> {
  const { rbac } = authorizationFilters(p.authorization, {
    forTcp: true,
    port,
    ...(options.providers ? { providers: options.providers } : {}),
    ...(options.trustDomains ? { trustDomains: options.trustDomains } : {}),
  });
  return rbac.length > 0 ? { rbac } : {};
}

/**
 * A gateway's listeners with the security filters of its policies on every chain (Istio applies a gateway
 * workload's policies to all its servers), the chain's port taken from its listener.
 */
export function withGatewaySecurity<T extends Pick<ProxyConfig, "listeners">>(
  cfg: T,
  p: ApplicablePolicies,
  options: SecurityOptions = {},
): T {
  if (p.authorization.length === 0 && p.authentication.length === 0) return cfg;
  return {
    ...cfg,
    listeners: cfg.listeners.map((l) => ({
      ...l,
      filterChains: l.filterChains.map((c): FilterChainConfig => {
        const f = c.filter;
        if (f.type === "http") return { ...c, filter: { ...f, ...httpSecurityFrom(p, l.port, options) } };
        return { ...c, filter: { ...f, ...tcpSecurityFrom(p, l.port, options) } };
      }),
    })),
  };
}
