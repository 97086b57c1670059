// Where workload instances come from, besides the config's WorkloadEntries. A source announces instances and
// says when they change; the control plane rebuilds its registry from every source's current set, so a later
// source (a Kubernetes watch, a peer cluster's link) plugs in here and the translator never knows which one an
// instance came from.
//
// RegistrationSource is the one built in: instances registered through the config API (PUT
// /apis/registrations/NAMESPACE/NAME), as the local runtime registers each pod's address and readiness.
import { isIP } from "node:net";
import type { WorkloadInstance } from "../model.ts";

export interface WorkloadSource {
  /** Every instance the source knows now. */
  workloads(): readonly WorkloadInstance[];
  /** Called after each change of the set. */
  onChange(listener: () => void): void;
}

/** Bounds of one registration, and of the whole set. */
export const REGISTRATION_LIMITS = {
  maxInstances: 100_000,
  maxLabels: 64,
  maxStringLength: 253,
} as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const LOCALITY = /^[^/]+(\/[^/]+){0,2}$/;

export class RegistrationSource implements WorkloadSource {
  private readonly byKey = new Map<string, WorkloadInstance>();
  private readonly listeners: Array<() => void> = [];
  private snapshot: readonly WorkloadInstance[] | undefined;

  workloads(): readonly WorkloadInstance[] {
    this.snapshot ??= [...this.byKey.values()];
    return this.snapshot;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Creates or replaces the instance `namespace/name` from `body` (parsed JSON). Returns the problems, each
   * naming the field; on any problem nothing changes. Registering an identical instance again is no change.
   */
  register(namespace: string, name: string, body: unknown): string[] {
    const parsed = parseRegistration(namespace, name, body);
    if (Array.isArray(parsed)) return parsed;
    const key = `${namespace}/${name}`;
    if (!this.byKey.has(key) && this.byKey.size >= REGISTRATION_LIMITS.maxInstances)
      return [`at most ${REGISTRATION_LIMITS.maxInstances} instances may be registered`];
    const before = this.byKey.get(key);
    if (before !== undefined && JSON.stringify(before) === JSON.stringify(parsed)) return [];
    this.byKey.set(key, parsed);
    this.changed();
    return [];
  }

  /** Removes `namespace/name`; false if it was not registered. */
  deregister(namespace: string, name: string): boolean {
    if (!this.byKey.delete(`${namespace}/${name}`)) return false;
    this.changed();
    return true;
  }

  get(namespace?: string, name?: string): WorkloadInstance[] {
    return this.workloads().filter(
      (w) =>
        (namespace === undefined || w.namespace === namespace) && (name === undefined || w.name === name),
    );
  }

  private changed(): void {
    this.snapshot = undefined;
    for (const l of this.listeners) l();
  }
}

const FIELDS = new Set([
  "address",
  "labels",
  "serviceAccount",
  "locality",
  "network",
  "cluster",
  "weight",
  "ports",
  "group",
  "healthy",
]);

/** A registration body checked field by field: the instance, or every problem found. */
function parseRegistration(namespace: string, name: string, body: unknown): WorkloadInstance | string[] {
  const problems: string[] = [];
  if (!DNS_LABEL.test(namespace) || namespace.length > 63)
    problems.push(`namespace "${namespace}" is not a DNS label`);
  if (!DNS_LABEL.test(name) || name.length > REGISTRATION_LIMITS.maxStringLength)
    problems.push(`name "${name.slice(0, 100)}" is not a DNS label`);
  if (typeof body !== "object" || body === null || Array.isArray(body))
    return [...problems, "the body must be a JSON object"];
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) problems.push(`unknown field "${k.slice(0, 100)}"`);
  const text = (field: string): string | undefined => {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v.length === 0 || v.length > REGISTRATION_LIMITS.maxStringLength) {
      problems.push(
        `${field} must be a non-empty string of at most ${REGISTRATION_LIMITS.maxStringLength} characters`,
      );
      return undefined;
    }
    return v;
  };
  const address = text("address");
  if (address === undefined) problems.push("address is required");
  else if (isIP(address) === 0) problems.push(`address "${address}" is not an IP address`);
  const labels: Record<string, string> = {};
  if (o.labels !== undefined) {
    if (typeof o.labels !== "object" || o.labels === null || Array.isArray(o.labels))
      problems.push("labels must be an object");
    else {
      const entries = Object.entries(o.labels as Record<string, unknown>);
      if (entries.length > REGISTRATION_LIMITS.maxLabels)
        problems.push(`at most ${REGISTRATION_LIMITS.maxLabels} labels`);
      for (const [k, v] of entries.slice(0, REGISTRATION_LIMITS.maxLabels)) {
        if (!LABEL_KEY.test(k) || k.length > REGISTRATION_LIMITS.maxStringLength)
          problems.push(`labels: "${k.slice(0, 100)}" is not a label key`);
        else if (typeof v !== "string" || !LABEL_VALUE.test(v) || v.length > 63)
          problems.push(`labels.${k} must be a label value (at most 63 characters)`);
        else labels[k] = v;
      }
    }
  }
  const serviceAccount = text("serviceAccount");
  if (serviceAccount !== undefined && !DNS_LABEL.test(serviceAccount))
    problems.push(`serviceAccount "${serviceAccount}" is not a DNS label`);
  const locality = text("locality");
  if (locality !== undefined && !LOCALITY.test(locality))
    problems.push(`locality "${locality}" is not region[/zone[/subzone]]`);
  const network = text("network");
  const cluster = text("cluster");
  const group = text("group");
  if (group !== undefined && !DNS_LABEL.test(group)) problems.push(`group "${group}" is not a DNS label`);
  let weight: number | undefined;
  if (o.weight !== undefined) {
    if (!Number.isInteger(o.weight) || (o.weight as number) < 1 || (o.weight as number) > 1_000_000)
      problems.push("weight must be an integer from 1 to 1000000");
    else weight = o.weight as number;
  }
  let ports: Record<string, number> | undefined;
  if (o.ports !== undefined) {
    if (typeof o.ports !== "object" || o.ports === null || Array.isArray(o.ports))
      problems.push("ports must be an object");
    else {
      ports = {};
      const entries = Object.entries(o.ports as Record<string, unknown>);
      if (entries.length > REGISTRATION_LIMITS.maxLabels)
        problems.push(`at most ${REGISTRATION_LIMITS.maxLabels} ports`);
      for (const [k, v] of entries.slice(0, REGISTRATION_LIMITS.maxLabels)) {
        if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 65535)
          problems.push(`ports.${k.slice(0, 100)} must be a port number`);
        else ports[k] = v as number;
      }
    }
  }
  let healthy: boolean | undefined;
  if (o.healthy !== undefined) {
    if (typeof o.healthy !== "boolean") problems.push("healthy must be true or false");
    else healthy = o.healthy;
  }
  if (problems.length > 0) return problems;
  return {
    name,
    namespace,
    address: address!,
    labels,
    ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    ...(locality !== undefined ? { locality } : {}),
    ...(network !== undefined ? { network } : {}),
    ...(cluster !== undefined ? { cluster } : {}),
    ...(weight !== undefined ? { weight } : {}),
    ...(ports !== undefined ? { ports } : {}),
    ...(group !== undefined ? { group } : {}),
    ...(healthy !== undefined ? { healthy } : {}),
  };
}
