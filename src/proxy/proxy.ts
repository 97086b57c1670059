// The proxy: the running ProxyConfig and everything built from it. Config changes follow Caddy's lifecycle:
// validate -> provision (build clusters, route tables, chains, bind new sockets) -> swap atomically. If any
// step fails, what was provisioned is thrown away and the running config keeps serving untouched.
import type { ClusterConfig, ListenerConfig, ProxyConfig, RouteConfiguration } from "./config/types.ts";
import { validateProxyConfig } from "./config/validate.ts";
import { loadSecurityModule, needsSecurity } from "./filters/security-module.ts";
import { type FilterChainRuntime, Listener } from "./listener/listener.ts";
import { SecretStore } from "./secrets/secret-store.ts";
import { StatsStore } from "./stats/stats.ts";
import { type PreparedTelemetry, TelemetryManager } from "./telemetry/telemetry-manager.ts";
import { TelemetrySlot } from "./telemetry/telemetry-slot.ts";
import type { PreparedTunnels, ReverseTunnelInitiators } from "./tunnel/initiators.ts";
import { loadTunnelModule, needsTunnels } from "./tunnel/lazy.ts";
import type { TunnelRegistry } from "./tunnel/registry.ts";
import { ClusterManager } from "./upstream/cluster.ts";

export interface ApplyResult {
  readonly ok: boolean;
  readonly errors: string[];
}

export class ProxyServer {
  readonly stats = new StatsStore();
  /** TLS secrets by name (the workload certificate, trusted roots) that listeners and clusters may refer to. */
  readonly secrets = new SecretStore();
  readonly clusters = new ClusterManager(this.stats, this.secrets);
  /**
   * Reverse tunnels, made (and their code loaded) when a config first uses them: the registry of tunnels
   * accepted by this proxy's listeners (reverse_tunnel_acceptor chains), by name, on which clusters' endpoints
   * with `tunnel` open their streams (shared by listeners and clusters, as the secrets are); and the tunnels
   * this proxy dials (config.reverseTunnels), each stream handed to one of its listeners.
   */
  private tunnelParts:
    | { readonly registry: TunnelRegistry; readonly initiators: ReverseTunnelInitiators }
    | undefined;

  get tunnels(): TunnelRegistry | undefined {
    return this.tunnelParts?.registry;
  }

  get reverseTunnels(): ReverseTunnelInitiators | undefined {
    return this.tunnelParts?.initiators;
  }
  /** The telemetry sink every HTTP runtime reports to; set on apply from config.telemetry. */
  readonly telemetry = new TelemetrySlot();
  readonly telemetryManager = new TelemetryManager(this.telemetry, this.stats);
  private readonly listeners = new Map<string, Listener>();
  private current: ProxyConfig | undefined;
  private appliedAt: Date | undefined;
  private lastError: string[] = [];
  private readonly updatesOk = this.stats.counter("server.config_update_success");
  private readonly updatesRejected = this.stats.counter("server.config_update_rejected");
  draining = false;

  get config(): ProxyConfig | undefined {
    return this.current;
  }

  /** What the proxy still waits for before it is ready besides a config (e.g. "identity": its certificate). */
  readonly awaiting = new Set<string>();

  get ready(): boolean {
    return this.current !== undefined && !this.draining && this.awaiting.size === 0;
  }

  /** Applies a config, or refuses it with the reasons; the running config is unchanged on refusal. */
  async apply(config: ProxyConfig): Promise<ApplyResult> {
    const problems = validateProxyConfig(config).filter((p) => p.severity === "error");
    if (problems.length > 0) return this.reject(problems.map((p) => `${p.path.join(".")}: ${p.message}`));

    let nextClusters: Map<
      string,
      ReturnType<ClusterManager["prepare"]> extends Map<string, infer C> ? C : never
    >;
    const routeConfigs = new Map<string, RouteConfiguration>(
      (config.routeConfigs ?? []).map((r) => [r.name, r]),
    );
    let telemetry: PreparedTelemetry;
    let tunnels: PreparedTunnels | undefined;
    const prepared: Array<{
      listener: Listener;
      config: ListenerConfig;
      chains: FilterChainRuntime[];
      fresh: boolean;
    }> = [];
    try {
      if (needsSecurity(config.listeners)) await loadSecurityModule();
      if (needsTunnels(config) && this.tunnelParts === undefined) {
        const m = await loadTunnelModule();
        const registry = new m.TunnelRegistry(this.stats);
        this.tunnelParts = {
          registry,
          initiators: new m.ReverseTunnelInitiators(this.stats, this.secrets, (name) =>
            this.listenerTarget(name),
          ),
        };
        this.clusters.tunnels = registry;
      }
      nextClusters = this.clusters.prepare(config.clusters ?? ([] as ClusterConfig[]));
      for (const lc of config.listeners) {
        const chains = Listener.prepareChains(
          lc,
          routeConfigs,
          this.clusters,
          this.stats,
          this.telemetry,
          this.secrets,
        );
        const existing = this.listeners.get(lc.name);
        const sameSocket =
          existing && existing.address === (lc.address ?? "0.0.0.0") && existing.config.port === lc.port;
        prepared.push({
          listener: sameSocket ? existing : new Listener(lc, this.secrets),
          config: lc,
          chains,
          fresh: !sameSocket,
        });
      }
      for (const p of prepared) if (p.fresh) await p.listener.listen();
      telemetry = await this.telemetryManager.prepare(config.telemetry, config.node);
      tunnels = this.tunnelParts?.initiators.prepare(config.reverseTunnels ?? []);
    } catch (e) {
      for (const p of prepared) if (p.fresh) p.listener.close();
      return this.reject([(e as Error).message]);
    }

    // Swap: from here on nothing can fail.
    this.clusters.commit(nextClusters);
    this.telemetryManager.commit(telemetry);
    const keep = new Set<Listener>();
    for (const p of prepared) {
      p.listener.commitChains(p.config, p.chains);
      keep.add(p.listener);
    }
    for (const [name, l] of this.listeners) {
      if (!keep.has(l)) {
        l.drain();
        setTimeout(() => l.close(), 5000).unref();
        this.listeners.delete(name);
      }
    }
    for (const p of prepared) this.listeners.set(p.config.name, p.listener);
    // After the listeners: a tunnel's streams go to one of them.
    if (tunnels !== undefined) this.tunnelParts?.initiators.commit(tunnels);
    this.current = config;
    this.appliedAt = new Date();
    this.lastError = [];
    this.updatesOk.inc();
    return { ok: true, errors: [] };
  }

  private reject(errors: string[]): ApplyResult {
    this.lastError = errors;
    this.updatesRejected.inc();
    return { ok: false, errors };
  }

  listener(name: string): Listener | undefined {
    return this.listeners.get(name);
  }

  /**
   * Where a reverse tunnel's stream reaches listener `name`: its own address and port (loopback for a
   * wildcard address); undefined when there is no such listener (any more).
   */
  private listenerTarget(name: string): { host: string; port: number } | undefined {
    const l = this.listeners.get(name);
    if (l === undefined) return undefined;
    const host = l.address === "0.0.0.0" ? "127.0.0.1" : l.address === "::" ? "::1" : l.address;
    return { host, port: l.boundPort };
  }

  /** For /config_dump. */
  dump(): Record<string, unknown> {
    return {
      version: this.current?.version ?? null,
      appliedAt: this.appliedAt?.toISOString() ?? null,
      lastRejected: this.lastError.length > 0 ? this.lastError : null,
      config: this.current ?? null,
      reverseTunnels: {
        initiated: this.tunnelParts?.initiators.status() ?? [],
        accepted: this.tunnelParts?.registry.dump() ?? [],
      },
    };
  }

  /** Stops accepting connections; open HTTP connections close after their current response. */
  drainListeners(): void {
    this.draining = true;
    for (const l of this.listeners.values()) l.drain();
    this.tunnelParts?.initiators.drain();
    this.tunnelParts?.registry.drain();
  }

  /** Drains, waits up to `timeoutMs` for connections to finish, then closes everything. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.drainListeners();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && [...this.listeners.values()].some((l) => l.activeConnections > 0)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const l of this.listeners.values()) l.close();
    this.tunnelParts?.initiators.close();
    this.tunnelParts?.registry.closeAll();
    this.clusters.closeAll();
    await this.telemetryManager.close();
  }
}
