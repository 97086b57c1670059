// Delegate VirtualServices, with Istio's semantics (pilot/pkg/model/virtualservice.go): a root VirtualService's
// http route with `delegate: {name, namespace}` is replaced by the delegate's http routes, each merged under the
// root route: its matches must each be a subset of some root match (Istio's hasConflict; a delegate route that
// conflicts with every root match is dropped), merged field by field (the delegate's value wins, headers, query
// parameters and sourceLabels are unions), and the root route's rewrite, timeout, retries, fault, mirrors,
// CORS and headers apply where the delegate route sets none. A delegate is a VirtualService without hosts in
// the named namespace (default: the root's), exported to the root's namespace; its short names resolve in its
// own namespace. One level only: a delegate's own delegating routes are dropped, as is a route whose delegate
// does not exist.
import { resolveHost } from "../../api/analyze/context.ts";
import type { Resource } from "../../api/resource.ts";
import { arr, type Obj, obj, str } from "../../api/validate/checker.ts";
import { resolveGatewayName } from "./virtual-service.ts";

type Mutable = Record<string, unknown>;

/** Whether any http route of the VirtualService delegates. */
export function isRoot(spec: Obj): boolean {
  return arr(spec.http).some((r) => obj(obj(r)?.delegate) !== undefined);
}

/**
 * The spec of a root VirtualService with its delegates merged in (a new object; the input is not changed).
 * `find` returns the VirtualService of that namespace and name.
 */
export function mergeDelegates(
  vs: Resource,
  find: (namespace: string, name: string) => Resource | undefined,
): Obj {
  const spec = obj(vs.object.spec) ?? {};
  if (!isRoot(spec)) return spec;
  const http: Obj[] = [];
  for (const r of arr(spec.http)) {
    const root = obj(r);
    if (!root) continue;
    const d = obj(root.delegate);
    if (!d) {
      http.push(root);
      continue;
    }
    const ns = str(d.namespace) || vs.namespace;
    const delegate = find(ns, str(d.name) ?? "");
    const dspec = obj(delegate?.object.spec);
    if (!delegate || !dspec || arr(dspec.hosts).length > 0 || !exportedTo(delegate, vs.namespace)) continue;
    const rootRoute = resolveShortNames(root, vs.namespace);
    for (const x of arr(dspec.http)) {
      const sub = obj(x);
      if (!sub || obj(sub.delegate)) continue;
      const merged = mergeRoute(rootRoute, resolveShortNames(sub, delegate.namespace));
      if (merged) http.push(merged);
    }
  }
  return { ...spec, http };
}

function exportedTo(r: Resource, ns: string): boolean {
  const e = arr(obj(r.object.spec)?.exportTo).filter((x): x is string => typeof x === "string");
  if (e.length === 0 || e.includes("*")) return true;
  return e.includes(ns) || (e.includes(".") && r.namespace === ns);
}

/** A copy of a route with destination and mirror hosts and match gateways resolved in `ns`. */
function resolveShortNames(route: Obj, ns: string): Obj {
  const out: Mutable = { ...route };
  const dest = (d: unknown) => {
    const o = obj(d);
    if (!o || str(o.host) === undefined) return d;
    return { ...o, host: resolveHost(str(o.host)!, ns) };
  };
  if (Array.isArray(route.route))
    out.route = arr(route.route).map((w) => {
      const o = obj(w);
      return o ? { ...o, destination: dest(o.destination) } : w;
    });
  if (route.mirror !== undefined) out.mirror = dest(route.mirror);
  if (Array.isArray(route.mirrors))
    out.mirrors = arr(route.mirrors).map((m) => {
      const o = obj(m);
      return o ? { ...o, destination: dest(o.destination) } : m;
    });
  if (Array.isArray(route.match))
    out.match = arr(route.match).map((m) => {
      const o = obj(m);
      if (!o || !Array.isArray(o.gateways)) return m;
      return {
        ...o,
        gateways: arr(o.gateways).map((g) => (typeof g === "string" ? resolveGatewayName(g, ns) : g)),
      };
    });
  delete out.delegate;
  return out;
}

const INHERITED = [
  "rewrite",
  "directResponse",
  "timeout",
  "retries",
  "fault",
  "mirror",
  "mirrorPercent",
  "mirrorPercentage",
  "corsPolicy",
  "mirrors",
  "headers",
] as const;

function mergeRoute(root: Obj, delegate: Obj): Obj | undefined {
  const matches = mergeMatches(
    arr(root.match)
      .map(obj)
      .filter((m): m is Obj => m !== undefined),
    arr(delegate.match)
      .map(obj)
      .filter((m): m is Obj => m !== undefined),
  );
  if (matches === undefined) return undefined;
  const out: Mutable = { ...delegate };
  if (matches.length > 0) out.match = matches;
  else delete out.match;
  const rootName = str(root.name) ?? "";
  const name = str(delegate.name) ?? "";
  if (name === "") {
    if (rootName !== "") out.name = rootName;
  } else if (rootName !== "") out.name = `${rootName}-${name}`;
  for (const k of INHERITED) if (out[k] === undefined && root[k] !== undefined) out[k] = root[k];
  return out;
}

/** Merged matches, or undefined when some delegate match is a subset of no root match (a conflict). */
function mergeMatches(root: readonly Obj[], delegate: readonly Obj[]): Obj[] | undefined {
  if (root.length === 0) return [...delegate];
  if (delegate.length === 0) return [...root];
  const out: Obj[] = [];
  for (const sub of delegate) {
    let found = false;
    for (const r of root) {
      if (hasConflict(r, sub)) continue;
      out.push(mergeMatch(r, sub));
      found = true;
    }
    if (!found) return undefined;
  }
  return out.length > 0 ? out : undefined;
}

function mergeMatch(root: Obj, delegate: Obj): Obj {
  const out: Mutable = { ...delegate };
  const rootName = str(root.name) ?? "";
  const name = str(delegate.name) ?? "";
  if (name === "") {
    if (rootName !== "") out.name = rootName;
  } else if (rootName !== "") out.name = `${rootName}-${name}`;
  for (const k of ["uri", "scheme", "method", "authority"])
    if (out[k] === undefined && root[k] !== undefined) out[k] = root[k];
  for (const k of ["headers", "withoutHeaders", "queryParams", "sourceLabels"]) {
    const merged = { ...(obj(root[k]) ?? {}), ...(obj(delegate[k]) ?? {}) };
    if (Object.keys(merged).length > 0) out[k] = merged;
  }
  for (const k of ["port", "sourceNamespace", "statPrefix"])
    if (!delegate[k] && root[k] !== undefined) out[k] = root[k];
  if (arr(delegate.gateways).length === 0 && root.gateways !== undefined) out.gateways = root.gateways;
  return out;
}

function hasConflict(root: Obj, leaf: Obj): boolean {
  for (const k of ["uri", "scheme", "method", "authority"])
    if (stringMatchConflict(obj(root[k]), obj(leaf[k]))) return true;
  for (const k of ["headers", "withoutHeaders", "queryParams"]) {
    const r = obj(root[k]) ?? {};
    for (const [name, v] of Object.entries(obj(leaf[k]) ?? {}))
      if (stringMatchConflict(obj(r[name]), obj(v))) return true;
  }
  if ((root.ignoreUriCase === true) !== (leaf.ignoreUriCase === true)) return true;
  const rp = typeof root.port === "number" ? root.port : 0;
  const lp = typeof leaf.port === "number" ? leaf.port : 0;
  if (rp > 0 && lp > 0 && rp !== lp) return true;
  const rns = str(root.sourceNamespace) ?? "";
  if (rns !== "" && (str(leaf.sourceNamespace) ?? "") !== rns) return true;
  const rl = obj(root.sourceLabels) ?? {};
  for (const [k, v] of Object.entries(obj(leaf.sourceLabels) ?? {})) if (k in rl && rl[k] !== v) return true;
  const rg = arr(root.gateways);
  const lg = arr(leaf.gateways);
  if (rg.length > 0 && lg.length > 0 && (rg.length < lg.length || lg.some((g) => !rg.includes(g))))
    return true;
  return false;
}

/** Istio's stringMatchConflict: whether `leaf` can match something `root` does not. */
function stringMatchConflict(root: Obj | undefined, leaf: Obj | undefined): boolean {
  if (!root || !leaf) return false;
  const [rExact, rPrefix, rRegex] = [str(root.exact) ?? "", str(root.prefix) ?? "", str(root.regex) ?? ""];
  const [lExact, lPrefix, lRegex] = [str(leaf.exact) ?? "", str(leaf.prefix) ?? "", str(leaf.regex) ?? ""];
  if (rRegex !== "" && (lRegex !== "" || lPrefix !== "" || lExact !== "")) return true;
  if (lRegex !== "" && (rRegex !== "" || rPrefix !== "" || rExact !== "")) return true;
  if (rExact !== "") return lPrefix !== "" || lExact !== rExact;
  if (rPrefix !== "") {
    if (lPrefix !== "") return !lPrefix.startsWith(rPrefix);
    if (lExact !== "") return !lExact.startsWith(rPrefix);
  }
  return true;
}
