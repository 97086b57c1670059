// ProxyConfig validation: the JSON Schema first (types, unknown fields), then the rules a schema cannot say
// (unique names, references, one action per route, RE2 syntax, TLS material that loads). A config with any
// error is refused as a whole; the running config stays.
import net from "node:net";
import type { ErrorObject } from "ajv";
import { RE2, tlsModule } from "../lazy-modules.ts";
import { tunnelNameProblem } from "../tunnel/protocol.ts";
import { validate as validateSchema } from "./schema-validator.gen.ts";
import type {
  ExtAuthzConfig,
  JwtAuthnConfig,
  ProxyConfig,
  RbacConfig,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  RbacStringMatcher,
  RouteConfiguration,
  UpstreamTlsConfig,
} from "./types.ts";

export interface ConfigProblem {
  readonly severity: "error" | "warning";
  /** Path into the config, e.g. ["clusters", 0, "endpoints", 1, "port"]. */
  readonly path: ReadonlyArray<string | number>;
  readonly message: string;
}

/** The schema validator, compiled ahead of time from schema.ts by `npm run gen:proxy-schema`. */
const checkSchema = validateSchema as unknown as ((v: unknown) => boolean) & {
  errors?: ErrorObject[] | null;
};

export function validateProxyConfig(value: unknown): ConfigProblem[] {
  if (!checkSchema(value)) return schemaProblems(checkSchema.errors ?? []);
  return semanticProblems(value as ProxyConfig);
}

/**
 * oneOf alternatives that a discriminator settles: the failed oneOf's branches that failed a `const` on one
 * of the object's own fields (type: "tcp" when the filter says type: "http") are ruled out; when exactly one
 * branch is left, its errors are the real ones. Returns the schema-path prefixes of those chosen branches
 * ("…/oneOf/0/") and the oneOf errors they replace. Without this, a typo anywhere inside an inline
 * routeConfig was reported only as "filter: does not match any allowed form", naming no field.
 */
function settledOneOfs(errors: readonly ErrorObject[]): { branches: Set<string>; settled: Set<ErrorObject> } {
  const branches = new Set<string>();
  const settled = new Set<ErrorObject>();
  for (const e of errors) {
    if (e.keyword !== "oneOf") continue;
    const base = `${e.schemaPath}/`;
    const seen = new Set<string>();
    const ruledOut = new Set<string>();
    for (const x of errors) {
      if (!x.schemaPath.startsWith(base)) continue;
      const branch = x.schemaPath.slice(base.length).split("/")[0]!;
      seen.add(branch);
      const parent = x.instancePath.slice(0, x.instancePath.lastIndexOf("/"));
      if (x.keyword === "const" && parent === e.instancePath) ruledOut.add(branch);
    }
    const left = [...seen].filter((b) => !ruledOut.has(b));
    if (left.length === 1 && ruledOut.size > 0) {
      branches.add(`${base}${left[0]}/`);
      settled.add(e);
    }
  }
  return { branches, settled };
}

/** Whether every oneOf branch on an error's schema path is a chosen one (or it is under no oneOf at all). */
function inChosenBranches(schemaPath: string, branches: ReadonlySet<string>): boolean {
  for (let i = schemaPath.indexOf("/oneOf/"); i !== -1; i = schemaPath.indexOf("/oneOf/", i + 1)) {
    const end = schemaPath.indexOf("/", i + "/oneOf/".length);
    if (end === -1 || !branches.has(schemaPath.slice(0, end + 1))) return false;
  }
  return true;
}

function schemaProblems(errors: readonly ErrorObject[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const seen = new Set<string>();
  const { branches, settled } = settledOneOfs(errors);
  for (const e of errors) {
    // oneOf reports every branch's failures; keep those of the branch a discriminator chose, else the
    // branch-independent summary.
    if (settled.has(e) || !inChosenBranches(e.schemaPath, branches)) continue;
    const path = pointer(e.instancePath);
    let message: string;
    let at = path;
    switch (e.keyword) {
      case "additionalProperties":
        at = [...path, String(e.params.additionalProperty)];
        message = `unknown field "${String(e.params.additionalProperty)}"`;
        break;
      case "required":
        at = [...path, String(e.params.missingProperty)];
        message = "required field is missing";
        break;
      case "enum":
        message = `must be one of: ${(e.params.allowedValues as unknown[]).join(", ")}`;
        break;
      case "oneOf":
        message = "does not match any allowed form (check the field names and the type)";
        break;
      default:
        message = e.message ?? e.keyword;
    }
    const key = `${at.join(".")}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ severity: "error", path: at, message });
  }
  return out;
}

function pointer(p: string): Array<string | number> {
  if (p === "") return [];
  return p
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function semanticProblems(c: ProxyConfig): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const err = (path: Array<string | number>, message: string) =>
    out.push({ severity: "error", path, message });
  const warn = (path: Array<string | number>, message: string) =>
    out.push({ severity: "warning", path, message });

  const clusterNames = new Set<string>();
  (c.clusters ?? []).forEach((cl, i) => {
    if (clusterNames.has(cl.name)) err(["clusters", i, "name"], `duplicate cluster name "${cl.name}"`);
    clusterNames.add(cl.name);
    if (cl.type === "original_dst" && cl.endpoints.length > 0)
      err(
        ["clusters", i, "endpoints"],
        "an original_dst cluster takes its endpoint from each request; list none",
      );
    const keys = new Set<string>();
    cl.endpoints.forEach((e, j) => {
      const k = `${e.address}:${e.port}`;
      if (keys.has(k)) err(["clusters", i, "endpoints", j], `duplicate endpoint ${k}`);
      keys.add(k);
      // A tunnel's name needs no definition here: the initiators that dial this proxy announce it.
      if (e.tunnel !== undefined) {
        const bad = tunnelNameProblem(e.tunnel);
        if (bad !== undefined) err(["clusters", i, "endpoints", j, "tunnel"], bad);
        if (cl.protocol === "http2")
          err(
            ["clusters", i, "endpoints", j, "tunnel"],
            "an http2 cluster cannot reach endpoints through a reverse tunnel (tcp proxies and http1 clusters can)",
          );
      }
    });
    const rh = cl.ringHash;
    if (
      rh?.minimumRingSize !== undefined &&
      rh.maximumRingSize !== undefined &&
      rh.maximumRingSize < rh.minimumRingSize
    )
      err(["clusters", i, "ringHash"], "maximumRingSize must not be below minimumRingSize");
    const ts = cl.maglev?.tableSize;
    if (ts !== undefined && !isPrime(ts))
      err(["clusters", i, "maglev", "tableSize"], `maglev table size ${ts} must be prime`);
    if (cl.tls) upstreamTlsChecks(err, ["clusters", i, "tls"], cl.tls);
    const matchNames = new Set<string>();
    cl.transportSocketMatches?.forEach((m, j) => {
      if (matchNames.has(m.name))
        err(["clusters", i, "transportSocketMatches", j, "name"], `duplicate match name "${m.name}"`);
      matchNames.add(m.name);
      if (m.tls) upstreamTlsChecks(err, ["clusters", i, "transportSocketMatches", j, "tls"], m.tls);
    });
  });

  const routeNames = new Set<string>();
  const routeConfigs = new Map<string, RouteConfiguration>();
  (c.routeConfigs ?? []).forEach((rc, i) => {
    if (routeNames.has(rc.name))
      err(["routeConfigs", i, "name"], `duplicate route configuration name "${rc.name}"`);
    routeNames.add(rc.name);
    routeConfigs.set(rc.name, rc);
    checkRouteConfig(rc, ["routeConfigs", i], clusterNames, err, warn);
  });

  const listenerNames = new Set<string>();
  const binds = new Set<string>();
  c.listeners.forEach((l, i) => {
    if (listenerNames.has(l.name)) err(["listeners", i, "name"], `duplicate listener name "${l.name}"`);
    listenerNames.add(l.name);
    const bind = `${l.address ?? "0.0.0.0"}:${l.port}`;
    if (l.port !== 0 && binds.has(bind))
      err(["listeners", i, "port"], `another listener is bound to ${bind}`);
    binds.add(bind);
    const matches = new Set<string>();
    l.filterChains.forEach((fc, j) => {
      const p = ["listeners", i, "filterChains", j];
      const key = JSON.stringify([fc.match ?? {}, fc.tls !== undefined]);
      if (matches.has(key)) err([...p, "match"], "two filter chains with the same match");
      matches.add(key);
      if (fc.match?.serverNames && !fc.tls && fc.filter.type !== "tcp")
        err(
          [...p, "match", "serverNames"],
          "serverNames needs tls on the chain (terminated), or a tcp filter (TLS passed through by SNI)",
        );
      if (fc.tls) {
        const t = fc.tls;
        const inline = t.certificateChain !== undefined || t.privateKey !== undefined;
        if (inline === (t.certificateSecret !== undefined))
          err(
            [...p, "tls"],
            "a TLS chain needs either certificateChain and privateKey, or certificateSecret",
          );
        else if (inline && (t.certificateChain === undefined || t.privateKey === undefined))
          err([...p, "tls"], "certificateChain and privateKey go together");
        if (t.validationContext !== undefined && t.validationSecret !== undefined)
          err([...p, "tls", "validationSecret"], "validationContext and validationSecret exclude each other");
        if (inline) tlsLoads(err, [...p, "tls"], t.certificateChain, t.privateKey, t.validationContext);
      }
      const f = fc.filter;
      if (f.type === "reverse_tunnel_acceptor") {
        if (fc.tls?.requireClientCertificate !== true)
          err(
            [...p, "tls"],
            "a reverse_tunnel_acceptor chain must terminate TLS and require a client certificate",
          );
        f.allowedNames?.forEach((n, k) => {
          const bad = tunnelNameProblem(n);
          if (bad !== undefined) err([...p, "filter", "allowedNames", k], bad);
        });
        return;
      }
      if (f.rbac) checkRbac(f.rbac, [...p, "filter", "rbac"], err);
      if (f.type === "tcp") {
        if (!clusterNames.has(f.cluster))
          warn(
            [...p, "filter", "cluster"],
            `cluster "${f.cluster}" is not defined; connections will be closed`,
          );
        return;
      }
      if ((f.routeConfigName === undefined) === (f.routeConfig === undefined))
        err([...p, "filter"], "an http filter needs exactly one of routeConfigName and routeConfig");
      else if (f.routeConfigName !== undefined && !routeConfigs.has(f.routeConfigName))
        err([...p, "filter", "routeConfigName"], `route configuration "${f.routeConfigName}" is not defined`);
      if (f.routeConfig)
        checkRouteConfig(f.routeConfig, [...p, "filter", "routeConfig"], clusterNames, err, warn);
      if (f.extAuthz) checkExtAuthz(f.extAuthz, [...p, "filter", "extAuthz"], clusterNames, err, warn);
      if (f.jwtAuthn) checkJwtAuthn(f.jwtAuthn, [...p, "filter", "jwtAuthn"], clusterNames, err);
    });
  });
  checkReverseTunnels(c, listenerNames, err, warn);
  checkTunnelEndpointUsers(c, err);
  return out;
}

/**
 * The proxy's own calls (ext_authz checks, JWKS fetches) dial their cluster's endpoint: one behind a reverse
 * tunnel would be dialled at an address of the far network, so such a cluster is refused for them.
 */
function checkTunnelEndpointUsers(c: ProxyConfig, err: Report): void {
  const tunnelled = new Set(
    (c.clusters ?? []).filter((cl) => cl.endpoints.some((e) => e.tunnel !== undefined)).map((cl) => cl.name),
  );
  if (tunnelled.size === 0) return;
  const message = (name: string) =>
    `cluster "${name}" has endpoints behind a reverse tunnel, which the proxy's own calls cannot reach`;
  c.listeners.forEach((l, i) => {
    l.filterChains.forEach((fc, j) => {
      const f = fc.filter;
      if (f.type !== "http") return;
      const p = ["listeners", i, "filterChains", j, "filter"];
      f.extAuthz?.forEach((x, k) => {
        if (tunnelled.has(x.cluster)) err([...p, "extAuthz", k, "cluster"], message(x.cluster));
      });
      f.jwtAuthn?.providers.forEach((pr, k) => {
        const rc = pr.remoteJwks?.cluster;
        if (rc !== undefined && tunnelled.has(rc))
          err([...p, "jwtAuthn", "providers", k, "remoteJwks", "cluster"], message(rc));
      });
    });
  });
}

/** Tunnels this proxy dials: unique names that can be announced, a local listener to hand streams to. */
function checkReverseTunnels(
  c: ProxyConfig,
  listenerNames: ReadonlySet<string>,
  err: Report,
  warn: Report,
): void {
  const names = new Set<string>();
  (c.reverseTunnels ?? []).forEach((t, i) => {
    const p = ["reverseTunnels", i];
    // One name may be announced to several acceptors (every public gateway), but once to each.
    const id = `${t.name}@${t.address}:${t.port}`;
    if (names.has(id))
      err([...p, "name"], `reverse tunnel "${t.name}" to ${t.address}:${t.port} is listed twice`);
    names.add(id);
    const bad = tunnelNameProblem(t.name);
    if (bad !== undefined) err([...p, "name"], bad);
    if (!listenerNames.has(t.listener))
      err(
        [...p, "listener"],
        `listener "${t.listener}" is not defined; the tunnel's streams are handed to it`,
      );
    upstreamTlsChecks(err, [...p, "tls"], t.tls);
    if (t.tls.certificateChain === undefined && t.tls.certificateSecret === undefined)
      err([...p, "tls"], "an acceptor requires a client certificate: certificateChain or certificateSecret");
    if (t.tls.alpnProtocols !== undefined)
      warn(
        [...p, "tls", "alpnProtocols"],
        "ignored: a reverse tunnel always negotiates ALPN isthmus-reverse-tunnel",
      );
  });
}

type Report = (path: Array<string | number>, message: string) => void;

function checkRouteConfig(
  rc: RouteConfiguration,
  base: Array<string | number>,
  clusters: ReadonlySet<string>,
  err: Report,
  warn: Report,
): void {
  const vhNames = new Set<string>();
  const domains = new Set<string>();
  rc.virtualHosts.forEach((vh, i) => {
    const vp = [...base, "virtualHosts", i];
    if (vhNames.has(vh.name)) err([...vp, "name"], `duplicate virtual host name "${vh.name}"`);
    vhNames.add(vh.name);
    vh.domains.forEach((d, j) => {
      const lower = d.toLowerCase();
      if (domains.has(lower)) err([...vp, "domains", j], `domain "${d}" is served by two virtual hosts`);
      domains.add(lower);
      const stars = d.split("*").length - 1;
      if (stars > 1 || (stars === 1 && d !== "*" && !d.startsWith("*") && !d.endsWith("*")))
        err(
          [...vp, "domains", j],
          `domain "${d}": a wildcard is only allowed alone, as a prefix or as a suffix`,
        );
    });
    vh.routes.forEach((r, j) => {
      const rp = [...vp, "routes", j];
      const actions = [r.route, r.redirect, r.directResponse].filter((a) => a !== undefined).length;
      if (actions !== 1) err(rp, "a route needs exactly one of route, redirect and directResponse");
      const m = r.match;
      const pathKinds = [m.prefix, m.path, m.regex].filter((x) => x !== undefined).length;
      if (pathKinds > 1) err([...rp, "match"], "at most one of prefix, path and regex");
      if (m.regex !== undefined) re2(err, [...rp, "match", "regex"], m.regex);
      m.headers?.forEach((h, k) => {
        const kinds = [h.exact, h.prefix, h.suffix, h.regex].filter((x) => x !== undefined).length;
        if (kinds > 1) err([...rp, "match", "headers", k], "at most one of exact, prefix, suffix and regex");
        if (h.present === false && kinds > 0)
          err([...rp, "match", "headers", k], "present: false cannot be combined with a value match");
        if (h.regex !== undefined) re2(err, [...rp, "match", "headers", k, "regex"], h.regex);
      });
      m.queryParameters?.forEach((q, k) => {
        const kinds = [q.exact, q.prefix, q.regex].filter((x) => x !== undefined).length;
        if (kinds > 1) err([...rp, "match", "queryParameters", k], "at most one of exact, prefix and regex");
        if (q.regex !== undefined) re2(err, [...rp, "match", "queryParameters", k, "regex"], q.regex);
      });
      const a = r.route;
      if (a) {
        if ((a.cluster === undefined) === (a.weightedClusters === undefined))
          err([...rp, "route"], "a route action needs exactly one of cluster and weightedClusters");
        const total = (a.weightedClusters ?? []).reduce((s, w) => s + w.weight, 0);
        if (a.weightedClusters && total === 0)
          err([...rp, "route", "weightedClusters"], "total weight must be greater than 0");
        const named = a.cluster !== undefined ? [a.cluster] : (a.weightedClusters ?? []).map((w) => w.name);
        named.forEach((n) => {
          if (!clusters.has(n))
            warn([...rp, "route"], `cluster "${n}" is not defined; requests will get 503 (NC)`);
        });
        if (a.prefixRewrite !== undefined && a.regexRewrite !== undefined)
          err([...rp, "route"], "only one of prefixRewrite and regexRewrite");
        if (a.regexRewrite) re2(err, [...rp, "route", "regexRewrite", "pattern"], a.regexRewrite.pattern);
        (a.requestMirrorPolicies ?? []).forEach((m, k) => {
          if (!clusters.has(m.cluster))
            warn(
              [...rp, "route", "requestMirrorPolicies", k, "cluster"],
              `cluster "${m.cluster}" is not defined; nothing will be mirrored`,
            );
        });
        (a.cors?.allowOrigins ?? []).forEach((o, k) => {
          if (o.regex !== undefined) re2(err, [...rp, "route", "cors", "allowOrigins", k, "regex"], o.regex);
        });
        const f = a.fault?.abort;
        if (f && (f.httpStatus === undefined) === (f.grpcStatus === undefined))
          err([...rp, "route", "fault", "abort"], "an abort needs exactly one of httpStatus and grpcStatus");
        const rb = a.retryPolicy?.backoff;
        if (rb?.maxIntervalMs !== undefined && rb.maxIntervalMs < (rb.baseIntervalMs ?? 25))
          err(
            [...rp, "route", "retryPolicy", "backoff", "maxIntervalMs"],
            "must not be less than baseIntervalMs",
          );
      }
    });
  });
}

function re2(err: Report, path: Array<string | number>, pattern: string): void {
  if (pattern.length > 1024) {
    err(path, "regex is longer than 1024 characters");
    return;
  }
  try {
    new (RE2())(pattern, "u");
  } catch (e) {
    err(path, `"${pattern}" is not a valid RE2 regex: ${(e as Error).message}`);
  }
}

function upstreamTlsChecks(err: Report, path: Array<string | number>, t: UpstreamTlsConfig): void {
  if (t.certificateChain !== undefined && t.privateKey === undefined)
    err([...path, "privateKey"], "a client certificate needs its private key");
  if (t.certificateSecret !== undefined && t.certificateChain !== undefined)
    err([...path, "certificateSecret"], "certificateChain and certificateSecret exclude each other");
  if (t.validationSecret !== undefined && t.validationContext !== undefined)
    err([...path, "validationSecret"], "validationContext and validationSecret exclude each other");
  tlsLoads(err, path, t.certificateChain, t.privateKey, t.validationContext);
}

function tlsLoads(err: Report, path: Array<string | number>, cert?: string, key?: string, ca?: string): void {
  try {
    tlsModule().createSecureContext({
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(ca ? { ca } : {}),
    });
  } catch (e) {
    // The library's message names the problem (e.g. "PEM routines::no start line"); the key itself is never echoed.
    err(path, `TLS material does not load: ${(e as Error).message}`);
  }
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

function checkRbac(filters: readonly RbacConfig[], base: Array<string | number>, err: Report): void {
  filters.forEach((f, i) => {
    for (const which of ["rules", "shadowRules"] as const) {
      const r = f[which];
      if (r) checkPolicies(r.policies, [...base, i, which, "policies"], err);
    }
  });
}

function checkPolicies(
  policies: Readonly<Record<string, RbacPolicy>>,
  base: Array<string | number>,
  err: Report,
): void {
  for (const [name, policy] of Object.entries(policies)) {
    policy.permissions.forEach((x, i) => {
      checkPermission(x, [...base, name, "permissions", i], err);
    });
    policy.principals.forEach((x, i) => {
      checkPrincipal(x, [...base, name, "principals", i], err);
    });
  }
}

function checkMatcher(m: RbacStringMatcher, path: Array<string | number>, err: Report): void {
  const kinds = [m.exact, m.prefix, m.suffix, m.contains, m.regex].filter((x) => x !== undefined).length;
  if (kinds > 1) err(path, "at most one of exact, prefix, suffix, contains and regex");
  if (m.regex !== undefined) re2(err, [...path, "regex"], m.regex);
}

function checkCidr(v: string, path: Array<string | number>, err: Report): void {
  const [addr, len, extra] = v.split("/");
  const family = net.isIP(addr ?? "");
  const max = family === 6 ? 128 : 32;
  if (family === 0 || extra !== undefined || (len !== undefined && (!/^\d+$/.test(len) || Number(len) > max)))
    err(path, `"${v}" is not an IP address or CIDR range`);
}

function checkPermission(x: RbacPermission, path: Array<string | number>, err: Report): void {
  x.andRules?.forEach((y, i) => {
    checkPermission(y, [...path, "andRules", i], err);
  });
  x.orRules?.forEach((y, i) => {
    checkPermission(y, [...path, "orRules", i], err);
  });
  if (x.notRule) checkPermission(x.notRule, [...path, "notRule"], err);
  if (x.header) checkMatcher(x.header, [...path, "header"], err);
  if (x.urlPath) checkMatcher(x.urlPath, [...path, "urlPath"], err);
  if (x.requestedServerName) checkMatcher(x.requestedServerName, [...path, "requestedServerName"], err);
  if (x.destinationIp !== undefined) checkCidr(x.destinationIp, [...path, "destinationIp"], err);
  if (x.uriTemplate !== undefined) {
    const segs = x.uriTemplate.split("/").slice(1);
    const dbl = segs.indexOf("{**}");
    if (
      (dbl !== -1 && segs.slice(dbl + 1).some((s) => s === "{*}" || s === "{**}")) ||
      segs.some((s) => /[{}]/.test(s.replace(/^\{\*\*?\}$/, "")))
    )
      err([...path, "uriTemplate"], "only whole segments {*}, and one {**} with no operator after it");
  }
}

function checkPrincipal(x: RbacPrincipal, path: Array<string | number>, err: Report): void {
  x.andIds?.forEach((y, i) => {
    checkPrincipal(y, [...path, "andIds", i], err);
  });
  x.orIds?.forEach((y, i) => {
    checkPrincipal(y, [...path, "orIds", i], err);
  });
  if (x.notId) checkPrincipal(x.notId, [...path, "notId"], err);
  if (x.header) checkMatcher(x.header, [...path, "header"], err);
  if (x.authenticated?.principalName)
    checkMatcher(x.authenticated.principalName, [...path, "authenticated", "principalName"], err);
  if (x.requestPrincipal) checkMatcher(x.requestPrincipal, [...path, "requestPrincipal"], err);
  if (x.jwtClaim) checkMatcher(x.jwtClaim.value, [...path, "jwtClaim", "value"], err);
  if (x.directRemoteIp !== undefined) checkCidr(x.directRemoteIp, [...path, "directRemoteIp"], err);
  if (x.remoteIp !== undefined) checkCidr(x.remoteIp, [...path, "remoteIp"], err);
}

function checkExtAuthz(
  filters: readonly ExtAuthzConfig[],
  base: Array<string | number>,
  clusters: ReadonlySet<string>,
  err: Report,
  warn: Report,
): void {
  filters.forEach((f, i) => {
    if (!clusters.has(f.cluster))
      warn(
        [...base, i, "cluster"],
        `cluster "${f.cluster}" is not defined; checks fail (${f.failureModeAllow ? "allowed" : "denied"})`,
      );
    if (f.policies) checkPolicies(f.policies, [...base, i, "policies"], err);
  });
}

function checkJwtAuthn(
  c: JwtAuthnConfig,
  base: Array<string | number>,
  clusters: ReadonlySet<string>,
  err: Report,
): void {
  const names = new Set<string>();
  c.providers.forEach((p, i) => {
    const pp = [...base, "providers", i];
    if (names.has(p.name)) err([...pp, "name"], `duplicate provider name "${p.name}"`);
    names.add(p.name);
    if ((p.localJwks === undefined) === (p.remoteJwks === undefined))
      err(pp, "a provider needs exactly one of localJwks and remoteJwks");
    if (p.localJwks !== undefined) {
      let keys: unknown;
      try {
        keys = (JSON.parse(p.localJwks) as { keys?: unknown }).keys;
      } catch {
        keys = undefined;
      }
      if (!Array.isArray(keys)) err([...pp, "localJwks"], 'not a JWKS document ({"keys": [...]})');
    }
    const rc = p.remoteJwks?.cluster;
    if (rc !== undefined && !clusters.has(rc))
      err([...pp, "remoteJwks", "cluster"], `cluster "${rc}" is not defined`);
  });
}
