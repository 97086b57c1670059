// HTTP/2 connections to upstream endpoints (clusters with protocol: http2 — gRPC services): one session per
// endpoint, multiplexing every request, reopened when it closes or runs out of stream IDs.
import http2 from "node:http2";
import type tls from "node:tls";
import { tlsModule } from "../lazy-modules.ts";
import type { Endpoint } from "../upstream/cluster.ts";

export class Http2Sessions {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();
  /** The TLS options for an endpoint (its cluster's transport socket), undefined for plain text (h2c). */
  private readonly tlsFor: (ep: Endpoint) => tls.ConnectionOptions | undefined;
  private readonly connectTimeoutMs: number;
  private closed = false;

  /** Told of each TLS session's socket, to count and log a failed handshake (tls-failure.ts). */
  private readonly onTls: ((socket: tls.TLSSocket, ep: Endpoint) => void) | undefined;

  constructor(
    tlsFor: (ep: Endpoint) => tls.ConnectionOptions | undefined,
    connectTimeoutMs: number,
    onTls?: (socket: tls.TLSSocket, ep: Endpoint) => void,
  ) {
    this.tlsFor = tlsFor;
    this.onTls = onTls;
    this.connectTimeoutMs = connectTimeoutMs;
  }

  /** A live session to the endpoint, opened on first use. */
  session(ep: Endpoint): http2.ClientHttp2Session {
    const existing = this.sessions.get(ep.key);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const tlsOptions = this.tlsFor(ep);
    const authority = `${tlsOptions ? "https" : "http"}://${ep.address.includes(":") ? `[${ep.address}]` : ep.address}:${ep.port}`;
    const session = http2.connect(authority, {
      // TLS connections are made here, so that the TLS socket itself (not the session's proxy of it, which
      // throws once unbound) is what a failed handshake is classified from.
      ...(tlsOptions
        ? {
            createConnection: () => {
              const socket = tlsModule().connect({
                ...tlsOptions,
                host: ep.address,
                port: ep.port,
                ALPNProtocols: ["h2"],
              });
              this.onTls?.(socket, ep);
              return socket;
            },
          }
        : {}),
      peerMaxConcurrentStreams: 1000,
    });
    const timer = setTimeout(() => {
      if (!session.connecting) return;
      session.destroy(new Error("connect timeout"));
    }, this.connectTimeoutMs);
    timer.unref();
    session.once("connect", () => clearTimeout(timer));
    session.on("error", () => {});
    session.once("close", () => {
      clearTimeout(timer);
      if (this.sessions.get(ep.key) === session) this.sessions.delete(ep.key);
    });
    session.on("goaway", () => {
      if (this.sessions.get(ep.key) === session) this.sessions.delete(ep.key);
    });
    if (!this.closed) this.sessions.set(ep.key, session);
    return session;
  }

  close(): void {
    this.closed = true;
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}
