// Who a control plane is to its peers (PeerIdentity), which peers it links with (MeshLink), and the checks
// on both: names, addresses, one link per peer cluster.
import type { Grant } from "../ca/authority.ts";
import { spiffeId } from "../ca/authority.ts";

/** This control plane, as its peers see it. */
export interface PeerIdentity {
  readonly cluster: string;
  readonly network: string;
  /** region/zone/subzone. */
  readonly locality?: string;
  /** A private cluster cannot be dialled: it only dials out, and has no listen address. */
  readonly private: boolean;
  /** The mesh's SPIFFE trust domain; peers must present the control plane's identity in it. */
  readonly trustDomain: string;
}

/** A link to one peer control plane (a `kind: MeshLink` resource, or derived from the runtime's Mesh file). */
export interface MeshLink {
  /** The link's name (for logs and status). */
  readonly name: string;
  /** The peer's cluster name: a peer is accepted only as the cluster its link names. */
  readonly cluster: string;
  /** HOST:PORT of the peer's PeerService: dial it. Absent: wait for the peer to dial us. */
  readonly address?: string;
  /** The peer's network; when given, a peer announcing another one is refused. */
  readonly network?: string;
}

/** The identity every control plane's peering certificate carries (its own intermediate CA issues it). */
export const CONTROL_PLANE_GRANT: Grant = {
  namespace: "istio-system",
  serviceAccount: "isthmus-control-plane",
};

export const controlPlaneSpiffeId = (trustDomain: string): string =>
  spiffeId(trustDomain, CONTROL_PLANE_GRANT);

export class PeeringConfigError extends Error {}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LOCALITY = /^[^/\s]{1,63}(\/[^/\s]{1,63}){0,2}$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Why `v` is not a cluster or network name, or undefined. */
export function checkName(v: unknown): string | undefined {
  if (typeof v !== "string") return `must be a string, not ${describe(v)}`;
  if (!NAME.test(v))
    return `"${clip(v)}" is not a name (1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)`;
  return undefined;
}

/** A network may also be "" (the default network, as Istio's). */
export function checkNetwork(v: unknown): string | undefined {
  return v === "" ? undefined : checkName(v);
}

export function checkLocality(v: unknown): string | undefined {
  if (typeof v !== "string") return `must be a string, not ${describe(v)}`;
  if (!LOCALITY.test(v)) return `"${clip(v)}" is not a locality (region, region/zone or region/zone/subzone)`;
  return undefined;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** "HOST:PORT" or "[IPv6]:PORT"; port 0 only where `allowZero` (a listen address: any free port). */
export function parseHostPort(v: string, allowZero = false): HostPort | string {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(v);
  if (!m) return `"${clip(v)}" is not HOST:PORT`;
  const port = Number(m[3]);
  if (port > 65535 || (port === 0 && !allowZero)) return `"${clip(v)}": port ${port} is out of range`;
  return { host: m[1] ?? m[2]!, port };
}

/** Throws PeeringConfigError naming the field. */
export function assertIdentity(id: PeerIdentity): void {
  const problems: string[] = [];
  const add = (field: string, p: string | undefined) => {
    if (p !== undefined) problems.push(`${field}: ${p}`);
  };
  add("cluster", checkName(id.cluster));
  add("network", checkNetwork(id.network));
  if (id.locality !== undefined && id.locality !== "") add("locality", checkLocality(id.locality));
  if (typeof id.private !== "boolean") problems.push("private: must be a boolean");
  if (typeof id.trustDomain !== "string" || !TRUST_DOMAIN.test(id.trustDomain))
    problems.push(`trustDomain: "${clip(String(id.trustDomain))}" is not a trust domain`);
  if (problems.length > 0) throw new PeeringConfigError(`peering identity: ${problems.join("; ")}`);
}

/**
 * Throws PeeringConfigError naming the link and the field: every link well formed, at most one per peer
 * cluster (a peer is one stream), none to this control plane's own cluster.
 */
export function assertLinks(self: PeerIdentity, links: readonly MeshLink[]): void {
  const names = new Set<string>();
  const clusters = new Map<string, string>();
  for (const [i, link] of links.entries()) {
    const at = `links[${i}]${typeof link?.name === "string" ? ` (${clip(link.name)})` : ""}`;
    const fail = (field: string, p: string): never => {
      throw new PeeringConfigError(`MeshLink ${at}: ${field}: ${p}`);
    };
    if (typeof link !== "object" || link === null) fail("link", "must be an object");
    for (const k of Object.keys(link))
      if (!["name", "cluster", "address", "network"].includes(k)) fail(k, "unknown field");
    if (typeof link.name !== "string" || link.name === "" || link.name.length > 253)
      fail("name", "must be a non-empty string of at most 253 characters");
    if (names.has(link.name)) fail("name", `"${link.name}" names two links`);
    names.add(link.name);
    const c = checkName(link.cluster);
    if (c !== undefined) fail("cluster", c);
    if (link.cluster === self.cluster)
      fail("cluster", `"${link.cluster}" is this control plane's own cluster`);
    const other = clusters.get(link.cluster);
    if (other !== undefined)
      fail("cluster", `link "${other}" already names cluster "${link.cluster}" (one link per peer)`);
    clusters.set(link.cluster, link.name);
    if (link.address !== undefined) {
      if (typeof link.address !== "string") fail("address", "must be a string");
      const hp = parseHostPort(link.address);
      if (typeof hp === "string") fail("address", hp);
    }
    if (link.network !== undefined) {
      const n = checkNetwork(link.network);
      if (n !== undefined) fail("network", n);
    }
  }
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "object" ? "a map" : `${typeof v} ${clip(JSON.stringify(v) ?? String(v))}`;
}

/** A value quoted in a message, cut short: a peer's garbage must not fill our logs. */
export function clip(s: string, max = 80): string {
  return s.length <= max ? s : `${s.slice(0, max)}...(${s.length} characters)`;
}
