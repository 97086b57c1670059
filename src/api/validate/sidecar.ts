// Istio's semantic rules for Sidecar.
import { type Checker, each, eachObj, num, type Obj, obj, str } from "./checker.ts";
import { workloadSelector } from "./common.ts";
import { dns1123Label, port, protocol, wildcardHost } from "./formats.ts";

export function validateSidecar(c: Checker, spec: Obj): void {
  if (spec.workloadSelector !== undefined)
    workloadSelector(c, spec.workloadSelector, ["spec", "workloadSelector"], "labels");
  const egress = Array.isArray(spec.egress) ? spec.egress : [];
  if (
    ["egress", "ingress", "outboundTrafficPolicy", "inboundConnectionPool"].every(
      (k) => spec[k] === undefined,
    )
  )
    c.error(["spec"], "sidecar: empty configuration provided");
  let catchAll = -1;
  const ports = new Set<number>();
  eachObj(spec.egress, ["spec", "egress"], (e, p, i) => {
    const pt = obj(e.port);
    if (!pt) {
      if (catchAll !== -1) c.error(p, "sidecar: egress can have only one listener with empty port");
      catchAll = i;
    } else {
      listenerPort(c, pt, [...p, "port"]);
      const n = num(pt.number);
      if (n !== undefined) {
        if (ports.has(n)) c.error([...p, "port", "number"], `egress port ${n} is declared more than once`);
        ports.add(n);
      }
    }
    const hosts = Array.isArray(e.hosts) ? e.hosts : [];
    if (hosts.length === 0)
      c.error([...p, "hosts"], "sidecar: egress listener must contain at least one host");
    each(e.hosts, [...p, "hosts"], (h, hp) => {
      const host = str(h);
      if (host === undefined) return;
      const err = sidecarHost(host);
      if (err) c.error(hp, err);
    });
    const bind = str(e.bind);
    if (bind !== undefined && bind !== "" && !/^[0-9.:a-fA-F]+$/.test(bind) && !bind.startsWith("unix://"))
      c.error([...p, "bind"], `bind "${bind}" must be an IP address or unix:// path`);
  });
  if (catchAll !== -1 && catchAll !== egress.length - 1)
    c.error(
      ["spec", "egress", catchAll],
      "sidecar: the egress listener with empty port should be the last listener in the list",
    );
  const inPorts = new Set<number>();
  eachObj(spec.ingress, ["spec", "ingress"], (ing, p) => {
    const pt = obj(ing.port);
    if (!pt) c.error([...p, "port"], "sidecar: port is required for ingress listeners");
    else {
      listenerPort(c, pt, [...p, "port"]);
      const n = num(pt.number);
      if (n !== undefined) {
        if (inPorts.has(n))
          c.error([...p, "port", "number"], "sidecar: ports on IP bound listeners must be unique");
        inPorts.add(n);
      }
    }
    const de = str(ing.defaultEndpoint);
    if (de !== undefined && de !== "") {
      const m = /^(127\.0\.0\.1|0\.0\.0\.0|\[::1\]|\[::\]|unix:\/\/.+):?(\d*)$/.exec(de);
      if (!m)
        c.error(
          [...p, "defaultEndpoint"],
          "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        );
      else if (!de.startsWith("unix://") && port(Number(m[2])))
        c.error([...p, "defaultEndpoint"], `defaultEndpoint "${de}" has an invalid port`);
    }
  });
  const otp = obj(spec.outboundTrafficPolicy);
  if (otp && otp.egressProxy !== undefined && otp.mode !== "ALLOW_ANY")
    c.error(["spec", "outboundTrafficPolicy", "egressProxy"], "egressProxy requires mode ALLOW_ANY");
}

function listenerPort(c: Checker, pt: Obj, p: readonly (string | number)[]): void {
  if (pt.number !== undefined) {
    const err = port(pt.number);
    if (err) c.error([...p, "number"], err);
  }
  const proto = str(pt.protocol);
  if (proto !== undefined) {
    const err = protocol(proto);
    if (err) c.error([...p, "protocol"], err);
  }
}

/** Sidecar egress hosts: "namespace/dnsName" with namespace "*", ".", "~" or a name. */
function sidecarHost(v: string): string | undefined {
  const parts = v.split("/");
  if (parts.length !== 2) return `host must be of form namespace/dnsName: "${v}"`;
  const [nsRaw, host] = parts as [string, string];
  // "~" alone imports from no namespace ("~/*" imports nothing); "~" before a namespace excludes it.
  const ns = nsRaw.startsWith("~") ? nsRaw.slice(1) : nsRaw;
  if (nsRaw !== "~" && ns !== "*" && ns !== "." && dns1123Label(ns))
    return `invalid namespace value "${nsRaw}" in sidecar`;
  if (host === "*") return undefined;
  if (!host.includes(".")) return `short names (non FQDN) are not allowed: "${host}"`;
  if (host.includes("*") && !host.startsWith("*.")) return `partial wildcard "${host}" not allowed`;
  return wildcardHost(host);
}
