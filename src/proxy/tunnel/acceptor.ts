// The acceptor's side of a reverse tunnel (filter reverse_tunnel_acceptor): a TLS connection its chain
// verified reads the initiator's handshake, bounded in size and time; a good one is answered 101 and becomes an
// HTTP/2 client session held in the registry under the announced name, a bad one is answered with the reason
// (4xx/503), logged and counted, and closed. Nothing an initiator sends can do more than that.
import type http2 from "node:http2";
import type net from "node:net";
import type tls from "node:tls";
import type { ReverseTunnelAcceptorConfig } from "../config/types.ts";
import type { Counter, StatsStore } from "../stats/stats.ts";
import { DEFAULT_KEEPALIVE, type KeepAliveOptions, keepAlive } from "./keepalive.ts";
import { nodeHttp2 } from "./node-http2.ts";
import {
  authorityOf,
  readUpgradeRequest,
  refusalResponse,
  SWITCHING_RESPONSE,
  TUNNEL_ALPN,
} from "./protocol.ts";
import { AcceptedTunnel, type TunnelRegistry } from "./registry.ts";
import { TunnelLog } from "./tunnel-log.ts";

export interface AcceptorOptions extends KeepAliveOptions {
  /** From the end of the TLS handshake to a complete handshake request. */
  readonly handshakeTimeoutMs: number;
}

export const DEFAULT_ACCEPTOR: AcceptorOptions = { ...DEFAULT_KEEPALIVE, handshakeTimeoutMs: 10_000 };

/** What the initiator may send on one stream, and on all of them, before this side reads it. */
export const STREAM_WINDOW_BYTES = 1 << 20;
export const SESSION_WINDOW_BYTES = 16 << 20;
/** A refused initiator has this long to read the answer and close before it is cut off. */
const REFUSAL_LINGER_MS = 2000;

export class ReverseTunnelAcceptorRuntime {
  readonly config: ReverseTunnelAcceptorConfig;
  private readonly registry: TunnelRegistry;
  private readonly allowed: ReadonlySet<string> | undefined;
  private readonly options: AcceptorOptions;
  private readonly accepted: Counter;
  private readonly handshakeFail: Counter;
  private readonly log: TunnelLog;

  constructor(
    config: ReverseTunnelAcceptorConfig,
    registry: TunnelRegistry,
    store: StatsStore,
    listenerName: string,
    options: AcceptorOptions = DEFAULT_ACCEPTOR,
  ) {
    this.config = config;
    this.registry = registry;
    this.allowed = config.allowedNames !== undefined ? new Set(config.allowedNames) : undefined;
    this.options = options;
    const p = `reverse_tunnel_acceptor.${config.statPrefix ?? listenerName}.`;
    this.accepted = store.counter(`${p}accepted`);
    this.handshakeFail = store.counter(`${p}handshake_fail`);
    this.log = new TunnelLog(`reverse tunnel acceptor ${config.statPrefix ?? listenerName}`, 1000);
  }

  /**
   * Takes a TLS connection its chain selected. `refusal`: the listener did not accept the client certificate
   * (why); the handshake is still read so that the initiator gets that reason as an answer rather than a reset.
   */
  handle(socket: net.Socket, refusal?: string): void {
    const peer = `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? 0}`;
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(
      () => finish(408, `no complete handshake within ${this.options.handshakeTimeoutMs} ms`),
      this.options.handshakeTimeoutMs,
    );
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = readUpgradeRequest(buf);
      if (r.kind === "incomplete") return;
      if (refusal !== undefined) return finish(403, refusal);
      if (r.kind === "refused") return finish(r.status, r.reason);
      const alpn = (socket as tls.TLSSocket).alpnProtocol;
      if (alpn !== TUNNEL_ALPN)
        return finish(400, `the tunnel's TLS negotiated ALPN ${JSON.stringify(alpn)}, not ${TUNNEL_ALPN}`);
      if (r.headBytes !== buf.length)
        return finish(400, "bytes after the handshake request, before its answer");
      if (this.allowed !== undefined && !this.allowed.has(r.name))
        return finish(403, `tunnel name ${r.name} is not allowed here`);
      const full = this.registry.refusal(r.name);
      if (full !== undefined) return finish(503, full);
      stop();
      this.accept(socket, r.name, peer);
    };
    const stop = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", stop);
    };
    const finish = (status: number, reason: string) => {
      stop();
      this.refuse(socket, peer, status, reason);
    };
    socket.on("data", onData);
    socket.once("close", stop);
  }

  private refuse(socket: net.Socket, peer: string, status: number, reason: string): void {
    this.handshakeFail.inc();
    this.log.problem(`${status} ${reason}`, `refused ${peer}: ${status} ${reason}`);
    if (socket.destroyed) return;
    // Whatever else the peer sends is read and dropped: closing with unread bytes would reset the connection,
    // and the peer might lose the answer.
    socket.resume();
    socket.end(refusalResponse(status, reason));
    const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
    linger.unref();
    socket.once("close", () => clearTimeout(linger));
  }

  private accept(socket: net.Socket, name: string, peer: string): void {
    // Nothing is read until the HTTP/2 session owns the socket: the initiator speaks only after the 101.
    socket.pause();
    // The session may take the socket only once this write has completed: node:http2 asserts that no write is
    // in progress on a stream it consumes (a native abort otherwise).
    socket.write(SWITCHING_RESPONSE, (err) => {
      if (err || socket.destroyed) return;
      let session: http2.ClientHttp2Session;
      try {
        session = nodeHttp2().connect(
          `http://${authorityOf(socket.localAddress ?? "tunnel", socket.localPort ?? 0)}`,
          {
            createConnection: () => socket,
            settings: { enablePush: false, initialWindowSize: STREAM_WINDOW_BYTES },
            maxSessionMemory: 64,
          },
        );
      } catch (e) {
        this.refuse(socket, peer, 503, `cannot start the HTTP/2 session: ${(e as Error).message}`);
        return;
      }
      const tunnel = new AcceptedTunnel(name, peer, session);
      session.on("error", () => {});
      session.once("connect", () => {
        try {
          session.setLocalWindowSize(SESSION_WINDOW_BYTES);
        } catch {
          // the session is already going away
        }
      });
      // GOAWAY: the initiator drains; its open streams finish, new ones go to another tunnel.
      session.on("goaway", () => {
        tunnel.closing = true;
      });
      session.once("close", () => {
        this.registry.remove(tunnel);
        this.log.info(`tunnel ${name} from ${peer} closed`);
      });
      this.registry.add(tunnel);
      keepAlive(session, this.options);
      this.accepted.inc();
      this.log.info(`accepted tunnel ${name} from ${peer}`);
    });
  }
}
