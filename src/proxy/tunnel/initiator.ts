// The initiator's side of a reverse tunnel (ProxyConfig.reverseTunnels): `connections` TLS connections dialled
// to the acceptor, each announcing the tunnel's name (protocol.ts) and then serving as an HTTP/2 server the
// CONNECT streams the acceptor opens. Each stream is handed to the local listener named in the config by a
// loopback connection to that listener's own address and port, so it meets exactly what a connection accepted
// there meets (chain selection by SNI, TLS, limits, RBAC). A connection that fails or drops is redialled with
// exponential backoff and jitter; PINGs notice a peer that vanished.
import type http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { ReverseTunnelConfig } from "../config/types.ts";
import { tlsModule } from "../lazy-modules.ts";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";
import { DEFAULT_KEEPALIVE, type KeepAliveOptions, keepAlive } from "./keepalive.ts";
import { nodeHttp2 } from "./node-http2.ts";
import { closeStream, pairStream } from "./pair.ts";
import { authorityOf, readUpgradeResponse, TUNNEL_ALPN, upgradeRequest } from "./protocol.ts";
import { TunnelLog } from "./tunnel-log.ts";

export interface InitiatorOptions extends KeepAliveOptions {
  /** TCP connect, TLS handshake and the acceptor's answer, together. */
  readonly connectTimeoutMs: number;
  /** Redial delays: base * 2^(failures - 1), at most max, each taken at a random 50-100 % (jitter). */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  /** Streams the acceptor may have open at once on one connection (HTTP/2 SETTINGS). */
  readonly maxConcurrentStreams: number;
  /** A stream with no byte either way for this long is reset. */
  readonly streamIdleTimeoutMs: number;
  /** A stream closed cleanly at one end has this long to deliver what it still holds to the other. */
  readonly closeGraceMs: number;
}

export const DEFAULT_INITIATOR: InitiatorOptions = {
  ...DEFAULT_KEEPALIVE,
  connectTimeoutMs: 10_000,
  backoffBaseMs: 200,
  backoffMaxMs: 10_000,
  maxConcurrentStreams: 1000,
  streamIdleTimeoutMs: 3_600_000,
  closeGraceMs: 30_000,
};

const STREAM_WINDOW_BYTES = 1 << 20;
const SESSION_WINDOW_BYTES = 16 << 20;
/** The acceptor's answer is a short head (and a refusal's short reason). */
const MAX_ANSWER_BYTES = 8192;

/** Where a stream is handed: the address and port a listener of this proxy is bound to; undefined: none. */
export type ListenerTarget = (listener: string) => { host: string; port: number } | undefined;

export interface InitiatorStats {
  /** Connections up (the handshake answered 101 and the session not closed). */
  readonly connections: Gauge;
  /** Dials that did not reach TCP (refused, unreachable, timed out). */
  readonly connectFail: Counter;
  /** Dials that reached the acceptor but did not become a tunnel: TLS failed, the handshake was refused. */
  readonly handshakeFail: Counter;
  /** Tunnels that were up and dropped. */
  readonly disconnects: Counter;
  readonly streamsTotal: Counter;
  readonly streamsActive: Gauge;
  /** Streams answered with an error: not CONNECT, no such listener, the listener refused the connection. */
  readonly streamsRefused: Counter;
}

export interface InitiatorConnectionStatus {
  readonly state: "connecting" | "up" | "waiting" | "stopped";
  readonly since: string;
  /** Failed dials since the last success. */
  readonly failures: number;
  readonly lastError: string | null;
}

export interface InitiatorStatus {
  readonly name: string;
  readonly acceptor: string;
  readonly listener: string;
  readonly connections: InitiatorConnectionStatus[];
}

type Phase = "tcp" | "tls" | "handshake";

export class ReverseTunnelInitiator {
  readonly config: ReverseTunnelConfig;
  readonly stats: InitiatorStats;
  private readonly tlsOptions: tls.ConnectionOptions;
  private readonly target: ListenerTarget;
  private readonly options: InitiatorOptions;
  private readonly log: TunnelLog;
  private readonly slots: Slot[] = [];
  private server: http2.Http2Server | undefined;
  stopped = false;

  constructor(
    config: ReverseTunnelConfig,
    tlsOptions: tls.ConnectionOptions,
    store: StatsStore,
    target: ListenerTarget,
    options: InitiatorOptions = DEFAULT_INITIATOR,
  ) {
    this.config = config;
    this.tlsOptions = tlsOptions;
    this.target = target;
    this.options = options;
    const p = `reverse_tunnel.${config.name}.`;
    this.stats = {
      connections: store.gauge(`${p}connections`),
      connectFail: store.counter(`${p}connect_fail`),
      handshakeFail: store.counter(`${p}handshake_fail`),
      disconnects: store.counter(`${p}disconnects`),
      streamsTotal: store.counter(`${p}streams_total`),
      streamsActive: store.gauge(`${p}streams_active`),
      streamsRefused: store.counter(`${p}streams_refused`),
    };
    this.log = new TunnelLog(
      `reverse tunnel ${config.name} to ${authorityOf(config.address, config.port)}`,
      30_000,
    );
  }

  get acceptor(): string {
    return authorityOf(this.config.address, this.config.port);
  }

  start(): void {
    const server = nodeHttp2().createServer({
      settings: {
        maxConcurrentStreams: this.options.maxConcurrentStreams,
        initialWindowSize: STREAM_WINDOW_BYTES,
        // CONNECT heads are a few short fields.
        maxHeaderListSize: 16 * 1024,
      },
      maxSessionMemory: 64,
    });
    server.on("stream", (stream, headers) => this.onStream(stream, headers));
    server.on("sessionError", () => {});
    this.server = server;
    for (let i = 0; i < (this.config.connections ?? 1); i++) {
      const slot = new Slot(this, i);
      this.slots.push(slot);
      slot.dial();
    }
  }

  /** No new dials; open connections send GOAWAY and close once their streams have ended. */
  drain(): void {
    this.stopped = true;
    for (const s of this.slots) s.drain();
  }

  /** Everything closed now. */
  close(): void {
    this.stopped = true;
    for (const s of this.slots) s.close();
  }

  /** Connections waiting out a backoff dial now (their TLS material changed). */
  redialWaiting(): void {
    if (this.stopped) return;
    for (const s of this.slots) s.redialIfWaiting();
  }

  status(): InitiatorStatus {
    return {
      name: this.config.name,
      acceptor: this.acceptor,
      listener: this.config.listener,
      connections: this.slots.map((s) => s.status()),
    };
  }

  /** @internal for Slot */
  dialSocket(): tls.TLSSocket {
    // Spread now, not at config time: named secrets are getters read at each dial (a rotated certificate is used
    // by the next connection).
    const socket = tlsModule().connect({
      ...this.tlsOptions,
      ALPNProtocols: [TUNNEL_ALPN],
      host: this.config.address,
      port: this.config.port,
    });
    // Every stream's small writes (a request, a TLS record) go out at once: Nagle's algorithm against the
    // peer's delayed ACKs would hold them for tens of milliseconds.
    socket.setNoDelay(true);
    return socket;
  }

  /** @internal for Slot */
  handshakeHost(): string {
    return this.config.tls.sni ?? this.acceptor;
  }

  /** @internal for Slot: hands an established socket to the HTTP/2 server; returns its session. */
  serve(socket: tls.TLSSocket): http2.ServerHttp2Session | undefined {
    const server = this.server;
    if (server === undefined) return undefined;
    let session: http2.ServerHttp2Session | undefined;
    const onSession = (s: http2.ServerHttp2Session) => {
      session = s;
    };
    // The server announces the session it makes for the socket synchronously.
    server.once("session", onSession);
    server.emit("connection", socket);
    server.off("session", onSession);
    return session;
  }

  /** @internal for Slot */
  backoffMs(failures: number): number {
    const o = this.options;
    const ceiling = Math.min(o.backoffMaxMs, o.backoffBaseMs * 2 ** Math.min(failures - 1, 30));
    return Math.round(ceiling * (0.5 + Math.random() * 0.5));
  }

  /** @internal for Slot */
  get opts(): InitiatorOptions {
    return this.options;
  }

  /** @internal for Slot */
  get logger(): TunnelLog {
    return this.log;
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on("error", () => {});
    if (headers[":method"] !== "CONNECT") {
      this.refuseStream(stream, 405, "method", `a ${String(headers[":method"])} stream, not CONNECT`);
      return;
    }
    const target = this.target(this.config.listener);
    if (target === undefined) {
      this.refuseStream(stream, 503, "listener", `listener ${this.config.listener} does not exist`);
      return;
    }
    const s = this.stats;
    s.streamsTotal.inc();
    s.streamsActive.value++;
    stream.once("close", () => s.streamsActive.value--);
    const o = this.options;
    stream.setTimeout(o.streamIdleTimeoutMs, () => closeStream(stream, true, o.closeGraceMs));
    const local = net.connect({ host: target.host, port: target.port, noDelay: true });
    local.on("error", () => {});
    let connected = false;
    local.once("connect", () => {
      connected = true;
      if (stream.destroyed || stream.closed) {
        local.destroy();
        return;
      }
      stream.respond({ ":status": 200 });
      pairStream(stream, local, o.closeGraceMs);
    });
    local.once("close", () => {
      if (connected) return;
      this.refuseStream(
        stream,
        503,
        "listener-connect",
        `listener ${this.config.listener} at ${authorityOf(target.host, target.port)} refused the connection`,
      );
    });
    stream.once("close", () => {
      if (!connected) local.destroy();
    });
  }

  private refuseStream(stream: http2.ServerHttp2Stream, status: number, key: string, reason: string): void {
    this.stats.streamsRefused.inc();
    this.log.problem(key, `stream to ${reason}: answered ${status}`);
    if (stream.destroyed || stream.closed || stream.headersSent) return;
    try {
      stream.respond({ ":status": status }, { endStream: true });
    } catch {
      // the stream went away meanwhile
    }
  }
}

/** One of the tunnel's connections, dialled and redialled on its own. */
class Slot {
  private readonly owner: ReverseTunnelInitiator;
  private readonly index: number;
  private state: InitiatorConnectionStatus["state"] = "connecting";
  private since = Date.now();
  private failures = 0;
  private lastError: string | null = null;
  private socket: tls.TLSSocket | undefined;
  private session: http2.ServerHttp2Session | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(owner: ReverseTunnelInitiator, index: number) {
    this.owner = owner;
    this.index = index;
  }

  status(): InitiatorConnectionStatus {
    return {
      state: this.state,
      since: new Date(this.since).toISOString(),
      failures: this.failures,
      lastError: this.lastError,
    };
  }

  private setState(state: InitiatorConnectionStatus["state"]): void {
    this.state = state;
    this.since = Date.now();
  }

  dial(): void {
    this.timer = undefined;
    if (this.owner.stopped) return;
    this.setState("connecting");
    const o = this.owner.opts;
    let phase: Phase = "tcp";
    let settled = false;
    let socket: tls.TLSSocket;
    try {
      socket = this.owner.dialSocket();
    } catch (e) {
      // Material that does not load (a secret with a bad key): as a TLS failure, retried as one.
      this.failed("tls", `TLS setup failed: ${(e as Error).message}`, undefined);
      return;
    }
    this.socket = socket;
    const deadline = setTimeout(
      () => fail(`no ${phase === "tcp" ? "TCP connection" : "tunnel"} within ${o.connectTimeoutMs} ms`),
      o.connectTimeoutMs,
    );
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      this.failed(phase, reason, socket);
    };
    socket.once("connect", () => {
      phase = "tls";
    });
    const onError = (err: NodeJS.ErrnoException) => fail(describe(err));
    const onClose = () =>
      fail(
        phase === "handshake"
          ? "the acceptor closed the connection without answering the handshake"
          : "the acceptor closed the connection during the TLS handshake",
      );
    socket.on("error", onError);
    socket.once("close", onClose);
    socket.once("secureConnect", () => {
      phase = "handshake";
      if (socket.alpnProtocol !== TUNNEL_ALPN) {
        fail(`the acceptor negotiated ALPN ${JSON.stringify(socket.alpnProtocol)}, not ${TUNNEL_ALPN}`);
        return;
      }
      let written = false;
      let rest: Buffer | undefined;
      let answer: Buffer = Buffer.alloc(0);
      const switchOver = () => {
        if (!written || rest === undefined || settled) return;
        settled = true;
        clearTimeout(deadline);
        socket.off("data", onData);
        socket.off("error", onError);
        socket.off("close", onClose);
        socket.on("error", () => {});
        if (rest.length > 0) socket.unshift(rest);
        this.up(socket);
      };
      const onData = (chunk: Buffer) => {
        answer = answer.length === 0 ? chunk : Buffer.concat([answer, chunk]);
        const r = readUpgradeResponse(answer);
        if (r.kind === "incomplete") {
          if (answer.length > MAX_ANSWER_BYTES) fail("the acceptor's answer is too large");
          return;
        }
        if (r.kind === "refused") {
          fail(`the acceptor refused the tunnel: ${r.reason}`);
          return;
        }
        // The HTTP/2 session takes over: nothing more is read here; what came after the head is its.
        socket.pause();
        socket.off("data", onData);
        rest = answer.subarray(r.headBytes);
        switchOver();
      };
      socket.on("data", onData);
      // The session may take the socket only once this write has completed (see acceptor.ts).
      socket.write(upgradeRequest(this.owner.config.name, this.owner.handshakeHost()), (err) => {
        if (err) return;
        written = true;
        switchOver();
      });
    });
  }

  private failed(phase: Phase, reason: string, socket: tls.TLSSocket | undefined): void {
    socket?.destroy();
    this.socket = undefined;
    if (this.owner.stopped) {
      this.setState("stopped");
      return;
    }
    const s = this.owner.stats;
    (phase === "tcp" ? s.connectFail : s.handshakeFail).inc();
    this.failures++;
    this.lastError = reason;
    const delay = this.owner.backoffMs(this.failures);
    this.owner.logger.problem(
      `${phase} ${reason}`,
      `connection ${this.index}: ${reason}; retrying in ${delay} ms (${this.failures} failed in a row)`,
    );
    this.redial(delay);
  }

  private up(socket: tls.TLSSocket): void {
    const session = this.owner.serve(socket);
    if (session === undefined) {
      socket.destroy();
      this.redial(this.owner.backoffMs(1));
      return;
    }
    this.session = session;
    this.setState("up");
    this.failures = 0;
    this.lastError = null;
    const s = this.owner.stats;
    s.connections.value++;
    this.owner.logger.info(`connection ${this.index} up`);
    session.on("error", () => {});
    try {
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    } catch {
      // already going away
    }
    keepAlive(session, this.owner.opts);
    session.once("close", () => {
      s.connections.value--;
      this.session = undefined;
      this.socket = undefined;
      socket.destroy();
      if (this.owner.stopped) {
        this.setState("stopped");
        return;
      }
      s.disconnects.inc();
      const delay = this.owner.backoffMs(1);
      this.lastError = "the tunnel dropped";
      this.owner.logger.info(`connection ${this.index} dropped; redialling in ${delay} ms`);
      this.redial(delay);
    });
  }

  private redial(delayMs: number): void {
    if (this.owner.stopped) {
      this.setState("stopped");
      return;
    }
    this.setState("waiting");
    this.timer = setTimeout(() => this.dial(), delayMs);
    this.timer.unref();
  }

  redialIfWaiting(): void {
    if (this.state !== "waiting" || this.timer === undefined) return;
    clearTimeout(this.timer);
    this.dial();
  }

  drain(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.session !== undefined) this.session.close();
    else {
      this.socket?.destroy();
      this.setState("stopped");
    }
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.session?.destroy();
    this.socket?.destroy();
    this.setState("stopped");
  }
}

function describe(err: NodeJS.ErrnoException): string {
  return err.code ? `${err.code}: ${err.message}` : err.message;
}
