// Istio's semantic rules for VirtualService (pilot's validation, beyond the CRD schema).
import {
  atMostOne,
  type Checker,
  each,
  eachObj,
  num,
  type Obj,
  obj,
  type Path,
  setKeys,
  str,
} from "./checker.ts";
import { destination, exportTo, gatewayReference, labels, stringMatch } from "./common.ts";
import {
  durationAtLeast1ms,
  headerName,
  parseDuration,
  percent,
  port,
  re2Regex,
  wildcardHost,
} from "./formats.ts";

/** retryOn policies Envoy accepts (HTTP and gRPC); any HTTP status code is accepted too. */
export const RETRY_ON = new Set([
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "envoy-ratelimited",
  "retriable-4xx",
  "refused-stream",
  "retriable-status-codes",
  "retriable-headers",
  "http3-post-connect-failure",
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
]);

const MAX_DIRECT_RESPONSE_BODY = 1024 * 1024;
const LARGE_DIRECT_RESPONSE_BODY = 100 * 1024;
const PSEUDO_HEADERS = new Set([":method", ":scheme", ":authority", ":path", ":status"]);

export function validateVirtualService(c: Checker, spec: Obj): void {
  const hosts = (Array.isArray(spec.hosts) ? spec.hosts : []).filter(
    (h): h is string => typeof h === "string",
  );
  const gateways = (Array.isArray(spec.gateways) ? spec.gateways : []).filter(
    (g): g is string => typeof g === "string",
  );
  const isDelegate = hosts.length === 0;
  const http = Array.isArray(spec.http) ? spec.http : [];
  const tcp = Array.isArray(spec.tcp) ? spec.tcp : [];
  const tls = Array.isArray(spec.tls) ? spec.tls : [];

  if (isDelegate) {
    if (gateways.length > 0)
      c.error(["spec", "gateways"], "a delegate VirtualService (no hosts) must not set gateways");
    if (tls.length > 0)
      c.error(["spec", "tls"], "a delegate VirtualService (no hosts) must not have tls routes");
    if (tcp.length > 0)
      c.error(["spec", "tcp"], "a delegate VirtualService (no hosts) must not have tcp routes");
  }
  const appliesToMesh = gateways.length === 0 || gateways.includes("mesh");
  const seenHosts = new Set<string>();
  each(spec.hosts, ["spec", "hosts"], (h, p) => {
    const host = str(h);
    if (host === undefined) return;
    if (seenHosts.has(host)) c.error(p, `duplicate host "${host}"`);
    seenHosts.add(host);
    if (host === "*" && appliesToMesh) {
      c.error(p, "wildcard host * is not allowed for virtual services bound to the mesh gateway");
      return;
    }
    const err = wildcardHost(host.includes("/") ? host.slice(host.indexOf("/") + 1) : host);
    if (err) c.error(p, err);
    if (host.includes("/")) c.error(p, `host "${host}" must not contain a namespace; use exportTo`);
  });
  each(spec.gateways, ["spec", "gateways"], (g, p) => {
    const ref = str(g);
    if (ref === undefined) return;
    const err = gatewayReference(ref);
    if (err) c.error(p, err);
  });
  if (http.length === 0 && tcp.length === 0 && tls.length === 0) {
    c.error(["spec"], "http, tcp or tls must be provided in virtual service");
  }
  exportTo(c, spec.exportTo, ["spec", "exportTo"]);

  const routeNames = new Set<string>();
  eachObj(spec.http, ["spec", "http"], (route, p) => {
    const name = str(route.name);
    if (name) {
      if (routeNames.has(name)) c.error([...p, "name"], `duplicate route name "${name}"`);
      routeNames.add(name);
    }
    httpRoute(c, route, p, isDelegate);
  });
  eachObj(spec.tcp, ["spec", "tcp"], (route, p) => {
    eachObj(route.match, [...p, "match"], (m, mp) => l4Match(c, m, mp));
    routeDestinations(c, route.route, [...p, "route"], "TCP");
  });
  eachObj(spec.tls, ["spec", "tls"], (route, p) => {
    const matches = Array.isArray(route.match) ? route.match : [];
    if (matches.length === 0) c.error([...p, "match"], "a TLS route must have at least one match");
    eachObj(route.match, [...p, "match"], (m, mp) => {
      const sni = Array.isArray(m.sniHosts) ? m.sniHosts : [];
      if (sni.length === 0) c.error([...mp, "sniHosts"], "a TLS match must have at least one SNI host");
      each(m.sniHosts, [...mp, "sniHosts"], (s, sp) => {
        const h = str(s);
        if (h === undefined) return;
        const err = wildcardHost(h);
        if (err) c.error(sp, err);
        else if (!hosts.some((vh) => hostCovers(vh, h)))
          c.error(sp, `SNI host "${h}" is not matched by any host of this virtual service`);
      });
      l4Match(c, m, mp);
    });
    routeDestinations(c, route.route, [...p, "route"], "TLS");
  });
}

/** True when virtual-service host `vh` (maybe "*.x") covers `h`. */
function hostCovers(vh: string, h: string): boolean {
  if (vh === h || vh === "*") return true;
  if (vh.startsWith("*.")) return h.endsWith(vh.slice(1)) || h === vh;
  if (h.startsWith("*.")) return vh.endsWith(h.slice(1));
  return false;
}

function l4Match(c: Checker, m: Obj, p: Path): void {
  if (m.port !== undefined) {
    const err = port(m.port);
    if (err) c.error([...p, "port"], err);
  }
  labels(c, m.sourceLabels, [...p, "sourceLabels"]);
  each(m.destinationSubnets, [...p, "destinationSubnets"], (s, sp) => {
    const v = str(s);
    if (v === undefined) return;
    const [ip, bits] = v.split("/");
    if (!ip || !/^[0-9a-fA-F.:]+$/.test(ip) || (bits !== undefined && !/^\d+$/.test(bits)))
      c.error(sp, `"${v}" is not a valid IP address or CIDR`);
  });
  gatewaysInMatch(c, m, p);
}

function gatewaysInMatch(c: Checker, m: Obj, p: Path): void {
  each(m.gateways, [...p, "gateways"], (g, gp) => {
    const ref = str(g);
    if (ref === undefined) return;
    const err = gatewayReference(ref);
    if (err) c.error(gp, err);
  });
}

function routeDestinations(c: Checker, v: unknown, p: Path, what: string): void {
  const routes = Array.isArray(v) ? v : [];
  if (routes.length === 0) {
    c.error(p, `${what} route is required`);
    return;
  }
  weights(c, v, p);
}

function weights(c: Checker, v: unknown, p: Path): void {
  const routes = Array.isArray(v) ? v : [];
  let total = 0;
  eachObj(v, p, (dst, dp) => {
    if (!obj(dst.destination)) c.error([...dp, "destination"], "destination is required");
    destination(c, dst.destination, [...dp, "destination"]);
    const w = num(dst.weight);
    if (w !== undefined) {
      if (w < 0) c.error([...dp, "weight"], `weight ${w} < 0`);
      total += w;
    }
  });
  if (routes.length > 1 && total === 0) c.error(p, "total destination weight = 0");
}

function httpRoute(c: Checker, route: Obj, p: Path, inDelegate: boolean): void {
  const dests = Array.isArray(route.route) ? route.route : [];
  const hasRoute = dests.length > 0;
  const hasRedirect = obj(route.redirect) !== undefined;
  const hasDirect = obj(route.directResponse) !== undefined;
  const hasDelegate = obj(route.delegate) !== undefined;

  if (hasDelegate) {
    if (inDelegate) c.error([...p, "delegate"], "a delegate VirtualService cannot itself delegate");
    if (hasRoute || hasRedirect || hasDirect)
      c.error(p, "an HTTP route with delegate cannot also set route, redirect or directResponse");
    const d = obj(route.delegate)!;
    if (!str(d.name)) c.error([...p, "delegate", "name"], "delegate name is required");
  } else if (!hasRoute && !hasRedirect && !hasDirect) {
    c.error(p, "HTTP route, redirect or direct_response is required");
  }
  if (hasRoute && hasRedirect) c.error(p, "HTTP route cannot contain both route and redirect");
  if (hasDirect && (hasRoute || hasRedirect))
    c.error(p, "HTTP route cannot contain directResponse with route or redirect");
  if (hasRedirect && obj(route.rewrite))
    c.error(p, "HTTP route rule cannot contain both rewrite and redirect");
  if ((hasRedirect || hasDirect) && obj(route.fault))
    c.error(p, `HTTP route cannot contain both fault and ${hasRedirect ? "redirect" : "direct_response"}`);
  if (hasDirect && obj(route.rewrite))
    c.error(p, "HTTP route rule cannot contain both rewrite and direct_response");

  eachObj(route.match, [...p, "match"], (m, mp) => httpMatch(c, m, mp));
  if (hasRoute) weights(c, route.route, [...p, "route"]);
  eachObj(route.route, [...p, "route"], (dst, dp) => headerOperations(c, dst.headers, [...dp, "headers"]));

  if (route.timeout !== undefined) durationField(c, route.timeout, [...p, "timeout"]);
  retries(c, obj(route.retries), [...p, "retries"]);
  fault(c, obj(route.fault), [...p, "fault"]);
  redirect(c, obj(route.redirect), [...p, "redirect"]);
  rewrite(c, obj(route.rewrite), [...p, "rewrite"]);
  directResponse(c, obj(route.directResponse), [...p, "directResponse"]);
  headerOperations(c, route.headers, [...p, "headers"]);
  cors(c, obj(route.corsPolicy), [...p, "corsPolicy"]);

  if (obj(route.mirror) && Array.isArray(route.mirrors))
    c.error(p, "HTTP route cannot contain both mirror and mirrors");
  if (route.mirrorPercent !== undefined)
    c.warn(
      [...p, "mirrorPercent"],
      'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead',
    );
  destination(c, route.mirror, [...p, "mirror"]);
  const mp = obj(route.mirrorPercentage);
  if (mp && mp.value !== undefined) {
    const err = percent(mp.value);
    if (err) c.error([...p, "mirrorPercentage", "value"], `mirror ${err}`);
  }
  if (route.mirrorPercent !== undefined) {
    const err = percent(route.mirrorPercent);
    if (err) c.error([...p, "mirrorPercent"], `mirror ${err}`);
  }
  eachObj(route.mirrors, [...p, "mirrors"], (m, mip) => {
    if (!obj(m.destination)) c.error([...mip, "destination"], "destination is required");
    destination(c, m.destination, [...mip, "destination"]);
    const pc = obj(m.percentage);
    if (pc && pc.value !== undefined) {
      const err = percent(pc.value);
      if (err) c.error([...mip, "percentage", "value"], `mirror ${err}`);
    }
  });
}

function httpMatch(c: Checker, m: Obj, p: Path): void {
  for (const field of ["uri", "scheme", "method", "authority"]) stringMatch(c, m[field], [...p, field]);
  for (const field of ["headers", "withoutHeaders"]) {
    const hs = obj(m[field]);
    if (!hs) continue;
    for (const [name, value] of Object.entries(hs)) {
      if (!PSEUDO_HEADERS.has(name) && !name.startsWith("@request.auth.claims")) {
        const err = headerName(name);
        if (err) c.error([...p, field, name], err);
      }
      if (value === null) c.error([...p, field, name], `header match ${name} cannot be null`);
      stringMatch(c, value, [...p, field, name], { nonEmptyPrefix: true });
    }
  }
  for (const field of ["scheme", "method", "authority"]) {
    if (str(obj(m[field])?.prefix) === "")
      c.error([...p, field, "prefix"], "prefix string match should not be empty");
  }
  const qp = obj(m.queryParams);
  if (qp)
    for (const [name, value] of Object.entries(qp))
      stringMatch(c, value, [...p, "queryParams", name], { nonEmptyPrefix: true });
  if (m.port !== undefined) {
    const err = port(m.port);
    if (err) c.error([...p, "port"], err);
  }
  labels(c, m.sourceLabels, [...p, "sourceLabels"]);
  gatewaysInMatch(c, m, p);
}

function durationField(c: Checker, v: unknown, p: Path): void {
  const s = str(v);
  if (s === undefined) return;
  const err = durationAtLeast1ms(s);
  if (err) c.error(p, err);
}

function retries(c: Checker, r: Obj | undefined, p: Path): void {
  if (!r) return;
  const attempts = num(r.attempts);
  if (attempts !== undefined && attempts < 0) c.error([...p, "attempts"], "attempts cannot be negative");
  if (
    attempts === 0 &&
    (r.perTryTimeout !== undefined || r.retryOn !== undefined || r.retryRemoteLocalities !== undefined)
  )
    c.error(p, "http retry policy configured when attempts are set to 0 (disabled)");
  if (r.perTryTimeout !== undefined) durationField(c, r.perTryTimeout, [...p, "perTryTimeout"]);
  if (r.backoff !== undefined) durationField(c, r.backoff, [...p, "backoff"]);
  const retryOn = str(r.retryOn);
  if (retryOn !== undefined) {
    for (const raw of retryOn.split(",")) {
      const policy = raw.trim();
      if (policy === "") continue;
      if (RETRY_ON.has(policy)) continue;
      if (/^\d{3}$/.test(policy) && Number(policy) >= 100 && Number(policy) <= 599) continue;
      c.error([...p, "retryOn"], `"${policy}" is not a valid retryOn policy or HTTP status code`);
    }
  }
}

function fault(c: Checker, f: Obj | undefined, p: Path): void {
  if (!f) return;
  const delay = obj(f.delay);
  const abort = obj(f.abort);
  if (!delay && !abort) c.error(p, "fault must have at least one of delay or abort");
  if (delay) {
    if (delay.exponentialDelay !== undefined)
      c.error([...p, "delay", "exponentialDelay"], "exponentialDelay is not supported; use fixedDelay");
    else if (delay.fixedDelay === undefined) c.error([...p, "delay"], "delay must set fixedDelay");
    if (delay.fixedDelay !== undefined) durationField(c, delay.fixedDelay, [...p, "delay", "fixedDelay"]);
    faultPercentage(c, delay, [...p, "delay"]);
  }
  if (abort) {
    const kinds = setKeys(abort, ["httpStatus", "grpcStatus", "http2Error"]);
    if (kinds.length === 0) c.warn([...p, "abort"], "abort configured, but error type not set");
    if (kinds.length > 1)
      c.error([...p, "abort"], `only one of httpStatus, grpcStatus, http2Error may be set`);
    if (abort.http2Error !== undefined)
      c.error([...p, "abort", "http2Error"], "HTTP/2 abort fault injection is not supported");
    const grpc = str(abort.grpcStatus);
    if (grpc !== undefined && !GRPC_CODES.has(grpc))
      c.error(
        [...p, "abort", "grpcStatus"],
        `gRPC status "${grpc}" is not supported; use a code name such as UNAVAILABLE`,
      );
    const status = num(abort.httpStatus);
    if (status !== undefined && (status < 200 || status > 599))
      c.error([...p, "abort", "httpStatus"], `${status} is not a valid HTTP status (200-599)`);
    faultPercentage(c, abort, [...p, "abort"]);
  }
}

const GRPC_CODES = new Set([
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
]);

function faultPercentage(c: Checker, o: Obj, p: Path): void {
  const pc = obj(o.percentage);
  const v = num(pc?.value);
  if (v !== undefined && v !== 0 && !(v >= 0.0001 && v <= 100))
    c.error([...p, "percentage", "value"], `percentage ${v} is neither 0.0, nor in range [0.0001, 100.0]`);
  if (o.percent !== undefined) {
    const err = percent(o.percent);
    if (err) c.error([...p, "percent"], err);
  }
}

function redirect(c: Checker, r: Obj | undefined, p: Path): void {
  if (!r) return;
  if (setKeys(r, ["uri", "authority", "port", "derivePort", "scheme"]).length === 0)
    c.error(p, "redirect must specify uri, authority, scheme or port");
  atMostOne(c, r, p, ["port", "derivePort"], "redirect");
  const code = num(r.redirectCode);
  if (code !== undefined && code !== 0 && (code < 300 || code > 399))
    c.error([...p, "redirectCode"], `${code} is not a valid redirect code, must be 3xx`);
  if (r.port !== undefined) {
    const err = port(r.port);
    if (err) c.error([...p, "port"], err);
  }
  const scheme = str(r.scheme);
  if (scheme !== undefined && scheme !== "http" && scheme !== "https")
    c.error([...p, "scheme"], 'invalid redirect scheme, must be "http" or "https"');
}

function rewrite(c: Checker, r: Obj | undefined, p: Path): void {
  if (!r) return;
  if (setKeys(r, ["uri", "authority", "uriRegexRewrite"]).length === 0)
    c.error(p, "rewrite must specify uri, authority or uriRegexRewrite");
  if (str(r.uri) !== undefined && obj(r.uriRegexRewrite))
    c.error(p, "rewrite may contain only one of uri and uriRegexRewrite");
  const rr = obj(r.uriRegexRewrite);
  if (rr) {
    const match = str(rr.match);
    if (!match) c.error([...p, "uriRegexRewrite", "match"], "uriRegexRewrite.match is required");
    else {
      const err = re2Regex(match);
      if (err) c.error([...p, "uriRegexRewrite", "match"], err);
    }
    if (rr.rewrite === undefined)
      c.error([...p, "uriRegexRewrite", "rewrite"], "uriRegexRewrite.rewrite is required");
  }
}

function directResponse(c: Checker, d: Obj | undefined, p: Path): void {
  if (!d) return;
  const status = num(d.status);
  if (status !== undefined && (status < 200 || status > 599))
    c.error([...p, "status"], `${status} is not a valid HTTP status (200-599)`);
  const body = obj(d.body);
  if (body) {
    atMostOne(c, body, [...p, "body"], ["string", "bytes"]);
    const text = str(body.string) ?? str(body.bytes) ?? "";
    if (text.length > MAX_DIRECT_RESPONSE_BODY)
      c.error(
        [...p, "body"],
        "large direct_responses may impact control plane performance, must be less than 1MB",
      );
    else if (text.length > LARGE_DIRECT_RESPONSE_BODY)
      c.warn([...p, "body"], "large direct_responses may impact control plane performance (over 100KB)");
  }
}

function headerOperations(c: Checker, v: unknown, p: Path): void {
  const h = obj(v);
  if (!h) return;
  for (const side of ["request", "response"]) {
    const ops = obj(h[side]);
    if (!ops) continue;
    for (const op of ["set", "add"]) {
      const m = obj(ops[op]);
      if (!m) continue;
      for (const name of Object.keys(m)) {
        const err = headerName(name);
        if (err) c.error([...p, side, op, name], err);
        else if (name.toLowerCase() === "host" || name.startsWith(":"))
          c.error(
            [...p, side, op, name],
            `header "${name}" cannot be changed this way; use rewrite.authority`,
          );
      }
    }
    each(ops.remove, [...p, side, "remove"], (n, np) => {
      const name = str(n);
      if (name === undefined) return;
      const err = headerName(name);
      if (err) c.error(np, err);
    });
  }
}

const HTTP_METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

function cors(c: Checker, policy: Obj | undefined, p: Path): void {
  if (!policy) return;
  each(policy.allowOrigins, [...p, "allowOrigins"], (m, mp) => stringMatch(c, m, mp));
  each(policy.allowMethods, [...p, "allowMethods"], (m, mp) => {
    const s = str(m);
    if (s !== undefined && s !== "*" && !HTTP_METHODS.has(s))
      c.error(mp, `"${s}" is not a valid HTTP method`);
  });
  for (const field of ["allowHeaders", "exposeHeaders"]) {
    each(policy[field], [...p, field], (h, hp) => {
      const s = str(h);
      if (s === undefined || s === "*") return;
      const err = headerName(s);
      if (err) c.error(hp, err);
    });
  }
  const maxAge = str(policy.maxAge);
  if (maxAge !== undefined) {
    const ms = parseDuration(maxAge);
    if (typeof ms === "string") c.error([...p, "maxAge"], ms);
    else if (ms % 1000 !== 0)
      c.error([...p, "maxAge"], "max_age duration is accurate only to seconds precision");
  }
}
