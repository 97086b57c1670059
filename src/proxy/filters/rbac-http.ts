// A chain's security filters in Envoy's (and Istio's) order, before routing: jwt_authn, then ext_authz
// (CUSTOM), then RBAC (DENY, ALLOW, LOG as the config lists them). Built once per config for each HTTP chain
// that has any; a chain without them costs a request nothing.

import type net from "node:net";
import type tls from "node:tls";
import type { HttpConnectionManagerConfig, TcpProxyConfig } from "../config/types.ts";
import { peerPrincipalOf } from "../secrets/peer-identity.ts";
import type { StatsStore } from "../stats/stats.ts";
import type { ClusterManager } from "../upstream/cluster.ts";
import { JwtAuthn } from "./jwt-authn.ts";
import { plainIp, RbacFilter, type RbacInput, rbacAllows, type VerifiedJwt } from "./rbac.ts";
import { ExtAuthz } from "./rbac-ext-authz.ts";

export const RBAC_DENIED_BODY = "RBAC: access denied";

/** The request as the security filters see it; `headers` is the request's own list, edited in place. */
export interface SecurityRequest {
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: string[];
  readonly socket: net.Socket;
}

/** null: go on. Otherwise the local reply (headers flat [name, value, ...]). */
export type SecurityVerdict = null | {
  readonly status: number;
  readonly body: string;
  readonly headers: readonly string[];
};

export class HttpSecurity {
  private readonly jwt: JwtAuthn | undefined;
  private readonly extAuthz: readonly ExtAuthz[];
  private readonly rbac: readonly RbacFilter[];

  private constructor(config: HttpConnectionManagerConfig, clusters: ClusterManager, store: StatsStore) {
    const prefix = `http.${config.statPrefix ?? "ingress_http"}.`;
    this.jwt = config.jwtAuthn ? new JwtAuthn(config.jwtAuthn, clusters, store, prefix) : undefined;
    this.extAuthz = (config.extAuthz ?? []).map((c) => new ExtAuthz(c, clusters, store, prefix));
    this.rbac = (config.rbac ?? []).map((c) => new RbacFilter(c, store, prefix));
  }

  /** The chain's filters, or undefined when it has none. */
  static of(
    config: HttpConnectionManagerConfig,
    clusters: ClusterManager,
    store: StatsStore,
  ): HttpSecurity | undefined {
    const any =
      config.jwtAuthn !== undefined || (config.extAuthz?.length ?? 0) > 0 || (config.rbac?.length ?? 0) > 0;
    return any ? new HttpSecurity(config, clusters, store) : undefined;
  }

  /**
   * The verdict, synchronously when no filter needs to wait (RBAC alone), else a promise. The caller holds the
   * request (and its body) meanwhile.
   */
  check(req: SecurityRequest): SecurityVerdict | Promise<SecurityVerdict> {
    if (this.jwt === undefined && this.extAuthz.length === 0) return this.rbacVerdict(input(req, undefined));
    return this.checkAsync(req);
  }

  private async checkAsync(req: SecurityRequest): Promise<SecurityVerdict> {
    let jwt: VerifiedJwt | undefined;
    if (this.jwt !== undefined) {
      const r = await this.jwt.verify(req);
      if (!r.ok) {
        const realm = `http://${req.authority}${req.path.split("?")[0]}`.replace(/["\\\r\n]/g, "");
        return {
          status: 401,
          body: r.message,
          headers: ["www-authenticate", `Bearer realm="${realm}", error="invalid_token"`],
        };
      }
      jwt = r.jwt;
    }
    const x = input(req, jwt);
    for (const a of this.extAuthz) {
      if (!a.applies(x)) continue;
      const r = await a.check(x);
      if (!r.ok) return { status: r.status, body: r.body, headers: r.headers };
      if (r.upstreamHeaders.length > 0) {
        const names = new Set<string>();
        for (let i = 0; i < r.upstreamHeaders.length; i += 2) names.add(r.upstreamHeaders[i]!);
        removeNamed(req.headers, names);
        req.headers.push(...r.upstreamHeaders);
      }
    }
    return this.rbacVerdict(x);
  }

  private rbacVerdict(x: RbacInput): SecurityVerdict {
    return rbacAllows(this.rbac, x) ? null : { status: 403, body: RBAC_DENIED_BODY, headers: [] };
  }
}

/** A TCP chain's network RBAC: checked once per connection. */
export class NetworkRbac {
  private readonly rbac: readonly RbacFilter[];
  private constructor(filters: readonly RbacFilter[]) {
    this.rbac = filters;
  }

  static of(config: TcpProxyConfig, store: StatsStore): NetworkRbac | undefined {
    if (!config.rbac || config.rbac.length === 0) return undefined;
    const prefix = `tcp.${config.statPrefix ?? config.cluster}.`;
    return new NetworkRbac(config.rbac.map((c) => new RbacFilter(c, store, prefix)));
  }

  allows(socket: net.Socket): boolean {
    const s = socket as tls.TLSSocket & { servername?: string | false };
    return rbacAllows(this.rbac, {
      http: false,
      method: "",
      authority: "",
      path: "",
      headers: [],
      sourceIp: socket.remoteAddress ?? "",
      destinationIp: plainIp(socket.localAddress ?? ""),
      destinationPort: socket.localPort ?? 0,
      sni: s.servername || undefined,
      peerPrincipal: peerPrincipalOf(socket),
      jwt: undefined,
    });
  }
}

function input(req: SecurityRequest, jwt: VerifiedJwt | undefined): RbacInput {
  const socket = req.socket;
  const s = socket as tls.TLSSocket & { servername?: string | false };
  return {
    http: true,
    method: req.method,
    authority: req.authority,
    path: req.path,
    headers: req.headers,
    sourceIp: socket.remoteAddress ?? "",
    destinationIp: plainIp(socket.localAddress ?? ""),
    destinationPort: socket.localPort ?? 0,
    sni: s.servername || undefined,
    peerPrincipal: peerPrincipalOf(socket),
    jwt,
  };
}

function removeNamed(h: string[], names: ReadonlySet<string>): void {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (names.has(h[i]!)) continue;
    h[w++] = h[i]!;
    h[w++] = h[i + 1]!;
  }
  h.length = w;
}
