// The shape of one mesh's isolated network (`isthmus up --isolate`), decided before anything is created: the
// names of its network namespaces and interfaces, its addresses and routes, and the hub's nftables ruleset.
// Pure: isolation.ts turns it into `ip` and `nft` commands. See isolation.ts for why it looks like this.
//
// Addresses (all in 198.18.0.0/15, RFC 2544's benchmarking range, which no real network uses):
//   cluster i of the mesh whose address block starts at 127.B (address-blocks.ts: B = 20 + 16k, k = 0..14)
//     has global index g = 16k + i and owns 198.18.g.0/24, every address of it local in its namespace;
//   the mesh's links take 198.19.k.0/24: cluster i's veth pair 198.19.k.4i/30 (hub .4i+1, cluster .4i+2),
//     the root namespace's pair 198.19.k.252/30 (hub .253, root .254).
// So a mesh's pod addresses are 198.18.16k.0/20, and two meshes (two blocks) never share an address.

/** Every address an isolated mesh may use. */
export const ISOLATED_RANGE = "198.18.0.0/15";

const FIRST_BASE = 20;
const BLOCK_SIZE = 16;
const MAX_BLOCKS = 15; // g = 16k + i <= 239 keeps every cluster in 198.18.0.0/16
/** Clusters of one mesh: one address block's worth. */
export const MAX_ISOLATED_CLUSTERS = BLOCK_SIZE;
/** The name of a mesh's hub namespace; its clusters' namespaces are `PREFIX-BASE-CLUSTER`. */
const NAMESPACE_PREFIX = "isthmus";
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** The table the hub's rules live in (the hub's own ruleset: nothing else is in it). */
export const NFT_TABLE = "isthmus";

export interface IsolatedClusterSpec {
  /** The cluster's name (a DNS label, as the Mesh file requires). */
  readonly name: string;
  /** Its position in the mesh, 0..15: the runtime's cluster index. */
  readonly index: number;
  /** May dial out, but no other cluster may dial it. */
  readonly private: boolean;
}

export interface IsolationSpec {
  /** The base octet B of the mesh's address block (address-blocks.ts): 20, 36, ..., 244. */
  readonly base: number;
  readonly clusters: readonly IsolatedClusterSpec[];
}

export interface ClusterLayout {
  readonly name: string;
  readonly index: number;
  readonly private: boolean;
  /** Its global index g: 198.18.g.0/24. */
  readonly global: number;
  readonly cidr: string;
  readonly namespace: string;
  /** Its end of the veth pair, in the hub namespace. */
  readonly hubInterface: string;
  readonly hubAddress: string;
  /** Its end of the veth pair, in its own namespace (named eth0 there). */
  readonly linkAddress: string;
}

export interface IsolationLayout {
  readonly base: number;
  readonly hubNamespace: string;
  /** The root namespace's end of its veth pair to the hub (unique on the host: it carries the block's base). */
  readonly rootInterface: string;
  /** The hub's end of that pair, in the hub namespace. */
  readonly hubRootInterface: string;
  readonly hubRootAddress: string;
  /** The root namespace's address on that pair: how clusters reach the host (the node's address). */
  readonly rootAddress: string;
  /** The mesh's pod addresses (every cluster's /24), routed from the root namespace to the hub. */
  readonly podRange: string;
  /** The mesh's link addresses, routed from the root namespace to the hub. */
  readonly linkRange: string;
  readonly clusters: readonly ClusterLayout[];
}

/** The block number k of base octet B = 20 + 16k; throws for a base address-blocks.ts never hands out. */
export function blockOf(base: number): number {
  const k = (base - FIRST_BASE) / BLOCK_SIZE;
  if (!Number.isInteger(k) || k < 0 || k >= MAX_BLOCKS) {
    throw new Error(
      `address block base ${base} is not one of 20, 36, ..., ${FIRST_BASE + BLOCK_SIZE * (MAX_BLOCKS - 1)}`,
    );
  }
  return k;
}

/** The global index g of cluster `index` of the mesh whose block starts at 127.`base`: it owns 198.18.g.0/24. */
export function isolatedClusterIndex(base: number, index: number): number {
  if (!Number.isInteger(index) || index < 0 || index >= BLOCK_SIZE) {
    throw new Error(`cluster index ${index} is not 0..${BLOCK_SIZE - 1}`);
  }
  return blockOf(base) * BLOCK_SIZE + index;
}

/** The /24 of cluster `index` of the mesh whose address block starts at 127.`base`. */
export function isolatedClusterCidr(base: number, index: number): string {
  return `198.18.${isolatedClusterIndex(base, index)}.0/24`;
}

/** Host `host` (1..254) of cluster `index`'s /24. */
export function isolatedAddress(base: number, index: number, host: number): string {
  if (!Number.isInteger(host) || host < 1 || host > 254) {
    throw new Error(`host ${host} is not 1..254: an isolated cluster has one /24`);
  }
  return `198.18.${isolatedClusterIndex(base, index)}.${host}`;
}

/** The hub namespace of the mesh on block `base`; its clusters' namespaces start with this and a dash. */
export function hubNamespaceName(base: number): string {
  blockOf(base);
  return `${NAMESPACE_PREFIX}-${base}`;
}

/** The root namespace's end of the hub's veth pair of the mesh on block `base`. */
export function rootInterfaceName(base: number): string {
  return hubNamespaceName(base); // at most 11 characters: fits IFNAMSIZ
}

/** Whether `namespace` is one of the namespaces of the mesh on block `base`. */
export function belongsToBlock(namespace: string, base: number): boolean {
  const hub = hubNamespaceName(base);
  return namespace === hub || namespace.startsWith(`${hub}-`);
}

/** Checks the spec and lays the mesh out; every bad input is an error naming it. */
export function layoutIsolation(spec: IsolationSpec): IsolationLayout {
  const k = blockOf(spec.base);
  const count = spec.clusters.length;
  if (count < 1 || count > MAX_ISOLATED_CLUSTERS) {
    throw new Error(`an isolated mesh has 1..${MAX_ISOLATED_CLUSTERS} clusters, not ${count}`);
  }
  const hubNamespace = hubNamespaceName(spec.base);
  const names = new Set<string>();
  const indexes = new Set<number>();
  const clusters = spec.clusters.map((c): ClusterLayout => {
    if (typeof c.name !== "string" || !DNS_LABEL.test(c.name)) {
      throw new Error(`cluster name ${JSON.stringify(c.name)} is not a DNS label`);
    }
    if (names.has(c.name)) throw new Error(`cluster name "${c.name}" appears twice`);
    names.add(c.name);
    const global = isolatedClusterIndex(spec.base, c.index);
    if (indexes.has(c.index)) throw new Error(`cluster index ${c.index} appears twice`);
    indexes.add(c.index);
    if (typeof c.private !== "boolean") throw new Error(`cluster "${c.name}": private is not a boolean`);
    return {
      name: c.name,
      index: c.index,
      private: c.private,
      global,
      cidr: `198.18.${global}.0/24`,
      namespace: `${hubNamespace}-${c.name}`,
      hubInterface: `c${c.index}`,
      hubAddress: `198.19.${k}.${4 * c.index + 1}`,
      linkAddress: `198.19.${k}.${4 * c.index + 2}`,
    };
  });
  return {
    base: spec.base,
    hubNamespace,
    rootInterface: rootInterfaceName(spec.base),
    hubRootInterface: "root",
    hubRootAddress: `198.19.${k}.253`,
    rootAddress: `198.19.${k}.254`,
    podRange: `198.18.${k * BLOCK_SIZE}.0/20`,
    linkRange: `198.19.${k}.0/24`,
    clusters,
  };
}

/** `ip -batch` lines that configure a cluster's namespace (its veth pair exists, eth0 on its side). */
export function clusterNamespaceCommands(c: ClusterLayout): string[] {
  return [
    "link set lo up",
    // Every address of the /24 is local, as 127/8 is on lo: pods bind theirs without one interface each.
    `route add local ${c.cidr} dev lo`,
    `addr add ${c.linkAddress}/30 dev eth0`,
    "link set eth0 up",
    `route add default via ${c.hubAddress} dev eth0`,
  ];
}

/** `ip -batch` lines that configure the hub namespace (every veth pair exists). */
export function hubNamespaceCommands(layout: IsolationLayout): string[] {
  const lines = ["link set lo up"];
  for (const c of layout.clusters) {
    lines.push(
      `addr add ${c.hubAddress}/30 dev ${c.hubInterface}`,
      `link set ${c.hubInterface} up`,
      `route add ${c.cidr} via ${c.linkAddress} dev ${c.hubInterface}`,
    );
  }
  lines.push(`addr add ${layout.hubRootAddress}/30 dev ${layout.hubRootInterface}`);
  lines.push(`link set ${layout.hubRootInterface} up`);
  return lines;
}

/** `ip -batch` lines for the root namespace: its end of the hub's pair, and routes for this mesh only. */
export function rootNamespaceCommands(layout: IsolationLayout): string[] {
  return [
    `addr add ${layout.rootAddress}/30 dev ${layout.rootInterface}`,
    `link set ${layout.rootInterface} up`,
    `route add ${layout.podRange} via ${layout.hubRootAddress} dev ${layout.rootInterface}`,
    `route add ${layout.linkRange} via ${layout.hubRootAddress} dev ${layout.rootInterface}`,
  ];
}

/**
 * The hub's ruleset (loaded into the hub namespace only). The hub forwards between clusters, and between them
 * and the root namespace; a new connection toward a private cluster's link is refused unless it comes from the
 * root namespace (the operator's supervisor), so that the dial fails at once instead of hanging until its
 * timeout: a TCP reset (ECONNREFUSED), which, unlike ICMP errors, the kernel does not rate-limit (a cluster
 * retrying would otherwise see SYNs silently dropped); other protocols get ICMP admin-prohibited
 * (EHOSTUNREACH). Replies of allowed connections are established.
 */
export function hubRuleset(layout: IsolationLayout): string {
  const quoted = (names: readonly string[]) => `{ ${names.map((n) => `"${n}"`).join(", ")} }`;
  const privateLinks = layout.clusters.filter((c) => c.private).map((c) => c.hubInterface);
  const clusterLinks = layout.clusters.map((c) => c.hubInterface);
  const rules = [
    "ct state established,related accept",
    "ct state invalid drop",
    `iifname "${layout.hubRootInterface}" accept`,
    ...(privateLinks.length > 0
      ? [
          `oifname ${quoted(privateLinks)} meta l4proto tcp reject with tcp reset`,
          `oifname ${quoted(privateLinks)} reject with icmpx type admin-prohibited`,
        ]
      : []),
    `iifname ${quoted(clusterLinks)} accept`,
  ];
  return [
    `table inet ${NFT_TABLE} {`,
    "  chain forward {",
    "    type filter hook forward priority filter; policy drop;",
    ...rules.map((r) => `    ${r}`),
    "  }",
    "}",
    "",
  ].join("\n");
}
