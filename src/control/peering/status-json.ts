// The CLI-facing form of PeerLinks' status, for `isthmus remote-clusters` (JSON as served, and a table for
// people): dates as ISO strings, absent values as null, so the shape is the same for every link.
import type { PeerIdentity } from "./identity.ts";
import type { LinkStatus, PeerRefusal } from "./peer-links.ts";

export interface RemoteClusterJson {
  link: string;
  cluster: string;
  network: string;
  direction: "dial" | "accept";
  address: string | null;
  state: LinkStatus["state"];
  since: string;
  lastSyncSent: string | null;
  lastSyncReceived: string | null;
  lastError: string | null;
  services: number;
  endpoints: number;
}

export interface RemoteClustersJson {
  /** This control plane. */
  cluster: string;
  network: string;
  private: boolean;
  /** One per link, by cluster name. */
  remoteClusters: RemoteClusterJson[];
  /** Diallers refused before a link could be named for them (no link for their cluster, a refused certificate). */
  refusals: { at: string; address: string; cluster: string | null; reason: string; count: number }[];
}

export function remoteClustersJson(
  identity: PeerIdentity,
  status: readonly LinkStatus[],
  refusals: readonly PeerRefusal[] = [],
): RemoteClustersJson {
  return {
    cluster: identity.cluster,
    network: identity.network,
    private: identity.private,
    remoteClusters: status.map((s) => ({
      link: s.link,
      cluster: s.cluster,
      network: s.network,
      direction: s.direction,
      address: s.address ?? null,
      state: s.state,
      since: s.since.toISOString(),
      lastSyncSent: s.lastSyncSent?.toISOString() ?? null,
      lastSyncReceived: s.lastSyncReceived?.toISOString() ?? null,
      lastError: s.lastError ?? null,
      services: s.services,
      endpoints: s.endpoints,
    })),
    refusals: refusals.map((r) => ({
      at: r.at.toISOString(),
      address: r.address,
      cluster: r.cluster ?? null,
      reason: r.reason,
      count: r.count,
    })),
  };
}

/** A table like istioctl's remote-clusters, ages relative to `now`; errors on their own lines below. */
export function formatRemoteClusters(json: RemoteClustersJson, now = Date.now()): string {
  const header = [
    "CLUSTER",
    "NETWORK",
    "DIRECTION",
    "ADDRESS",
    "STATE",
    "SINCE",
    "SENT",
    "RECEIVED",
    "SERVICES",
    "ENDPOINTS",
  ];
  const rows = json.remoteClusters.map((r) => [
    r.cluster,
    r.network || "-",
    r.direction,
    r.address ?? "-",
    r.state,
    age(r.since, now),
    r.lastSyncSent ? age(r.lastSyncSent, now) : "-",
    r.lastSyncReceived ? age(r.lastSyncReceived, now) : "-",
    String(r.services),
    String(r.endpoints),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(header), ...rows.map(line)];
  for (const r of json.remoteClusters) if (r.lastError) out.push(`${r.cluster}: ${r.lastError}`);
  for (const r of json.refusals)
    out.push(
      `refused ${r.address}${r.cluster ? ` (claiming ${r.cluster})` : ""}${r.count > 1 ? ` ${r.count} times, last` : ""} ${age(r.at, now)} ago: ${r.reason}`,
    );
  return `${out.join("\n")}\n`;
}

function age(iso: string, now: number): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}
