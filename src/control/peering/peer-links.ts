// The control plane's links to its peers: serves the PeerService (unless private), dials the peers whose
// links give an address, keeps one verified stream per peer, sends our export when it changes and hands each
// peer's accepted export to the registry (onPeerState). A peer gone keeps its export while its gateway still
// answers, and is withdrawn after a grace period. docs/peering.md describes the protocol.
import { Backoff } from "./backoff.ts";
import { PeeringCertificateProvider, type PeeringKeyMaterial } from "./certificate-provider.ts";
import { type GatewayProbe, GracePeriod } from "./grace-period.ts";
import {
  assertIdentity,
  assertLinks,
  checkLocality,
  checkName,
  checkNetwork,
  clip,
  type MeshLink,
  type PeerIdentity,
  PeeringConfigError,
  parseHostPort,
} from "./identity.ts";
import { PEERING_LIMITS } from "./limits.ts";
import { checkPeerCertificate, explainDialFailure } from "./peer-certificate.ts";
import { type PeerExport, ServiceCheckCache } from "./peer-export.ts";
import {
  type Admission,
  type Direction,
  PeerSession,
  type SessionHooks,
  type SessionOutcome,
  SUPERSEDED_CODE,
} from "./peer-session.ts";
import {
  channelOptions,
  grpc,
  type HelloMessage,
  type PeerClientStream,
  type PeerMessage,
  type PeerServerStream,
  PROTOCOL_VERSION,
  peerService,
  serverOptions,
} from "./peering-proto.ts";
import { type EncodedSnapshot, encodeSnapshot } from "./snapshot-codec.ts";

export type LinkState = "connecting" | "connected" | "refused" | "down" | "withdrawn";

/** One link as `isthmus remote-clusters` shows it. */
export interface LinkStatus {
  /** The MeshLink's name. */
  readonly link: string;
  readonly cluster: string;
  /** The peer's network as it announced it (or as the link expects it, before it did). */
  readonly network: string;
  /** Who opened the current stream (or who would: "dial" when the link has an address). */
  readonly direction: Direction;
  /** The dialled HOST:PORT, or the dialler's address while it is connected. */
  readonly address?: string;
  /**
   * connecting: no stream yet (dialling, or waiting for the peer to dial); connected: a verified stream;
   * refused: the last attempt failed verification on one side (lastError says which and why); down: the stream
   * is gone and the peer's export is kept for now; withdrawn: its export was withdrawn after the grace period.
   */
  readonly state: LinkState;
  /** When `state` last changed. */
  readonly since: Date;
  /** When the peer last acknowledged our snapshot. */
  readonly lastSyncSent?: Date;
  /** When we last accepted a snapshot from the peer. */
  readonly lastSyncReceived?: Date;
  readonly lastError?: string;
  /** Services and endpoints of the peer's export we hold (kept while down, 0 once withdrawn). */
  readonly services: number;
  readonly endpoints: number;
}

/** A dialler refused before any link could be named for it (no link for its cluster, an unverified certificate). */
export interface PeerRefusal {
  readonly at: Date;
  readonly address: string;
  /** The cluster its Hello claimed, when it sent one (unverified when its certificate was refused). */
  readonly cluster?: string;
  readonly reason: string;
  /** How many times in a row this dialler was refused so (it retries). */
  readonly count: number;
}

export interface PeerLinksOptions {
  readonly identity: PeerIdentity;
  /** Our peering certificate and trusted roots (makePeeringCredentials). */
  readonly credentials: PeeringKeyMaterial;
  /** HOST:PORT to serve the PeerService on (port 0: any free port); absent for a cluster that only dials. */
  readonly listen?: string;
  readonly links: readonly MeshLink[];
  /**
   * Our export as it is now; called at start and after exportChanged() (debounced). One that throws, or that
   * names another cluster, network or privacy than `identity`, is logged and not sent (peers keep the last).
   */
  readonly export: () => PeerExport;
  /**
   * A peer's newly accepted export, or undefined when it is withdrawn (its link removed, or gone past its grace
   * period). Instances come tagged with the peer's cluster (and its network and locality where they name
   * none). The object is the receiver's to keep; do not change it.
   */
  readonly onPeerState: (cluster: string, exp: PeerExport | undefined) => void;
  /** How long a gone peer's export is kept once its gateways stop answering (default 30 s). */
  readonly graceMs?: number;
  /** Whether a gone peer's east-west gateways still answer; without it an export is kept for graceMs. */
  readonly probe?: GatewayProbe;
  /** How often to probe a gone peer's gateways (default 5 s, at most half of graceMs). */
  readonly probeIntervalMs?: number;
  /** Reconnection delays (default 0.5 s doubling to 30 s). */
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number };
  /** gRPC keepalive (default a ping after 3 s idle, dead after 3 s without an answer). */
  readonly keepalive?: { readonly timeMs?: number; readonly timeoutMs?: number };
  /** One line per event (connected, lost, refused, withdrawn), each ending in a newline. */
  readonly log?: (line: string) => void;
}

interface LinkEntry {
  link: MeshLink;
  removed: boolean;
  /** The verified stream in use. */
  session?: PeerSession;
  /** Our dial in progress or in use, and its channel. */
  dialing?: { session: PeerSession; client: grpc.Client };
  dialTimer?: NodeJS.Timeout;
  backoff: Backoff;
  state: LinkState;
  since: Date;
  lastSyncSent?: Date;
  lastSyncReceived?: Date;
  lastError?: string;
  /** The last error logged, so that a peer failing the same way at each retry is logged once. */
  lastLogged?: string;
  peerHello?: HelloMessage;
  /** The peer's last accepted export. */
  peer?: { export: PeerExport; version: string };
  cache: ServiceCheckCache;
  grace?: GracePeriod;
}

export class PeerLinks {
  private readonly identity: PeerIdentity;
  private readonly provider: PeeringCertificateProvider;
  private readonly entries = new Map<string, LinkEntry>();
  private readonly sessions = new Set<PeerSession>();
  private readonly sessionEntries = new Map<PeerSession, LinkEntry>();
  /** Streams from dialers whose certificate was refused, held until they say who they claim to be. */
  private readonly unverified = new Set<PeerServerStream>();
  private readonly recentRefusals: PeerRefusal[] = [];
  private readonly refusalsLogged = new Map<string, number>();
  private readonly graceMs: number;
  private readonly probeIntervalMs: number;
  private readonly keepaliveTimeMs: number;
  private readonly keepaliveTimeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly hooks: SessionHooks;
  private server: grpc.Server | undefined;
  private boundAddress: string | undefined;
  private started = false;
  private stopped = false;
  private current: EncodedSnapshot | undefined;
  private exportError: string | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private encoding = false;
  private reencode = false;

  private readonly options: PeerLinksOptions;

  constructor(options: PeerLinksOptions) {
    this.options = options;
    assertIdentity(options.identity);
    this.identity = options.identity;
    if (options.listen !== undefined) {
      const hp = parseHostPort(options.listen, true);
      if (typeof hp === "string") throw new PeeringConfigError(`peering listen address: ${hp}`);
    }
    assertLinks(this.identity, options.links);
    this.provider = new PeeringCertificateProvider(options.credentials);
    this.graceMs = options.graceMs ?? PEERING_LIMITS.graceMs;
    this.probeIntervalMs = options.probeIntervalMs ?? PEERING_LIMITS.probeIntervalMs;
    this.keepaliveTimeMs = options.keepalive?.timeMs ?? PEERING_LIMITS.keepaliveTimeMs;
    this.keepaliveTimeoutMs = options.keepalive?.timeoutMs ?? PEERING_LIMITS.keepaliveTimeoutMs;
    this.log = options.log ?? (() => {});
    this.hooks = {
      admit: (s, hello) => this.admit(s, hello),
      attached: (s) => this.attached(s),
      snapshotAccepted: (s, exp, version) => this.snapshotAccepted(s, exp, version),
      snapshotRefused: (s, version, reason) => this.snapshotRefused(s, version, reason),
      acknowledged: (s, version, error) => this.acknowledged(s, version, error),
      closed: (s, outcome) => this.closed(s, outcome),
    };
    for (const link of options.links) this.entries.set(link.cluster, this.newEntry(link));
  }

  /** The PeerService's bound HOST:PORT once started (the real port when `listen` asked for 0). */
  get address(): string | undefined {
    return this.boundAddress;
  }

  /** Encodes the first snapshot, serves the PeerService (when `listen` is set) and dials the linked peers. */
  async start(): Promise<void> {
    if (this.started) throw new Error("PeerLinks already started");
    this.started = true;
    await this.refreshExport();
    if (this.options.listen !== undefined) await this.serve(this.options.listen);
    for (const entry of this.entries.values()) this.scheduleDial(entry, 0);
  }

  /**
   * Replaces the links (GitOps). Throws PeeringConfigError, changing nothing, when one is invalid. A removed
   * link's stream is closed and its peer's export withdrawn at once; a changed one reconnects.
   */
  setLinks(links: readonly MeshLink[]): void {
    assertLinks(this.identity, links);
    const next = new Map(links.map((l) => [l.cluster, l]));
    for (const [cluster, entry] of this.entries) {
      const link = next.get(cluster);
      if (link === undefined) {
        this.entries.delete(cluster);
        entry.removed = true;
        clearTimeout(entry.dialTimer);
        this.stopGrace(entry);
        this.closeEntrySessions(
          entry,
          grpc.status.PERMISSION_DENIED,
          `the link to cluster "${cluster}" was removed`,
        );
        this.log(`peering: link ${entry.link.name} to cluster ${cluster} removed\n`);
        if (entry.peer !== undefined) {
          entry.peer = undefined;
          this.notify(cluster, undefined);
        }
        continue;
      }
      // A new name is only a label; a new address or network is a new way to reach the peer, or a new
      // expectation of it: the stream is made again.
      const changed = link.address !== entry.link.address || link.network !== entry.link.network;
      entry.link = link;
      if (changed) {
        entry.backoff.reset();
        clearTimeout(entry.dialTimer);
        entry.dialTimer = undefined;
        this.closeEntrySessions(entry, grpc.status.UNAVAILABLE, `the link to cluster "${cluster}" changed`);
        this.scheduleDial(entry, 0);
      }
    }
    for (const [cluster, link] of next)
      if (!this.entries.has(cluster)) {
        const entry = this.newEntry(link);
        this.entries.set(cluster, entry);
        this.scheduleDial(entry, 0);
      }
  }

  /** Renewed credentials: the server presents them from the next handshake on, and so does each new dial. */
  setCredentials(credentials: PeeringKeyMaterial): void {
    this.provider.update(credentials);
  }

  /** Our export changed: a new snapshot goes to every connected peer after ~100 ms of quiet. */
  exportChanged(): void {
    if (this.stopped || !this.started || this.debounceTimer !== undefined) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.refreshExport();
    }, PEERING_LIMITS.debounceMs);
  }

  status(): LinkStatus[] {
    const out: LinkStatus[] = [];
    for (const e of this.entries.values()) {
      const s = e.session;
      const direction: Direction = s?.direction ?? (e.link.address !== undefined ? "dial" : "accept");
      const address = s !== undefined ? s.remote : e.link.address;
      out.push({
        link: e.link.name,
        cluster: e.link.cluster,
        network: e.peerHello?.network ?? e.link.network ?? "",
        direction,
        ...(address !== undefined ? { address } : {}),
        state: e.state,
        since: e.since,
        ...(e.lastSyncSent ? { lastSyncSent: e.lastSyncSent } : {}),
        ...(e.lastSyncReceived ? { lastSyncReceived: e.lastSyncReceived } : {}),
        ...(e.lastError !== undefined ? { lastError: e.lastError } : {}),
        services: e.peer?.export.services.length ?? 0,
        endpoints: e.peer?.export.instances.length ?? 0,
      });
    }
    return out.sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0));
  }

  /** The latest dialers refused before a link could be named (oldest first, at most 16). */
  refusals(): PeerRefusal[] {
    return [...this.recentRefusals];
  }

  /** Closes every stream and the server. No onPeerState calls after this. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.debounceTimer);
    for (const e of this.entries.values()) {
      clearTimeout(e.dialTimer);
      this.stopGrace(e);
    }
    const reason = `cluster "${this.identity.cluster}" is stopping`;
    for (const s of [...this.sessions]) s.close(grpc.status.UNAVAILABLE, reason);
    for (const e of this.entries.values()) e.dialing?.client.close();
    for (const call of this.unverified)
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: reason });
    this.unverified.clear();
    const server = this.server;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      // Lets the streams' closing statuses reach the peers; a peer that does not let go is cut after 1 s.
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1000);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  // --- serving and dialling ---

  private async serve(listen: string): Promise<void> {
    const server = new grpc.Server(serverOptions(this.keepaliveTimeMs, this.keepaliveTimeoutMs));
    server.addService(peerService().service, {
      Exchange: (call: PeerServerStream) => this.accept(call),
    });
    // Client certificates are asked for but verified here rather than in the handshake: grpc-js drops a
    // connection whose handshake fails without a word to the server, and this way a refused dialler is seen,
    // named and told why (getAuthContext() reports only certificates that verified against our roots).
    const credentials = grpc.experimental.createCertificateProviderServerCredentials(
      this.provider,
      this.provider,
      false,
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(listen, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    const hp = parseHostPort(listen, true) as { host: string };
    this.boundAddress = hp.host.includes(":") ? `[${hp.host}]:${port}` : `${hp.host}:${port}`;
    this.log(`peering: cluster ${this.identity.cluster} serves peers on ${this.boundAddress}\n`);
  }

  private accept(call: PeerServerStream): void {
    if (this.stopped) {
      call.emit("error", {
        code: grpc.status.UNAVAILABLE,
        details: `cluster "${this.identity.cluster}" is stopping`,
      });
      return;
    }
    const remote = call.getPeer();
    const auth = call.getAuthContext();
    const problem =
      auth?.transportSecurityType !== "ssl" || auth.sslPeerCertificate === undefined
        ? `its certificate does not chain to the trust bundle of cluster "${this.identity.cluster}" (another root?), or it presented none`
        : checkPeerCertificate(auth.sslPeerCertificate.raw, this.identity.trustDomain);
    if (problem !== undefined) {
      this.refuseUnverified(call, remote, problem);
      return;
    }
    const s = new PeerSession("accept", remote, call, this.hello(), this.hooks);
    this.sessions.add(s);
    s.start();
  }

  /**
   * A dialler whose certificate we refuse: we wait briefly for its Hello to learn which cluster it claims (for
   * the status of that link: the claim is unverified), then end the stream with the reason.
   */
  private refuseUnverified(call: PeerServerStream, remote: string, problem: string): void {
    this.unverified.add(call);
    let done = false;
    const refuse = (claimed: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.unverified.delete(call);
      const host = hostOf(remote);
      const reason = `cluster "${this.identity.cluster}" refused the peer at ${host}: ${problem}`;
      const claim = claimed !== undefined && checkName(claimed) === undefined ? claimed : undefined;
      const entry = claim !== undefined ? this.entries.get(claim) : undefined;
      if (entry !== undefined && entry.session === undefined) {
        entry.lastError = `refused a dial from ${host} claiming to be cluster "${claim}": ${problem}`;
        this.setState(entry, "refused");
      }
      this.recordRefusal(host, claim, problem);
      this.logRefusal(`peering: ${reason}${claim !== undefined ? ` (it claims cluster ${claim})` : ""}\n`);
      if (!call.writableEnded && !call.destroyed)
        call.emit("error", { code: grpc.status.UNAUTHENTICATED, details: reason });
    };
    const timer = setTimeout(() => refuse(undefined), 2000);
    call.on("data", (m: PeerMessage) => refuse(m?.hello?.cluster));
    call.on("error", () => {});
    call.on("cancelled", () => refuse(undefined));
    call.on("end", () => refuse(undefined));
  }

  private scheduleDial(entry: LinkEntry, delay = entry.backoff.next()): void {
    if (!this.started || this.stopped || entry.removed || entry.link.address === undefined) return;
    if (entry.session !== undefined || entry.dialing !== undefined || entry.dialTimer !== undefined) return;
    entry.dialTimer = setTimeout(() => {
      entry.dialTimer = undefined;
      this.dial(entry);
    }, delay);
  }

  private dial(entry: LinkEntry): void {
    const address = entry.link.address;
    if (this.stopped || entry.removed || address === undefined) return;
    if (entry.session !== undefined || entry.dialing !== undefined) return;
    const { key, chain, roots } = this.provider.current;
    const trustDomain = this.identity.trustDomain;
    const credentials = grpc.credentials.createSsl(
      Buffer.from(roots.join("")),
      Buffer.from(key),
      Buffer.from(chain.join("")),
      {
        // In place of a host name check: the peer must be a control plane of the mesh.
        checkServerIdentity: (_host, cert) => {
          const problem = checkPeerCertificate(cert.raw, trustDomain);
          return problem === undefined ? undefined : new Error(problem);
        },
      },
    );
    const Client = peerService();
    const client = new Client(address, credentials, {
      ...channelOptions(this.keepaliveTimeMs, this.keepaliveTimeoutMs),
      // The SNI names the cluster we mean to reach (never an IP address, which SNI may not carry).
      "grpc.ssl_target_name_override": `${entry.link.cluster}.peer.isthmus`,
    });
    const call = (client as unknown as { Exchange: () => PeerClientStream }).Exchange();
    const s = new PeerSession("dial", address, call, this.hello(), this.hooks);
    this.sessions.add(s);
    this.sessionEntries.set(s, entry);
    entry.dialing = { session: s, client };
    s.start();
  }

  private hello(): HelloMessage {
    return {
      protocolVersion: PROTOCOL_VERSION,
      cluster: this.identity.cluster,
      network: this.identity.network,
      locality: this.identity.locality ?? "",
      private: this.identity.private,
    };
  }

  // --- the sessions' hooks ---

  private admit(s: PeerSession, hello: HelloMessage): Admission {
    const refuse = (reason: string): Admission => ({
      ok: false,
      code: grpc.status.PERMISSION_DENIED,
      reason,
    });
    const self = this.identity.cluster;
    const nameProblem = checkName(hello.cluster);
    if (nameProblem !== undefined) return refuse(`Hello.cluster: ${nameProblem}`);
    const networkProblem = checkNetwork(hello.network);
    if (networkProblem !== undefined) return refuse(`Hello.network: ${networkProblem}`);
    if (hello.locality !== "" && checkLocality(hello.locality) !== undefined)
      return refuse(`Hello.locality: ${checkLocality(hello.locality)}`);
    if (hello.cluster === self) return refuse(`the peer claims this control plane's own cluster "${self}"`);
    let entry: LinkEntry | undefined;
    if (s.direction === "dial") {
      entry = this.sessionEntries.get(s);
      if (entry === undefined || entry.removed) return refuse("the link was removed");
      if (hello.cluster !== entry.link.cluster)
        return refuse(
          `dialled ${s.remote} for cluster "${entry.link.cluster}", but the control plane there is cluster "${hello.cluster}"`,
        );
    } else {
      entry = this.entries.get(hello.cluster);
      if (entry === undefined) {
        const reason = `cluster "${self}" has no MeshLink for cluster "${hello.cluster}"`;
        this.recordRefusal(hostOf(s.remote), hello.cluster, reason);
        return refuse(reason);
      }
      this.sessionEntries.set(s, entry);
    }
    const expected = entry.link.network;
    if (expected !== undefined && hello.network !== expected)
      return refuse(
        `cluster "${hello.cluster}" is on network "${hello.network}", but link ${entry.link.name} of cluster "${self}" expects network "${expected}"`,
      );
    return {
      ok: true,
      expect: { cluster: hello.cluster, network: hello.network, private: hello.private },
      cache: entry.cache,
    };
  }

  private attached(s: PeerSession): void {
    const entry = this.sessionEntries.get(s);
    if (entry === undefined || entry.removed || this.stopped) {
      s.close(grpc.status.UNAVAILABLE, "the link is gone");
      return;
    }
    const current = entry.session;
    if (current !== undefined && current !== s) {
      const keep = this.preferred(current, s);
      const drop = keep === current ? s : current;
      entry.session = keep;
      drop.close(
        SUPERSEDED_CODE,
        drop.direction === keep.direction
          ? "superseded by a newer stream from the same side"
          : `superseded: both sides dialled; the stream dialled by "${this.smaller(entry.link.cluster)}" is kept`,
        { superseded: true },
      );
      this.log(
        `peering: cluster ${entry.link.cluster}: two streams; keeping the one ${keep.direction === "dial" ? "we dialled" : "it dialled"}\n`,
      );
      if (keep === current) return;
    }
    entry.session = s;
    entry.peerHello = s.peer;
    this.stopGrace(entry);
    clearTimeout(entry.dialTimer);
    entry.dialTimer = undefined;
    entry.lastError = undefined;
    entry.lastLogged = undefined;
    this.setState(entry, "connected");
    this.log(
      `peering: connected to cluster ${entry.link.cluster} (${s.direction === "dial" ? "dialled" : "accepted"} ${s.remote}, network "${s.peer?.network ?? ""}")\n`,
    );
    if (this.current !== undefined) s.offer(this.current);
  }

  /** Of two verified streams to one peer: the newer from the same side, else the one the smaller cluster dialled. */
  private preferred(a: PeerSession, b: PeerSession): PeerSession {
    if (a.direction === b.direction) return b;
    const peer = (a.peer ?? b.peer)!.cluster;
    const dialler = (s: PeerSession) => (s.direction === "dial" ? this.identity.cluster : peer);
    return dialler(a) === this.smaller(peer) ? a : b;
  }

  private smaller(peer: string): string {
    return this.identity.cluster < peer ? this.identity.cluster : peer;
  }

  private snapshotAccepted(s: PeerSession, exp: PeerExport, version: string): void {
    const entry = this.sessionEntries.get(s);
    if (entry === undefined || entry.session !== s || entry.removed || this.stopped) return;
    entry.lastSyncReceived = new Date();
    entry.backoff.reset();
    entry.lastError = undefined;
    if (entry.peer?.version === version) return;
    entry.peer = { export: exp, version };
    this.log(
      `peering: cluster ${entry.link.cluster}: snapshot ${version}: ${exp.services.length} services, ${exp.instances.length} endpoints\n`,
    );
    this.notify(entry.link.cluster, exp);
  }

  private snapshotRefused(s: PeerSession, version: string, reason: string): void {
    const entry = this.sessionEntries.get(s);
    if (entry === undefined || entry.removed) return;
    entry.lastError = `snapshot ${clip(version, 40)} from cluster "${entry.link.cluster}" refused: ${reason}`;
    this.log(`peering: ${entry.lastError}${entry.peer ? " (its last good snapshot is kept)" : ""}\n`);
  }

  private acknowledged(s: PeerSession, version: string, error: string | undefined): void {
    const entry = this.sessionEntries.get(s);
    if (entry === undefined || entry.removed) return;
    if (error !== undefined) {
      entry.lastError = `cluster "${entry.link.cluster}" refused our snapshot ${version}: ${error}`;
      this.log(`peering: ${entry.lastError}\n`);
      return;
    }
    entry.lastSyncSent = new Date();
    entry.backoff.reset();
  }

  private closed(s: PeerSession, outcome: SessionOutcome): void {
    this.sessions.delete(s);
    const entry = this.sessionEntries.get(s);
    this.sessionEntries.delete(s);
    if (entry?.dialing?.session === s) {
      entry.dialing.client.close();
      entry.dialing = undefined;
    }
    if (this.stopped) return;
    if (entry === undefined) {
      if (outcome.refused)
        this.logRefusal(`peering: refused the peer at ${hostOf(s.remote)}: ${outcome.reason}\n`);
      return;
    }
    if (entry.removed) return;
    const reason =
      outcome.reason === undefined
        ? undefined
        : s.direction === "dial"
          ? explainDialFailure(outcome.reason)
          : outcome.reason;
    if (entry.session === s) {
      // Superseded here means the peer closed the stream we use in favour of another one it sees: that one
      // attaches in a moment, and until then the link is down like any other.
      entry.session = undefined;
      if (!outcome.superseded) entry.lastError = reason;
      this.log(`peering: lost cluster ${entry.link.cluster}: ${reason ?? "the stream ended"}\n`);
      if (entry.peer !== undefined) {
        this.setState(entry, "down");
        this.startGrace(entry);
      } else this.setState(entry, outcome.refused ? "refused" : "connecting");
    } else if (outcome.superseded) {
      // Not a failure: the other stream carries the link.
    } else if (entry.session === undefined) {
      // An attempt that never got through.
      if (reason !== undefined) entry.lastError = reason;
      if (outcome.refused) this.setState(entry, "refused");
      else if (entry.state === "refused") this.setState(entry, "connecting");
      this.logOnce(
        entry,
        `peering: cluster ${entry.link.cluster} (${s.direction === "dial" ? `dialling ${s.remote}` : `from ${hostOf(s.remote)}`}): ${outcome.refused ? "refused: " : ""}${reason ?? "the stream ended"}\n`,
      );
    } else if (outcome.refused) {
      // A second stream refused while another one carries the link (a dialler announcing another network, say).
      this.logOnce(
        entry,
        `peering: cluster ${entry.link.cluster} (${hostOf(s.remote)}): refused: ${reason}\n`,
      );
    }
    this.scheduleDial(entry);
  }

  // --- a gone peer: kept while its gateway answers, withdrawn after the grace period ---

  private startGrace(entry: LinkEntry): void {
    this.stopGrace(entry);
    entry.grace = new GracePeriod({
      graceMs: this.graceMs,
      probeIntervalMs: this.probeIntervalMs,
      probe: this.options.probe,
      gateways: entry.peer?.export.gateways ?? [],
      expired: (why) => this.withdraw(entry, why),
      answerChanged: (answering) =>
        this.log(
          answering
            ? `peering: cluster ${entry.link.cluster} is down; its gateway answers again\n`
            : `peering: cluster ${entry.link.cluster} is down and its gateway does not answer: withdrawn in ${this.graceMs} ms unless it does\n`,
        ),
    });
  }

  private stopGrace(entry: LinkEntry): void {
    entry.grace?.stop();
    entry.grace = undefined;
  }

  private withdraw(entry: LinkEntry, why: string): void {
    this.stopGrace(entry);
    if (this.stopped || entry.removed || entry.peer === undefined || entry.session !== undefined) return;
    entry.peer = undefined;
    entry.cache = new ServiceCheckCache();
    this.setState(entry, "withdrawn");
    this.log(`peering: cluster ${entry.link.cluster} withdrawn: ${why}\n`);
    this.notify(entry.link.cluster, undefined);
  }

  // --- our export ---

  private async refreshExport(): Promise<void> {
    if (this.encoding) {
      this.reencode = true;
      return;
    }
    this.encoding = true;
    try {
      const exp = this.options.export();
      const mismatch = this.exportMismatch(exp);
      if (mismatch !== undefined) throw new Error(mismatch);
      const snap = await encodeSnapshot(exp);
      if (this.exportError !== undefined) {
        this.log("peering: our export can be sent again\n");
        for (const entry of this.entries.values())
          if (entry.lastError === this.exportError) entry.lastError = undefined;
      }
      this.exportError = undefined;
      if (snap.message.version !== this.current?.message.version) {
        this.current = snap;
        if (!this.stopped) for (const e of this.entries.values()) e.session?.offer(snap);
      }
    } catch (e) {
      const message = `our export cannot be sent: ${(e as Error).message}`;
      if (message !== this.exportError) this.log(`peering: ${message}\n`);
      this.exportError = message;
      for (const entry of this.entries.values()) entry.lastError = message;
    } finally {
      this.encoding = false;
      if (this.reencode && !this.stopped) {
        this.reencode = false;
        void this.refreshExport();
      }
    }
  }

  /** Our export must say what our Hello says, or every peer would refuse it. */
  private exportMismatch(exp: PeerExport): string | undefined {
    const id = this.identity;
    if (exp.cluster !== id.cluster) return `its cluster "${exp.cluster}" is not ours ("${id.cluster}")`;
    if (exp.network !== id.network) return `its network "${exp.network}" is not ours ("${id.network}")`;
    if (exp.private !== id.private) return `its private ${exp.private} is not ours (${id.private})`;
    return undefined;
  }

  // --- helpers ---

  private newEntry(link: MeshLink): LinkEntry {
    return {
      link,
      removed: false,
      backoff: new Backoff(
        this.options.backoff?.initialMs ?? PEERING_LIMITS.backoffInitialMs,
        this.options.backoff?.maxMs ?? PEERING_LIMITS.backoffMaxMs,
        PEERING_LIMITS.backoffJitter,
      ),
      state: "connecting",
      since: new Date(),
      cache: new ServiceCheckCache(),
    };
  }

  private closeEntrySessions(entry: LinkEntry, code: grpc.status, reason: string): void {
    for (const [s, e] of [...this.sessionEntries]) if (e === entry) s.close(code, reason);
  }

  private setState(entry: LinkEntry, state: LinkState): void {
    if (entry.state === state) return;
    entry.state = state;
    entry.since = new Date();
  }

  private notify(cluster: string, exp: PeerExport | undefined): void {
    try {
      this.options.onPeerState(cluster, exp);
    } catch (e) {
      this.log(`peering: onPeerState(${cluster}) failed: ${(e as Error).stack ?? String(e)}\n`);
    }
  }

  private logOnce(entry: LinkEntry | undefined, line: string): void {
    if (entry !== undefined) {
      if (entry.lastLogged === line) return;
      entry.lastLogged = line;
    }
    this.log(line);
  }

  /** Remembers a refused dialler; a repeat of the latest one (a peer retrying) counts instead of adding. */
  private recordRefusal(address: string, cluster: string | undefined, reason: string): void {
    const last = this.recentRefusals.at(-1);
    if (
      last !== undefined &&
      last.address === address &&
      last.cluster === cluster &&
      last.reason === reason
    ) {
      this.recentRefusals[this.recentRefusals.length - 1] = {
        ...last,
        at: new Date(),
        count: last.count + 1,
      };
      return;
    }
    this.recentRefusals.push({
      at: new Date(),
      address,
      ...(cluster !== undefined ? { cluster } : {}),
      reason,
      count: 1,
    });
    if (this.recentRefusals.length > PEERING_LIMITS.maxRecentRefusals) this.recentRefusals.shift();
  }

  /** A refusal no link's status can hold: logged once a minute per distinct line (diallers retry). */
  private logRefusal(line: string): void {
    const now = Date.now();
    const last = this.refusalsLogged.get(line);
    if (last !== undefined && now - last < REFUSAL_LOG_INTERVAL_MS) return;
    if (this.refusalsLogged.size >= 256) this.refusalsLogged.clear();
    this.refusalsLogged.set(line, now);
    this.log(line);
  }
}

const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** "HOST:PORT" of a dialler without its ephemeral port: the same peer retrying reads the same. */
function hostOf(remote: string): string {
  return remote.replace(/:\d+$/, "");
}
