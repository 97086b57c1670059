// The security filters (RBAC, JWT, ext_authz) are code most sidecars of a mesh without policies never run:
// loaded when a config first asks for them (ProxyServer.apply awaits loadSecurityModule() before it builds
// chains), so that a proxy without policies keeps their memory (bench:proxy's RSS bound).
import type { ListenerConfig } from "../config/types.ts";

type SecurityModule = typeof import("./rbac-http.ts");

let loaded: SecurityModule | undefined;

/** Whether any chain of these listeners has an RBAC, JWT or ext_authz filter. */
export function needsSecurity(listeners: readonly ListenerConfig[]): boolean {
  return listeners.some((l) =>
    l.filterChains.some((fc) => {
      const f = fc.filter;
      if (f.type === "tcp") return (f.rbac?.length ?? 0) > 0;
      if (f.type === "reverse_tunnel_acceptor") return false;
      return f.jwtAuthn !== undefined || (f.extAuthz?.length ?? 0) > 0 || (f.rbac?.length ?? 0) > 0;
    }),
  );
}

export async function loadSecurityModule(): Promise<void> {
  loaded ??= await import("./rbac-http.ts");
}

/** The loaded module; a chain with security filters built before loadSecurityModule() is a bug. */
export function securityModule(): SecurityModule {
  if (loaded === undefined) throw new Error("security filters used before loadSecurityModule()");
  return loaded;
}
