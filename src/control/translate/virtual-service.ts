// VirtualService HTTP routes -> the proxy's routes, with Istio's semantics: each match of an HTTPRoute becomes
// one route (a rule without match matches everything), in order; destinations become weighted clusters named
// outbound|PORT|SUBSET|HOST; redirect, directResponse, rewrite, timeout, retries, fault, mirror(s), corsPolicy
// and header operations map onto the proxy's fields of the same meaning.
import { resolveHost } from "../../api/analyze/context.ts";
import { arr, num, type Obj, obj, str } from "../../api/validate/checker.ts";
import type {
  CorsPolicy,
  FaultPolicy,
  HeaderMatcher,
  HeaderValueOption,
  MirrorPolicy,
  QueryParameterMatcher,
  RetryPolicy,
  RouteAction,
  RouteConfig,
  RouteMatch,
  StringMatch,
  WeightedCluster,
} from "../../proxy/config/types.ts";
import { durationMs } from "./duration.ts";
import { outboundCluster } from "./names.ts";

export interface RouteContext {
  /** The VirtualService's namespace (short hosts resolve in it). */
  readonly namespace: string;
  /** The port the route table serves (a destination without a port goes to it). */
  readonly port: number;
  /** The client's labels, for sourceLabels. */
  readonly sourceLabels: Readonly<Record<string, string>>;
  /** The client's namespace, for sourceNamespace. */
  readonly sourceNamespace: string;
  /**
   * What the proxy is, as match `gateways` name it: "mesh" for a sidecar, "ns/name" of each Gateway for a
   * gateway. A match that lists gateways applies only to these (and then its sourceLabels are not checked).
   */
  readonly gateways: ReadonlySet<string>;
  /** Ports of a destination host, when it has exactly one (a destination without port uses it). */
  readonly onlyPort: (host: string) => number | undefined;
  /** Hash policy for a destination cluster (from its DestinationRule's consistentHash). */
  readonly hashPolicy: (host: string, port: number, subset: string) => RouteAction["hashPolicy"];
}

/** The proxy routes for one VirtualService's `http` rules. */
export function translateHttpRoutes(vs: Obj, name: string, ctx: RouteContext): RouteConfig[] {
  const out: RouteConfig[] = [];
  arr(vs.http).forEach((r, i) => {
    const rule = obj(r);
    if (!rule) return;
    const matches = arr(rule.match)
      .map(obj)
      .filter((m): m is Obj => m !== undefined);
    const applicable = matches.filter((m) => sourceMatches(m, ctx));
    if (matches.length > 0 && applicable.length === 0) return;
    const body = routeBody(rule, ctx);
    const routeName = str(rule.name) ?? `${name}.${i}`;
    if (applicable.length === 0) out.push({ name: routeName, match: { prefix: "/" }, ...body });
    else for (const m of applicable) out.push({ name: routeName, match: translateMatch(m), ...body });
  });
  return out;
}

/** Istio's TranslateRoute filters: the match's port, then its gateways or else its source labels and namespace. */
function sourceMatches(m: Obj, ctx: RouteContext): boolean {
  const port = num(m.port);
  if (port !== undefined && port !== 0 && port !== ctx.port) return false;
  const gateways = arr(m.gateways).filter((g): g is string => typeof g === "string");
  if (gateways.length > 0)
    return gateways.some((g) => ctx.gateways.has(resolveGatewayName(g, ctx.namespace)));
  const labels = obj(m.sourceLabels);
  if (labels && !Object.entries(labels).every(([k, v]) => ctx.sourceLabels[k] === v)) return false;
  const ns = str(m.sourceNamespace);
  return ns === undefined || ns === "" || ns === ctx.sourceNamespace;
}

/**
 * Istio's resolveGatewayName: "mesh" stays; "name" is "ns/name" in the VirtualService's namespace, "./name"
 * too; the legacy "name.ns.svc.cluster.local" is "ns/name".
 */
export function resolveGatewayName(gw: string, namespace: string): string {
  if (gw === "mesh") return gw;
  const slash = gw.indexOf("/");
  if (slash === -1) {
    const dot = gw.indexOf(".");
    if (dot === -1) return `${namespace}/${gw}`;
    const rest = gw.slice(dot + 1);
    const next = rest.indexOf(".");
    return `${next === -1 ? rest : rest.slice(0, next)}/${gw.slice(0, dot)}`;
  }
  return gw.slice(0, slash) === "." ? `${namespace}${gw.slice(slash)}` : gw;
}

function stringMatch(v: unknown): StringMatch | undefined {
  const o = obj(v);
  if (!o) return undefined;
  if (str(o.exact) !== undefined) return { exact: str(o.exact)! };
  if (str(o.prefix) !== undefined) return { prefix: str(o.prefix)! };
  if (str(o.regex) !== undefined) return { regex: str(o.regex)! };
  return undefined;
}

function translateMatch(m: Obj): RouteMatch {
  const match: {
    -readonly [K in keyof RouteMatch]: RouteMatch[K];
  } = {};
  const uri = stringMatch(m.uri);
  if (uri?.exact !== undefined) match.path = uri.exact;
  else if (uri?.prefix !== undefined) match.prefix = uri.prefix;
  else if (uri?.regex !== undefined) match.regex = uri.regex;
  else match.prefix = "/";
  if (m.ignoreUriCase === true) match.caseSensitive = false;
  const headers: HeaderMatcher[] = [];
  for (const [name, v] of Object.entries(obj(m.headers) ?? {}))
    headers.push(headerMatcher(name.toLowerCase(), v));
  for (const [name, v] of Object.entries(obj(m.withoutHeaders) ?? {})) {
    const h = headerMatcher(name.toLowerCase(), v);
    headers.push(
      h.exact === undefined && h.prefix === undefined && h.regex === undefined
        ? { name: h.name, present: false }
        : { ...h, invert: true },
    );
  }
  const pseudo = (key: string, name: string) => {
    const sm = stringMatch(m[key]);
    if (sm) headers.push({ name, ...sm });
  };
  pseudo("method", ":method");
  pseudo("authority", ":authority");
  pseudo("scheme", ":scheme");
  if (headers.length > 0) match.headers = headers;
  const query: QueryParameterMatcher[] = [];
  for (const [name, v] of Object.entries(obj(m.queryParams) ?? {})) {
    const sm = stringMatch(v);
    query.push(sm ? { name, ...sm } : { name, present: true });
  }
  if (query.length > 0) match.queryParameters = query;
  return match;
}

function headerMatcher(name: string, v: unknown): HeaderMatcher {
  const sm = stringMatch(v);
  return sm ? { name, ...sm } : { name, present: true };
}

function routeBody(rule: Obj, ctx: RouteContext): Omit<RouteConfig, "name" | "match"> {
  const headers = obj(rule.headers);
  const ops = headerOps(obj(headers?.request), obj(headers?.response));
  const redirect = obj(rule.redirect);
  if (redirect) {
    const uri = str(redirect.uri);
    return {
      redirect: {
        ...(uri !== undefined ? { path: uri } : {}),
        ...(str(redirect.authority) ? { host: str(redirect.authority)! } : {}),
        ...(num(redirect.port) !== undefined ? { port: num(redirect.port)! } : {}),
        ...(str(redirect.scheme) === "http" || str(redirect.scheme) === "https"
          ? { scheme: str(redirect.scheme)! }
          : {}),
        ...(num(redirect.redirectCode) !== undefined ? { responseCode: num(redirect.redirectCode)! } : {}),
      },
      ...ops,
    };
  }
  const direct = obj(rule.directResponse);
  if (direct) {
    const body = obj(direct.body);
    const text =
      str(body?.string) ??
      (str(body?.bytes) ? Buffer.from(str(body?.bytes)!, "base64").toString() : undefined);
    return {
      directResponse: { status: num(direct.status) ?? 200, ...(text !== undefined ? { body: text } : {}) },
      ...ops,
    };
  }
  const dests = arr(rule.route)
    .map(obj)
    .filter((d): d is Obj => d !== undefined);
  const weighted: WeightedCluster[] = dests.map((d) => {
    const dest = obj(d.destination);
    const host = resolveHost(str(dest?.host) ?? "", ctx.namespace);
    const port = num(obj(dest?.port)?.number) ?? ctx.onlyPort(host) ?? ctx.port;
    const subset = str(dest?.subset) ?? "";
    const dh = obj(d.headers);
    const dops = headerOps(obj(dh?.request), obj(dh?.response));
    return {
      name: outboundCluster(host, port, subset),
      weight: num(d.weight) ?? (dests.length === 1 ? 100 : 0),
      ...dops,
    };
  });
  const action: { -readonly [K in keyof RouteAction]: RouteAction[K] } = {};
  if (weighted.length === 1) action.cluster = weighted[0]!.name;
  else action.weightedClusters = weighted;
  const first = obj(dests[0]?.destination);
  if (first) {
    const host = resolveHost(str(first.host) ?? "", ctx.namespace);
    const port = num(obj(first.port)?.number) ?? ctx.onlyPort(host) ?? ctx.port;
    const hp = ctx.hashPolicy(host, port, str(first.subset) ?? "");
    if (hp) action.hashPolicy = hp;
  }
  const rewrite = obj(rule.rewrite);
  if (str(rewrite?.uri) !== undefined) action.prefixRewrite = str(rewrite?.uri)!;
  const rr = obj(rewrite?.uriRegexRewrite);
  if (str(rr?.match) !== undefined)
    action.regexRewrite = { pattern: str(rr?.match)!, substitution: str(rr?.rewrite) ?? "" };
  if (str(rewrite?.authority)) action.hostRewrite = str(rewrite?.authority)!;
  const timeout = durationMs(rule.timeout);
  if (timeout !== undefined) action.timeoutMs = timeout;
  const retry = retryPolicy(obj(rule.retries));
  if (retry) action.retryPolicy = retry;
  const fault = faultPolicy(obj(rule.fault));
  if (fault) action.fault = fault;
  const mirrors = mirrorPolicies(rule, ctx);
  if (mirrors.length > 0) action.requestMirrorPolicies = mirrors;
  const cors = corsPolicy(obj(rule.corsPolicy));
  if (cors) action.cors = cors;
  return { route: action, ...ops };
}

function headerOps(req: Obj | undefined, res: Obj | undefined) {
  const adds = (o: Obj | undefined): HeaderValueOption[] => [
    ...Object.entries(obj(o?.set) ?? {}).map(([name, value]) => ({
      name,
      value: String(value),
      append: false,
    })),
    ...Object.entries(obj(o?.add) ?? {}).map(([name, value]) => ({
      name,
      value: String(value),
      append: true,
    })),
  ];
  const removes = (o: Obj | undefined) => arr(o?.remove).filter((x): x is string => typeof x === "string");
  const out: {
    requestHeadersToAdd?: HeaderValueOption[];
    requestHeadersToRemove?: string[];
    responseHeadersToAdd?: HeaderValueOption[];
    responseHeadersToRemove?: string[];
  } = {};
  if (adds(req).length > 0) out.requestHeadersToAdd = adds(req);
  if (removes(req).length > 0) out.requestHeadersToRemove = removes(req);
  if (adds(res).length > 0) out.responseHeadersToAdd = adds(res);
  if (removes(res).length > 0) out.responseHeadersToRemove = removes(res);
  return out;
}

const GRPC_RETRY_ON = new Set([
  "cancelled",
  "deadline-exceeded",
  "resource-exhausted",
  "unavailable",
  "internal",
]);

/** Istio's HTTPRetry: attempts, perTryTimeout, retryOn (a comma list; a bare number is a status code). */
export function retryPolicy(r: Obj | undefined): RetryPolicy | undefined {
  if (!r) return undefined;
  const attempts = num(r.attempts) ?? 0;
  const on: string[] = [];
  const codes: number[] = [];
  for (const part of (str(r.retryOn) ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (/^\d{3}$/.test(part)) codes.push(Number(part));
    else if (part !== "internal" || GRPC_RETRY_ON.has(part)) on.push(part);
  }
  if (codes.length > 0 && !on.includes("retriable-status-codes")) on.push("retriable-status-codes");
  const perTry = durationMs(r.perTryTimeout);
  return {
    numRetries: attempts,
    ...(perTry !== undefined ? { perTryTimeoutMs: perTry } : {}),
    ...(on.length > 0 ? { retryOn: on.filter((x) => x !== "internal") } : {}),
    ...(codes.length > 0 ? { retriableStatusCodes: codes } : {}),
  };
}

function percentage(v: unknown): number | undefined {
  const o = obj(v);
  return num(o?.value);
}

export function faultPolicy(f: Obj | undefined): FaultPolicy | undefined {
  if (!f) return undefined;
  const delay = obj(f.delay);
  const abort = obj(f.abort);
  const out: { delay?: FaultPolicy["delay"]; abort?: FaultPolicy["abort"] } = {};
  const fixed = durationMs(delay?.fixedDelay);
  if (delay && fixed !== undefined) {
    const p = percentage(delay.percentage) ?? num(delay.percent);
    out.delay = { fixedDelayMs: fixed, ...(p !== undefined ? { percentage: p } : {}) };
  }
  if (abort) {
    const p = percentage(abort.percentage);
    const grpc = str(abort.grpcStatus);
    const http = num(abort.httpStatus);
    if (http !== undefined) out.abort = { httpStatus: http, ...(p !== undefined ? { percentage: p } : {}) };
    else if (grpc !== undefined)
      out.abort = { grpcStatus: GRPC_CODES[grpc] ?? 2, ...(p !== undefined ? { percentage: p } : {}) };
  }
  return out.delay || out.abort ? out : undefined;
}

const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

function mirrorPolicies(rule: Obj, ctx: RouteContext): MirrorPolicy[] {
  const one = (dest: Obj | undefined, pct: number | undefined): MirrorPolicy | undefined => {
    if (!dest) return undefined;
    const host = resolveHost(str(dest.host) ?? "", ctx.namespace);
    const port = num(obj(dest.port)?.number) ?? ctx.onlyPort(host) ?? ctx.port;
    return {
      cluster: outboundCluster(host, port, str(dest.subset) ?? ""),
      ...(pct !== undefined ? { percentage: pct } : {}),
    };
  };
  const out: MirrorPolicy[] = [];
  const m = one(obj(rule.mirror), percentage(rule.mirrorPercentage) ?? num(rule.mirrorPercent));
  if (m) out.push(m);
  for (const x of arr(rule.mirrors)) {
    const o = obj(x);
    const mm = one(obj(o?.destination), percentage(o?.percentage));
    if (mm) out.push(mm);
  }
  return out;
}

function corsPolicy(c: Obj | undefined): CorsPolicy | undefined {
  if (!c) return undefined;
  const origins: StringMatch[] = [
    ...arr(c.allowOrigins)
      .map(stringMatch)
      .filter((x): x is StringMatch => x !== undefined),
    ...arr(c.allowOrigin)
      .filter((x): x is string => typeof x === "string")
      .map((exact) => ({ exact })),
  ];
  const list = (v: unknown) => arr(v).filter((x): x is string => typeof x === "string");
  const maxAge = durationMs(c.maxAge);
  return {
    allowOrigins: origins,
    ...(list(c.allowMethods).length > 0 ? { allowMethods: list(c.allowMethods) } : {}),
    ...(list(c.allowHeaders).length > 0 ? { allowHeaders: list(c.allowHeaders) } : {}),
    ...(list(c.exposeHeaders).length > 0 ? { exposeHeaders: list(c.exposeHeaders) } : {}),
    ...(maxAge !== undefined ? { maxAgeSeconds: Math.round(maxAge / 1000) } : {}),
    ...(typeof c.allowCredentials === "boolean" ? { allowCredentials: c.allowCredentials } : {}),
  };
}
