// Test support for the peering tests: a PKI like a real mesh's (one root, an intermediate CA per cluster, and a
// second, unrelated root), PeerLinks instances that record what they receive, and waiting on a condition.
import { CertificateAuthority } from "../ca/authority.ts";
import { type CacertsPem, createIntermediate, createRoot } from "../ca/cacerts.ts";
import { makePeeringCredentials, type PeeringCredentials } from "./credentials.ts";
import type { MeshLink, PeerIdentity } from "./identity.ts";
import type { PeerAddress, PeerExport } from "./peer-export.ts";
import { type LinkStatus, PeerLinks, type PeerLinksOptions } from "./peer-links.ts";

export const TRUST_DOMAIN = "mesh.example";

/** A cluster's CA under `root`, as `isthmus ca intermediate` makes it. */
export async function clusterCa(
  root: { cert: string; key: string },
  cluster: string,
): Promise<CertificateAuthority> {
  const files: CacertsPem = await createIntermediate({
    rootCert: root.cert,
    rootKey: root.key,
    cluster,
    days: 30,
  });
  return CertificateAuthority.fromPem(files, { trustDomain: TRUST_DOMAIN });
}

export async function newRoot(): Promise<{ cert: string; key: string }> {
  return createRoot({ trustDomain: TRUST_DOMAIN, days: 30 });
}

export function identity(cluster: string, extra: Partial<PeerIdentity> = {}): PeerIdentity {
  return {
    cluster,
    network: `net-${cluster}`,
    locality: "eu/zone-1",
    private: false,
    trustDomain: TRUST_DOMAIN,
    ...extra,
  };
}

/** A small export: one Service with one endpoint per address given. */
export function exportOf(id: PeerIdentity, addresses: string[], gateways: PeerAddress[] = []): PeerExport {
  return {
    cluster: id.cluster,
    network: id.network,
    ...(id.locality ? { locality: id.locality } : {}),
    private: id.private,
    gateways: id.private ? [] : gateways,
    tunnelAcceptors: [],
    services: [
      {
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "reviews", namespace: "shop" },
        spec: { selector: { app: "reviews" }, ports: [{ name: "http", port: 9080 }] },
      },
    ],
    instances: addresses.map((address) => ({
      host: "reviews.shop.svc.cluster.local",
      servicePort: 9080,
      address,
      port: 9080,
      labels: { app: "reviews", version: "v1" },
    })),
  };
}

/** A running PeerLinks and what it was told. */
export interface Harness {
  readonly links: PeerLinks;
  readonly identity: PeerIdentity;
  /** Every onPeerState call, in order. */
  readonly events: { cluster: string; exp: PeerExport | undefined; at: number }[];
  readonly logs: string[];
  /** The export it serves; change it, then call links.exportChanged(). */
  current: PeerExport;
  /** The latest state per peer cluster. */
  peer(cluster: string): PeerExport | undefined;
  linkStatus(cluster: string): LinkStatus | undefined;
}

export async function startLinks(
  id: PeerIdentity,
  credentials: PeeringCredentials,
  links: MeshLink[],
  options: Partial<PeerLinksOptions> = {},
  cleanups: (() => unknown)[] = [],
): Promise<Harness> {
  const events: Harness["events"] = [];
  const logs: string[] = [];
  const h: Harness = {
    identity: id,
    events,
    logs,
    current: exportOf(id, ["10.0.0.1"]),
    peer: (cluster) => events.filter((e) => e.cluster === cluster).at(-1)?.exp,
    linkStatus: (cluster) => h.links.status().find((s) => s.cluster === cluster),
    links: undefined as unknown as PeerLinks,
  };
  const peerLinks = new PeerLinks({
    identity: id,
    credentials,
    links,
    export: () => h.current,
    onPeerState: (cluster, exp) => events.push({ cluster, exp, at: Date.now() }),
    log: (line) => logs.push(line),
    backoff: { initialMs: 100, maxMs: 500 },
    ...options,
  });
  (h as { links: PeerLinks }).links = peerLinks;
  cleanups.push(() => peerLinks.stop());
  await peerLinks.start();
  return h;
}

/** Polls `cond` until it holds; fails with `what` and `detail()` after `ms`. */
export async function waitFor(
  cond: () => boolean,
  what: string,
  detail: () => unknown = () => "",
  ms = 15_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(detail(), null, 1)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export { makePeeringCredentials };
