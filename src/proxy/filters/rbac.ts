// Envoy's RBAC (envoy.filters.http.rbac and envoy.filters.network.rbac): policies of principals x permissions,
// compiled once per config into closures over what a request or connection shows. The filter decides from its
// rules (ALLOW: some policy must match; DENY: none may; LOG: never denies) and evaluates its shadow rules only
// to count them (dry run). On a TCP connection nothing of HTTP is known: header, path, method and JWT matchers
// never match there (the translator decides what a policy using them means for TCP).
import net from "node:net";
import type {
  RbacConfig,
  RbacHeaderMatcher,
  RbacPermission,
  RbacPolicy,
  RbacPrincipal,
  RbacRules,
  RbacStringMatcher,
} from "../config/types.ts";
import { RE2 } from "../lazy-modules.ts";
import type { Counter, StatsStore } from "../stats/stats.ts";

/** The verified JWT of a request (jwt_authn), for requestPrincipal and jwtClaim. */
export interface VerifiedJwt {
  /** "iss/sub". */
  readonly principal: string;
  readonly payload: Readonly<Record<string, unknown>>;
}

/** What RBAC sees of a request (http) or of a connection (tcp). */
export interface RbacInput {
  readonly http: boolean;
  readonly method: string;
  readonly authority: string;
  /** As sent, query included (":path"). */
  readonly path: string;
  /** Flat [name, value, ...], names lower-case. */
  readonly headers: readonly string[];
  readonly sourceIp: string;
  readonly destinationIp: string;
  readonly destinationPort: number;
  readonly sni: string | undefined;
  /** The verified TLS peer's URI SAN (else DNS SAN, else subject CN); undefined without a verified peer. */
  readonly peerPrincipal: string | undefined;
  readonly jwt: VerifiedJwt | undefined;
}

type Pred = (x: RbacInput) => boolean;

/** Compiled policies in name order (Envoy keeps them in a sorted map: the first match is the effective one). */
export class CompiledPolicies {
  private readonly list: ReadonlyArray<readonly [string, Pred]>;

  constructor(policies: Readonly<Record<string, RbacPolicy>>) {
    this.list = Object.keys(policies)
      .sort()
      .map((name) => [name, compilePolicy(policies[name]!)] as const);
  }

  /** The name of the first policy that matches, or undefined. */
  match(x: RbacInput): string | undefined {
    for (const [name, p] of this.list) if (p(x)) return name;
    return undefined;
  }
}

interface RbacCounters {
  readonly allowed: Counter;
  readonly denied: Counter;
}

class CompiledRules {
  readonly action: RbacRules["action"];
  readonly policies: CompiledPolicies;
  constructor(r: RbacRules) {
    this.action = r.action;
    this.policies = new CompiledPolicies(r.policies);
  }

  /** Whether the rules let the request through, and the effective policy. */
  decide(x: RbacInput): { allowed: boolean; policy: string | undefined } {
    const policy = this.policies.match(x);
    if (this.action === "ALLOW") return { allowed: policy !== undefined, policy };
    if (this.action === "DENY") return { allowed: policy === undefined, policy };
    return { allowed: true, policy };
  }
}

/** One RBAC filter. Counters: PREFIX.rbac.allowed / denied (logged / not_logged for LOG), shadow_allowed / shadow_denied. */
export class RbacFilter {
  private readonly rules: CompiledRules | undefined;
  private readonly shadow: CompiledRules | undefined;
  private readonly counters: RbacCounters | undefined;
  private readonly shadowCounters: RbacCounters | undefined;

  constructor(c: RbacConfig, store: StatsStore, statPrefix: string) {
    const p = `${statPrefix}rbac.`;
    if (c.rules) {
      this.rules = new CompiledRules(c.rules);
      const rp = `${p}${c.rulesStatPrefix ?? ""}`;
      this.counters =
        c.rules.action === "LOG"
          ? { allowed: store.counter(`${rp}logged`), denied: store.counter(`${rp}not_logged`) }
          : { allowed: store.counter(`${rp}allowed`), denied: store.counter(`${rp}denied`) };
    }
    if (c.shadowRules) {
      this.shadow = new CompiledRules(c.shadowRules);
      const sp = `${p}${c.shadowRulesStatPrefix ?? ""}`;
      this.shadowCounters = {
        allowed: store.counter(`${sp}shadow_allowed`),
        denied: store.counter(`${sp}shadow_denied`),
      };
    }
  }

  /** true: the request or connection may go on. */
  allows(x: RbacInput): boolean {
    if (this.shadow !== undefined) {
      const s = this.shadow.decide(x);
      // A shadow LOG rule counts as "allowed" when it would log, as Envoy's shadow engine reports a match.
      const hit = this.shadow.action === "LOG" ? s.policy !== undefined : s.allowed;
      (hit ? this.shadowCounters!.allowed : this.shadowCounters!.denied).inc();
    }
    if (this.rules === undefined) return true;
    const r = this.rules.decide(x);
    if (this.rules.action === "LOG") {
      (r.policy !== undefined ? this.counters!.allowed : this.counters!.denied).inc();
      return true;
    }
    (r.allowed ? this.counters!.allowed : this.counters!.denied).inc();
    return r.allowed;
  }
}

/** Every filter of a chain, in order: the first that denies decides. */
export function rbacAllows(filters: readonly RbacFilter[], x: RbacInput): boolean {
  for (const f of filters) if (!f.allows(x)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------- compile

function compilePolicy(p: RbacPolicy): Pred {
  const perms = p.permissions.map(compilePermission);
  const princ = p.principals.map(compilePrincipal);
  return (x) => perms.some((f) => f(x)) && princ.some((f) => f(x));
}

const always: Pred = () => true;

function compilePermission(p: RbacPermission): Pred {
  if (p.any) return always;
  if (p.andRules) {
    const l = p.andRules.map(compilePermission);
    return (x) => l.every((f) => f(x));
  }
  if (p.orRules) {
    const l = p.orRules.map(compilePermission);
    return (x) => l.some((f) => f(x));
  }
  if (p.notRule) {
    const f = compilePermission(p.notRule);
    return (x) => !f(x);
  }
  if (p.header) return compileHeader(p.header);
  if (p.urlPath) {
    const m = compileString(p.urlPath);
    return (x) => x.http && m(normalizedPath(x.path));
  }
  if (p.uriTemplate !== undefined) {
    const m = compileTemplate(p.uriTemplate);
    return (x) => x.http && m(normalizedPath(x.path));
  }
  if (p.destinationIp !== undefined) {
    const m = compileCidr(p.destinationIp);
    return (x) => m(x.destinationIp);
  }
  if (p.destinationPort !== undefined) {
    const port = p.destinationPort;
    return (x) => x.destinationPort === port;
  }
  if (p.requestedServerName) {
    const m = compileString(p.requestedServerName);
    return (x) => m(x.sni ?? "");
  }
  return never;
}

const never: Pred = () => false;

function compilePrincipal(p: RbacPrincipal): Pred {
  if (p.any) return always;
  if (p.andIds) {
    const l = p.andIds.map(compilePrincipal);
    return (x) => l.every((f) => f(x));
  }
  if (p.orIds) {
    const l = p.orIds.map(compilePrincipal);
    return (x) => l.some((f) => f(x));
  }
  if (p.notId) {
    const f = compilePrincipal(p.notId);
    return (x) => !f(x);
  }
  if (p.authenticated) {
    const name = p.authenticated.principalName;
    if (name === undefined) return (x) => x.peerPrincipal !== undefined;
    const m = compileString(name);
    return (x) => x.peerPrincipal !== undefined && m(x.peerPrincipal);
  }
  if (p.directRemoteIp !== undefined) {
    const m = compileCidr(p.directRemoteIp);
    return (x) => m(x.sourceIp);
  }
  if (p.remoteIp !== undefined) {
    const m = compileCidr(p.remoteIp);
    return (x) => m(x.sourceIp);
  }
  if (p.header) return compileHeader(p.header);
  if (p.requestPrincipal) {
    const m = compileString(p.requestPrincipal);
    return (x) => x.jwt !== undefined && m(x.jwt.principal);
  }
  if (p.jwtClaim) {
    const path = p.jwtClaim.path;
    const m = compileString(p.jwtClaim.value);
    return (x) => {
      if (x.jwt === undefined) return false;
      let v: unknown = x.jwt.payload;
      for (const k of path) {
        if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
        v = (v as Record<string, unknown>)[k];
      }
      if (typeof v === "string") return m(v);
      if (typeof v === "boolean" || typeof v === "number") return m(String(v));
      return Array.isArray(v) && v.some((e) => typeof e === "string" && m(e));
    };
  }
  return never;
}

export function compileString(s: RbacStringMatcher): (v: string) => boolean {
  const ic = s.ignoreCase === true;
  const norm = (v: string) => (ic ? v.toLowerCase() : v);
  if (s.exact !== undefined) {
    const e = norm(s.exact);
    return (v) => norm(v) === e;
  }
  if (s.prefix !== undefined) {
    const e = norm(s.prefix);
    return (v) => norm(v).startsWith(e);
  }
  if (s.suffix !== undefined) {
    const e = norm(s.suffix);
    return (v) => norm(v).endsWith(e);
  }
  if (s.contains !== undefined) {
    const e = norm(s.contains);
    return (v) => norm(v).includes(e);
  }
  if (s.regex !== undefined) {
    // The common "anything non-empty" needs no regex engine.
    if (s.regex === ".+") return (v) => v.length > 0;
    if (s.regex === ".*") return always as unknown as (v: string) => boolean;
    const re = new (RE2())(`^(?:${s.regex})$`, ic ? "iu" : "u");
    return (v) => re.test(v);
  }
  return () => false;
}

function headerValue(x: RbacInput, name: string): string | undefined {
  if (name.charCodeAt(0) === 0x3a /* ":" */) {
    if (!x.http) return undefined;
    if (name === ":method") return x.method;
    if (name === ":authority" || name === "host") return x.authority;
    if (name === ":path") return x.path;
    return undefined;
  }
  if (name === "host") return x.http ? x.authority : undefined;
  let out: string | undefined;
  const h = x.headers;
  for (let i = 0; i < h.length; i += 2)
    if (h[i] === name) out = out === undefined ? h[i + 1]! : `${out},${h[i + 1]!}`;
  return out;
}

function compileHeader(h: RbacHeaderMatcher): Pred {
  const name = h.name.toLowerCase();
  const hasValue =
    h.exact !== undefined ||
    h.prefix !== undefined ||
    h.suffix !== undefined ||
    h.contains !== undefined ||
    h.regex !== undefined;
  const m = hasValue ? compileString(h) : undefined;
  const present = h.present ?? true;
  const invert = h.invert === true;
  return (x) => {
    if (!x.http) return false;
    const v = headerValue(x, name);
    const r = m !== undefined ? v !== undefined && m(v) : (v !== undefined) === present;
    return invert ? !r : r;
  };
}

/** An address without an IPv4-mapped IPv6 prefix, as policies name IPv4 sources. */
export function plainIp(a: string): string {
  return a.startsWith("::ffff:") && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

function compileCidr(cidr: string): (ip: string) => boolean {
  const [addr, len] = cidr.split("/") as [string, string | undefined];
  const family = net.isIP(addr) === 6 ? "ipv6" : "ipv4";
  const list = new net.BlockList();
  if (len === undefined) list.addAddress(addr, family);
  else list.addSubnet(addr, Number(len), family);
  return (ip) => {
    const a = plainIp(ip);
    const f = net.isIP(a);
    return f !== 0 && list.check(a, f === 6 ? "ipv6" : "ipv4");
  };
}

/**
 * Envoy's uri_template: `{*}` one non-empty segment, `{**}` one or more characters across segments (at most
 * once, with only literal segments after it). Built from whole segments only, so the expression is linear.
 */
function compileTemplate(t: string): (path: string) => boolean {
  const body = t
    .split("/")
    .slice(1)
    .map((s) => (s === "{*}" ? "[^/]+" : s === "{**}" ? ".+" : s.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")))
    .join("/");
  const re = new RegExp(`^/${body}$`);
  return (path) => re.test(path);
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g;

/**
 * The path as policies see it (Istio's default normalization, BASE): no query or fragment, percent-encoded
 * unreserved characters decoded, "." and ".." segments resolved. A request for /public/../admin is judged as
 * /admin, which is what the application will serve.
 */
export function normalizedPath(raw: string): string {
  let end = raw.length;
  const q = raw.indexOf("?");
  if (q !== -1) end = q;
  const h = raw.indexOf("#");
  if (h !== -1 && h < end) end = h;
  let p = raw.slice(0, end);
  if (p.includes("%")) p = p.replace(UNRESERVED, (m) => String.fromCharCode(Number.parseInt(m.slice(1), 16)));
  if (!p.includes("/.")) return p;
  const out: string[] = [];
  const segs = p.split("/");
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i]!;
    if (s === ".") {
      if (i === segs.length - 1) out.push("");
    } else if (s === "..") {
      out.pop();
      if (i === segs.length - 1) out.push("");
    } else out.push(s);
  }
  return `/${out.join("/")}`;
}
