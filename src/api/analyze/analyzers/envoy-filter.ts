// EnvoyFilter, as far as isthmus honours it: Envoy's HTTP local rate limit (envoy.filters.http.local_ratelimit,
// Istio's "Enabling Rate Limits using Envoy" task) inserted into the HTTP filter chain of gateway listeners and
// of the sidecar's outbound listener (applyTo HTTP_FILTER), and its per-route config merged into HTTP routes
// (applyTo HTTP_ROUTE, typed_per_filter_config). readEnvoyFilter() reads one EnvoyFilter into the patches the
// translator applies (src/control/translate/envoy-filter.ts) and findings for everything it does not apply,
// which the analyzer reports: ISM0003 for a patch (or part of one) that changes no proxy's config, ISM0004 for
// a patch applied without some of its settings. Nothing else of an EnvoyFilter reaches a proxy.
import type { FieldPath, Severity } from "../../diagnostic.ts";
import type { Resource } from "../../resource.ts";
import { arr, type Obj, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import { stringMap } from "../context.ts";

export const LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit";
const HCM = "envoy.filters.network.http_connection_manager";
const ROUTER = "envoy.filters.http.router";
const LOCAL_RATELIMIT_TYPE = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const TYPED_STRUCTS = new Set([
  "type.googleapis.com/udpa.type.v1.TypedStruct",
  "type.googleapis.com/xds.type.v3.TypedStruct",
]);
const ROOT_NAMESPACE = "istio-system";

/** The contexts isthmus has listeners for; SIDECAR_INBOUND comes with the inbound side (mTLS). */
export type PatchContext = "ANY" | "GATEWAY" | "SIDECAR_OUTBOUND";

/** A token bucket, in the proxy's terms (its LocalRateLimit). */
export interface TokenBucketLimit {
  readonly maxTokens: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
}

/** HTTP_FILTER: the filter inserted into the HTTP chains of the listeners the match selects. */
export interface ListenerRateLimitPatch {
  readonly kind: "listener";
  readonly index: number;
  readonly context: PatchContext;
  readonly portNumber?: number;
  readonly listenerName?: string;
  /** The chain's bucket; undefined when the filter comes without one (routes then carry their own). */
  readonly limit?: TokenBucketLimit;
}

/** HTTP_ROUTE: a bucket of their own for the routes the match selects. */
export interface RouteRateLimitPatch {
  readonly kind: "route";
  readonly index: number;
  readonly context: PatchContext;
  readonly portNumber?: number;
  readonly portName?: string;
  readonly gateway?: string;
  readonly routeConfigName?: string;
  readonly vhostName?: string;
  readonly domainName?: string;
  readonly routeName?: string;
  /** REDIRECT and DIRECT_RESPONSE routes have no bucket in the proxy: such patches are not applied. */
  readonly action: "ANY" | "ROUTE";
  readonly limit: TokenBucketLimit;
}

export type RateLimitPatch = ListenerRateLimitPatch | RouteRateLimitPatch;

export interface EnvoyFilterFinding {
  readonly code: "ISM0003" | "ISM0004";
  readonly severity: Severity;
  readonly path: FieldPath;
  readonly message: string;
}

export interface EnvoyFilterReading {
  /** workloadSelector.labels; undefined: every proxy of its namespace (of the mesh in istio-system). */
  readonly selector: Readonly<Record<string, string>> | undefined;
  readonly priority: number;
  /** false: it selects proxies in a way isthmus does not support (targetRefs), so it applies to none. */
  readonly selectable: boolean;
  readonly patches: readonly RateLimitPatch[];
  readonly findings: readonly EnvoyFilterFinding[];
}

const readings = new WeakMap<Resource, EnvoyFilterReading>();

/** What isthmus applies of an EnvoyFilter, and what it does not (read once per resource object). */
export function readEnvoyFilter(r: Resource): EnvoyFilterReading {
  let reading = readings.get(r);
  if (reading === undefined) {
    reading = read(r);
    readings.set(r, reading);
  }
  return reading;
}

/** Whether an EnvoyFilter applies to a proxy, as Istio selects them (its namespace's, the root namespace's). */
export function envoyFilterSelects(
  r: Resource,
  proxy: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
): boolean {
  if (r.namespace !== proxy.namespace && r.namespace !== ROOT_NAMESPACE) return false;
  const reading = readEnvoyFilter(r);
  if (!reading.selectable) return false;
  const sel = reading.selector;
  return sel === undefined || Object.entries(sel).every(([k, v]) => proxy.labels[k] === v);
}

/** Istio's order of the EnvoyFilters applied to one proxy: priority, creation time, then name.namespace. */
export function envoyFilterOrder(a: Resource, b: Resource): number {
  const pa = readEnvoyFilter(a).priority;
  const pb = readEnvoyFilter(b).priority;
  if (pa !== pb) return pa - pb;
  const ta = str(obj(a.object.metadata)?.creationTimestamp) ?? "";
  const tb = str(obj(b.object.metadata)?.creationTimestamp) ?? "";
  if (ta !== tb) return ta < tb ? -1 : 1;
  const na = `${a.name}.${a.namespace}`;
  const nb = `${b.name}.${b.namespace}`;
  return na < nb ? -1 : na > nb ? 1 : 0;
}

function read(r: Resource): EnvoyFilterReading {
  const spec = obj(r.object.spec) ?? {};
  const findings: EnvoyFilterFinding[] = [];
  const patches: RateLimitPatch[] = [];
  const notApplied = (path: FieldPath, message: string) =>
    findings.push({ code: "ISM0003", severity: "warning", path, message });
  const partly = (path: FieldPath, message: string) =>
    findings.push({ code: "ISM0004", severity: "warning", path, message });
  const selectorObj = obj(spec.workloadSelector);
  const labels = stringMap(selectorObj?.labels);
  const selector = Object.keys(labels).length > 0 ? labels : undefined;
  const selectable = arr(spec.targetRefs).length === 0;
  if (!selectable)
    notApplied(
      ["spec", "targetRefs"],
      "EnvoyFilter not applied: isthmus does not select proxies by targetRefs (use workloadSelector)",
    );
  arr(spec.configPatches).forEach((p, index) => {
    const patch = obj(p);
    if (!patch) return;
    const base: FieldPath = ["spec", "configPatches", index];
    const applyTo = str(patch.applyTo) ?? "INVALID";
    if (applyTo === "HTTP_FILTER") {
      const found = readHttpFilter(patch, index, base, notApplied, partly);
      if (found) patches.push(found);
    } else if (applyTo === "HTTP_ROUTE") {
      const found = readHttpRoute(patch, index, base, notApplied, partly);
      if (found) patches.push(found);
    } else if (applyTo === "VIRTUAL_HOST") {
      notApplied(
        [...base, "applyTo"],
        "patch not applied: applyTo VIRTUAL_HOST is not translated (a virtual host's bucket is shared by its routes; isthmus has buckets per listener and per route: use HTTP_ROUTE)",
      );
    } else {
      notApplied(
        [...base, "applyTo"],
        `patch not applied: applyTo ${applyTo} is not translated; isthmus applies only ${LOCAL_RATELIMIT_FILTER} (HTTP_FILTER, HTTP_ROUTE)`,
      );
    }
  });
  // In Envoy a route with its own config uses only its own bucket; the proxy takes a token from both.
  const listenerBucket = patches.find((p) => p.kind === "listener" && p.limit !== undefined);
  const routeBucket = patches.find((p) => p.kind === "route");
  if (listenerBucket && routeBucket)
    partly(
      ["spec", "configPatches", routeBucket.index],
      "requests of routes with their own bucket also take a token from the listener's bucket (configPatches[" +
        `${listenerBucket.index}]), where Envoy takes one from the route's only`,
    );
  const priority = typeof spec.priority === "number" ? spec.priority : 0;
  return { selector, priority, selectable, patches, findings };
}

type Note = (path: FieldPath, message: string) => void;

function readContext(patch: Obj, base: FieldPath, notApplied: Note): PatchContext | undefined {
  const context = str(obj(patch.match)?.context) ?? "ANY";
  if (context === "ANY" || context === "GATEWAY" || context === "SIDECAR_OUTBOUND") return context;
  const path = [...base, "match", "context"];
  if (context === "SIDECAR_INBOUND")
    notApplied(
      path,
      "patch not applied: isthmus sidecars have no inbound listener yet (it comes with mTLS); SIDECAR_OUTBOUND limits what the workload sends, GATEWAY what a gateway receives",
    );
  else notApplied(path, `patch not applied: context ${context} is not supported`);
  return undefined;
}

function readHttpFilter(
  patch: Obj,
  index: number,
  base: FieldPath,
  notApplied: Note,
  partly: Note,
): ListenerRateLimitPatch | undefined {
  const value = obj(obj(patch.patch)?.value);
  const name = str(value?.name);
  if (name !== LOCAL_RATELIMIT_FILTER) {
    notApplied(
      [...base, "patch", "value", ...(name !== undefined ? ["name"] : [])],
      `patch not applied: HTTP filter ${name ?? "(unnamed)"} is not translated; isthmus applies only ${LOCAL_RATELIMIT_FILTER}`,
    );
    return undefined;
  }
  const context = readContext(patch, base, notApplied);
  if (context === undefined) return undefined;
  const match = obj(patch.match) ?? {};
  if (match.proxy !== undefined) {
    notApplied([...base, "match", "proxy"], "patch not applied: match.proxy is not supported");
    return undefined;
  }
  const listener = obj(match.listener) ?? {};
  for (const key of Object.keys(listener))
    if (key !== "portNumber" && key !== "name" && key !== "filterChain") {
      notApplied(
        [...base, "match", "listener", key],
        `patch not applied: match.listener.${key} is not supported (portNumber, name and filterChain.filter are)`,
      );
      return undefined;
    }
  const chain = obj(listener.filterChain) ?? {};
  for (const key of Object.keys(chain))
    if (key !== "filter") {
      notApplied(
        [...base, "match", "listener", "filterChain", key],
        `patch not applied: match.listener.filterChain.${key} is not supported`,
      );
      return undefined;
    }
  const filter = obj(chain.filter) ?? {};
  const filterName = str(filter.name);
  if (filterName !== undefined && filterName !== HCM) {
    notApplied(
      [...base, "match", "listener", "filterChain", "filter", "name"],
      `patch not applied: an HTTP filter goes into ${HCM}, not ${filterName}`,
    );
    return undefined;
  }
  const subFilter = str(obj(filter.subFilter)?.name);
  if (subFilter !== undefined && subFilter !== ROUTER) {
    notApplied(
      [...base, "match", "listener", "filterChain", "filter", "subFilter", "name"],
      `patch not applied: isthmus' HTTP chains have no ${subFilter}; only ${ROUTER} can be matched`,
    );
    return undefined;
  }
  const operation = str(obj(patch.patch)?.operation) ?? "INVALID";
  const opPath = [...base, "patch", "operation"];
  if (operation === "ADD" || (operation === "INSERT_AFTER" && subFilter !== undefined)) {
    notApplied(
      opPath,
      `patch not applied: ${operation} puts the filter after the router, where it never runs`,
    );
    return undefined;
  }
  if (operation !== "INSERT_BEFORE" && operation !== "INSERT_FIRST" && operation !== "INSERT_AFTER") {
    notApplied(
      opPath,
      `patch not applied: operation ${operation} is not translated for HTTP_FILTER (INSERT_BEFORE, INSERT_FIRST and INSERT_AFTER are)`,
    );
    return undefined;
  }
  const portNumber = typeof listener.portNumber === "number" ? listener.portNumber : undefined;
  const listenerName = str(listener.name);
  if (context === "SIDECAR_OUTBOUND" && (portNumber !== undefined || listenerName !== undefined)) {
    notApplied(
      [...base, "match", "listener", portNumber !== undefined ? "portNumber" : "name"],
      "patch not applied: a sidecar's outbound side is one listener (virtualOutbound, port 15001) for every port, so a patch for one port's listener cannot be applied",
    );
    return undefined;
  }
  if (context === "ANY" && (portNumber !== undefined || listenerName !== undefined))
    partly(
      [...base, "match", "listener", portNumber !== undefined ? "portNumber" : "name"],
      "applied to gateways only: a sidecar's outbound side is one listener for every port",
    );
  const config = readTypedConfig(
    value?.typed_config,
    [...base, "patch", "value", "typed_config"],
    notApplied,
  );
  if (config === undefined) return undefined;
  let limit: TokenBucketLimit | undefined;
  if (config.value.token_bucket !== undefined) {
    const read = readLimit(config.value, config.path, notApplied, partly);
    if (read === undefined) return undefined;
    limit = read;
  } else {
    // Without a bucket the filter limits only routes that carry their own config.
    ignoredFields(config.value, config.path, partly);
  }
  return {
    kind: "listener",
    index,
    context,
    ...(portNumber !== undefined ? { portNumber } : {}),
    ...(listenerName !== undefined ? { listenerName } : {}),
    ...(limit ? { limit } : {}),
  };
}

function readHttpRoute(
  patch: Obj,
  index: number,
  base: FieldPath,
  notApplied: Note,
  partly: Note,
): RouteRateLimitPatch | undefined {
  const value = obj(obj(patch.patch)?.value) ?? {};
  const perFilter = obj(value.typed_per_filter_config);
  for (const key of Object.keys(value))
    if (key !== "typed_per_filter_config")
      notApplied(
        [...base, "patch", "value", key],
        `not applied: route field ${key} is not translated; isthmus merges only typed_per_filter_config.${LOCAL_RATELIMIT_FILTER}`,
      );
  for (const key of Object.keys(perFilter ?? {}))
    if (key !== LOCAL_RATELIMIT_FILTER)
      notApplied(
        [...base, "patch", "value", "typed_per_filter_config", key],
        `not applied: per-route config of ${key} is not translated; isthmus applies only ${LOCAL_RATELIMIT_FILTER}`,
      );
  const typed = perFilter?.[LOCAL_RATELIMIT_FILTER];
  if (typed === undefined) {
    if (!perFilter) notApplied([...base, "patch"], "patch not applied: it sets no local rate limit");
    return undefined;
  }
  const context = readContext(patch, base, notApplied);
  if (context === undefined) return undefined;
  const match = obj(patch.match) ?? {};
  if (match.proxy !== undefined) {
    notApplied([...base, "match", "proxy"], "patch not applied: match.proxy is not supported");
    return undefined;
  }
  const operation = str(obj(patch.patch)?.operation) ?? "INVALID";
  if (operation !== "MERGE") {
    notApplied(
      [...base, "patch", "operation"],
      `patch not applied: operation ${operation} is not translated for HTTP_ROUTE (MERGE is)`,
    );
    return undefined;
  }
  const rc = obj(match.routeConfiguration) ?? {};
  const vhost = obj(rc.vhost) ?? {};
  const route = obj(vhost.route) ?? {};
  const action = str(route.action) ?? "ANY";
  if (action === "REDIRECT" || action === "DIRECT_RESPONSE") {
    notApplied(
      [...base, "match", "routeConfiguration", "vhost", "route", "action"],
      `patch not applied: the proxy rate limits only routes that forward (ROUTE), not ${action} routes`,
    );
    return undefined;
  }
  const configPath = [...base, "patch", "value", "typed_per_filter_config", LOCAL_RATELIMIT_FILTER];
  const config = readTypedConfig(typed, configPath, notApplied);
  if (config === undefined) return undefined;
  if (config.value.token_bucket === undefined) {
    notApplied(
      config.path,
      "patch not applied: a per-route local rate limit needs a token_bucket (Envoy refuses one without)",
    );
    return undefined;
  }
  const limit = readLimit(config.value, config.path, notApplied, partly);
  if (limit === undefined) return undefined;
  const opt = <K extends string, V>(k: K, v: V | undefined) => (v !== undefined ? { [k]: v } : {});
  return {
    kind: "route",
    index,
    context,
    ...opt("portNumber", typeof rc.portNumber === "number" ? rc.portNumber : undefined),
    ...opt("portName", str(rc.portName)),
    ...opt("gateway", str(rc.gateway)),
    ...opt("routeConfigName", str(rc.name)),
    ...opt("vhostName", str(vhost.name)),
    ...opt("domainName", str(vhost.domainName)),
    ...opt("routeName", str(route.name)),
    action: action === "ROUTE" ? action : ("ANY" as const),
    limit,
  };
}

/** The LocalRateLimit message of a typed_config: a TypedStruct's value, or the message itself. */
function readTypedConfig(
  v: unknown,
  path: FieldPath,
  notApplied: Note,
): { value: Obj; path: FieldPath } | undefined {
  const typed = obj(v);
  if (!typed) {
    notApplied(path, "patch not applied: the filter has no typed_config");
    return undefined;
  }
  const type = str(typed["@type"]) ?? "";
  if (TYPED_STRUCTS.has(type)) {
    const url = str(typed.type_url) ?? "";
    if (!url.endsWith(`/${LOCAL_RATELIMIT_TYPE}`)) {
      notApplied([...path, "type_url"], `patch not applied: type_url ${url} is not ${LOCAL_RATELIMIT_TYPE}`);
      return undefined;
    }
    return { value: obj(typed.value) ?? {}, path: [...path, "value"] };
  }
  if (type.endsWith(`/${LOCAL_RATELIMIT_TYPE}`)) {
    const { "@type": _, ...rest } = typed;
    return { value: rest, path };
  }
  notApplied([...path, "@type"], `patch not applied: @type ${type} is not ${LOCAL_RATELIMIT_TYPE}`);
  return undefined;
}

/** Fields of LocalRateLimit that change what is limited in ways the proxy cannot do: the patch is refused. */
const REFUSED_FIELDS: Readonly<Record<string, string>> = {
  descriptors: "per-descriptor buckets are not supported",
  local_rate_limit_per_downstream_connection: "buckets per downstream connection are not supported",
  local_cluster_rate_limit: "a bucket shared across the cluster's proxies is not supported",
  rate_limits: "descriptor actions are not supported",
  vh_rate_limits: "descriptor actions are not supported",
};
/** Fields the translation reads, or that do nothing while the limit is enforced on every request. */
const READ_FIELDS = new Set([
  "stat_prefix",
  "token_bucket",
  "filter_enabled",
  "filter_enforced",
  "request_headers_to_add_when_not_enforced",
]);

function readLimit(
  config: Obj,
  path: FieldPath,
  notApplied: Note,
  partly: Note,
): TokenBucketLimit | undefined {
  for (const [key, why] of Object.entries(REFUSED_FIELDS))
    if (config[key] !== undefined) {
      notApplied([...path, key], `patch not applied: ${why}`);
      return undefined;
    }
  const bucket = obj(config.token_bucket) ?? {};
  const bucketPath = [...path, "token_bucket"];
  const maxTokens = uint(bucket.max_tokens);
  if (maxTokens === undefined || maxTokens < 1) {
    notApplied(
      [...bucketPath, "max_tokens"],
      "patch not applied: token_bucket.max_tokens must be an integer > 0",
    );
    return undefined;
  }
  const tokensPerFill = bucket.tokens_per_fill === undefined ? 1 : uint(bucket.tokens_per_fill);
  if (tokensPerFill === undefined || tokensPerFill < 1) {
    notApplied(
      [...bucketPath, "tokens_per_fill"],
      "patch not applied: token_bucket.tokens_per_fill must be an integer > 0",
    );
    return undefined;
  }
  const fillIntervalMs = protoDurationMs(bucket.fill_interval);
  if (fillIntervalMs === undefined || fillIntervalMs < 50) {
    notApplied(
      [...bucketPath, "fill_interval"],
      'patch not applied: token_bucket.fill_interval must be a duration of at least 50ms, such as "60s" or "0.5s"',
    );
    return undefined;
  }
  for (const key of ["filter_enabled", "filter_enforced"] as const) {
    const pct = fractionPercent(config[key]);
    const what = key === "filter_enabled" ? "enables" : "enforces";
    if (pct === undefined) {
      notApplied([...path, key], `patch not applied: ${key} is not a fractional percent`);
      return undefined;
    }
    if (pct <= 0) {
      notApplied(
        config[key] === undefined ? path : [...path, key],
        `patch not applied: ${key} ${config[key] === undefined ? "is unset, and Envoy's default is 0%" : "is 0%"}, so no request would be limited`,
      );
      return undefined;
    }
    if (pct < 100) {
      notApplied(
        [...path, key],
        `patch not supported: ${key} ${what} the limit for ${pct}% of requests; isthmus enforces it on every request (use 100)`,
      );
      return undefined;
    }
  }
  ignoredFields(config, path, partly);
  return { maxTokens, tokensPerFill, fillIntervalMs };
}

/** Fields applied without: reported, the limit itself still applies. */
function ignoredFields(config: Obj, path: FieldPath, partly: Note): void {
  for (const key of Object.keys(config)) {
    if (READ_FIELDS.has(key) || key in REFUSED_FIELDS) continue;
    const code = obj(config.status)?.code;
    if (key === "status" && (uint(code) === 429 || code === "TooManyRequests")) continue;
    const what =
      key === "response_headers_to_add"
        ? "these headers are not added to the 429 response"
        : key === "status"
          ? "the proxy answers 429"
          : "ignored";
    partly([...path, key], `${key} not supported: ${what}; the rate limit itself applies`);
  }
}

function uint(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v === "string" && /^\d{1,10}$/.test(v)) return Number(v);
  return undefined;
}

/** A protobuf Duration in its JSON form ("60s", "0.25s"), in milliseconds. */
function protoDurationMs(v: unknown): number | undefined {
  if (typeof v !== "string") return undefined;
  const m = /^(\d{1,12})(?:\.(\d{1,9}))?s$/.exec(v);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * 1000 + Number(`0.${m[2] ?? "0"}`) * 1000);
}

/** A RuntimeFractionalPercent's default in percent (runtime keys have no runtime here); unset is 0. */
function fractionPercent(v: unknown): number | undefined {
  if (v === undefined) return 0;
  const fraction = obj(obj(v)?.default_value);
  if (!fraction) return undefined;
  const numerator = fraction.numerator === undefined ? 0 : uint(fraction.numerator);
  const d = fraction.denominator ?? "HUNDRED";
  const denominator =
    d === "HUNDRED" || d === 0
      ? 100
      : d === "TEN_THOUSAND" || d === 1
        ? 10_000
        : d === "MILLION" || d === 2
          ? 1e6
          : 0;
  if (numerator === undefined || denominator === 0) return undefined;
  return Math.min(100, (numerator / denominator) * 100);
}

export const envoyFilterAnalyzer: Analyzer = {
  name: "envoyfilter.translation",
  codes: ["ISM0003", "ISM0004"],
  description:
    "EnvoyFilter patches isthmus does not apply (anything but the HTTP local rate limit) or applies only in part",
  run(ctx, report) {
    const filters = ctx.of("EnvoyFilter");
    for (const ef of filters) {
      const reading = readEnvoyFilter(ef);
      for (const f of reading.findings) report(ef, f.code, f.severity, f.path, f.message);
      // A per-route config does nothing unless the filter is in the chain (an HTTP_FILTER patch inserts it).
      for (const p of reading.patches) {
        if (p.kind !== "route") continue;
        const inserted = filters.some(
          (other) =>
            (other.namespace === ef.namespace ||
              other.namespace === ROOT_NAMESPACE ||
              ef.namespace === ROOT_NAMESPACE) &&
            readEnvoyFilter(other).patches.some(
              (q) =>
                q.kind === "listener" &&
                (q.context === "ANY" || p.context === "ANY" || q.context === p.context),
            ),
        );
        if (!inserted)
          report(
            ef,
            "ISM0003",
            "warning",
            ["spec", "configPatches", p.index],
            `patch has no effect: no HTTP_FILTER patch inserts ${LOCAL_RATELIMIT_FILTER}, without which Envoy ignores per-route configs`,
          );
      }
    }
  },
};
