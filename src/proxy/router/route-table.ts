// A RouteConfiguration compiled for lookup: virtual hosts by authority (exact, suffix and prefix wildcards,
// default), and each route's match as a precompiled predicate. Built once when config arrives; lookup per
// request does no compilation and no allocation beyond what the request itself brings.

import type {
  DirectResponseAction,
  HeaderMatcher,
  HeaderValueOption,
  QueryParameterMatcher,
  RedirectAction,
  RouteAction,
  RouteConfig,
  RouteConfiguration,
  VirtualHostConfig,
} from "../config/types.ts";
import { type CompiledCors, compileCors } from "../filters/cors.ts";
import { type CompiledFault, compileFault } from "../filters/fault.ts";
import { keepBucket, TokenBucket } from "../filters/local-rate-limit.ts";
import { RE2 } from "../lazy-modules.ts";
import { type CompiledRetryPolicy, compileRetryPolicy } from "./retry-policy.ts";

/** What routing needs from a request, whatever its protocol. */
export interface RouteInput {
  readonly method: string;
  /** Lower-cased authority (Host / :authority), with port if the client sent one. */
  readonly authority: string;
  /** Path and query, as received (origin form). */
  readonly path: string;
  readonly scheme: string;
  /** Flat [lowercase-name, value, ...]. */
  readonly headers: readonly string[];
}

/** A weighted cluster, its header operations merged with its route's (and route table's) at config time. */
export interface CompiledWeightedCluster {
  readonly name: string;
  readonly weight: number;
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
}

export interface CompiledRoute {
  readonly name: string;
  readonly virtualHost: string;
  readonly config: RouteConfig;
  readonly matches: (input: RouteInput, pathOnly: string, query: string) => boolean;
  /** Weighted clusters with cumulative weights for one random draw. */
  readonly clusters: readonly CompiledWeightedCluster[];
  readonly cumulativeWeights: Float64Array;
  readonly totalWeight: number;
  readonly action: RouteAction | undefined;
  readonly redirect: RedirectAction | undefined;
  readonly directResponse: DirectResponseAction | undefined;
  /** Rewrites the path (with query) for the upstream; undefined when the route does not rewrite. */
  readonly rewritePath: ((path: string, pathOnly: string, query: string) => string) | undefined;
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
  readonly retry: CompiledRetryPolicy;
  /** Whole-exchange timeout, 0 for none. */
  readonly timeoutMs: number;
  readonly fault: CompiledFault | undefined;
  readonly cors: CompiledCors | undefined;
  /** This route's token bucket (shared by every connection; kept across swaps while its settings are). */
  rateLimit: TokenBucket | undefined;
  readonly mirrors: readonly { readonly cluster: string; readonly fraction: number }[];
}

interface CompiledVirtualHost {
  readonly name: string;
  readonly routes: readonly CompiledRoute[];
}

export class RouteTable {
  readonly name: string;
  private readonly exact = new Map<string, CompiledVirtualHost>();
  /** "*.example.com" as ".example.com", longest first. */
  private readonly suffixes: Array<[string, CompiledVirtualHost]> = [];
  /** "foo.*" as "foo.", longest first. */
  private readonly prefixes: Array<[string, CompiledVirtualHost]> = [];
  private defaultHost: CompiledVirtualHost | undefined;
  private readonly virtualHosts: CompiledVirtualHost[] = [];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];

  constructor(config: RouteConfiguration) {
    this.name = config.name;
    this.responseHeadersToAdd = config.responseHeadersToAdd ?? [];
    for (const vh of config.virtualHosts) {
      const compiled: CompiledVirtualHost = {
        name: vh.name,
        routes: vh.routes.map((r, i) => compileRoute(vh, r, i, this.responseHeadersToAdd)),
      };
      this.virtualHosts.push(compiled);
      for (const raw of vh.domains) {
        const d = raw.toLowerCase();
        if (d === "*") this.defaultHost ??= compiled;
        else if (d.startsWith("*")) this.suffixes.push([d.slice(1), compiled]);
        else if (d.endsWith("*")) this.prefixes.push([d.slice(0, -1), compiled]);
        else if (!this.exact.has(d)) this.exact.set(d, compiled);
      }
    }
    this.suffixes.sort((a, b) => b[0].length - a[0].length);
    this.prefixes.sort((a, b) => b[0].length - a[0].length);
  }

  /** Takes over `previous`'s token buckets for routes (by virtual host and route name) whose settings are the same. */
  keepRateLimits(previous: RouteTable): void {
    const old = new Map<string, TokenBucket>();
    for (const vh of previous.virtualHosts)
      for (const r of vh.routes) if (r.rateLimit) old.set(`${vh.name}\u0000${r.name}`, r.rateLimit);
    if (old.size === 0) return;
    for (const vh of this.virtualHosts)
      for (const r of vh.routes) r.rateLimit = keepBucket(old.get(`${vh.name}\u0000${r.name}`), r.rateLimit);
  }

  /** The virtual host for an authority: exact (with port, then without), longest suffix, prefix, default. */
  private virtualHost(authority: string): CompiledVirtualHost | undefined {
    const hit = this.exact.get(authority);
    if (hit) return hit;
    const colon = authority.lastIndexOf(":");
    const host = colon > 0 && authority.indexOf("]") < colon ? authority.slice(0, colon) : authority;
    if (host !== authority) {
      const h = this.exact.get(host);
      if (h) return h;
    }
    // Wildcards match the authority as sent (Envoy's way: "*.example.com:8080" for a port), then without its
    // port, so that "*.example.com" also serves clients that name a port.
    for (const [suffix, vh] of this.suffixes)
      if (authority.endsWith(suffix) && authority.length > suffix.length) return vh;
    if (host !== authority)
      for (const [suffix, vh] of this.suffixes)
        if (host.endsWith(suffix) && host.length > suffix.length) return vh;
    for (const [prefix, vh] of this.prefixes) if (authority.startsWith(prefix)) return vh;
    return this.defaultHost;
  }

  /** The first matching route, or undefined (404 NR). */
  route(input: RouteInput): CompiledRoute | undefined {
    const vh = this.virtualHost(input.authority);
    if (!vh) return undefined;
    const q = input.path.indexOf("?");
    const pathOnly = q === -1 ? input.path : input.path.slice(0, q);
    const query = q === -1 ? "" : input.path.slice(q + 1);
    for (const r of vh.routes) if (r.matches(input, pathOnly, query)) return r;
    return undefined;
  }
}

/** Picks a weighted cluster with one random number. */
export function pickCluster(route: CompiledRoute, random: number): CompiledWeightedCluster | undefined {
  const n = route.clusters.length;
  if (n === 1) return route.clusters[0];
  const x = random * route.totalWeight;
  const cw = route.cumulativeWeights;
  for (let i = 0; i < n; i++) if (x < cw[i]!) return route.clusters[i];
  return route.clusters[n - 1];
}

function compileRoute(
  vh: VirtualHostConfig,
  r: RouteConfig,
  index: number,
  tableResponseHeaders: readonly HeaderValueOption[],
): CompiledRoute {
  const m = r.match;
  const ci = m.caseSensitive === false;
  const preds: Array<(input: RouteInput, pathOnly: string, query: string) => boolean> = [];
  if (m.path !== undefined) {
    const p = ci ? m.path.toLowerCase() : m.path;
    preds.push(ci ? (_i, path) => path.toLowerCase() === p : (_i, path) => path === p);
  } else if (m.prefix !== undefined) {
    const p = ci ? m.prefix.toLowerCase() : m.prefix;
    if (p !== "/" && p !== "")
      preds.push(ci ? (_i, path) => path.toLowerCase().startsWith(p) : (_i, path) => path.startsWith(p));
  } else if (m.regex !== undefined) {
    const re = new (RE2())(`^(?:${m.regex})$`, ci ? "iu" : "u");
    // Most path regexes start with a literal ("/admin/[a-z]+"): a startsWith test rules out most paths
    // before the call into RE2, which costs about a microsecond per request.
    const lit = ci ? literalPrefix(m.regex).toLowerCase() : literalPrefix(m.regex);
    if (lit === "") preds.push((_i, path) => re.test(path));
    else if (ci) preds.push((_i, path) => path.toLowerCase().startsWith(lit) && re.test(path));
    else preds.push((_i, path) => path.startsWith(lit) && re.test(path));
  }
  for (const h of m.headers ?? []) preds.push(compileHeaderMatcher(h));
  for (const q of m.queryParameters ?? []) preds.push(compileQueryMatcher(q));
  const matches =
    preds.length === 0
      ? () => true
      : preds.length === 1
        ? preds[0]!
        : (input: RouteInput, pathOnly: string, query: string) => {
            for (const p of preds) if (!p(input, pathOnly, query)) return false;
            return true;
          };

  const action = r.route;
  const routeOps = {
    requestHeadersToAdd: r.requestHeadersToAdd ?? [],
    requestHeadersToRemove: r.requestHeadersToRemove ?? [],
    responseHeadersToAdd: [...(r.responseHeadersToAdd ?? []), ...tableResponseHeaders],
    responseHeadersToRemove: r.responseHeadersToRemove ?? [],
  };
  const clusters: CompiledWeightedCluster[] = [];
  if (action?.cluster !== undefined) clusters.push(weighted({ name: action.cluster, weight: 1 }, routeOps));
  for (const wc of action?.weightedClusters ?? []) if (wc.weight > 0) clusters.push(weighted(wc, routeOps));
  const cumulativeWeights = new Float64Array(clusters.length);
  let total = 0;
  clusters.forEach((c, i) => {
    total += c.weight;
    cumulativeWeights[i] = total;
  });

  return {
    name: r.name ?? `${vh.name}/${index}`,
    virtualHost: vh.name,
    config: r,
    matches,
    clusters,
    cumulativeWeights,
    totalWeight: total,
    action,
    redirect: r.redirect,
    directResponse: r.directResponse,
    rewritePath: action ? compileRewrite(action, m.prefix) : undefined,
    requestHeadersToAdd: routeOps.requestHeadersToAdd,
    requestHeadersToRemove: routeOps.requestHeadersToRemove.map((h) => h.toLowerCase()),
    responseHeadersToAdd: routeOps.responseHeadersToAdd,
    responseHeadersToRemove: routeOps.responseHeadersToRemove.map((h) => h.toLowerCase()),
    retry: compileRetryPolicy(action?.retryPolicy),
    timeoutMs: action?.timeoutMs ?? 0,
    fault: compileFault(action?.fault),
    cors: compileCors(action?.cors),
    rateLimit: action?.localRateLimit ? new TokenBucket(action.localRateLimit, Date.now()) : undefined,
    mirrors: (action?.requestMirrorPolicies ?? []).map((m) => ({
      cluster: m.cluster,
      fraction: (m.percentage ?? 100) / 100,
    })),
  };
}

interface HeaderOps {
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
}

function weighted(
  wc: { name: string; weight: number } & Partial<HeaderOps>,
  route: HeaderOps,
): CompiledWeightedCluster {
  const lower = (xs: readonly string[]) => xs.map((h) => h.toLowerCase());
  return {
    name: wc.name,
    weight: wc.weight,
    requestHeadersToAdd: [...route.requestHeadersToAdd, ...(wc.requestHeadersToAdd ?? [])],
    requestHeadersToRemove: lower([...route.requestHeadersToRemove, ...(wc.requestHeadersToRemove ?? [])]),
    responseHeadersToAdd: [...route.responseHeadersToAdd, ...(wc.responseHeadersToAdd ?? [])],
    responseHeadersToRemove: lower([...route.responseHeadersToRemove, ...(wc.responseHeadersToRemove ?? [])]),
  };
}

function compileRewrite(
  action: RouteAction,
  matchedPrefix: string | undefined,
): ((path: string, pathOnly: string, query: string) => string) | undefined {
  const withQuery = (p: string, query: string) => (query === "" ? p : `${p}?${query}`);
  if (action.regexRewrite) {
    const re = new (RE2())(action.regexRewrite.pattern, "gu");
    // RE2's replace uses $1; Envoy's substitution uses \1.
    const sub = action.regexRewrite.substitution.replace(/\\(\d)/g, "$$$1");
    return (_path, pathOnly, query) => withQuery(pathOnly.replace(re, sub), query);
  }
  if (action.prefixRewrite !== undefined) {
    const replacement = action.prefixRewrite;
    const prefix = matchedPrefix ?? "";
    return (_path, pathOnly, query) => {
      let rest = pathOnly.slice(prefix.length);
      // Istio's rewrite of prefix "/a/" to "/": avoid "//b".
      if (replacement.endsWith("/") && rest.startsWith("/")) rest = rest.slice(1);
      const next = replacement + rest;
      return withQuery(next === "" ? "/" : next, query);
    };
  }
  return undefined;
}

/**
 * The literal text every match of an RE2 pattern starts with ("" when unsure): characters up to the first
 * metacharacter, minus the last one if a quantifier makes it optional. Any alternation gives "".
 */
export function literalPrefix(pattern: string): string {
  if (pattern.includes("|")) return "";
  let i = 0;
  while (i < pattern.length && !"\\.+*?()[]{}^$".includes(pattern[i]!)) i++;
  const next = pattern[i];
  if (next === "?" || next === "*" || next === "{") i--;
  return i > 0 ? pattern.slice(0, i) : "";
}

/** Reads a header (first value) from a flat list; pseudo-headers come from the input. */
export function headerValue(input: RouteInput, name: string): string | undefined {
  switch (name) {
    case ":method":
      return input.method;
    case ":authority":
      return input.authority;
    case ":path":
      return input.path;
    case ":scheme":
      return input.scheme;
  }
  const h = input.headers;
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
  return undefined;
}

/** One value test for header and query matchers: exact, prefix, suffix or whole-value RE2 (else any value). */
function compileValueTest(m: {
  exact?: string;
  prefix?: string;
  suffix?: string;
  regex?: string;
}): (v: string) => boolean {
  if (m.exact !== undefined) {
    const e = m.exact;
    return (v) => v === e;
  }
  if (m.prefix !== undefined) {
    const p = m.prefix;
    return (v) => v.startsWith(p);
  }
  if (m.suffix !== undefined) {
    const s = m.suffix;
    return (v) => v.endsWith(s);
  }
  if (m.regex !== undefined) {
    const re = new (RE2())(`^(?:${m.regex})$`, "u");
    return (v) => re.test(v);
  }
  return () => true;
}

function compileHeaderMatcher(m: HeaderMatcher): (input: RouteInput) => boolean {
  const name = m.name.toLowerCase();
  const test = compileValueTest(m);
  const wantPresent = m.present !== false;
  const invert = m.invert === true;
  return (input) => {
    const v = headerValue(input, name);
    const holds = v === undefined ? !wantPresent : wantPresent && test(v);
    return holds !== invert;
  };
}

function compileQueryMatcher(
  m: QueryParameterMatcher,
): (input: RouteInput, pathOnly: string, query: string) => boolean {
  const test = compileValueTest(m);
  const wantPresent = m.present !== false;
  return (_input, _pathOnly, query) => {
    const v = queryValue(query, m.name);
    if (v === undefined) return !wantPresent;
    return wantPresent && test(v);
  };
}

/** The first value of a query parameter, percent-decoded; undefined when absent. */
export function queryValue(query: string, name: string): string | undefined {
  if (query === "") return undefined;
  let start = 0;
  while (start <= query.length) {
    let amp = query.indexOf("&", start);
    if (amp === -1) amp = query.length;
    const eq = query.indexOf("=", start);
    const keyEnd = eq !== -1 && eq < amp ? eq : amp;
    if (decode(query.slice(start, keyEnd)) === name)
      return eq !== -1 && eq < amp ? decode(query.slice(eq + 1, amp)) : "";
    start = amp + 1;
  }
  return undefined;
}

function decode(s: string): string {
  if (s.indexOf("%") === -1 && s.indexOf("+") === -1) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}
