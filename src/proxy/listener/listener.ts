// A listener: a bound socket, its filter chains, and the runtimes they hand connections to. Chains are chosen
// per connection (destination port, then SNI and ALPN after a TLS handshake, most specific first). A config
// swap replaces the chains in place: the socket stays bound and open connections keep their runtime.
import net from "node:net";
import type tls from "node:tls";
import type { FilterChainConfig, ListenerConfig, RouteConfiguration } from "../config/types.ts";
import { Http1ServerConnection } from "../http1/server-connection.ts";
import { H2_PREFACE } from "../http2/preface.ts";
import { tlsModule } from "../lazy-modules.ts";
import { RouteTable } from "../router/route-table.ts";
import { SecretStore } from "../secrets/secret-store.ts";
import type { ListenerTlsStats } from "../secrets/tls-failures.ts";
import { tlsFailures } from "../secrets/tls-failures-lazy.ts";
import type { StatsStore } from "../stats/stats.ts";
import { TelemetrySlot } from "../telemetry/telemetry-slot.ts";
import type { ReverseTunnelAcceptorRuntime } from "../tunnel/acceptor.ts";
import { TUNNEL_ALPN, tunnelModule } from "../tunnel/lazy.ts";
import type { ClusterManager } from "../upstream/cluster.ts";
import { parseClientHello } from "./client-hello.ts";
import { HttpRuntime } from "./http-runtime.ts";
import { TcpProxyRuntime } from "./tcp-proxy.ts";

/** A chain's TLS material: inline, or named secrets read from the store when a handshake needs them. */
export interface ChainTls {
  /** cert, key and ca as node:tls options, undefined while a named secret is missing. */
  options(): tls.SecureContextOptions | undefined;
  /** The secure context of the current material (cached until the store changes). */
  context(): tls.SecureContext | undefined;
  /** The listener's ssl.* counters and refusal log (shared by its chains). */
  readonly stats: ListenerTlsStats;
}

export interface FilterChainRuntime {
  readonly config: FilterChainConfig;
  /** Undefined for a plain-text chain. */
  readonly tls: ChainTls | undefined;
  readonly http: HttpRuntime | undefined;
  readonly tcp: TcpProxyRuntime | undefined;
  /** A reverse_tunnel_acceptor chain: its connections become tunnels held in the clusters' registry. */
  readonly tunnel: ReverseTunnelAcceptorRuntime | undefined;
}

const SWEEP_INTERVAL_MS = 1000;

export class Listener {
  readonly name: string;
  config: ListenerConfig;
  private chains: FilterChainRuntime[] = [];
  private readonly server: net.Server;
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly sockets = new Set<net.Socket>();
  private closed = false;
  private tlsServers = new Map<number, { server: tls.Server; generation: number }>();
  private readonly secrets: SecretStore;
  /**
   * TLS connections closed because a chain requiring a client certificate got none that verifies, or one with
   * an identity it does not allow (the sum of listener.NAME.ssl.fail_verify_{no_cert,error,san}).
   */
  clientCertRejected = 0;

  constructor(config: ListenerConfig, secrets: SecretStore = new SecretStore()) {
    this.secrets = secrets;
    this.name = config.name;
    this.config = config;
    this.server = net.createServer({ noDelay: true, pauseOnConnect: false }, (s) => this.onConnection(s));
    this.server.maxConnections = config.limits?.maxConnections ?? 10_000;
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  /** Binds the socket. Rejects with a clear message (e.g. the port is in use). */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(
          new Error(
            `listener ${this.name}: cannot listen on ${this.address}:${this.config.port}: ${err.code ?? err.message}`,
          ),
        );
      };
      this.server.once("error", onError);
      this.server.listen({ host: this.address, port: this.config.port, backlog: 4096 }, () => {
        this.server.off("error", onError);
        this.server.on("error", () => {});
        resolve();
      });
    });
  }

  get address(): string {
    return this.config.address ?? "0.0.0.0";
  }

  /** The port actually bound (useful with port 0). */
  get boundPort(): number {
    const a = this.server.address();
    return typeof a === "object" && a !== null ? a.port : this.config.port;
  }

  /** Builds the chains for a config without side effects. */
  static prepareChains(
    config: ListenerConfig,
    routeConfigs: ReadonlyMap<string, RouteConfiguration>,
    clusters: ClusterManager,
    store: StatsStore,
    telemetry: TelemetrySlot = new TelemetrySlot(),
    secrets: SecretStore = new SecretStore(),
  ): FilterChainRuntime[] {
    // Only listeners with TLS chains load the failure accounting and get listener.NAME.ssl.* counters.
    const ssl = config.filterChains.some((fc) => fc.tls !== undefined)
      ? tlsFailures().listenerStats(store, config.name)
      : undefined;
    return config.filterChains.map((fc) => {
      const secureContext = fc.tls ? chainTls(fc.tls, secrets, ssl!) : undefined;
      const f = fc.filter;
      if (f.type === "tcp")
        return {
          config: fc,
          tls: secureContext,
          http: undefined,
          tcp: new TcpProxyRuntime(f, clusters, store, telemetry),
          tunnel: undefined,
        };
      if (f.type === "reverse_tunnel_acceptor")
        return {
          config: fc,
          tls: secureContext,
          http: undefined,
          tcp: undefined,
          // The proxy loaded the tunnel code and made the registry before preparing a config with this chain.
          tunnel: new (tunnelModule().ReverseTunnelAcceptorRuntime)(f, clusters.tunnels!, store, config.name),
        };
      const rc =
        f.routeConfig ?? (f.routeConfigName !== undefined ? routeConfigs.get(f.routeConfigName) : undefined);
      const table = rc ? new RouteTable(rc) : undefined;
      return {
        config: fc,
        tls: secureContext,
        http: new HttpRuntime(f, table, clusters, config.limits, fc.tls ? "https" : "http", store, telemetry),
        tcp: undefined,
        tunnel: undefined,
      };
    });
  }

  /**
   * Swaps in new chains. An HTTP chain with the same name (or position) keeps its runtime object, which adopts
   * the new route table and limits, so that its open connections see them on their next request.
   */
  commitChains(config: ListenerConfig, next: FilterChainRuntime[]): void {
    this.config = config;
    this.tlsServers = new Map();
    const old = this.chains;
    this.chains = next.map((c, i) => {
      const prev = old.find((o) => o.config.name !== undefined && o.config.name === c.config.name) ?? old[i];
      if (prev?.http && c.http && prev.http.scheme === c.http.scheme && prev.http.mode === c.http.mode) {
        prev.http.adopt(c.http);
        return { ...c, http: prev.http };
      }
      return c;
    });
    this.server.maxConnections = config.limits?.maxConnections ?? 10_000;
  }

  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.on("error", () => {});
    const needsTls = this.chains.some((c) => c.tls !== undefined);
    if (this.chains.some(isPassthrough)) {
      this.inspect(socket, needsTls);
      return;
    }
    if (!needsTls) {
      this.dispatch(socket, this.select(socket.localPort ?? 0, undefined, undefined, false), undefined);
      return;
    }
    // Peek at the first byte: 0x16 starts a TLS handshake.
    socket.once("readable", () => {
      const first: Buffer | null = socket.read(1);
      if (first === null) return;
      socket.unshift(first);
      if (first[0] === 0x16) this.handshake(socket);
      else this.dispatch(socket, this.select(socket.localPort ?? 0, undefined, undefined, false), undefined);
    });
  }

  /**
   * A listener with chains that pass TLS through by SNI (tcp chains with serverNames and no tls): the
   * ClientHello is read without terminating it (bounded in size and time), and its server name picks the chain;
   * the bytes read go ahead of the rest to the upstream, so the TLS session is the client's and the server's
   * own. A ClientHello no passthrough chain takes goes to the terminating chains, if any; plain text to the
   * plain chains.
   */
  private inspect(socket: net.Socket, needsTls: boolean): void {
    const port = socket.localPort ?? 0;
    let bytes: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), this.config.limits?.requestHeadersTimeoutMs ?? 10_000);
    const onData = (chunk: Buffer) => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const hello = parseClientHello(bytes);
      if (hello.status === "need-more") return;
      socket.off("data", onData);
      socket.pause();
      clearTimeout(timer);
      if (hello.status === "invalid") {
        socket.destroy();
        return;
      }
      if (hello.status === "not-tls") {
        socket.unshift(bytes);
        this.dispatch(socket, this.select(port, undefined, undefined, false), undefined);
        return;
      }
      const chain = this.select(port, hello.sni, undefined, false);
      if (chain !== undefined && isPassthrough(chain)) {
        this.dispatch(socket, chain, bytes);
        return;
      }
      if (!needsTls) {
        socket.destroy();
        return;
      }
      socket.unshift(bytes);
      this.handshake(socket);
    };
    socket.on("data", onData);
    socket.once("close", () => clearTimeout(timer));
  }

  /**
   * TLS is terminated by a tls.Server that never listens: the raw socket is handed to it. Node applies client
   * certificate verification, the handshake timeout and the end of the handshake state only for sockets of a
   * tls.Server (a bare TLSSocket accepted any client certificate), so this is the supported way in.
   * SNICallback cannot see the connection, and chains may match on the destination port, so there is one
   * server per port seen (normally just the listener's own), rebuilt after a config swap.
   */
  private handshake(raw: net.Socket): void {
    // Read now (Node keeps it): a handshake the peer resets is logged with its address, which the TLS socket
    // cannot read any more by then.
    if (raw.remoteAddress === undefined) {
      raw.destroy();
      return;
    }
    const port = raw.localPort ?? 0;
    let entry = this.tlsServers.get(port);
    // Rebuilt when a secret changes (a rotated certificate), for new handshakes; open connections keep theirs.
    if (!entry || entry.generation !== this.secrets.generation) {
      entry = { server: this.tlsServerFor(port), generation: this.secrets.generation };
      this.tlsServers.set(port, entry);
    }
    entry.server.emit("connection", raw);
  }

  private tlsServerFor(port: number): tls.Server {
    const tlsChains = this.chains.filter((c) => c.tls !== undefined);
    const fallback = this.select(port, undefined, undefined, true) ?? tlsChains[0]!;
    const ssl = fallback.tls!.stats;
    const server = tlsModule().createServer({
      // Without the material yet (a secret not received), only clients whose SNI picks a chain that has it
      // complete a handshake.
      ...(fallback.tls!.options() ?? {}),
      ALPNProtocols: [...new Set(tlsChains.flatMap(chainAlpn))],
      // Asked of every client when any chain needs it; enforced below per chain, so that a chain that does not
      // require one still serves clients without (Istio's PERMISSIVE next to STRICT).
      requestCert: tlsChains.some((c) => c.config.tls?.requireClientCertificate),
      rejectUnauthorized: false,
      handshakeTimeout: this.config.limits?.requestHeadersTimeoutMs ?? 10_000,
      SNICallback: (servername, cb) => {
        const ctx = (this.select(port, servername, undefined, true) ?? fallback).tls!.context();
        if (ctx) cb(null, ctx);
        else cb(new Error("no certificate yet for this server name"));
      },
    });
    server.on("tlsClientError", (err, socket) => {
      ssl.handshakeFailed(socket, err);
      socket.destroy();
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      socket.on("error", () => socket.destroy());
      const servername = (socket as tls.TLSSocket & { servername?: string | false }).servername || undefined;
      const chain = this.select(port, servername, socket.alpnProtocol || undefined, true);
      const t = chain?.config.tls;
      const sans = t?.matchSubjectAltNames;
      // A chain that requires a client certificate, or expects identities, takes only a verified one that
      // carries one of them; anything else is refused with its reason (counted, logged), never served.
      if (
        (t?.requireClientCertificate || sans !== undefined) &&
        (!socket.authorized || (sans !== undefined && !peerSanMatches(socket, sans)))
      ) {
        this.clientCertRejected++;
        ssl.refused(socket, sans);
        // A tunnel initiator is told why in the handshake's answer (it retries forever; a bare reset would
        // leave its operator guessing); everyone else gets the connection closed.
        if (chain?.tunnel) chain.tunnel.handle(socket, clientCertRefusal(socket, sans));
        else socket.destroy();
        return;
      }
      ssl.handshake.inc();
      this.dispatch(socket, chain, undefined);
    });
    return server;
  }

  /** The most specific chain whose conditions all hold. */
  private select(
    port: number,
    sni: string | undefined,
    alpn: string | undefined,
    isTls: boolean,
  ): FilterChainRuntime | undefined {
    let best: FilterChainRuntime | undefined;
    let bestScore = -1;
    for (const c of this.chains) {
      if ((c.tls !== undefined) !== isTls) continue;
      const m = c.config.match;
      let score = 0;
      if (m?.destinationPort !== undefined) {
        if (m.destinationPort !== port) continue;
        score += 4;
      }
      if (m?.serverNames && m.serverNames.length > 0) {
        if (sni === undefined || !m.serverNames.some((n) => sniMatches(n, sni))) continue;
        score += 2;
      }
      if (m?.applicationProtocols && m.applicationProtocols.length > 0) {
        if (alpn === undefined || !m.applicationProtocols.includes(alpn)) continue;
        score += 1;
      }
      if (score > bestScore) {
        best = c;
        bestScore = score;
      }
    }
    return best;
  }

  private dispatch(
    socket: net.Socket,
    chain: FilterChainRuntime | undefined,
    preread: Buffer | undefined,
  ): void {
    if (!chain) {
      socket.destroy();
      return;
    }
    if (chain.tcp) {
      chain.tcp.handle(socket, preread);
      return;
    }
    if (chain.tunnel) {
      chain.tunnel.handle(socket);
      return;
    }
    const http = chain.http;
    if (!http) return;
    const negotiated =
      (socket as tls.TLSSocket).encrypted === true ? (socket as tls.TLSSocket).alpnProtocol : false;
    if (negotiated === "h2" || http.codec === "http2") http.h2.handle(socket, preread);
    else if (negotiated === "http/1.1" || http.codec === "http1") new Http1ServerConnection(socket, http);
    else
      sniffPreface(socket, http.idleTimeoutMs, http.requestHeadersTimeoutMs, (isH2, bytes) => {
        if (isH2) http.h2.handle(socket, bytes);
        else {
          if (bytes.length > 0) socket.unshift(bytes);
          new Http1ServerConnection(socket, http);
        }
      });
  }

  private sweep(): void {
    const now = Date.now();
    for (const c of this.chains) c.http?.sweep(now);
  }

  /** Stops accepting; HTTP connections close after their current response; TCP connections are left to end. */
  drain(): void {
    this.closed = true;
    this.server.close();
    for (const c of this.chains) {
      if (!c.http) continue;
      c.http.draining = true;
      for (const conn of c.http.connections) conn.drain();
    }
  }

  /** Active downstream connections of every chain. */
  get activeConnections(): number {
    return this.sockets.size;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }
}

/**
 * Reads the first bytes of a plain-text connection until they either are the HTTP/2 preface (h2c by prior
 * knowledge) or cannot be; calls back with what was read, to be handed back to the chosen codec.
 *
 * Until then no codec watches the connection, so the timeouts are kept here: closed after `idleMs` if nothing
 * arrives, after `headMs` once bytes have started. Without them a client that connected and stayed silent, or
 * trickled "PRI * HTTP/2.0...", held its connection (and a slot of maxConnections) forever.
 */
function sniffPreface(
  socket: net.Socket,
  idleMs: number,
  headMs: number,
  cb: (isH2: boolean, bytes: Buffer) => void,
): void {
  let got: Buffer = Buffer.alloc(0);
  let timer = setTimeout(() => socket.destroy(), idleMs);
  const onReadable = () => {
    const before = got.length;
    for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
    }
    const n = Math.min(got.length, H2_PREFACE.length);
    if (got.subarray(0, n).equals(H2_PREFACE.subarray(0, n)) && got.length < H2_PREFACE.length) {
      if (before === 0 && got.length > 0) {
        clearTimeout(timer);
        timer = setTimeout(() => socket.destroy(), headMs);
      }
      return;
    }
    done();
    cb(got.length >= H2_PREFACE.length && got.subarray(0, H2_PREFACE.length).equals(H2_PREFACE), got);
  };
  const done = () => {
    clearTimeout(timer);
    socket.off("readable", onReadable);
    socket.off("end", onEnd);
    socket.off("close", done);
  };
  const onEnd = () => {
    done();
    socket.destroy();
  };
  socket.on("readable", onReadable);
  // Bytes may already be buffered (the TLS sniff read and gave back the first byte): 'readable' will not
  // fire again for them, so look now.
  if (socket.readableLength > 0) onReadable();
  socket.once("end", onEnd);
  socket.once("close", done);
}

/**
 * The ALPN protocols a TLS chain accepts. An acceptor chain always accepts the tunnel's own (its initiators
 * offer only that), whatever else it lists.
 */
function chainAlpn(c: FilterChainRuntime): readonly string[] {
  const listed = c.config.tls?.alpnProtocols;
  if (c.tunnel) return [...(listed ?? []), TUNNEL_ALPN];
  return listed ?? ["h2", "http/1.1"];
}

/** Why a client certificate was not accepted, in a few words for the peer. */
function clientCertRefusal(socket: tls.TLSSocket, sans: readonly string[] | undefined): string {
  if (!socket.authorized) {
    // Without a certificate node reports UNABLE_TO_GET_ISSUER_CERT, which would mislead.
    if (Object.keys(socket.getPeerCertificate() ?? {}).length === 0)
      return "a client certificate is required";
    return `client certificate not accepted: ${String(socket.authorizationError ?? "unverified")}`;
  }
  return `client certificate identity is not one of ${JSON.stringify(sans ?? [])}`;
}

/** A tcp chain chosen by SNI without terminating TLS. */
function isPassthrough(c: FilterChainRuntime): boolean {
  return c.tls === undefined && c.tcp !== undefined && (c.config.match?.serverNames?.length ?? 0) > 0;
}

function sniMatches(pattern: string, sni: string): boolean {
  if (pattern.startsWith("*.")) return sni.endsWith(pattern.slice(1));
  return pattern === sni;
}

function chainTls(
  t: NonNullable<FilterChainConfig["tls"]>,
  secrets: SecretStore,
  stats: ListenerTlsStats,
): ChainTls {
  const options = (): tls.SecureContextOptions | undefined => {
    const cert = t.certificateSecret !== undefined ? secrets.certificate(t.certificateSecret) : undefined;
    if (t.certificateSecret !== undefined && cert === undefined) return undefined;
    const ca =
      t.validationSecret !== undefined
        ? secrets.validation(t.validationSecret)?.trustedCa
        : t.validationContext;
    if (t.validationSecret !== undefined && ca === undefined) return undefined;
    return {
      cert: cert?.certificateChain ?? t.certificateChain,
      key: cert?.privateKey ?? t.privateKey,
      ...(ca !== undefined ? { ca } : {}),
    };
  };
  let cached: { generation: number; context: tls.SecureContext | undefined } | undefined;
  return {
    options,
    stats,
    context: () => {
      if (cached === undefined || cached.generation !== secrets.generation) {
        const o = options();
        cached = {
          generation: secrets.generation,
          context: o ? tlsModule().createSecureContext(o) : undefined,
        };
      }
      return cached.context;
    },
  };
}

/** Whether the verified peer certificate carries one of `sans` as a URI SAN. */
export function peerSanMatches(socket: tls.TLSSocket, sans: readonly string[]): boolean {
  if (!socket.authorized) return false;
  const altNames = socket.getPeerCertificate()?.subjectaltname ?? "";
  return altNames.split(", ").some((n) => n.startsWith("URI:") && sans.includes(n.slice(4)));
}
