// The reverse tunnel code is loaded only by proxies whose config uses tunnels (east-west gateways): a sidecar
// never holds one, and the code's weight in a sidecar's heap showed in its memory under load (bench:proxy).
// proxy.ts loads it in a config's fallible phase; listeners, clusters and pools then reach it synchronously.
import type { ProxyConfig } from "../config/types.ts";

type TunnelModule = typeof import("./module.ts");

/** The ALPN protocol of a reverse tunnel's TLS (kept here so that listeners need not load the rest). */
export const TUNNEL_ALPN = "isthmus-reverse-tunnel";

let loaded: TunnelModule | undefined;

export async function loadTunnelModule(): Promise<TunnelModule> {
  loaded ??= await import("./module.ts");
  return loaded;
}

/** The loaded module; only called where a config that uses tunnels was applied (so it was loaded). */
export function tunnelModule(): TunnelModule {
  if (loaded === undefined) throw new Error("reverse tunnels used before their code was loaded");
  return loaded;
}

/** Whether a config holds, accepts or rides reverse tunnels. */
export function needsTunnels(config: ProxyConfig): boolean {
  return (
    (config.reverseTunnels?.length ?? 0) > 0 ||
    config.listeners.some((l) => l.filterChains.some((c) => c.filter.type === "reverse_tunnel_acceptor")) ||
    (config.clusters ?? []).some((c) => c.endpoints.some((e) => e.tunnel !== undefined))
  );
}
