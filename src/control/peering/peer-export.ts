// What a control plane exports to its peers (PeerExport), and the strict check of one received from a peer:
// types, sizes, counts, unknown fields refused, the exported Services and ServiceEntries validated by the config
// API's own validators. The first problem is reported with its field path; nothing of a refused export is used.
import { isIP } from "node:net";
import { parseResources } from "../../api/load/parse-documents.ts";
import { dns1123Subdomain, labelKey, labelValue, wildcardHost } from "../../api/validate/formats.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { ServiceInstance } from "../model.ts";
import { checkLocality, checkName, checkNetwork, clip, describe } from "./identity.ts";
import { PEERING_LIMITS } from "./limits.ts";

export interface PeerAddress {
  readonly address: string;
  readonly port: number;
}

/** An endpoint as it travels: the shape of the registry's ServiceInstance. */
export type ServiceInstanceLike = ServiceInstance;

export interface PeerExport {
  readonly cluster: string;
  readonly network: string;
  readonly locality?: string;
  readonly private: boolean;
  /** This network's east-west gateways (address:port of 15443), empty when private. */
  readonly gateways: readonly PeerAddress[];
  /** Where this cluster's gateways accept reverse tunnels (private peers dial them), empty when private. */
  readonly tunnelAcceptors: readonly PeerAddress[];
  /**
   * Kubernetes Services and Istio ServiceEntries this cluster exports, as plain objects {apiVersion, kind,
   * metadata: {name, namespace, labels?, annotations?}, spec}.
   */
  readonly services: readonly object[];
  readonly instances: readonly ServiceInstanceLike[];
}

/** What the receiver knows of the sender from the verified Hello: an export may not claim otherwise. */
export interface ExportExpectation {
  readonly cluster: string;
  readonly network: string;
  readonly private: boolean;
}

export type ExportCheck =
  | { readonly ok: true; readonly export: PeerExport }
  | { readonly ok: false; readonly field: string; readonly message: string };

const EXPORT_FIELDS = new Set([
  "cluster",
  "network",
  "locality",
  "private",
  "gateways",
  "tunnelAcceptors",
  "services",
  "instances",
]);
const ADDRESS_FIELDS = new Set(["address", "port"]);
const SERVICE_FIELDS = new Set(["apiVersion", "kind", "metadata", "spec"]);
const METADATA_FIELDS = new Set(["name", "namespace", "labels", "annotations"]);
const EXPORTED_KINDS = new Set(["Service", "ServiceEntry"]);
const INSTANCE_FIELDS = new Set([
  "host",
  "servicePort",
  "address",
  "port",
  "labels",
  "locality",
  "serviceAccount",
  "network",
  "cluster",
  "weight",
  "healthy",
]);
const MAX_WEIGHT = 0xffff_ffff;

/** Thrown inside the check with the field path of the first problem; never escapes it. */
class Refusal extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.field = field;
  }
}

const refuse = (field: string, message: string): never => {
  throw new Refusal(field, message);
};

/**
 * The Services a peer sent in its last accepted export, as JSON texts: an unchanged one is not validated
 * again, so a snapshot that changes one endpoint costs no resource validation. One per peer.
 */
export class ServiceCheckCache {
  private accepted = new Set<string>();
  has(json: string): boolean {
    return this.accepted.has(json);
  }
  replace(jsons: Set<string>): void {
    this.accepted = jsons;
  }
}

/**
 * Checks a parsed export received from a peer. Instances come back tagged with the peer's cluster, and with
 * its network and locality where they name none, so the registry can use them as they are.
 */
export async function checkPeerExport(
  value: unknown,
  expected: ExportExpectation,
  cache?: ServiceCheckCache,
): Promise<ExportCheck> {
  try {
    const e = record(value, "", EXPORT_FIELDS);
    const cluster = str(e.cluster, "cluster", checkName);
    if (cluster !== expected.cluster)
      refuse("cluster", `"${clip(cluster)}" is not the cluster the peer said it is ("${expected.cluster}")`);
    const network = str(e.network, "network", checkNetwork);
    if (network !== expected.network)
      refuse("network", `"${clip(network)}" is not the network the peer announced ("${expected.network}")`);
    const locality = e.locality === undefined ? undefined : str(e.locality, "locality", checkLocality);
    if (typeof e.private !== "boolean") refuse("private", `must be a boolean, not ${describe(e.private)}`);
    const isPrivate = e.private as boolean;
    if (isPrivate !== expected.private)
      refuse("private", `${isPrivate} is not what the peer announced (${expected.private})`);
    const gateways = addresses(e.gateways, "gateways", isPrivate);
    const tunnelAcceptors = addresses(e.tunnelAcceptors, "tunnelAcceptors", isPrivate);
    const services = await checkServices(e.services, cache);
    const instances = checkInstances(e.instances, { cluster, network, locality });
    return {
      ok: true,
      export: {
        cluster,
        network,
        ...(locality !== undefined ? { locality } : {}),
        private: isPrivate,
        gateways,
        tunnelAcceptors,
        services,
        instances,
      },
    };
  } catch (err) {
    if (err instanceof Refusal) return { ok: false, field: err.field, message: err.message };
    throw err;
  }
}

function record(v: unknown, at: string, fields: ReadonlySet<string>): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return refuse(at || "(export)", `must be a map, not ${describe(v)}`);
  const r = v as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!fields.has(k)) refuse(join(at, k), `unknown field (known: ${[...fields].join(", ")})`);
  return r;
}

function list(v: unknown, at: string, max: number): unknown[] {
  if (!Array.isArray(v)) return refuse(at, `must be a list, not ${describe(v)}`);
  if (v.length > max) refuse(at, `${v.length} entries; at most ${max} are accepted`);
  return v;
}

function str(v: unknown, at: string, check: (s: string) => string | undefined): string {
  if (typeof v !== "string") return refuse(at, `must be a string, not ${describe(v)}`);
  const p = check(v);
  if (p !== undefined) refuse(at, p);
  return v;
}

function int(v: unknown, at: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    return refuse(at, `must be an integer ${min}..${max}, not ${describe(v)}`);
  return v;
}

const join = (at: string, k: string | number): string =>
  typeof k === "number" ? `${at}[${k}]` : at === "" ? k : `${at}.${k}`;

/** An IP address or a DNS name (an endpoint the proxy resolves when it connects). */
function checkAddress(v: string): string | undefined {
  if (isIP(v) !== 0) return undefined;
  const lower = v.toLowerCase();
  return dns1123Subdomain(lower.endsWith(".") ? lower.slice(0, -1) : lower) === undefined
    ? undefined
    : `"${clip(v)}" is neither an IP address nor a DNS name`;
}

function addresses(v: unknown, at: string, isPrivate: boolean): PeerAddress[] {
  const items = list(v, at, PEERING_LIMITS.maxGateways);
  if (isPrivate && items.length > 0) refuse(at, "must be empty: a private cluster cannot be dialled");
  return items.map((item, i) => {
    const here = join(at, i);
    const a = record(item, here, ADDRESS_FIELDS);
    return {
      address: str(a.address, join(here, "address"), checkAddress),
      port: int(a.port, join(here, "port"), 1, 65535),
    };
  });
}

async function checkServices(v: unknown, cache: ServiceCheckCache | undefined): Promise<object[]> {
  const items = list(v, "services", PEERING_LIMITS.maxServices);
  const seen = new Set<string>();
  const jsons = new Set<string>();
  const toValidate: { index: number; json: string }[] = [];
  for (const [i, item] of items.entries()) {
    const at = join("services", i);
    const s = record(item, at, SERVICE_FIELDS);
    if (typeof s.apiVersion !== "string")
      refuse(join(at, "apiVersion"), `must be a string, not ${describe(s.apiVersion)}`);
    if (typeof s.kind !== "string" || !EXPORTED_KINDS.has(s.kind))
      refuse(
        join(at, "kind"),
        `${describe(s.kind)} is not exported between clusters (Service or ServiceEntry)`,
      );
    const meta = record(s.metadata, join(at, "metadata"), METADATA_FIELDS);
    const name = str(meta.name, join(at, "metadata.name"), (n) => dns1123Subdomain(n));
    const namespace = str(meta.namespace, join(at, "metadata.namespace"), (n) => dns1123Subdomain(n));
    if (typeof s.spec !== "object" || s.spec === null || Array.isArray(s.spec))
      refuse(join(at, "spec"), `must be a map, not ${describe(s.spec)}`);
    const key = `${s.kind}/${namespace}/${name}`;
    if (seen.has(key)) refuse(at, `${s.kind} ${namespace}/${name} is exported twice`);
    seen.add(key);
    const depth = deeperThan(s, PEERING_LIMITS.maxNestingDepth);
    if (depth !== undefined)
      refuse(join(at, depth), `nested deeper than ${PEERING_LIMITS.maxNestingDepth} levels`);
    const json = JSON.stringify(s);
    if (json.length > PEERING_LIMITS.maxServiceJsonBytes)
      refuse(at, `${json.length} bytes of JSON; at most ${PEERING_LIMITS.maxServiceJsonBytes} are accepted`);
    jsons.add(json);
    if (!cache?.has(json)) toValidate.push({ index: i, json });
  }
  for (const { index, json } of toValidate) {
    const at = join("services", index);
    const parsed = parseResources(at, json);
    const parseError = parsed.diagnostics.find((d) => d.severity === "error");
    if (parseError !== undefined || parsed.resources.length !== 1)
      refuse(at, parseError?.message ?? "is not one resource");
    const checked = await validateResources(parsed.resources);
    const error = checked.diagnostics.find((d) => d.severity === "error");
    if (error !== undefined) refuse(error.field ? `${at}.${error.field}` : at, error.message);
    if (checked.valid.length !== 1) refuse(at, "is not a valid resource");
  }
  cache?.replace(jsons);
  return items as object[];
}

/** The path (relative to `root`) of the first value nested deeper than `max`, without recursion. */
function deeperThan(root: unknown, max: number): string | undefined {
  const stack: { v: unknown; depth: number; path: string }[] = [{ v: root, depth: 0, path: "" }];
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth >= max) return path;
    if (Array.isArray(v))
      for (const [i, item] of v.entries()) stack.push({ v: item, depth: depth + 1, path: join(path, i) });
    else
      for (const [k, item] of Object.entries(v))
        stack.push({ v: item, depth: depth + 1, path: join(path, k) });
  }
  return undefined;
}

function checkInstances(
  v: unknown,
  peer: { cluster: string; network: string; locality: string | undefined },
): ServiceInstanceLike[] {
  const items = list(v, "instances", PEERING_LIMITS.maxInstances);
  const seen = new Set<string>();
  const out: ServiceInstanceLike[] = new Array(items.length);
  for (const [i, item] of items.entries()) {
    const at = join("instances", i);
    const r = record(item, at, INSTANCE_FIELDS);
    const host = str(r.host, join(at, "host"), wildcardHost);
    const servicePort = int(r.servicePort, join(at, "servicePort"), 1, 65535);
    const address = str(r.address, join(at, "address"), checkAddress);
    const port = int(r.port, join(at, "port"), 1, 65535);
    const labels = checkLabels(r.labels, join(at, "labels"));
    const key = `${host}|${servicePort}|${address}|${port}`;
    if (seen.has(key)) refuse(at, `${address}:${port} is listed twice for ${host}:${servicePort}`);
    seen.add(key);
    const locality =
      r.locality === undefined ? peer.locality : str(r.locality, join(at, "locality"), checkLocality);
    const serviceAccount =
      r.serviceAccount === undefined
        ? undefined
        : str(r.serviceAccount, join(at, "serviceAccount"), (s) => dns1123Subdomain(s));
    const network =
      r.network === undefined ? peer.network : str(r.network, join(at, "network"), checkNetwork);
    if (r.cluster !== undefined && r.cluster !== peer.cluster)
      refuse(
        join(at, "cluster"),
        `${describe(r.cluster)}: a peer exports only its own cluster's endpoints ("${peer.cluster}")`,
      );
    const weight = r.weight === undefined ? undefined : int(r.weight, join(at, "weight"), 0, MAX_WEIGHT);
    if (r.healthy !== undefined && typeof r.healthy !== "boolean")
      refuse(join(at, "healthy"), `must be a boolean, not ${describe(r.healthy)}`);
    out[i] = {
      host,
      servicePort,
      address,
      port,
      labels,
      ...(locality !== undefined && locality !== "" ? { locality } : {}),
      ...(serviceAccount !== undefined ? { serviceAccount } : {}),
      ...(network !== "" ? { network } : {}),
      cluster: peer.cluster,
      ...(weight !== undefined ? { weight } : {}),
      ...(r.healthy !== undefined ? { healthy: r.healthy as boolean } : {}),
    };
  }
  return out;
}

function checkLabels(v: unknown, at: string): Record<string, string> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return refuse(at, `must be a map of strings, not ${describe(v)}`);
  const entries = Object.entries(v);
  if (entries.length > PEERING_LIMITS.maxLabels)
    refuse(at, `${entries.length} labels; at most ${PEERING_LIMITS.maxLabels} are accepted`);
  const out: Record<string, string> = {};
  for (const [k, value] of entries) {
    const here = `${at}["${clip(k, 40)}"]`;
    const kp = labelKey(k);
    if (kp !== undefined) refuse(here, kp);
    if (typeof value !== "string") refuse(here, `must be a string, not ${describe(value)}`);
    const vp = labelValue(value as string);
    if (vp !== undefined) refuse(here, vp);
    out[k] = value as string;
  }
  return out;
}
