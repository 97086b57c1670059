// The control plane's side of multi-cluster: its PeerLinks (src/control/peering/) kept in step with the MeshLink
// resources it serves, its export made from its registry, and the peers' exports turned into registry inputs
// (registry/remote-clusters.ts: their Services, their endpoints, the networks' gateways).
import net from "node:net";
import { parseResources } from "../api/load/parse-documents.ts";
import type { Resource } from "../api/resource.ts";
import { isMeshLink, meshLinkSpec } from "../api/validate/mesh-link.ts";
import type { CertificateAuthority } from "./ca/authority.ts";
import {
  type MeshLink,
  makePeeringCredentials,
  type PeerAddress,
  type PeerExport,
  type PeerIdentity,
  PeerLinks,
  type RemoteClustersJson,
  remoteClustersJson,
  renewalDelayMs,
} from "./peering/index.ts";
import type { ServiceRegistry } from "./registry/registry.ts";
import {
  type LocalCluster,
  localExport,
  type MeshInputs,
  meshInputs,
  PEER_ORIGIN,
  type PeerState,
} from "./registry/remote-clusters.ts";

export interface MeshPeeringOptions {
  readonly identity: PeerIdentity;
  readonly ca: CertificateAuthority;
  /** Serve the PeerService here (a public cluster); absent: only dial. */
  readonly listen?: string;
  readonly graceMs?: number;
  readonly log: (line: string) => void;
  /** The registry as it is now (for the export). */
  readonly registry: () => ServiceRegistry;
  /** A peer's state changed: rebuild the registry. */
  readonly onChange: () => void;
}

const PROBE_TIMEOUT_MS = 1000;

export class MeshPeering {
  private readonly options: MeshPeeringOptions;
  private readonly peers = new Map<string, PeerState>();
  private links: PeerLinks | undefined;
  private linksKey = "";
  private renewal: NodeJS.Timeout | undefined;

  constructor(options: MeshPeeringOptions) {
    this.options = options;
  }

  get local(): LocalCluster {
    const id = this.options.identity;
    return { cluster: id.cluster, network: id.network, private: id.private };
  }

  /** Starts serving and dialling the links the resources declare. */
  async start(resources: readonly Resource[]): Promise<void> {
    const credentials = await makePeeringCredentials(this.options.ca);
    const links = linksOf(resources);
    this.linksKey = JSON.stringify(links);
    this.links = new PeerLinks({
      identity: this.options.identity,
      credentials,
      ...(this.options.listen !== undefined ? { listen: this.options.listen } : {}),
      links,
      export: () => this.exportNow(),
      onPeerState: (cluster, exp) => this.peerState(cluster, exp),
      ...(this.options.graceMs !== undefined ? { graceMs: this.options.graceMs } : {}),
      probe: probeGateways,
      log: (line) =>
        this.options.log(`isthmus control-plane: peering: ${line.endsWith("\n") ? line : `${line}\n`}`),
    });
    await this.links.start();
    this.scheduleRenewal(credentials);
  }

  /** The address the PeerService listens on (the real port when given :0). */
  get address(): string | undefined {
    return this.links?.address;
  }

  /** The registry's inputs: the local resources, and the peers' Services, endpoints and networks. */
  inputs(localResources: readonly Resource[]): MeshInputs {
    return meshInputs(this.local, localResources, [...this.peers.values()]);
  }

  /** After each registry rebuild: links may have changed (MeshLink resources), and the export. */
  changed(resources: readonly Resource[]): void {
    if (this.links === undefined) return;
    const links = linksOf(resources);
    const key = JSON.stringify(links);
    if (key !== this.linksKey) {
      try {
        this.links.setLinks(links);
        this.linksKey = key;
      } catch (e) {
        this.options.log(
          `isthmus control-plane: peering: MeshLinks refused, keeping the last: ${(e as Error).message}\n`,
        );
      }
    }
    this.links.exportChanged();
  }

  status(): RemoteClustersJson {
    return remoteClustersJson(
      this.options.identity,
      this.links?.status() ?? [],
      this.links?.refusals() ?? [],
    );
  }

  async stop(): Promise<void> {
    clearTimeout(this.renewal);
    await this.links?.stop();
  }

  private scheduleRenewal(credentials: Awaited<ReturnType<typeof makePeeringCredentials>>): void {
    this.renewal = setTimeout(
      () => {
        void makePeeringCredentials(this.options.ca)
          .then((next) => {
            this.links?.setCredentials(next);
            this.scheduleRenewal(next);
          })
          .catch((e: Error) => {
            this.options.log(`isthmus control-plane: peering: renewing the certificate: ${e.message}\n`);
            this.scheduleRenewal(credentials);
          });
      },
      Math.max(60_000, renewalDelayMs(credentials)),
    );
    this.renewal.unref();
  }

  private exportNow(): PeerExport {
    const ex = localExport(this.options.registry(), this.local);
    const id = this.options.identity;
    return {
      cluster: id.cluster,
      network: id.network,
      ...(id.locality ? { locality: id.locality } : {}),
      private: id.private,
      gateways: ex.gateways,
      tunnelAcceptors: ex.tunnelAcceptors,
      services: ex.services.map(plainObject),
      instances: ex.instances,
    };
  }

  private peerState(cluster: string, exp: PeerExport | undefined): void {
    if (exp === undefined) this.peers.delete(cluster);
    else {
      const parsed = parseResources(
        `${PEER_ORIGIN}${cluster}`,
        exp.services.map((s) => JSON.stringify(s)).join("\n---\n"),
      );
      this.peers.set(cluster, {
        cluster: exp.cluster,
        network: exp.network,
        private: exp.private,
        ...(exp.locality ? { locality: exp.locality } : {}),
        gateways: exp.gateways,
        tunnelAcceptors: exp.tunnelAcceptors,
        // The peering library validated them with the config API's validators; kinds the registry uses only.
        services: parsed.resources.filter((r) => r.kind === "Service" || r.kind === "ServiceEntry"),
        instances: exp.instances,
      });
    }
    this.options.onChange();
  }
}

/** The MeshLinks among the served resources. */
export function linksOf(resources: readonly Resource[]): MeshLink[] {
  return resources
    .filter(isMeshLink)
    .map(meshLinkSpec)
    .map((l) => ({ name: l.name, cluster: l.cluster, ...(l.address ? { address: l.address } : {}) }))
    .sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
}

/** A Service as it travels: its identity, labels, annotations and spec. */
function plainObject(r: Resource): object {
  const meta = (r.object.metadata ?? {}) as Record<string, unknown>;
  return {
    apiVersion: r.apiVersion,
    kind: r.kind,
    metadata: {
      name: r.name,
      namespace: r.namespace,
      ...(meta.labels ? { labels: meta.labels } : {}),
      ...(meta.annotations ? { annotations: meta.annotations } : {}),
    },
    spec: r.object.spec ?? {},
  };
}

/** Whether any of a peer's east-west gateways accepts a TCP connection. */
async function probeGateways(gateways: readonly PeerAddress[]): Promise<boolean> {
  const one = (g: PeerAddress) =>
    new Promise<boolean>((resolve) => {
      const s = net.connect({ host: g.address, port: g.port });
      const done = (ok: boolean) => {
        s.destroy();
        resolve(ok);
      };
      s.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
      s.once("connect", () => done(true));
      s.once("error", () => done(false));
    });
  const results = await Promise.all(gateways.map(one));
  return results.some(Boolean);
}
