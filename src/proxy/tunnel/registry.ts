// The acceptor side's tunnels, by the name their initiators announced: several per name (an initiator may hold
// several connections, or several initiators share a name), streams spread over them by load. Listeners with a
// reverse_tunnel_acceptor chain add to it; clusters' endpoints with `tunnel: NAME` open streams through it. It
// holds no code of node:http2 itself (only its types): a proxy without tunnels never loads the module.
import type http2 from "node:http2";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";

/** Connections held under one name at most (16 per initiator, the schema's bound, times a few initiators). */
export const MAX_TUNNELS_PER_NAME = 64;
/** Names held at once at most: each has its stats, and a peer chooses names. */
export const MAX_TUNNEL_NAMES = 1024;

/** One accepted tunnel connection: the acceptor's HTTP/2 client session over it. */
export class AcceptedTunnel {
  readonly name: string;
  /** The initiator's address:port, as this side sees it. */
  readonly peer: string;
  readonly session: http2.ClientHttp2Session;
  readonly since = Date.now();
  activeStreams = 0;
  streamsTotal = 0;
  /** Takes no new streams: the initiator sent GOAWAY, or the session is going away. */
  closing = false;

  constructor(name: string, peer: string, session: http2.ClientHttp2Session) {
    this.name = name;
    this.peer = peer;
    this.session = session;
  }

  get usable(): boolean {
    return !this.closing && !this.session.closed && !this.session.destroyed;
  }
}

interface NameStats {
  readonly connections: Gauge;
  readonly streamsTotal: Counter;
  readonly streamsActive: Gauge;
  /** Streams asked for while no tunnel of the name was up. */
  readonly noTunnel: Counter;
}

export interface AcceptedTunnelStatus {
  readonly name: string;
  readonly peer: string;
  readonly since: string;
  readonly activeStreams: number;
  readonly streamsTotal: number;
  readonly closing: boolean;
}

/** Connections waiting for a tunnel of one name to come (back) up; beyond this they fail at once. */
export const MAX_WAITERS_PER_NAME = 4096;

export class TunnelRegistry {
  private readonly byName = new Map<string, AcceptedTunnel[]>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly stats = new Map<string, NameStats>();
  private readonly store: StatsStore;

  constructor(store: StatsStore) {
    this.store = store;
  }

  /** Why one more tunnel of this name cannot be held now; undefined when it can. */
  refusal(name: string): string | undefined {
    const held = this.byName.get(name);
    if (held === undefined && this.byName.size >= MAX_TUNNEL_NAMES)
      return `this acceptor holds tunnels of ${MAX_TUNNEL_NAMES} names already`;
    if ((held?.length ?? 0) >= MAX_TUNNELS_PER_NAME)
      return `this acceptor holds ${MAX_TUNNELS_PER_NAME} tunnels named ${name} already`;
    return undefined;
  }

  add(t: AcceptedTunnel): void {
    let held = this.byName.get(t.name);
    if (held === undefined) {
      held = [];
      this.byName.set(t.name, held);
    }
    held.push(t);
    this.statsOf(t.name).connections.value++;
    const waiting = this.waiters.get(t.name);
    if (waiting !== undefined) {
      this.waiters.delete(t.name);
      for (const wake of waiting) wake();
    }
  }

  /**
   * Resolves true once a tunnel of this name is up (at once if one is), false after `ms` without one. A dial
   * waits for a SYN-ACK the same way: a link that drops and is redialled within the wait loses no connection.
   */
  waitFor(name: string, ms: number): Promise<boolean> {
    if (this.has(name)) return Promise.resolve(true);
    let waiting = this.waiters.get(name);
    if (waiting === undefined) {
      waiting = new Set();
      this.waiters.set(name, waiting);
    }
    if (waiting.size >= MAX_WAITERS_PER_NAME || ms <= 0) return Promise.resolve(false);
    const set = waiting;
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        set.delete(wake);
        resolve(true);
      };
      const timer = setTimeout(() => {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(name) === set) this.waiters.delete(name);
        resolve(false);
      }, ms);
      set.add(wake);
    });
  }

  /** Forgets a tunnel (idempotent): it closed. */
  remove(t: AcceptedTunnel): void {
    const held = this.byName.get(t.name);
    const i = held?.indexOf(t) ?? -1;
    if (held === undefined || i === -1) return;
    held.splice(i, 1);
    if (held.length === 0) this.byName.delete(t.name);
    this.statsOf(t.name).connections.value--;
  }

  /** Whether a tunnel of this name is up to open streams on. */
  has(name: string): boolean {
    return this.byName.get(name)?.some((t) => t.usable) ?? false;
  }

  /**
   * Opens a CONNECT stream to `authority` on the least busy usable tunnel named `name`; undefined when there is
   * none. The stream is answered (its 'response') by the initiator once it has handed it on.
   */
  open(name: string, authority: string): http2.ClientHttp2Stream | undefined {
    const held = this.byName.get(name);
    const stats = this.statsOf(name);
    for (let tries = held?.length ?? 0; tries > 0; tries--) {
      let best: AcceptedTunnel | undefined;
      for (const t of held!)
        if (t.usable && (best === undefined || t.activeStreams < best.activeStreams)) best = t;
      if (best === undefined) break;
      let stream: http2.ClientHttp2Stream;
      try {
        stream = best.session.request(
          { ":method": "CONNECT", ":authority": authority },
          { endStream: false },
        );
      } catch {
        // The session is going away between two events: try another.
        best.closing = true;
        continue;
      }
      const t = best;
      t.activeStreams++;
      t.streamsTotal++;
      stats.streamsTotal.inc();
      stats.streamsActive.value++;
      stream.once("close", () => {
        t.activeStreams--;
        stats.streamsActive.value--;
      });
      return stream;
    }
    stats.noTunnel.inc();
    return undefined;
  }

  /** For /config_dump. */
  dump(): AcceptedTunnelStatus[] {
    const out: AcceptedTunnelStatus[] = [];
    for (const held of this.byName.values())
      for (const t of held)
        out.push({
          name: t.name,
          peer: t.peer,
          since: new Date(t.since).toISOString(),
          activeStreams: t.activeStreams,
          streamsTotal: t.streamsTotal,
          closing: !t.usable,
        });
    return out;
  }

  /** GOAWAY on every tunnel (the proxy drains): open streams finish, the initiators redial elsewhere. */
  drain(): void {
    for (const held of this.byName.values())
      for (const t of held) {
        t.closing = true;
        if (!t.session.closed && !t.session.destroyed) t.session.close();
      }
  }

  /** Closes every tunnel at once (the proxy stops). */
  closeAll(): void {
    for (const held of [...this.byName.values()]) for (const t of [...held]) t.session.destroy();
  }

  private statsOf(name: string): NameStats {
    let s = this.stats.get(name);
    if (s === undefined) {
      const p = `reverse_tunnel.${name}.`;
      s = {
        connections: this.store.gauge(`${p}connections`),
        streamsTotal: this.store.counter(`${p}streams_total`),
        streamsActive: this.store.gauge(`${p}streams_active`),
        noTunnel: this.store.counter(`${p}stream_no_tunnel`),
      };
      // Names without a tunnel any more keep their counters in the store; this map only caches, so bound it.
      if (this.stats.size >= MAX_TUNNEL_NAMES * 2) this.stats.clear();
      this.stats.set(name, s);
    }
    return s;
  }
}
