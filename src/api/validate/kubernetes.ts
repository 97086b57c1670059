// Checks on the Kubernetes kinds the local runtime uses, beyond their schema: the rules the API server
// applies that would otherwise only fail at deploy time.
import { type Checker, each, eachObj, num, type Obj, obj, str } from "./checker.ts";
import { labels } from "./common.ts";
import { dns1123Label, dns1123Subdomain, port } from "./formats.ts";

export function validateObjectMeta(c: Checker): void {
  const r = c.resource;
  const nameRule = r.kind === "Namespace" || r.kind === "Service" ? dns1123Label : dns1123Subdomain;
  const err = nameRule(r.name);
  if (err) c.error(["metadata", "name"], `metadata.name ${err}`);
  if (r.namespace !== "") {
    const nsErr = dns1123Label(r.namespace);
    if (nsErr) c.error(["metadata", "namespace"], `metadata.namespace ${nsErr}`);
  }
  labels(c, r.object.metadata && (r.object.metadata as Obj).labels, ["metadata", "labels"]);
}

export function validateService(c: Checker, spec: Obj): void {
  const ports = Array.isArray(spec.ports) ? spec.ports : [];
  const type = str(spec.type) ?? "ClusterIP";
  if (ports.length === 0 && type !== "ExternalName" && spec.clusterIP !== "None")
    c.error(["spec", "ports"], "a Service needs at least one port");
  const names = new Set<string>();
  const numbers = new Set<string>();
  eachObj(spec.ports, ["spec", "ports"], (pt, p) => {
    const name = str(pt.name);
    if (ports.length > 1 && !name)
      c.error([...p, "name"], "port name is required when a Service has more than one port");
    if (name) {
      if (names.has(name)) c.error([...p, "name"], `duplicate port name "${name}"`);
      names.add(name);
      const e = dns1123Label(name);
      if (e) c.error([...p, "name"], `port name ${e}`);
    }
    const e = port(pt.port);
    if (e) c.error([...p, "port"], e);
    const key = `${num(pt.port)}/${str(pt.protocol) ?? "TCP"}`;
    if (numbers.has(key)) c.error([...p, "port"], `duplicate port ${key}`);
    numbers.add(key);
    if (typeof pt.targetPort === "number") {
      const te = port(pt.targetPort);
      if (te) c.error([...p, "targetPort"], te);
    }
  });
  labels(c, spec.selector, ["spec", "selector"]);
}

export function validateDeployment(c: Checker, spec: Obj): void {
  const selector = obj(obj(spec.selector)?.matchLabels) ?? {};
  const template = obj(spec.template);
  const templateLabels = obj(obj(template?.metadata)?.labels) ?? {};
  for (const [k, v] of Object.entries(selector)) {
    if (templateLabels[k] !== v)
      c.error(
        ["spec", "selector", "matchLabels", k],
        `selector does not match template labels (template has ${k}=${String(templateLabels[k] ?? "<unset>")})`,
      );
  }
  labels(c, templateLabels, ["spec", "template", "metadata", "labels"]);
  const replicas = num(spec.replicas);
  if (replicas !== undefined && replicas < 0) c.error(["spec", "replicas"], "replicas must not be negative");
  const podSpec = obj(template?.spec);
  const containers = Array.isArray(podSpec?.containers) ? podSpec.containers : [];
  if (podSpec && containers.length === 0)
    c.error(["spec", "template", "spec", "containers"], "a pod needs at least one container");
  const names = new Set<string>();
  eachObj(podSpec?.containers, ["spec", "template", "spec", "containers"], (ctr, p) => {
    const name = str(ctr.name);
    if (name) {
      if (names.has(name)) c.error([...p, "name"], `duplicate container name "${name}"`);
      names.add(name);
      const e = dns1123Label(name);
      if (e) c.error([...p, "name"], `container name ${e}`);
    }
    const portNames = new Set<string>();
    eachObj(ctr.ports, [...p, "ports"], (cp, pp) => {
      const e = port(cp.containerPort);
      if (e) c.error([...pp, "containerPort"], e);
      const pn = str(cp.name);
      if (pn) {
        if (portNames.has(pn)) c.error([...pp, "name"], `duplicate port name "${pn}"`);
        portNames.add(pn);
      }
    });
    each(ctr.env, [...p, "env"], (ev, ep) => {
      const n = str(obj(ev)?.name);
      if (n !== undefined && !/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(n))
        c.error([...ep, "name"], `"${n}" is not a valid environment variable name`);
    });
  });
}

export function validateConfigOrSecret(c: Checker): void {
  for (const field of ["data", "stringData", "binaryData"]) {
    const m = obj(c.resource.object[field]);
    if (!m) continue;
    for (const key of Object.keys(m)) {
      if (!/^[-._a-zA-Z0-9]+$/.test(key) || key.length > 253)
        c.error([field, key], `"${key}" is not a valid key`);
    }
  }
  if (c.resource.kind === "Secret") {
    for (const [key, v] of Object.entries(obj(c.resource.object.data) ?? {})) {
      if (typeof v === "string" && !/^[A-Za-z0-9+/]*={0,2}$/.test(v.replace(/\s/g, "")))
        c.error(["data", key], "Secret data values must be base64; use stringData for plain text");
    }
  }
}
