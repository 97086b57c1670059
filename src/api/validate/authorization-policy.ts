// Istio's semantic rules for AuthorizationPolicy (pkg/config/security in Istio).
import { type Checker, each, eachObj, type Obj, obj, type Path, setKeys, str } from "./checker.ts";
import { workloadSelector } from "./common.ts";
import { cidrOrIp } from "./formats.ts";

export const DRY_RUN_ANNOTATION = "istio.io/dry-run";

const SOURCE_FIELDS = [
  "principals",
  "notPrincipals",
  "requestPrincipals",
  "notRequestPrincipals",
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "ipBlocks",
  "notIpBlocks",
  "remoteIpBlocks",
  "notRemoteIpBlocks",
];
const OPERATION_FIELDS = [
  "hosts",
  "notHosts",
  "ports",
  "notPorts",
  "methods",
  "notMethods",
  "paths",
  "notPaths",
];
const CUSTOM_UNSUPPORTED_SOURCE = [
  "namespaces",
  "notNamespaces",
  "serviceAccounts",
  "notServiceAccounts",
  "principals",
  "notPrincipals",
  "requestPrincipals",
  "notRequestPrincipals",
];

export function validateAuthorizationPolicy(c: Checker, spec: Obj): void {
  const action = str(spec.action) ?? "ALLOW";
  const targeting = setKeys(spec, ["selector", "targetRef", "targetRefs"]);
  if (targeting.length > 1) c.error(["spec"], "only one of targetRefs or workloadSelector can be set");
  if (spec.selector !== undefined) workloadSelector(c, spec.selector, ["spec", "selector"]);
  targetRefs(c, spec);

  const dryRun = c.resource.annotations[DRY_RUN_ANNOTATION];
  if (dryRun !== undefined) {
    if (dryRun !== "true" && dryRun !== "false")
      c.error(
        ["metadata", "annotations", DRY_RUN_ANNOTATION],
        `annotation ${DRY_RUN_ANNOTATION} must be "true" or "false", found "${dryRun}"`,
      );
    else if (action !== "ALLOW" && action !== "DENY")
      c.error(
        ["metadata", "annotations", DRY_RUN_ANNOTATION],
        `the annotation ${DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action ${action}`,
      );
  }

  const provider = obj(spec.provider);
  if (action === "CUSTOM") {
    if (spec.rules === undefined || spec.rules === null)
      c.error(
        ["spec", "rules"],
        "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
      );
    else if (!provider || !str(provider.name))
      c.error(["spec", "provider", "name"], "`provider.name` must not be empty");
  } else if (provider) {
    c.error(["spec", "provider"], `\`provider\` must not be with non CUSTOM action, found ${action}`);
  }
  if (action === "DENY" && (spec.rules === undefined || spec.rules === null))
    c.error(
      ["spec", "rules"],
      "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
    );

  each(spec.rules, ["spec", "rules"], (ruleValue, rp, i) => {
    const rule = obj(ruleValue);
    if (!rule) {
      c.error(rp, `\`rule\` must not be nil, found at rule ${i}`);
      return;
    }
    if (Array.isArray(rule.from) && rule.from.length === 0)
      c.error([...rp, "from"], `\`from\` must not be empty, found at rule ${i}`);
    each(rule.from, [...rp, "from"], (fromValue, fp) => {
      const source = obj(obj(fromValue)?.source);
      if (!source) {
        c.error(fp, "`from.source` must not be nil");
        return;
      }
      if (
        setKeys(source, SOURCE_FIELDS).length === 0 &&
        setKeys(source, ["trustDomains", "notTrustDomains"]).length === 0
      )
        c.error([...fp, "source"], `\`from.source\` must not be empty, found at rule ${i}`);
      const sa = setKeys(source, ["serviceAccounts", "notServiceAccounts"]).length > 0;
      const nsOrPrincipal =
        setKeys(source, ["namespaces", "notNamespaces", "principals", "notPrincipals"]).length > 0;
      if (sa && nsOrPrincipal)
        c.error(
          [...fp, "source"],
          `cannot set serviceAccounts with namespaces or principals, found at rule ${i}`,
        );
      sourceValues(c, source, [...fp, "source"]);
      if (action === "CUSTOM") {
        for (const f of setKeys(source, CUSTOM_UNSUPPORTED_SOURCE))
          c.error(
            [...fp, "source", f],
            `From.${f[0]!.toUpperCase()}${f.slice(1)} is currently not supported with CUSTOM action`,
          );
      }
    });
    if (Array.isArray(rule.to) && rule.to.length === 0)
      c.error([...rp, "to"], `\`to\` must not be empty, found at rule ${i}`);
    each(rule.to, [...rp, "to"], (toValue, tp) => {
      const op = obj(obj(toValue)?.operation);
      if (!op) {
        c.error(tp, "`to.operation` must not be nil");
        return;
      }
      if (setKeys(op, OPERATION_FIELDS).length === 0)
        c.error([...tp, "operation"], `\`to.operation\` must not be empty, found at rule ${i}`);
      operationValues(c, op, [...tp, "operation"]);
    });
    eachObj(rule.when, [...rp, "when"], (cond, wp) => condition(c, cond, wp, action));
  });
}

function targetRefs(c: Checker, spec: Obj): void {
  const refs: Array<[unknown, Path]> = [];
  if (spec.targetRef !== undefined) refs.push([spec.targetRef, ["spec", "targetRef"]]);
  each(spec.targetRefs, ["spec", "targetRefs"], (r, p) => refs.push([r, p]));
  for (const [value, p] of refs) {
    const ref = obj(value);
    if (!ref) continue;
    if (!str(ref.name)) c.error([...p, "name"], "targetRef name must be set");
    if (str(ref.namespace) && ref.namespace !== c.resource.namespace)
      c.error(
        [...p, "namespace"],
        "targetRef namespace must not be set; cross namespace referencing is not supported",
      );
    const gk = `${str(ref.group) ?? ""}/${str(ref.kind) ?? ""}`;
    if (
      ![
        "/Service",
        "networking.istio.io/ServiceEntry",
        "gateway.networking.k8s.io/Gateway",
        "gateway.networking.k8s.io/GatewayClass",
      ].includes(gk)
    )
      c.error(
        p,
        `targetRef must be to one of [/Service networking.istio.io/ServiceEntry gateway.networking.k8s.io/Gateway gateway.networking.k8s.io/GatewayClass] but was ${gk}`,
      );
  }
}

function noEmptyValues(c: Checker, o: Obj, fields: readonly string[], p: Path): void {
  for (const f of fields) {
    each(o[f], [...p, f], (v, vp) => {
      if (v === "") c.error(vp, `empty value not allowed, found in ${f}`);
    });
  }
}

function sourceValues(c: Checker, s: Obj, p: Path): void {
  noEmptyValues(c, s, [...SOURCE_FIELDS, "trustDomains", "notTrustDomains"], p);
  for (const f of ["ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"]) {
    each(s[f], [...p, f], (v, vp) => {
      const ip = str(v);
      if (!ip) return;
      if (cidrOrIp(ip)) c.error(vp, ip.includes("/") ? `bad CIDR range (${ip})` : `bad IP address (${ip})`);
    });
  }
  for (const f of ["serviceAccounts", "notServiceAccounts"]) {
    const list = Array.isArray(s[f]) ? (s[f] as unknown[]) : [];
    if (list.length > 16) c.error([...p, f], `${f} may not have more than 16 values`);
    each(s[f], [...p, f], (v, vp) => {
      const e = serviceAccountValue(str(v));
      if (e) c.error(vp, `${e}, found in ${f}`);
    });
  }
  for (const f of ["trustDomains", "notTrustDomains"]) {
    each(s[f], [...p, f], (v, vp) => {
      const e = trustDomainValue(str(v));
      if (e) c.error(vp, e);
    });
  }
}

function serviceAccountValue(v: string | undefined): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (v.includes("*")) return "wildcard not allowed";
  if (v.length > 320) return "service account is longer than 320 characters";
  const parts = v.split("/");
  if (parts.length > 2 || parts.some((x) => x === ""))
    return `service account "${v}" must be "name" or "namespace/name"`;
  return undefined;
}

function trustDomainValue(v: string | undefined): string | undefined {
  if (v === undefined || v === "") return undefined;
  const stars = (v.match(/\*/g) ?? []).length;
  if (stars > 1) return `at most one wildcard is allowed in trust domain "${v}"`;
  if (stars === 1 && !v.startsWith("*") && !v.endsWith("*"))
    return `wildcard is only allowed at the start or end of trust domain "${v}"`;
  if (v.includes("/")) return `trust domain "${v}" must not contain "/"`;
  return undefined;
}

function operationValues(c: Checker, op: Obj, p: Path): void {
  noEmptyValues(c, op, OPERATION_FIELDS, p);
  for (const f of ["ports", "notPorts"]) {
    each(op[f], [...p, f], (v, vp) => {
      const e = portValue(str(v));
      if (e) c.error(vp, e);
    });
  }
  for (const f of ["paths", "notPaths"]) {
    each(op[f], [...p, f], (v, vp) => {
      const path = str(v);
      if (path === undefined || (!path.includes("{") && !path.includes("}"))) return;
      const e = pathTemplate(path);
      if (e) c.error(vp, `invalid or unsupported path ${path}, found in ${f}. ${e}`);
    });
  }
}

function portValue(v: string | undefined): string | undefined {
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v) || Number(v) > 65535) return `bad port (${v})`;
  return undefined;
}

/** Istio's path templates: `{*}` one segment (repeatable), `{**}` once and last. */
export function pathTemplate(path: string): string | undefined {
  const segments = path.replace(/^\/+|\/+$/g, "").split("/");
  let sawDoubleStar = false;
  for (const seg of segments) {
    if (sawDoubleStar && (seg === "{*}" || seg === "{**}")) return "{**} is not the last operator";
    if (seg === "{**}") {
      sawDoubleStar = true;
      continue;
    }
    if (seg === "{*}") continue;
    if (seg.includes("{") || seg.includes("}")) return "Contains '{' or '}' beyond a supported path template";
    if (!/^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/.test(seg))
      return `Contains segment ${seg} with invalid string literal`;
  }
  return undefined;
}

/** `when` keys Istio accepts, with the value check each needs. */
function condition(c: Checker, cond: Obj, p: Path, action: string): void {
  const key = str(cond.key);
  if (!key) {
    c.error([...p, "key"], "`key` must not be empty");
    return;
  }
  const values = Array.isArray(cond.values) ? cond.values : [];
  const notValues = Array.isArray(cond.notValues) ? cond.notValues : [];
  if (values.length === 0 && notValues.length === 0)
    c.error(p, `at least one of \`values\` or \`notValues\` must be set for key ${key}`);
  const check = valueCheckFor(key);
  if (typeof check === "string") {
    c.error([...p, "key"], check);
    return;
  }
  if (
    action === "CUSTOM" &&
    (/^source\.(namespace|serviceAccount|trustDomain|principal)$/.test(key) ||
      key.startsWith("request.auth."))
  )
    c.error([...p, "key"], `${key} is currently not supported with CUSTOM action`);
  for (const [field, list] of [
    ["values", values],
    ["notValues", notValues],
  ] as const) {
    list.forEach((v, i) => {
      const e = check(String(v));
      if (e)
        c.error(
          [...p, field, i],
          `invalid \`${field === "values" ? "value" : "notValue"}\` for \`key\` ${key}: ${e}`,
        );
    });
  }
}

type ValueCheck = (v: string) => string | undefined;

const ipCheck: ValueCheck = (v) => (cidrOrIp(v) ? `bad IP address or CIDR range (${v})` : undefined);
const noCheck: ValueCheck = () => undefined;
const bracketed = /^[a-zA-Z.]+\[[^\]]+\]$/;

/** The check for a `when` key's values, or why the key is refused. */
export function valueCheckFor(key: string): ValueCheck | string {
  if (key.startsWith("request.headers"))
    return bracketed.test(key) ? noCheck : `bad key (${key}): should have format a[b]`;
  // Nested claims are written request.auth.claims[outer][inner].
  if (key.startsWith("request.auth.claims"))
    return /^request\.auth\.claims(\[[^\]]+\])+$/.test(key)
      ? noCheck
      : `bad key (${key}): should have format a[b]`;
  if (key.startsWith("experimental.envoy.filters."))
    return /\[[^\]]+\]$/.test(key) ? noCheck : `bad key (${key}): should have format a[b]`;
  switch (key) {
    case "source.ip":
    case "remote.ip":
    case "destination.ip":
      return ipCheck;
    case "destination.port":
      return (v) => portValue(v);
    case "source.serviceAccount":
      return (v) => serviceAccountValue(v);
    case "source.trustDomain":
      return (v) => trustDomainValue(v);
    case "source.namespace":
    case "source.principal":
    case "request.auth.principal":
    case "request.auth.audiences":
    case "request.auth.presenter":
    case "connection.sni":
      return noCheck;
    case "destination.namespace":
      return `attribute ${key} is replaced by the metadata.namespace`;
    case "destination.name":
    case "destination.user":
      return `deprecated attribute ${key}: only supported in v1alpha1`;
  }
  if (key.startsWith("destination.labels")) return `attribute ${key} is replaced by the workload selector`;
  return `unknown attribute: ${key}`;
}
