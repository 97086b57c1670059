// Envoy's ext_authz with an HTTP authorization service (Istio's CUSTOM action with envoyExtAuthzHttp): the
// request's method, path (prefixed) and headers, without body, go to the service; 200 lets the request on,
// with the answer's headersToUpstreamOnAllow; another status is the client's answer, with its body and
// headers. No answer in time, a connection failure or a 5xx is an error: failureModeAllow lets the request
// on, otherwise statusOnError (403). The check goes straight to an endpoint of the cluster, off the data
// path's pools, so a slow authorizer cannot take the application's connections.
import type { ExtAuthzConfig } from "../config/types.ts";
import { httpModule } from "../lazy-modules.ts";
import type { Counter, StatsStore } from "../stats/stats.ts";
import type { ClusterManager, Endpoint } from "../upstream/cluster.ts";
import { CompiledPolicies, type RbacInput } from "./rbac.ts";

const MAX_BODY = 64 * 1024;

export type ExtAuthzOutcome =
  | { readonly ok: true; readonly upstreamHeaders: readonly string[] }
  | {
      readonly ok: false;
      readonly status: number;
      readonly body: string;
      readonly headers: readonly string[];
    };

export class ExtAuthz {
  private readonly c: ExtAuthzConfig;
  private readonly clusters: ClusterManager;
  private readonly policies: CompiledPolicies | undefined;
  private readonly include: ReadonlySet<string> | undefined;
  private readonly okC: Counter;
  private readonly deniedC: Counter;
  private readonly errorC: Counter;
  private readonly failureAllowedC: Counter;

  constructor(c: ExtAuthzConfig, clusters: ClusterManager, store: StatsStore, statPrefix: string) {
    this.c = c;
    this.clusters = clusters;
    this.policies = c.policies ? new CompiledPolicies(c.policies) : undefined;
    this.include = c.includeRequestHeaders
      ? new Set([...c.includeRequestHeaders.map((h) => h.toLowerCase()), "authorization", "content-length"])
      : undefined;
    const p = `${statPrefix}ext_authz.`;
    this.okC = store.counter(`${p}ok`);
    this.deniedC = store.counter(`${p}denied`);
    this.errorC = store.counter(`${p}error`);
    this.failureAllowedC = store.counter(`${p}failure_mode_allowed`);
  }

  /** Whether this request is checked at all (Istio's CUSTOM rules). */
  applies(x: RbacInput): boolean {
    return this.policies === undefined || this.policies.match(x) !== undefined;
  }

  async check(x: RbacInput): Promise<ExtAuthzOutcome> {
    let r: { status: number; body: string; headers: string[] } | undefined;
    try {
      r = await this.call(x);
    } catch {
      r = undefined;
    }
    if (r !== undefined && r.status === 200) {
      this.okC.inc();
      const allow = (this.c.headersToUpstreamOnAllow ?? []).map((h) => h.toLowerCase());
      const up: string[] = [];
      for (let i = 0; i < r.headers.length; i += 2)
        if (allow.includes(r.headers[i]!)) up.push(r.headers[i]!, r.headers[i + 1]!);
      return { ok: true, upstreamHeaders: up };
    }
    if (r === undefined || r.status >= 500) {
      this.errorC.inc();
      if (this.c.failureModeAllow === true) {
        this.failureAllowedC.inc();
        return { ok: true, upstreamHeaders: [] };
      }
      return { ok: false, status: this.c.statusOnError ?? 403, body: "", headers: [] };
    }
    this.deniedC.inc();
    const only = this.c.headersToDownstreamOnDeny?.map((h) => h.toLowerCase());
    const down: string[] = [];
    for (let i = 0; i < r.headers.length; i += 2) {
      const n = r.headers[i]!;
      if (HOP.has(n) || (only !== undefined && !only.includes(n))) continue;
      down.push(n, r.headers[i + 1]!);
    }
    // A 2xx/3xx other than 200 is still a denial; the client must not read it as success.
    const status = r.status < 400 ? 403 : r.status;
    return { ok: false, status, body: r.body, headers: down };
  }

  private call(x: RbacInput): Promise<{ status: number; body: string; headers: string[] }> {
    const cluster = this.clusters.get(this.c.cluster);
    const ep = cluster?.lb.pick({}) as Endpoint | undefined;
    if (ep === undefined) return Promise.reject(new Error("no endpoint"));
    const headers: Record<string, string> = {};
    const h = x.headers;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i]!;
      if (HOP.has(n) || (this.include !== undefined && !this.include.has(n))) continue;
      headers[n] = headers[n] === undefined ? h[i + 1]! : `${headers[n]},${h[i + 1]!}`;
    }
    headers.host = x.authority || this.c.authority || this.c.cluster;
    headers["content-length"] = "0";
    const timeoutMs = this.c.timeoutMs ?? 200;
    return new Promise((resolve, reject) => {
      const req = httpModule().request(
        {
          host: ep.address,
          port: ep.port,
          method: x.method,
          path: `${this.c.pathPrefix ?? ""}${x.path}`,
          headers,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let n = 0;
          res.on("data", (c: Buffer) => {
            n += c.length;
            if (n > MAX_BODY) req.destroy(new Error("authorization answer too large"));
            else chunks.push(c);
          });
          res.on("end", () => {
            const raw = res.rawHeaders;
            const out: string[] = [];
            for (let i = 0; i < raw.length; i += 2) out.push(raw[i]!.toLowerCase(), raw[i + 1]!);
            resolve({
              status: res.statusCode ?? 500,
              body: Buffer.concat(chunks).toString("latin1"),
              headers: out,
            });
          });
          res.on("error", reject);
        },
      );
      const timer = setTimeout(() => req.destroy(new Error("authorization timeout")), timeoutMs);
      req.on("close", () => clearTimeout(timer));
      req.on("error", reject);
      req.end();
    });
  }
}

const HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "content-length",
  "host",
]);
