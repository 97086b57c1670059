// Validation of the message types Istio shares between kinds: StringMatch, Destination, PortSelector,
// workload selectors, exportTo, TLS settings.
import { type Checker, each, type Obj, obj, type Path, setKeys, str } from "./checker.ts";
import { dns1123Label, labelKey, labelValue, port, re2Regex, wildcardHost } from "./formats.ts";

/** StringMatch: exactly one of exact, prefix, regex; a regex must be valid RE2. */
export function stringMatch(
  c: Checker,
  v: unknown,
  path: Path,
  opts: { nonEmptyPrefix?: boolean } = {},
): void {
  const m = obj(v);
  if (!m) return;
  const kinds = setKeys(m, ["exact", "prefix", "regex"]);
  if (kinds.length > 1)
    c.error(path, `only one of exact, prefix or regex may be set; found ${kinds.join(" and ")}`);
  if (opts.nonEmptyPrefix && m.prefix === "")
    c.error([...path, "prefix"], "prefix string match should not be empty");
  const regex = str(m.regex);
  if (regex !== undefined) {
    const err = regex === "" ? "regex string match should not be empty" : re2Regex(regex);
    if (err) c.error([...path, "regex"], err);
  }
}

/** A Destination (VirtualService route, mirror): host, subset, port. */
export function destination(c: Checker, v: unknown, path: Path): void {
  const d = obj(v);
  if (!d) return;
  const host = str(d.host);
  if (host !== undefined) {
    if (host === "*") c.error([...path, "host"], "invalid destination host *");
    else {
      const err = wildcardHost(host);
      if (err) c.error([...path, "host"], err);
    }
  }
  const subset = str(d.subset);
  if (subset !== undefined && subset !== "") {
    const err = istioName(subset);
    if (err) c.error([...path, "subset"], `subset name is invalid: ${err}`);
  }
  const p = obj(d.port);
  if (p && p.number !== undefined) {
    const err = port(p.number);
    if (err) c.error([...path, "port", "number"], err);
  }
}

/** Label maps: Kubernetes label key and value syntax. */
export function labels(c: Checker, v: unknown, path: Path): void {
  const m = obj(v);
  if (!m) return;
  for (const [k, val] of Object.entries(m)) {
    const kErr = labelKey(k);
    if (kErr) c.error([...path, k], kErr);
    if (typeof val === "string") {
      const vErr = labelValue(val);
      if (vErr) c.error([...path, k], vErr);
    }
  }
}

/** WorkloadSelector {matchLabels}: labels valid; an empty selector is refused as Istio does. */
export function workloadSelector(c: Checker, v: unknown, path: Path, field = "matchLabels"): void {
  const s = obj(v);
  if (!s) return;
  const ml = obj(s[field]);
  if (!ml || Object.keys(ml).length === 0) {
    c.warn(path, "workload selector specified without labels");
    return;
  }
  for (const [k, val] of Object.entries(ml)) {
    if (k === "")
      c.error([...path, field, k], `empty key is not supported in selector: "${k}=${String(val)}"`);
    else if (k.includes("*") || val === "*" || String(val).includes("*"))
      c.error([...path, field, k], `wildcard is not supported in selector: "${k}=${String(val)}"`);
  }
  labels(c, ml, [...path, field]);
}

/** exportTo: ".", "*" or namespace names, and "~" alone for a ServiceEntry. */
export function exportTo(c: Checker, v: unknown, path: Path, opts: { allowNone?: boolean } = {}): void {
  const values = (Array.isArray(v) ? v : []).filter((x): x is string => typeof x === "string");
  const seen = new Set<string>();
  each(v, path, (item, p) => {
    const s = str(item);
    if (s === undefined) return;
    if (seen.has(s)) c.error(p, `duplicate entries in exportTo for entry ${s}`);
    seen.add(s);
    if (s === "~" && !opts.allowNone) {
      c.error(p, 'exportTo "~" is only allowed for a ServiceEntry');
      return;
    }
    if (s === "." || s === "*" || s === "~") return;
    const err = dns1123Label(s);
    if (err) c.error(p, `exportTo entry ${err}; use ".", "*", "~" or a namespace`);
  });
  if (values.includes("*") && values.length > 1)
    c.error(path, "cannot have both public (*) and non-public exportTo values for a resource");
  if (values.includes("~") && values.length > 1)
    c.error(path, "cannot export service entry to no one (~) and someone");
}

/** Client TLS settings (DestinationRule trafficPolicy.tls and portLevelSettings). */
export function clientTls(c: Checker, v: unknown, path: Path): void {
  const t = obj(v);
  if (!t) return;
  const mode = str(t.mode) ?? "DISABLE";
  if (mode === "ISTIO_MUTUAL") {
    // Istio does not reject these; the proxy uses its mesh certificate and ignores them, which surprises users.
    const ignored = setKeys(t, [
      "clientCertificate",
      "privateKey",
      "caCertificates",
      "credentialName",
      "caCrl",
    ]);
    if (ignored.length > 0)
      c.warn(path, `${ignored.join(", ")} ignored: tls.mode ISTIO_MUTUAL uses the mesh's certificates`);
    return;
  }
  if ((mode === "SIMPLE" || mode === "MUTUAL") && has(t, "credentialName")) {
    if (setKeys(t, ["clientCertificate", "privateKey", "caCertificates", "caCrl"]).length > 0)
      c.error(
        path,
        "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
      );
  }
  if (mode === "MUTUAL" && !has(t, "credentialName")) {
    if (!has(t, "clientCertificate")) c.error(path, "client certificate required for mutual tls");
    if (!has(t, "privateKey")) c.error(path, "private key required for mutual tls");
  }
  if (t.insecureSkipVerify === true) {
    const forbidden =
      mode === "MUTUAL"
        ? ["caCertificates", "subjectAltNames"]
        : ["caCertificates", "credentialName", "subjectAltNames"];
    if (setKeys(t, forbidden).length > 0)
      c.error(path, `cannot specify ${forbidden.join(" or ")} when insecureSkipVerify is set true`);
  }
}

/** Istio's name rule for subsets, ports and gateway references: a DNS-1123 label, either case. */
export function istioName(v: string): string | undefined {
  return dns1123Label(v.toLowerCase());
}

function has(o: Obj, k: string): boolean {
  return o[k] !== undefined && o[k] !== null && o[k] !== "";
}

/** Gateway references in VirtualService: "mesh", "name", "namespace/name". */
export function gatewayReference(ref: string): string | undefined {
  if (ref === "mesh") return undefined;
  const parts = ref.split("/");
  if (parts.length > 2) return `gateway "${ref}" must be "name", "namespace/name" or "mesh"`;
  if (parts.length === 2) {
    if (parts[0] === "" || parts[1] === "") return "config namespace and gateway name cannot be empty";
    if (istioName(parts[0]!)) return `invalid value for namespace: "${parts[0]}"`;
    if (istioName(parts[1]!)) return `invalid value for gateway name: "${parts[1]}"`;
    return undefined;
  }
  const name = parts[0]!;
  for (const label of name.split(".")) {
    if (istioName(label)) return `invalid value for gateway name: "${name}"`;
  }
  return undefined;
}
