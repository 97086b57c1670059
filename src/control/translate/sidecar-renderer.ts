// Renders proxy configs for many proxies from one registry state, computing each distinct piece once. render()
// is the single entry point: a proxy that a Gateway's selector matches gets that gateway's config, any other
// a sidecar's. Sidecars share an outbound scope when they share a namespace, the applicable Sidecar resource
// and the values of the labels that VirtualServices' sourceLabels name; a mesh of 1,000 sidecars in 10
// namespaces renders its route tables and clusters 10 times per change instead of 1,000 (npm run
// bench:control-plane). Gateways share clusters per namespace, and listeners and route tables per namespace,
// address, selecting Gateways and sourceLabels values. Both keys also name the EnvoyFilters (local rate limits,
// envoy-filter.ts) that apply, since those select proxies by labels. The shared objects also let the push side
// serialize each resource once (discovery-server.ts caches by object).

import type { MeshService } from "../../api/analyze/context.ts";
import { arr, obj } from "../../api/validate/checker.ts";
import type { ClusterConfig, ProxyConfig, ReverseTunnelConfig } from "../../proxy/config/types.ts";
import { withOwnClusters } from "../../proxy/xds/config-resources.ts";
import type { ProxyNode } from "../model.ts";
import type { ServiceRegistry } from "../registry/registry.ts";
import { autoPassthroughServers, eastWestParts } from "./east-west.ts";
import {
  applyGatewayRateLimits,
  applySidecarListenerRateLimit,
  applySidecarRouteRateLimits,
  proxyRateLimits,
} from "./envoy-filter.ts";
import { gatewayClusters, gatewayConfig, selectingGateways } from "./gateway.ts";
import { inboundParts, selectingServices } from "./inbound.ts";
import { type MeshTls, meshTls } from "./mtls.ts";
import { type Vantage, vantageKey } from "./networks.ts";
import { RenderMemo } from "./render-memo.ts";
import { applicablePolicies, type SecurityOptions, withGatewaySecurity } from "./security/index.ts";
import {
  nodeMetadata,
  type OutboundScope,
  outboundScope,
  sidecarConfig,
  sidecarOwnParts,
} from "./sidecar.ts";
import { type OutboundPolicy, sidecarEgress } from "./sidecar-scope.ts";

export interface RendererOptions {
  /** The mesh's outboundTrafficPolicy (MeshConfig), for proxies whose Sidecar sets none. Default ALLOW_ANY. */
  readonly outboundTrafficPolicy?: OutboundPolicy;
  /** AuthorizationPolicy's root namespace and CUSTOM providers (MeshConfig). */
  readonly security?: SecurityOptions;
  /** The mesh's trust domain: the SPIFFE identities clients expect of servers. Default cluster.local. */
  readonly trustDomain?: string;
  /**
   * Other trust domains that name the same identities (MeshConfig trustDomainAliases, for a migration or a
   * merged mesh): servers may present them, and AuthorizationPolicy principals match in each.
   */
  readonly trustDomainAliases?: readonly string[];
  /** Proxies with an address of their own serve Istio's metrics on ADDRESS:PORT (Istio's 15090). Default off. */
  readonly proxyMetricsPort?: number;
}

export class SidecarRenderer {
  readonly registry: ServiceRegistry;
  private readonly labelKeys: readonly string[];
  private readonly meshPolicy: OutboundPolicy;
  private readonly scopes = new Map<string, OutboundScope>();
  private readonly gatewayClusters = new Map<string, readonly ClusterConfig[]>();
  private readonly gateways = new Map<
    string,
    Pick<ProxyConfig, "listeners" | "routeConfigs"> & {
      readonly ownClusters: readonly ClusterConfig[];
      readonly reverseTunnels: readonly ReverseTunnelConfig[];
    }
  >();
  private readonly memo: RenderMemo;
  private readonly security: SecurityOptions;
  private readonly mesh: MeshTls;
  private readonly trustDomain: string;
  private readonly metricsPort: number | undefined;
  /** Services that select workloads, by namespace: a sidecar's inbound side serves those selecting it. */
  private selecting: Map<string, MeshService[]> | undefined;

  /**
   * `previous`: the renderer this one replaces after a change; what it rendered from inputs that did not change
   * is reused (render-memo.ts), so one changed service costs its own clusters, not the mesh's.
   */
  constructor(registry: ServiceRegistry, options: RendererOptions = {}, previous?: SidecarRenderer) {
    this.registry = registry;
    this.memo = new RenderMemo(previous?.memo);
    this.labelKeys = sourceLabelKeys(registry);
    this.meshPolicy = options.outboundTrafficPolicy ?? "ALLOW_ANY";
    this.trustDomain = options.trustDomain ?? "cluster.local";
    const aliases = options.trustDomainAliases ?? [];
    this.security =
      aliases.length > 0
        ? { ...options.security, trustDomains: [this.trustDomain, ...aliases] }
        : (options.security ?? {});
    this.metricsPort = options.proxyMetricsPort;
    this.mesh = meshTls(
      registry.context.of("PeerAuthentication"),
      this.trustDomain,
      this.security.rootNamespace,
      aliases,
    );
  }

  render(proxy: ProxyNode): ProxyConfig {
    const labelValues = this.labelKeys.map((k) => proxy.labels[k] ?? "\u0000");
    const gws = selectingGateways(this.registry, proxy.labels);
    if (gws.length > 0) return this.renderGateway(proxy, gws, labelValues);
    const egress = sidecarEgress(this.registry, proxy, this.meshPolicy);
    // EnvoyFilters (local rate limits) select by labels too: the scope key names those that apply.
    const rl = proxyRateLimits(this.registry, proxy, "SIDECAR_OUTBOUND");
    const vantage = this.vantageOf(proxy, false);
    const key = [proxy.namespace, egress.key, rl.key, vantageKey(vantage), ...labelValues].join("\u0001");
    let scope = this.scopes.get(key);
    if (scope === undefined) {
      scope = outboundScope(this.registry, proxy, { egress, memo: this.memo, key, mesh: this.mesh, vantage });
      scope = applySidecarRouteRateLimits(scope, rl, this.memo, key);
      this.scopes.set(key, scope);
    }
    // Per proxy, the config is the same object while its scope and identity are: the push side then knows at
    // once that a change did not reach this proxy, and re-encodes nothing of what is its own.
    // The inbound side is the proxy's own (its workload's services, ports and policies): rebuilt per render,
    // kept as the same object while it comes out the same.
    this.selecting ??= selectingServices(this.registry);
    const inbound = this.memo.same(
      `inbound\u0001${proxy.id}`,
      inboundParts(
        this.registry,
        proxy,
        this.selecting.get(proxy.namespace) ?? [],
        this.mesh,
        applicablePolicies(this.registry, proxy, this.security),
        this.security,
      ),
    );
    const own = this.memo.get(
      `sidecar-own\u0001${proxy.id}`,
      [
        proxy.namespace,
        proxy.cluster,
        proxy.appAddress,
        proxy.labels,
        proxy.serviceAccount,
        this.trustDomain,
        inbound,
        ...rl.filters,
      ],
      () => {
        const parts = sidecarOwnParts(proxy, this.trustDomain);
        return applySidecarListenerRateLimit(
          { ...parts, listeners: [...parts.listeners, ...inbound.listeners] },
          rl,
        );
      },
    );
    const clusters = this.memo.get(
      `sidecar-clusters\u0001${proxy.id}`,
      [scope.clusters, inbound.clusters],
      () => withOwnClusters(scope.clusters, inbound.clusters),
    );
    return this.memo.get(
      `sidecar\u0001${proxy.id}`,
      [own, clusters, scope.routeConfigs, this.metricsPort],
      () =>
        this.withTelemetry(
          proxy,
          sidecarConfig(this.registry, proxy, { routeConfigs: scope.routeConfigs, clusters }, own),
        ),
    );
  }

  /** Where a proxy stands: its own network, cluster and locality, or this control plane's. */
  private vantageOf(proxy: ProxyNode, eastWest: boolean): Vantage {
    const t = this.registry.topology;
    return {
      network: proxy.network || t.network,
      cluster: proxy.cluster || t.cluster,
      locality: proxy.locality ?? "",
      eastWest,
    };
  }

  /** Istio's per-proxy Prometheus endpoint, on the proxy's own address, when the mesh asks for it. */
  private withTelemetry(proxy: ProxyNode, cfg: ProxyConfig): ProxyConfig {
    if (this.metricsPort === undefined || proxy.appAddress === undefined) return cfg;
    return { ...cfg, telemetry: { prometheus: { address: proxy.appAddress, port: this.metricsPort } } };
  }

  private renderGateway(
    proxy: ProxyNode,
    gws: ReturnType<typeof selectingGateways>,
    labelValues: readonly string[],
  ): ProxyConfig {
    const servers = autoPassthroughServers(gws);
    const vantage = this.vantageOf(proxy, servers.length > 0);
    const clustersKey = `${proxy.namespace}\u0001${vantageKey(vantage)}`;
    let clusters = this.gatewayClusters.get(clustersKey);
    if (clusters === undefined) {
      clusters = gatewayClusters(this.registry, proxy.namespace, this.memo, this.mesh, vantage);
      this.gatewayClusters.set(clustersKey, clusters);
    }
    const rl = proxyRateLimits(this.registry, proxy, "GATEWAY");
    // AuthorizationPolicies and RequestAuthentications select by labels too: the key names those that apply.
    const sec = applicablePolicies(this.registry, proxy, this.security);
    const key = [
      proxy.namespace,
      proxy.appAddress ?? "",
      proxy.serviceAccount ?? "",
      vantageKey(vantage),
      ...gws.map((g) => `${g.namespace}/${g.name}`),
      "",
      rl.key,
      sec.key,
      ...labelValues,
    ].join("\u0001");
    let shared = this.gateways.get(key);
    if (shared === undefined) {
      const cfg = withGatewaySecurity(
        applyGatewayRateLimits(gatewayConfig(this.registry, proxy, gws, clusters), rl),
        sec,
        this.security,
      );
      // An east-west gateway: its passthrough listeners (ports no other server of its Gateways took), their
      // clusters, and its reverse tunnels or tunnel acceptor.
      const ew =
        servers.length > 0
          ? eastWestParts(this.registry, proxy, servers, vantage, this.mesh, this.memo)
          : undefined;
      const taken = new Set(cfg.listeners.map((l) => l.port));
      shared = {
        listeners: ew ? [...cfg.listeners, ...ew.listeners.filter((l) => !taken.has(l.port))] : cfg.listeners,
        routeConfigs: cfg.routeConfigs ?? [],
        ownClusters: ew?.clusters ?? [],
        reverseTunnels: ew?.reverseTunnels ?? [],
      };
      this.gateways.set(key, shared);
    }
    return this.withTelemetry(proxy, {
      node: {
        id: proxy.id,
        ...(proxy.cluster ? { cluster: proxy.cluster } : {}),
        metadata: nodeMetadata(proxy, this.trustDomain),
      },
      listeners: shared.listeners,
      ...(shared.routeConfigs ? { routeConfigs: shared.routeConfigs } : {}),
      clusters: withOwnClusters(clusters, shared.ownClusters),
      ...(shared.reverseTunnels.length > 0 ? { reverseTunnels: shared.reverseTunnels } : {}),
    });
  }
}

/** Every label key that some VirtualService route matches on with sourceLabels, sorted. */
function sourceLabelKeys(registry: ServiceRegistry): string[] {
  const keys = new Set<string>();
  for (const vs of registry.context.of("VirtualService"))
    for (const route of arr(obj(vs.object.spec)?.http))
      for (const m of arr(obj(route)?.match))
        for (const k of Object.keys(obj(obj(m)?.sourceLabels) ?? {})) keys.add(k);
  return [...keys].sort();
}
