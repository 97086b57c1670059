// DestinationRule -> cluster settings, with Istio's semantics: the rule for a host is found in the client's
// namespace first, then the service's, then the root namespace (istio-system); a subset's trafficPolicy is
// merged over the rule's, field by field; portLevelSettings override for their port.
import { hostMatches, resolveHost } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, num, type Obj, obj, str } from "../../api/validate/checker.ts";
import type { ClusterConfig, HashPolicy, LbPolicy } from "../../proxy/config/types.ts";
import { durationMs } from "./duration.ts";

export const ROOT_NAMESPACE = "istio-system";

export interface ResolvedRule {
  readonly resource: Resource;
  readonly spec: Obj;
}

interface IndexedRule {
  readonly rule: ResolvedRule;
  readonly host: string;
}

/** Rules by namespace with their hosts resolved, built once per rule list (a render asks once per service). */
const indexes = new WeakMap<readonly Resource[], Map<string, IndexedRule[]>>();

function indexOf(rules: readonly Resource[]): Map<string, IndexedRule[]> {
  let index = indexes.get(rules);
  if (index === undefined) {
    index = new Map();
    for (const r of rules) {
      const spec = obj(r.object.spec);
      const h = str(spec?.host);
      if (!spec || !h) continue;
      const list = index.get(r.namespace) ?? [];
      list.push({ rule: { resource: r, spec }, host: resolveHost(h, r.namespace) });
      index.set(r.namespace, list);
    }
    indexes.set(rules, index);
  }
  return index;
}

/** The DestinationRule that applies to `host` for a client in `clientNs` (Istio's lookup order). */
export function findDestinationRule(
  rules: readonly Resource[],
  host: string,
  clientNs: string,
  serviceNs: string,
): ResolvedRule | undefined {
  const index = indexOf(rules);
  for (const ns of [clientNs, serviceNs, ROOT_NAMESPACE]) {
    let best: ResolvedRule | undefined;
    let bestLen = -1;
    for (const { rule, host: resolved } of index.get(ns) ?? []) {
      // The most specific host wins (an exact host over a wildcard).
      if (resolved.length > bestLen && hostMatches(resolved, host) && exportedTo(rule.resource, clientNs)) {
        best = rule;
        bestLen = resolved.length;
      }
    }
    if (best) return best;
  }
  return undefined;
}

function exportedTo(r: Resource, ns: string): boolean {
  const e = arr(obj(r.object.spec)?.exportTo).filter((x): x is string => typeof x === "string");
  if (e.length === 0 || e.includes("*")) return true;
  if (e.includes("~")) return false;
  return e.includes(ns) || (e.includes(".") && r.namespace === ns);
}

/** The subset's labels, or undefined when the rule has no such subset. */
export function subsetLabels(
  rule: ResolvedRule | undefined,
  subset: string,
): Record<string, string> | undefined {
  for (const s of arr(rule?.spec.subsets)) {
    const o = obj(s);
    if (str(o?.name) === subset) return stringMap(o?.labels);
  }
  return undefined;
}

/** The traffic policy for a port (and subset): rule, then its portLevelSettings, then the subset's. */
export function trafficPolicy(rule: ResolvedRule | undefined, port: number, subset: string): Obj {
  let policy: Obj = {};
  const apply = (p: Obj | undefined) => {
    if (!p) return;
    policy = merge(policy, withoutPortLevel(p));
    for (const pl of arr(p.portLevelSettings)) {
      const o = obj(pl);
      if (num(obj(o?.port)?.number) === port && o) policy = merge(policy, withoutPortLevel(o));
    }
  };
  apply(obj(rule?.spec.trafficPolicy));
  if (subset !== "")
    for (const s of arr(rule?.spec.subsets)) {
      const o = obj(s);
      if (str(o?.name) === subset) apply(obj(o?.trafficPolicy));
    }
  return policy;
}

function withoutPortLevel(p: Obj): Obj {
  const { portLevelSettings: _p, port: _q, ...rest } = p as Record<string, unknown>;
  return rest;
}

/** Field-by-field merge of two policies (loadBalancer, connectionPool.tcp, ... each merged). */
function merge(a: Obj, b: Obj): Obj {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = obj(out[k]);
    const bv = obj(v);
    out[k] = av && bv && !Array.isArray(v) ? merge(av, bv) : v;
  }
  return out;
}

/** The cluster fields a traffic policy sets. */
export function clusterSettings(policy: Obj): Partial<ClusterConfig> {
  const out: Record<string, unknown> = {};
  const lb = obj(policy.loadBalancer);
  const simple = str(lb?.simple);
  const ch = obj(lb?.consistentHash);
  if (ch) out.lbPolicy = obj(ch.maglev) ? "MAGLEV" : "RING_HASH";
  else if (simple === "LEAST_REQUEST" || simple === "LEAST_CONN") out.lbPolicy = "LEAST_REQUEST";
  else if (simple === "RANDOM") out.lbPolicy = "RANDOM";
  else if (simple === "ROUND_ROBIN") out.lbPolicy = "ROUND_ROBIN" satisfies LbPolicy;
  const minRing = num(obj(ch?.ringHash)?.minimumRingSize) ?? num(ch?.minimumRingSize);
  if (minRing !== undefined) out.ringHash = { minimumRingSize: minRing };
  const maglevSize = num(obj(ch?.maglev)?.tableSize);
  if (maglevSize !== undefined) out.maglev = { tableSize: maglevSize };
  const tcp = obj(obj(policy.connectionPool)?.tcp);
  const http = obj(obj(policy.connectionPool)?.http);
  const cb: Record<string, number> = {};
  if (num(tcp?.maxConnections) !== undefined) cb.maxConnections = num(tcp?.maxConnections)!;
  if (num(http?.http1MaxPendingRequests) !== undefined)
    cb.maxPendingRequests = num(http?.http1MaxPendingRequests)!;
  if (num(http?.http2MaxRequests) !== undefined) cb.maxRequests = num(http?.http2MaxRequests)!;
  if (num(http?.maxRequestsPerConnection) !== undefined)
    cb.maxRequestsPerConnection = num(http?.maxRequestsPerConnection)!;
  if (Object.keys(cb).length > 0) out.circuitBreakers = cb;
  const connect = durationMs(tcp?.connectTimeout);
  if (connect !== undefined) out.connectTimeoutMs = connect;
  const idle = durationMs(http?.idleTimeout);
  if (idle !== undefined) out.idleTimeoutMs = idle;
  const od = obj(policy.outlierDetection);
  if (od) {
    const o: Record<string, number> = {};
    const c5 = num(od.consecutive5xxErrors) ?? num(od.consecutiveErrors);
    if (c5 !== undefined) o.consecutive5xxErrors = c5;
    if (num(od.consecutiveGatewayErrors) !== undefined)
      o.consecutiveGatewayErrors = num(od.consecutiveGatewayErrors)!;
    const interval = durationMs(od.interval);
    if (interval !== undefined) o.intervalMs = interval;
    const base = durationMs(od.baseEjectionTime);
    if (base !== undefined) o.baseEjectionTimeMs = base;
    if (num(od.maxEjectionPercent) !== undefined) o.maxEjectionPercent = num(od.maxEjectionPercent)!;
    if (num(od.minHealthPercent) !== undefined) o.minHealthPercent = num(od.minHealthPercent)!;
    out.outlierDetection = o;
  }
  return out as Partial<ClusterConfig>;
}

/** The route-side hash policy of a consistentHash load balancer. */
export function hashPolicy(policy: Obj): HashPolicy[] | undefined {
  const ch = obj(obj(policy.loadBalancer)?.consistentHash);
  if (!ch) return undefined;
  if (str(ch.httpHeaderName)) return [{ header: str(ch.httpHeaderName)! }];
  const cookie = obj(ch.httpCookie);
  if (str(cookie?.name)) {
    const ttl = durationMs(cookie?.ttl);
    return [{ cookie: str(cookie?.name)!, ...(ttl !== undefined ? { ttlMs: ttl } : {}) }];
  }
  if (ch.useSourceIp === true) return [{ sourceIp: true }];
  if (str(ch.httpQueryParameterName)) return [{ queryParameter: str(ch.httpQueryParameterName)! }];
  return undefined;
}

function stringMap(v: unknown): Record<string, string> {
  const o = obj(v);
  const out: Record<string, string> = {};
  if (o) for (const [k, x] of Object.entries(o)) if (typeof x === "string") out[k] = x;
  return out;
}
