// AuthorizationPolicy -> the proxy's ext_authz and RBAC filters, with Istio's semantics (pilot/pkg/security/
// authz): CUSTOM first (ext_authz), then DENY, then ALLOW, and AUDIT (LOG); a workload without ALLOW policies
// allows what is not denied, one with ALLOW policies denies what none of them allows (`spec: {}` allows
// nothing, `rules: [{}]` everything). Each rule is one RBAC policy named ns[NS]-policy[NAME]-rule[I]:
// permissions from `to` and destination conditions, principals from `from` and source conditions, values of a
// field OR'ed, fields AND'ed, not* fields negated. Dry-run policies (istio.io/dry-run: "true") become shadow
// rules. Istio's rule for what cannot be expressed (an HTTP-only field on a TCP chain, a key this translator
// does not support): an ALLOW or CUSTOM rule is dropped (it allows less), a DENY or AUDIT rule ignores the
// field (it denies more): never an open door. Ports are decided here, since the chain's port is known.
import type { Resource } from "../../../api/resource.ts";
import { arr, type Obj, obj, str } from "../../../api/validate/checker.ts";
import type {
  ExtAuthzConfig,
  RbacConfig,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  RbacStringMatcher,
} from "../../../proxy/config/types.ts";

export const DRY_RUN_ANNOTATION = "istio.io/dry-run";

/** A CUSTOM provider (MeshConfig extensionProviders[].envoyExtAuthzHttp) with its cluster resolved. */
export interface ExtAuthzProvider {
  readonly cluster: string;
  readonly pathPrefix?: string;
  readonly timeoutMs?: number;
  readonly failOpen?: boolean;
  readonly statusOnError?: number;
  readonly includeRequestHeadersInCheck?: readonly string[];
  readonly headersToUpstreamOnAllow?: readonly string[];
  readonly headersToDownstreamOnDeny?: readonly string[];
}

export interface AuthzOptions {
  /** The chain carries TCP (network RBAC): HTTP-only fields cannot be evaluated. */
  readonly forTcp: boolean;
  /** The port the chain serves (destination.port, operation ports). */
  readonly port: number;
  /** CUSTOM providers by name. */
  readonly providers?: Readonly<Record<string, ExtAuthzProvider>>;
  /**
   * The mesh's trust domain and its aliases (MeshConfig trustDomainAliases): a principal naming any of them, or
   * Istio's default cluster.local, stands for the same identity in each (Istio's trust domain migration).
   */
  readonly trustDomains?: readonly string[];
}

export interface AuthzFilters {
  readonly extAuthz: ExtAuthzConfig[];
  readonly rbac: RbacConfig[];
}

type Action = "ALLOW" | "DENY" | "AUDIT" | "CUSTOM";

const ANY_PERMISSION: RbacPermission = { any: true };
const NO_PERMISSION: RbacPermission = { notRule: { any: true } };
const ANY_PRINCIPAL: RbacPrincipal = { any: true };

/** The filters for the policies that apply to one chain, in Istio's order. */
export function authorizationFilters(policies: readonly Resource[], o: AuthzOptions): AuthzFilters {
  const sorted = [...policies].sort((a, b) =>
    a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace),
  );
  const enforced: Record<Action, Record<string, RbacPolicy>> = { ALLOW: {}, DENY: {}, AUDIT: {}, CUSTOM: {} };
  const shadow: Record<"ALLOW" | "DENY", Record<string, RbacPolicy>> = { ALLOW: {}, DENY: {} };
  const has = { ALLOW: false, DENY: false, AUDIT: false, shadowALLOW: false, shadowDENY: false };
  const custom = new Map<string, Record<string, RbacPolicy>>();
  let denyAll = false;
  for (const p of sorted) {
    const spec = obj(p.object.spec) ?? {};
    const action = (str(spec.action) ?? "ALLOW") as Action;
    const dryRun = p.annotations[DRY_RUN_ANNOTATION] === "true";
    const out: Record<string, RbacPolicy> = {};
    arr(spec.rules).forEach((r, i) => {
      const policy = rulePolicy(obj(r) ?? {}, p.namespace, action, o);
      if (policy !== null) out[`ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`] = policy;
    });
    if (action === "CUSTOM") {
      // CUSTOM on TCP needs a gRPC ext_authz network filter, which the proxy has not.
      if (o.forTcp) continue;
      const name = str(obj(spec.provider)?.name) ?? "";
      const list = custom.get(name) ?? {};
      Object.assign(list, out);
      custom.set(name, list);
      continue;
    }
    if (dryRun && (action === "ALLOW" || action === "DENY")) {
      Object.assign(shadow[action], out);
      has[action === "ALLOW" ? "shadowALLOW" : "shadowDENY"] = true;
      continue;
    }
    Object.assign(enforced[action], out);
    has[action as "ALLOW" | "DENY" | "AUDIT"] = true;
  }
  const extAuthz: ExtAuthzConfig[] = [];
  if (custom.size > 1) denyAll = true; // Istio: one CUSTOM provider per workload, else deny everything.
  for (const [name, policies] of custom) {
    const p = o.providers?.[name];
    if (p === undefined || denyAll) {
      denyAll = true;
      continue;
    }
    extAuthz.push({
      cluster: p.cluster,
      ...(p.pathPrefix !== undefined ? { pathPrefix: p.pathPrefix } : {}),
      ...(p.timeoutMs !== undefined ? { timeoutMs: p.timeoutMs } : {}),
      ...(p.failOpen !== undefined ? { failureModeAllow: p.failOpen } : {}),
      ...(p.statusOnError !== undefined ? { statusOnError: p.statusOnError } : {}),
      ...(p.includeRequestHeadersInCheck ? { includeRequestHeaders: p.includeRequestHeadersInCheck } : {}),
      ...(p.headersToUpstreamOnAllow ? { headersToUpstreamOnAllow: p.headersToUpstreamOnAllow } : {}),
      ...(p.headersToDownstreamOnDeny ? { headersToDownstreamOnDeny: p.headersToDownstreamOnDeny } : {}),
      policies,
    });
  }
  const rbac: RbacConfig[] = [];
  if (denyAll) {
    // A CUSTOM policy whose provider is unknown (or several providers): nothing may pass, as Istio.
    rbac.push({
      rules: {
        action: "DENY",
        policies: {
          "istio-ext-authz-deny-all": { permissions: [ANY_PERMISSION], principals: [ANY_PRINCIPAL] },
        },
      },
    });
    return { extAuthz: [], rbac };
  }
  if (has.DENY || has.shadowDENY)
    rbac.push({
      ...(has.DENY ? { rules: { action: "DENY" as const, policies: enforced.DENY } } : {}),
      ...(has.shadowDENY
        ? {
            shadowRules: { action: "DENY" as const, policies: shadow.DENY },
            shadowRulesStatPrefix: "istio_dry_run_deny_",
          }
        : {}),
    });
  if (has.ALLOW || has.shadowALLOW)
    rbac.push({
      ...(has.ALLOW ? { rules: { action: "ALLOW" as const, policies: enforced.ALLOW } } : {}),
      ...(has.shadowALLOW
        ? {
            shadowRules: { action: "ALLOW" as const, policies: shadow.ALLOW },
            shadowRulesStatPrefix: "istio_dry_run_allow_",
          }
        : {}),
    });
  if (has.AUDIT) rbac.push({ rules: { action: "LOG", policies: enforced.AUDIT } });
  return { extAuthz, rbac };
}

/** Why a field or condition cannot be expressed on this chain. */
class Unsupported extends Error {}

/** One rule as an RBAC policy; null when the rule is dropped (ALLOW/CUSTOM with an unexpressible field). */
function rulePolicy(rule: Obj, ns: string, action: Action, o: AuthzOptions): RbacPolicy | null {
  const widen = action === "DENY" || action === "AUDIT";
  // Each field or condition: its matcher, or (when it cannot be expressed) dropped from the rule for DENY and
  // AUDIT, or the whole rule dropped for ALLOW and CUSTOM.
  const attempt = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (e instanceof Unsupported && widen) return undefined;
      throw e;
    }
  };
  try {
    const permissions: RbacPermission[] = [];
    const principals: RbacPrincipal[] = [];
    const to = arr(rule.to);
    if (to.length > 0) {
      const ops: RbacPermission[] = [];
      for (const t of to) {
        const op = obj(obj(t)?.operation) ?? {};
        const parts: RbacPermission[] = [];
        for (const [field, neg] of OPERATION_FIELDS) {
          const values = strings(op[field]);
          if (values.length === 0) continue;
          const m = attempt(() => orP(values.map((v) => operationValue(field, v, o))));
          if (m !== undefined) parts.push(neg ? notP(m) : m);
        }
        ops.push(andP(parts));
      }
      permissions.push(orP(ops));
    }
    const from = arr(rule.from);
    if (from.length > 0) {
      const sources: RbacPrincipal[] = [];
      for (const f of from) {
        const src = obj(obj(f)?.source) ?? {};
        const parts: RbacPrincipal[] = [];
        for (const [field, neg] of SOURCE_FIELDS) {
          const values = strings(src[field]);
          if (values.length === 0) continue;
          const m = attempt(() => orId(values.map((v) => sourceValue(field, v, ns, o))));
          if (m !== undefined) parts.push(neg ? notId(m) : m);
        }
        sources.push(andId(parts));
      }
      principals.push(orId(sources));
    }
    for (const c of arr(rule.when)) {
      const cond = obj(c) ?? {};
      const key = str(cond.key) ?? "";
      const values = strings(cond.values);
      const notValues = strings(cond.notValues);
      attempt(() => {
        const side = conditionSide(key);
        if (side === "permission") {
          const mk = (v: string) => conditionPermission(key, v, o);
          if (values.length > 0) permissions.push(orP(values.map(mk)));
          if (notValues.length > 0) permissions.push(notP(orP(notValues.map(mk))));
        } else {
          const mk = (v: string) => conditionPrincipal(key, v, ns, o);
          if (values.length > 0) principals.push(orId(values.map(mk)));
          if (notValues.length > 0) principals.push(notId(orId(notValues.map(mk))));
        }
      });
    }
    return { permissions: [andP(permissions)], principals: [andId(principals)] };
  } catch (e) {
    if (e instanceof Unsupported) return null;
    throw e;
  }
}

const OPERATION_FIELDS: ReadonlyArray<readonly [string, boolean]> = [
  ["hosts", false],
  ["notHosts", true],
  ["ports", false],
  ["notPorts", true],
  ["methods", false],
  ["notMethods", true],
  ["paths", false],
  ["notPaths", true],
];

const SOURCE_FIELDS: ReadonlyArray<readonly [string, boolean]> = [
  ["principals", false],
  ["notPrincipals", true],
  ["requestPrincipals", false],
  ["notRequestPrincipals", true],
  ["namespaces", false],
  ["notNamespaces", true],
  ["serviceAccounts", false],
  ["notServiceAccounts", true],
  ["ipBlocks", false],
  ["notIpBlocks", true],
  ["remoteIpBlocks", false],
  ["notRemoteIpBlocks", true],
  ["trustDomains", false],
  ["notTrustDomains", true],
];

function httpOnly(o: AuthzOptions, what: string): void {
  if (o.forTcp) throw new Unsupported(`${what} needs HTTP`);
}

function operationValue(field: string, v: string, o: AuthzOptions): RbacPermission {
  switch (field) {
    case "hosts":
    case "notHosts":
      httpOnly(o, field);
      return { header: { name: ":authority", ...hostMatcher(v) } };
    case "ports":
    case "notPorts":
      return Number(v) === o.port ? ANY_PERMISSION : NO_PERMISSION;
    case "methods":
    case "notMethods":
      httpOnly(o, field);
      return v === "*" ? ANY_PERMISSION : { header: { name: ":method", exact: v } };
    default:
      httpOnly(o, field);
      return pathPermission(v);
  }
}

function pathPermission(v: string): RbacPermission {
  if (v === "*") return { urlPath: { prefix: "" } };
  if (v.includes("{")) return { uriTemplate: v };
  if (v.startsWith("*")) return { urlPath: { suffix: v.slice(1) } };
  if (v.endsWith("*")) return { urlPath: { prefix: v.slice(0, -1) } };
  return { urlPath: { exact: v } };
}

/** Istio's host match: case-insensitive, with or without a port in the authority. */
function hostMatcher(v: string): RbacStringMatcher {
  const port = "(:[0-9]+)?";
  if (v === "*") return { regex: ".*" };
  if (v.startsWith("*")) return { regex: `.*${escapeRe(v.slice(1))}${port}`, ignoreCase: true };
  if (v.endsWith("*")) return { regex: `${escapeRe(v.slice(0, -1))}.*`, ignoreCase: true };
  return { regex: `${escapeRe(v)}${port}`, ignoreCase: true };
}

function escapeRe(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
}

/** Istio's string value: "*" any non-empty value, "x*" prefix, "*x" suffix, else exact. */
function wild(v: string, prefix = ""): RbacStringMatcher {
  if (v === "*") return { regex: ".+" };
  if (v.startsWith("*")) return { suffix: v.slice(1) };
  if (v.endsWith("*")) return { prefix: prefix + v.slice(0, -1) };
  return { exact: prefix + v };
}

/** TD/ns/N/sa/S in every trust domain of the mesh when TD is one of them (or cluster.local). */
function aliasedPrincipal(v: string, trustDomains: readonly string[]): RbacPrincipal {
  const slash = v.indexOf("/");
  const td = slash === -1 ? "" : v.slice(0, slash);
  if (trustDomains.length < 2 || !(trustDomains.includes(td) || td === "cluster.local"))
    return peer(wild(v, "spiffe://"));
  const rest = v.slice(slash);
  return orId(trustDomains.map((t) => peer(wild(`${t}${rest}`, "spiffe://"))));
}

function peer(m: RbacStringMatcher): RbacPrincipal {
  return { authenticated: { principalName: m } };
}

function nsPrincipal(v: string): RbacPrincipal {
  const re =
    v === "*"
      ? ".+"
      : v.startsWith("*")
        ? `.*${escapeRe(v.slice(1))}`
        : v.endsWith("*")
          ? `${escapeRe(v.slice(0, -1))}.*`
          : escapeRe(v);
  return peer({ regex: `spiffe://[^/]+/ns/${re}/sa/[^/]+` });
}

function saPrincipal(v: string, ns: string): RbacPrincipal {
  const slash = v.indexOf("/");
  const [n, sa] = slash === -1 ? [ns, v] : [v.slice(0, slash), v.slice(slash + 1)];
  return peer({ regex: `spiffe://[^/]+/ns/${escapeRe(n)}/sa/${escapeRe(sa)}` });
}

function tdPrincipal(v: string): RbacPrincipal {
  const re = v.startsWith("*")
    ? `[^/]*${escapeRe(v.slice(1))}`
    : v.endsWith("*")
      ? `${escapeRe(v.slice(0, -1))}[^/]*`
      : escapeRe(v);
  return peer({ regex: `spiffe://${re}/.*` });
}

function sourceValue(field: string, v: string, ns: string, o: AuthzOptions): RbacPrincipal {
  switch (field) {
    case "principals":
    case "notPrincipals":
      return v === "*"
        ? peer({ regex: ".+" })
        : v.startsWith("*")
          ? peer(wild(v))
          : aliasedPrincipal(v, o.trustDomains ?? []);
    case "requestPrincipals":
    case "notRequestPrincipals":
      httpOnly(o, field);
      return { requestPrincipal: wild(v) };
    case "namespaces":
    case "notNamespaces":
      return nsPrincipal(v);
    case "serviceAccounts":
    case "notServiceAccounts":
      return saPrincipal(v, ns);
    case "ipBlocks":
    case "notIpBlocks":
      return { directRemoteIp: v };
    case "remoteIpBlocks":
    case "notRemoteIpBlocks":
      return { remoteIp: v };
    default:
      return tdPrincipal(v);
  }
}

function conditionSide(key: string): "permission" | "principal" {
  return key === "destination.ip" || key === "destination.port" || key === "connection.sni"
    ? "permission"
    : "principal";
}

function conditionPermission(key: string, v: string, o: AuthzOptions): RbacPermission {
  if (key === "destination.ip") return { destinationIp: v };
  if (key === "destination.port") return Number(v) === o.port ? ANY_PERMISSION : NO_PERMISSION;
  return { requestedServerName: wild(v) };
}

function conditionPrincipal(key: string, v: string, ns: string, o: AuthzOptions): RbacPrincipal {
  switch (key) {
    case "source.ip":
      return { directRemoteIp: v };
    case "remote.ip":
      return { remoteIp: v };
    case "source.namespace":
      return nsPrincipal(v);
    case "source.principal":
      return sourceValue("principals", v, ns, o);
    case "source.serviceAccount":
      return saPrincipal(v, ns);
    case "source.trustDomain":
      return tdPrincipal(v);
    case "request.auth.principal":
      httpOnly(o, key);
      return { requestPrincipal: wild(v) };
    case "request.auth.audiences":
      httpOnly(o, key);
      return { jwtClaim: { path: ["aud"], value: wild(v) } };
    case "request.auth.presenter":
      httpOnly(o, key);
      return { jwtClaim: { path: ["azp"], value: wild(v) } };
  }
  const header = /^request\.headers\[([^\]]+)\]$/.exec(key);
  if (header) {
    httpOnly(o, key);
    return { header: { name: header[1]!.toLowerCase(), ...wild(v) } };
  }
  if (/^request\.auth\.claims(\[[^\]]+\])+$/.test(key)) {
    httpOnly(o, key);
    const path = [...key.matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]!);
    return { jwtClaim: { path, value: wild(v) } };
  }
  // experimental.envoy.filters.* and anything newer: not expressible here.
  throw new Unsupported(`unsupported key ${key}`);
}

function strings(v: unknown): string[] {
  return arr(v).filter((x): x is string => typeof x === "string");
}

function andP(l: RbacPermission[]): RbacPermission {
  return l.length === 0 ? ANY_PERMISSION : l.length === 1 ? l[0]! : { andRules: l };
}
function orP(l: RbacPermission[]): RbacPermission {
  return l.length === 1 ? l[0]! : { orRules: l };
}
function notP(p: RbacPermission): RbacPermission {
  return { notRule: p };
}
function andId(l: RbacPrincipal[]): RbacPrincipal {
  return l.length === 0 ? ANY_PRINCIPAL : l.length === 1 ? l[0]! : { andIds: l };
}
function orId(l: RbacPrincipal[]): RbacPrincipal {
  return l.length === 1 ? l[0]! : { orIds: l };
}
function notId(p: RbacPrincipal): RbacPrincipal {
  return { notId: p };
}
