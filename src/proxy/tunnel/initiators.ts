// The reverse tunnels a proxy holds, kept in step with its config: prepare() builds what a new config needs
// without side effects (an unchanged tunnel keeps its initiator and its connections), commit() starts the new
// ones and drains the ones the config dropped, in the same swap as listeners and clusters.
import type { ReverseTunnelConfig } from "../config/types.ts";
import type { SecretStore } from "../secrets/secret-store.ts";
import type { StatsStore } from "../stats/stats.ts";
import { upstreamTls } from "../upstream/cluster.ts";
import {
  DEFAULT_INITIATOR,
  type InitiatorOptions,
  type InitiatorStatus,
  type ListenerTarget,
  ReverseTunnelInitiator,
} from "./initiator.ts";

/** A dropped tunnel's streams get this long to finish after its GOAWAY. */
const DRAIN_MS = 5000;

export interface PreparedTunnels {
  readonly next: ReadonlyMap<string, { readonly key: string; readonly initiator: ReverseTunnelInitiator }>;
}

export class ReverseTunnelInitiators {
  private running = new Map<string, { key: string; initiator: ReverseTunnelInitiator }>();
  private readonly store: StatsStore;
  private readonly secrets: SecretStore;
  private readonly target: ListenerTarget;
  /** Tests shorten the timings; a proxy keeps the defaults. */
  options: InitiatorOptions = DEFAULT_INITIATOR;

  constructor(store: StatsStore, secrets: SecretStore, target: ListenerTarget) {
    this.store = store;
    this.secrets = secrets;
    this.target = target;
    // A dial that failed for want of a secret (the workload certificate arrives after the config) need not wait
    // out its backoff once the secret is there.
    secrets.onChange(() => {
      for (const r of this.running.values()) r.initiator.redialWaiting();
    });
  }

  prepare(configs: readonly ReverseTunnelConfig[]): PreparedTunnels {
    const next = new Map<string, { key: string; initiator: ReverseTunnelInitiator }>();
    for (const c of configs) {
      const key = JSON.stringify(c);
      const same = this.running.get(tunnelId(c));
      next.set(
        tunnelId(c),
        same !== undefined && same.key === key
          ? same
          : {
              key,
              initiator: new ReverseTunnelInitiator(
                c,
                upstreamTls(c.tls, this.secrets),
                this.store,
                this.target,
                this.options,
              ),
            },
      );
    }
    return { next };
  }

  commit(p: PreparedTunnels): void {
    for (const [name, r] of this.running)
      if (p.next.get(name)?.initiator !== r.initiator) {
        r.initiator.drain();
        setTimeout(() => r.initiator.close(), DRAIN_MS).unref();
      }
    const fresh = [...p.next.values()].filter((r) => this.running.get(tunnelId(r.initiator.config)) !== r);
    this.running = new Map(p.next);
    for (const r of fresh) r.initiator.start();
  }

  /** GOAWAY on every tunnel, no more dials (the proxy drains). */
  drain(): void {
    for (const r of this.running.values()) r.initiator.drain();
  }

  close(): void {
    for (const r of this.running.values()) r.initiator.close();
  }

  status(): InitiatorStatus[] {
    return [...this.running.values()].map((r) => r.initiator.status());
  }
}

/**
 * A tunnel is one name announced to one acceptor: a private network's gateway announces its network's name to
 * every public gateway it dials.
 */
export function tunnelId(c: Pick<ReverseTunnelConfig, "name" | "address" | "port">): string {
  return `${c.name}@${c.address}:${c.port}`;
}
