// Istio's semantic rules for ServiceEntry, WorkloadEntry and WorkloadGroup.
import { type Checker, each, eachObj, num, type Obj, obj, type Path, str } from "./checker.ts";
import { exportTo, istioName, labels, workloadSelector } from "./common.ts";
import { cidrOrIp, dns1123Label, ipAddress, port, protocol, wildcardHost } from "./formats.ts";

export function validateServiceEntry(c: Checker, spec: Obj): void {
  const resolution = str(spec.resolution) ?? "NONE";
  const hosts = (Array.isArray(spec.hosts) ? spec.hosts : []).filter(
    (h): h is string => typeof h === "string",
  );
  const endpoints = Array.isArray(spec.endpoints) ? spec.endpoints : [];
  if (hosts.length === 0) c.error(["spec", "hosts"], "service entry must have at least one host");
  const seen = new Set<string>();
  each(spec.hosts, ["spec", "hosts"], (h, p) => {
    const host = str(h);
    if (host === undefined) return;
    if (seen.has(host)) c.error(p, `duplicate host "${host}"`);
    seen.add(host);
    if (host === "*") {
      c.error(p, 'invalid host "*"');
      return;
    }
    const err = wildcardHost(host);
    if (err) c.error(p, err);
    if (host.startsWith("*") && resolution === "DNS" && endpoints.length === 0)
      c.error(p, `wildcard host "${host}" cannot be resolved by DNS; set endpoints or resolution NONE`);
  });
  each(spec.addresses, ["spec", "addresses"], (a, p) => {
    const s = str(a);
    if (s === undefined) return;
    const err = cidrOrIp(s);
    if (err) c.error(p, err);
    else if (s.includes("/") && resolution !== "NONE" && resolution !== "STATIC")
      c.error(p, "CIDR addresses are allowed only for NONE/STATIC resolution types");
  });
  if (spec.workloadSelector !== undefined) {
    workloadSelector(c, spec.workloadSelector, ["spec", "workloadSelector"], "labels");
    if (endpoints.length > 0)
      c.error(["spec"], "only one of WorkloadSelector or Endpoints is allowed in Service Entry");
  }
  const portNumbers = new Set<number>();
  const portNames = new Set<string>();
  eachObj(spec.ports, ["spec", "ports"], (pt, p) => {
    const n = num(pt.number);
    if (n !== undefined) {
      const err = port(n);
      if (err) c.error([...p, "number"], err);
      if (portNumbers.has(n)) c.error([...p, "number"], `service entry port ${n} already defined`);
      portNumbers.add(n);
    }
    const name = str(pt.name);
    if (name !== undefined) {
      if (portNames.has(name)) c.error([...p, "name"], `service entry port name "${name}" already defined`);
      portNames.add(name);
      if (istioName(name)) c.error([...p, "name"], `invalid port name: ${name}`);
    }
    const proto = str(pt.protocol);
    if (proto !== undefined) {
      const err = protocol(proto);
      if (err) c.error([...p, "protocol"], err);
    }
    if (pt.targetPort !== undefined) {
      const err = port(pt.targetPort);
      if (err) c.error([...p, "targetPort"], err);
    }
  });
  switch (resolution) {
    case "STATIC":
      if (endpoints.length === 0 && spec.workloadSelector === undefined)
        c.error(["spec", "endpoints"], "endpoints must be provided for resolution STATIC");
      break;
    case "NONE":
      if (endpoints.length > 0)
        c.error(["spec", "endpoints"], "no endpoints should be provided for resolution type none");
      break;
    case "DNS":
    case "DNS_ROUND_ROBIN":
      if (endpoints.length === 0) {
        for (const [i, h] of hosts.entries()) {
          if (/^[0-9.]+$/.test(h) || h.includes(":"))
            c.error(["spec", "hosts", i], `host "${h}" must be a DNS name for resolution ${resolution}`);
        }
      }
      if (resolution === "DNS_ROUND_ROBIN" && endpoints.length > 1)
        c.error(["spec", "endpoints"], "DNS_ROUND_ROBIN allows at most one endpoint");
      break;
  }
  if (resolution !== "NONE" && hosts.length > 1) {
    eachObj(spec.ports, ["spec", "ports"], (pt, p) => {
      const proto = (str(pt.protocol) ?? "TCP").toUpperCase();
      if (!["HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS"].includes(proto))
        c.error([...p, "protocol"], "multiple hosts provided with non-HTTP, non-TLS ports");
    });
  }
  eachObj(spec.endpoints, ["spec", "endpoints"], (ep, p) => {
    workloadEntrySpec(c, ep, p, { resolution, portNames, inServiceEntry: true });
  });
  exportTo(c, spec.exportTo, ["spec", "exportTo"], { allowNone: true });
  const subjectAltNames = Array.isArray(spec.subjectAltNames) ? spec.subjectAltNames : [];
  each(subjectAltNames, ["spec", "subjectAltNames"], (s, p) => {
    if (str(s) === "") c.error(p, "subjectAltNames entries must not be empty");
  });
}

interface EntryContext {
  resolution?: string;
  portNames?: Set<string>;
  inServiceEntry?: boolean;
}

function workloadEntrySpec(c: Checker, e: Obj, p: Path, ctx: EntryContext): void {
  const address = str(e.address);
  const network = str(e.network);
  if (!address && ctx.inServiceEntry !== false) {
    if (network) c.warn([...p, "address"], `address is unset with network "${network}"`);
    else c.error([...p, "address"], "address is required");
  }
  if (address) {
    if (address.startsWith("unix://")) {
      if (ctx.resolution && ctx.resolution !== "STATIC")
        c.error([...p, "address"], "unix domain socket addresses require resolution STATIC");
      if (address.length <= "unix://".length) c.error([...p, "address"], "unix domain socket path is empty");
    } else if (ctx.resolution === "STATIC") {
      if (ipAddress(address))
        c.error([...p, "address"], `endpoint address "${address}" is not a valid IP address`);
    } else if (ipAddress(address) !== undefined) {
      const err = wildcardHost(address);
      if (err || address.includes("*"))
        c.error([...p, "address"], `endpoint address "${address}" is not a valid FQDN or an IP address`);
    }
  }
  labels(c, e.labels, [...p, "labels"]);
  const ports = obj(e.ports);
  if (ports) {
    for (const [name, value] of Object.entries(ports)) {
      const err = port(value);
      if (err) c.error([...p, "ports", name], err);
      if (istioName(name)) c.error([...p, "ports", name], `invalid port name: ${name}`);
      if (ctx.portNames && ctx.portNames.size > 0 && !ctx.portNames.has(name))
        c.error([...p, "ports", name], `endpoint port ${name} is not defined by the service entry`);
    }
  }
  const weight = num(e.weight);
  if (weight !== undefined && weight < 0) c.error([...p, "weight"], "weight must not be negative");
  const sa = str(e.serviceAccount);
  if (sa !== undefined && sa !== "") {
    const err = dns1123Label(sa.replace(/\./g, "-")) && dns1123Label(sa);
    if (err) c.error([...p, "serviceAccount"], `service account ${err}`);
  }
  const locality = str(e.locality);
  if (locality !== undefined && locality !== "") {
    const parts = locality.split("/");
    if (parts.length > 3 || parts.some((s) => s === ""))
      c.error([...p, "locality"], `"${locality}" is not a locality (region/zone/subzone)`);
  }
}

export function validateWorkloadEntry(c: Checker, spec: Obj): void {
  workloadEntrySpec(c, spec, ["spec"], { inServiceEntry: true });
}

export function validateWorkloadGroup(c: Checker, spec: Obj): void {
  const meta = obj(spec.metadata);
  if (meta) labels(c, meta.labels, ["spec", "metadata", "labels"]);
  if (!obj(spec.template)) c.error(["spec", "template"], "template is required");
  const probe = obj(spec.probe);
  if (probe) {
    const kinds = ["httpGet", "tcpSocket", "exec", "grpc"].filter((k) => probe[k] !== undefined);
    if (kinds.length !== 1)
      c.error(
        ["spec", "probe"],
        `probe must set exactly one of httpGet, tcpSocket, exec, grpc; found ${kinds.length}`,
      );
    const hg = obj(probe.httpGet);
    if (hg) {
      const err = port(hg.port);
      if (err) c.error(["spec", "probe", "httpGet", "port"], err);
    }
    const ts = obj(probe.tcpSocket);
    if (ts) {
      const err = port(ts.port);
      if (err) c.error(["spec", "probe", "tcpSocket", "port"], err);
    }
    const ex = obj(probe.exec);
    if (ex && (!Array.isArray(ex.command) || ex.command.length === 0))
      c.error(["spec", "probe", "exec", "command"], "exec.command is required");
    const scheme = str(hg?.scheme);
    if (scheme !== undefined && scheme !== "HTTP" && scheme !== "HTTPS")
      c.error(["spec", "probe", "httpGet", "scheme"], `scheme "${scheme}" must be HTTP or HTTPS`);
    for (const f of [
      "periodSeconds",
      "timeoutSeconds",
      "successThreshold",
      "failureThreshold",
      "initialDelaySeconds",
    ]) {
      const n = num(probe[f]);
      if (n !== undefined && n < 0) c.error(["spec", "probe", f], `${f} must not be negative`);
    }
  }
}
