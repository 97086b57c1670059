// Istio's semantic rules for Gateway.

import { isIP } from "node:net";
import { type Checker, each, eachObj, type Obj, obj, str } from "./checker.ts";
import { istioName, labels } from "./common.ts";
import { dns1123Label, port, protocol, wildcardHost } from "./formats.ts";

const TLS_PROTOCOLS = new Set(["HTTPS", "TLS"]);

export function validateGateway(c: Checker, spec: Obj): void {
  const servers = Array.isArray(spec.servers) ? spec.servers : [];
  if (servers.length === 0) c.error(["spec", "servers"], "gateway must have at least one server");
  labels(c, spec.selector, ["spec", "selector"]);
  if (istioName(c.resource.name)) c.error(["metadata", "name"], `invalid gateway name: "${c.resource.name}"`);
  const names = new Set<string>();
  eachObj(spec.servers, ["spec", "servers"], (s, p) => {
    const ps = obj(s.port);
    const portName = str(ps?.name);
    if (portName) {
      if (names.has(portName))
        c.error([...p, "port", "name"], `port names in servers must be unique: duplicate name ${portName}`);
      names.add(portName);
    }
    const proto = str(ps?.protocol)?.toUpperCase();
    if (ps) {
      const err = port(ps.number);
      if (ps.number !== undefined && err) c.error([...p, "port", "number"], err);
      if (proto !== undefined) {
        const pe = protocol(proto);
        if (pe) c.error([...p, "port", "protocol"], pe);
      }
      const pname = str(ps.name);
      if (!pname) c.error([...p, "port", "name"], "port name must be set");
      else if (istioName(pname)) c.error([...p, "port", "name"], `invalid port name: ${pname}`);
      if (ps.targetPort !== undefined)
        c.warn([...p, "port", "targetPort"], "targetPort has no impact on Gateways");
    } else {
      c.error([...p, "port"], "port is required");
    }
    const hosts = Array.isArray(s.hosts) ? s.hosts : [];
    if (hosts.length === 0) c.error([...p, "hosts"], "server config must contain at least one host");
    each(s.hosts, [...p, "hosts"], (h, hp) => {
      const host = str(h);
      if (host === undefined) return;
      const err = gatewayHost(host);
      if (err) c.error(hp, err);
    });
    const tls = obj(s.tls);
    if (proto && TLS_PROTOCOLS.has(proto) && !tls)
      c.error([...p, "tls"], "server must have TLS settings for HTTPS/TLS protocols");
    if (tls && proto && !TLS_PROTOCOLS.has(proto)) {
      const redirectOnly = proto === "HTTP" && tls.httpsRedirect === true && Object.keys(tls).length === 1;
      if (proto === "HTTP" && !redirectOnly)
        c.error([...p, "tls"], "server cannot have TLS settings for plain text HTTP ports");
      else if (proto !== "HTTP")
        c.error([...p, "tls"], "server cannot have TLS settings for non HTTPS/TLS ports");
    }
    if (tls) serverTls(c, tls, [...p, "tls"], proto);
  });
}

/** Gateway hosts: "namespace/dnsName" where namespace is "*", "." or a name, and dnsName may start with "*". */
function gatewayHost(v: string): string | undefined {
  const parts = v.split("/");
  if (parts.length > 2) return `host "${v}" must be "dnsName" or "namespace/dnsName"`;
  if (parts.length === 2) {
    const ns = parts[0]!;
    if (ns === "" || parts[1] === "") return "config namespace and dnsName in host entry cannot be empty";
    if (ns !== "*" && ns !== "." && dns1123Label(ns)) return `invalid namespace value "${ns}" in gateway`;
  }
  const dnsName = parts[parts.length - 1]!;
  if (dnsName !== "*" && !dnsName.includes(".") && isIP(dnsName) === 0)
    return `short names (non FQDN) are not allowed: "${dnsName}"`;
  if (dnsName.includes("*") && dnsName !== "*" && !dnsName.startsWith("*."))
    return `partial wildcard "${dnsName}" not allowed`;
  return isIP(dnsName) === 0 ? wildcardHost(dnsName) : undefined;
}

function serverTls(c: Checker, tls: Obj, p: readonly (string | number)[], proto: string | undefined): void {
  const mode = str(tls.mode) ?? "PASSTHROUGH";
  if (tls.httpsRedirect === true && proto && proto !== "HTTP")
    c.warn([...p, "httpsRedirect"], "tls.httpsRedirect should only be used with http servers");
  if (mode === "SIMPLE" || mode === "MUTUAL" || mode === "OPTIONAL_MUTUAL") {
    const hasCredential = Boolean(str(tls.credentialName)) || Array.isArray(tls.credentialNames);
    if (!hasCredential) {
      const label = mode === "SIMPLE" ? "SIMPLE TLS" : "MUTUAL TLS";
      if (!str(tls.serverCertificate)) c.error(p, `${label} requires a server certificate`);
      if (!str(tls.privateKey)) c.error(p, `${label} requires a private key`);
      if (mode !== "SIMPLE" && !str(tls.caCertificates)) c.error(p, "MUTUAL TLS requires a client CA bundle");
    }
  }
  if (mode === "ISTIO_MUTUAL") {
    for (const [field, what] of [
      ["serverCertificate", "server certificate"],
      ["privateKey", "private key"],
      ["caCertificates", "CA bundle"],
      ["tlsCertificates", "tlsCertificates"],
      ["credentialName", "credentialName"],
      ["credentialNames", "credentialNames"],
    ] as const) {
      if (tls[field] !== undefined && tls[field] !== "")
        c.error([...p, field], `ISTIO_MUTUAL TLS cannot have associated ${what}`);
    }
  }
  if (
    (mode === "PASSTHROUGH" || mode === "AUTO_PASSTHROUGH") &&
    (str(tls.serverCertificate) || str(tls.credentialName))
  )
    c.warn(p, `${mode} mode does not use certificates, they will be ignored`);
  const min = str(tls.minProtocolVersion);
  const max = str(tls.maxProtocolVersion);
  const order = ["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
  if (min && max && max !== "TLS_AUTO" && order.indexOf(min) > order.indexOf(max))
    c.error(p, `minProtocolVersion ${min} is higher than maxProtocolVersion ${max}`);
}
