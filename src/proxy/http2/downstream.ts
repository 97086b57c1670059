// HTTP/2 from downstream: h2c by prior knowledge and h2 negotiated with ALPN. Node's nghttp2 binding does the
// framing; each stream is routed like an HTTP/1 request and forwarded to an HTTP/2 upstream (gRPC: trailers,
// streaming both ways) or translated to HTTP/1.1 for an HTTP/1 upstream.
import http2 from "node:http2";
import type net from "node:net";
import { type CompiledCors, isPreflight } from "../filters/cors.ts";
import type { CompiledFault } from "../filters/fault.ts";
import type { SecurityVerdict } from "../filters/rbac-http.ts";
import { ChunkedDecoder } from "../http1/chunked.ts";
import type { ResponseHead } from "../http1/head-parser.ts";
import { replyForFlag } from "../http1/local-reply.ts";
import type { HashInput } from "../lb/hash-policy.ts";
import type { HttpRuntime } from "../listener/http-runtime.ts";
import { chooseRetryEndpoint, chooseUpstream, requestHashInput } from "../router/choose-upstream.ts";
import { redirectLocation } from "../router/redirect.ts";
import {
  type AttemptFailure,
  FAIL_CONNECT,
  FAIL_PER_TRY_TIMEOUT,
  FAIL_REFUSED_STREAM,
  FAIL_RESET,
} from "../router/retry-policy.ts";
import type { CompiledRoute, CompiledWeightedCluster } from "../router/route-table.ts";
import { clientCertDetailsOf, peerWithPrincipal, XFCC_HEADER } from "../secrets/peer-identity.ts";
import { destinationServiceOf, type HttpRequestRecord, type PeerInfo } from "../telemetry/request-record.ts";
import { PEER_METADATA_HEADER } from "../telemetry/telemetry-slot.ts";
import type { TraceHandle } from "../telemetry/trace/request-tracer.ts";
import { TRACE_HEADERS } from "../telemetry/trace/trace-headers.ts";
import { type Cluster, type Endpoint, retryAllowed } from "../upstream/cluster.ts";
import type { ResponseHandler, UpstreamHttp1Connection } from "../upstream/http1-connection.ts";
import type { PoolWaiter } from "../upstream/http1-pool.ts";
import { MirrorRequest } from "../upstream/mirror.ts";
import { formatFlags, ResponseFlag } from "../upstream/response-flags.ts";

/** Connection-specific fields, forbidden in HTTP/2 (RFC 9113 8.2.2) and hop-by-hop in HTTP/1. */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "host",
  PEER_METADATA_HEADER,
  XFCC_HEADER,
]);

/** Request body bytes kept so that a failed attempt can be retried. */
const RETRY_BUFFER_BYTES = 64 * 1024;

export class Http2Downstream {
  private readonly server: http2.Http2Server;
  private readonly rt: HttpRuntime;

  constructor(rt: HttpRuntime) {
    this.rt = rt;
    this.server = http2.createServer({
      settings: { maxHeaderListSize: rt.limits.maxHeadBytes },
      maxSessionMemory: 64,
    });
    this.server.on("stream", (stream, headers, _flags, rawHeaders) => {
      rt.stats.rqTotal.inc();
      new Http2Exchange(rt, stream, headers, rawHeaders as unknown as string[]);
    });
    this.server.on("sessionError", () => {});
  }

  /** Takes over a connection whose first bytes (already read, in `preread`) are the HTTP/2 preface. */
  handle(socket: net.Socket, preread: Buffer | undefined): void {
    if (preread && preread.length > 0) socket.unshift(preread);
    this.rt.stats.cxTotal.inc();
    this.server.emit("connection", socket);
  }
}

class Http2Exchange implements PoolWaiter, ResponseHandler {
  private readonly rt: HttpRuntime;
  private readonly stream: http2.ServerHttp2Stream;
  private readonly method: string;
  private readonly authority: string;
  private readonly path: string;
  private readonly flat: string[];
  private route: CompiledRoute | undefined;
  private wc: CompiledWeightedCluster | undefined;
  private cluster: Cluster | undefined;
  private endpoint: Endpoint | undefined;
  private upstream: UpstreamHttp1Connection | undefined;
  private dechunk: ChunkedDecoder | null = null;
  private responded = false;
  private done = false;
  // HTTP/2 upstream attempts (retries): the current upstream stream, endpoints tried, body kept for replay.
  private req: http2.ClientHttp2Stream | undefined;
  private attempts = 0;
  private tried: Endpoint[] | null = null;
  private replay: Buffer[] | null = [];
  private replayBytes = 0;
  private bodyEnded = false;
  private bodyHooked = false;
  private trailers: http2.IncomingHttpHeaders | undefined;
  private routeTimer: NodeJS.Timeout | undefined;
  private tryTimer: NodeJS.Timeout | undefined;
  private backoffTimer: NodeJS.Timeout | undefined;
  private faultTimer: NodeJS.Timeout | undefined;
  // Telemetry (kept only when a sink is configured).
  private startedAt = 0;
  private flags = "";
  private status = 0;
  private grpcStatus: number | undefined;
  private bytesIn = 0;
  private bytesOut = 0;
  private upstreamHost = "";
  private peer: PeerInfo | undefined;
  private trace: TraceHandle | undefined;
  /** CORS headers for the response of an allowed origin. */
  private cors: http2.OutgoingHttpHeaders | undefined;

  constructor(
    rt: HttpRuntime,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    raw: string[],
  ) {
    this.rt = rt;
    this.stream = stream;
    this.method = String(headers[":method"] ?? "GET");
    this.authority = String(headers[":authority"] ?? headers.host ?? "").toLowerCase();
    this.path = String(headers[":path"] ?? "/");
    this.flat = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.charCodeAt(0) === 0x3a /* ":" */ || CONNECTION_SPECIFIC.has(name)) continue;
      this.flat.push(name, raw[i + 1]!);
    }
    stream.on("error", () => {});
    stream.on("close", () => this.onDownstreamClose());
    // Body bytes are counted where the body is read (hookBody, onPoolReady): a 'data' listener here would
    // start the stream flowing before anyone forwards it.
    if (rt.telemetry.sink !== undefined) {
      this.startedAt = performance.now();
      this.trace = rt.telemetry.tracer?.begin(this.flat);
      if (rt.reporter === "destination") {
        const v = headers[PEER_METADATA_HEADER];
        if (typeof v === "string") this.peer = rt.telemetry.decodePeer(v);
        const socket = stream.session?.socket;
        if (socket) this.peer = peerWithPrincipal(this.peer, socket);
      }
    }
    this.start();
  }

  private start(): void {
    if (this.method === "CONNECT") {
      this.local(405, "CONNECT over HTTP/2 is not supported");
      return;
    }
    const security = this.rt.security;
    const socket = this.stream.session?.socket;
    if (security !== undefined && socket !== undefined) {
      const v = security.check({
        method: this.method,
        authority: this.authority,
        path: this.path,
        headers: this.flat,
        socket,
      });
      if (v instanceof Promise) {
        // The body stays unread (flow control holds the client) until the filters decide.
        v.then(
          (r) => {
            if (this.done) return;
            if (r !== null) this.securityDenied(r);
            else this.routeRequest();
          },
          () => {
            if (!this.done) this.local(500, "");
          },
        );
        return;
      }
      if (v !== null) {
        this.securityDenied(v);
        return;
      }
    }
    this.routeRequest();
  }

  private securityDenied(v: NonNullable<SecurityVerdict>): void {
    const h: http2.OutgoingHttpHeaders = { ":status": v.status };
    for (let i = 0; i < v.headers.length; i += 2) h[v.headers[i]!] = v.headers[i + 1]!;
    if (v.body !== "") h["content-type"] = "text/plain";
    this.rt.countResponse(v.status, null, null);
    this.bytesOut += v.body.length;
    this.respond(h, v.body === "");
    if (v.body !== "" && !this.stream.destroyed) this.stream.end(v.body);
    this.finish(false);
  }

  /** After the security filters: the chain's rate limit, routing and the route's filters. */
  private routeRequest(): void {
    const limit = this.rt.rateLimit;
    if (limit !== undefined && !limit.take(Date.now())) {
      this.flag(ResponseFlag.RateLimited, "");
      return;
    }
    const route = this.rt.routeTable?.route({
      method: this.method,
      authority: this.authority,
      path: this.path,
      scheme: this.rt.scheme,
      headers: this.flat,
    });
    if (!route) {
      this.flag(ResponseFlag.NoRouteFound, "");
      return;
    }
    this.route = route;
    if (route.rateLimit !== undefined && !route.rateLimit.take(Date.now())) {
      this.flag(ResponseFlag.RateLimited, "");
      return;
    }
    if (route.cors !== undefined && this.applyCors(route.cors)) return;
    const fault = route.fault;
    if (fault !== undefined) {
      const delay = fault.delay(Math.random());
      if (delay > 0) {
        this.addFlag(ResponseFlag.DelayInjected);
        this.faultTimer = setTimeout(() => {
          this.faultTimer = undefined;
          if (this.done) return;
          if (fault.aborts(Math.random())) this.faultAbort(fault);
          else this.routeTo(route);
        }, delay);
        return;
      }
      if (fault.aborts(Math.random())) {
        this.faultAbort(fault);
        return;
      }
    }
    this.routeTo(route);
  }

  private routeTo(route: CompiledRoute): void {
    if (route.directResponse) {
      this.local(route.directResponse.status, route.directResponse.body ?? "");
      return;
    }
    if (route.redirect) {
      const location = redirectLocation(route, this.authority, this.path, this.rt.scheme);
      this.respond({ ":status": route.redirect.responseCode ?? 301, location }, true);
      return;
    }
    const choice = chooseUpstream(route, this.rt.clusters, this, this.authority);
    if (typeof choice === "string") {
      this.flag(choice, "");
      return;
    }
    const { wc, cluster, endpoint: ep } = choice;
    this.wc = wc;
    this.cluster = cluster;
    this.endpoint = ep;
    if (route.timeoutMs > 0) this.routeTimer = setTimeout(() => this.routeTimedOut(), route.timeoutMs);
    this.attempts = 1;
    if (route.mirrors.length > 0) this.startMirrors(route);
    if (cluster.h2) this.forwardHttp2(cluster, ep, route, wc);
    else cluster.pool(ep).acquire(this);
  }

  /**
   * Mirrors for an HTTP/2 request: the copy is written as HTTP/1.1 (chunked when the body has no length),
   * which MirrorRequest sends to HTTP/1 clusters as is and to HTTP/2 clusters through the translating exchange.
   */
  private startMirrors(route: CompiledRoute): void {
    const host = this.authority || "unknown";
    const length = headerOf(this.flat, "content-length");
    const hasBody = !this.stream.readableEnded;
    const chunked = hasBody && length === undefined;
    let head = `${this.method} ${this.path} HTTP/1.1\r\nhost: ${host}\r\n`;
    for (let i = 0; i < this.flat.length; i += 2)
      if (this.flat[i] !== "te") head += `${this.flat[i]}: ${this.flat[i + 1]}\r\n`;
    if (chunked) head += "transfer-encoding: chunked\r\n";
    head += "\r\n";
    const mirrors: MirrorRequest[] = [];
    for (const m of route.mirrors) {
      if (m.fraction < 1 && Math.random() >= m.fraction) continue;
      const cluster = this.rt.clusters.get(m.cluster);
      if (cluster === undefined) continue;
      const mirror = new MirrorRequest(cluster, this.method, head, host);
      if (mirror.start()) mirrors.push(mirror);
    }
    if (mirrors.length === 0) return;
    if (!hasBody) {
      for (const m of mirrors) m.end();
      return;
    }
    // A 'data' listener of its own would start the stream flowing before the upstream is attached: the copies
    // are taken where the body is forwarded (mirrorData, mirrorEnd).
    this.mirrorSinks = mirrors;
    this.mirrorChunked = chunked;
  }

  private mirrorSinks: MirrorRequest[] | null = null;
  private mirrorChunked = false;

  /** Copies a body chunk to the mirrors (called where the body is forwarded). */
  private mirrorData(chunk: Buffer): void {
    const ms = this.mirrorSinks;
    if (ms === null) return;
    const framed = this.mirrorChunked
      ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")])
      : chunk;
    for (const m of ms) m.write(framed);
  }

  private mirrorEnd(): void {
    const ms = this.mirrorSinks;
    if (ms === null) return;
    this.mirrorSinks = null;
    for (const m of ms) {
      if (this.mirrorChunked) m.write(Buffer.from("0\r\n\r\n"));
      m.end();
    }
  }

  private faultAbort(fault: CompiledFault): void {
    this.addFlag(ResponseFlag.FaultInjected);
    if (fault.abortGrpcStatus !== undefined) {
      this.rt.countResponse(200, null, null);
      this.respond(
        {
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": String(fault.abortGrpcStatus),
          "grpc-message": "fault filter abort",
        },
        true,
      );
      this.finish(false);
    } else this.local(fault.abortStatus, "fault filter abort");
  }

  private applyCors(cors: CompiledCors): boolean {
    const origin = headerOf(this.flat, "origin");
    if (origin === undefined || !cors.allows(origin)) return false;
    const lines = isPreflight(this.method, this.flat)
      ? cors.preflightHeaders(origin)
      : cors.responseHeaders(origin);
    const headers: http2.OutgoingHttpHeaders = {};
    for (const line of lines.split("\r\n")) {
      const c = line.indexOf(": ");
      if (c > 0) headers[line.slice(0, c)] = line.slice(c + 2);
    }
    if (isPreflight(this.method, this.flat)) {
      this.rt.countResponse(200, null, null);
      this.respond({ ":status": 200, ...headers }, true);
      this.finish(false);
      return true;
    }
    this.cors = headers;
    return false;
  }

  private routeTimedOut(): void {
    this.routeTimer = undefined;
    this.cluster?.stats.timeout.inc();
    if (this.responded) {
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    const req = this.req;
    this.req = undefined;
    req?.close(http2.constants.NGHTTP2_CANCEL);
    this.upstream?.abort();
    this.upstream = undefined;
    if (this.endpoint) this.cluster?.outlier?.report(this.endpoint, 504);
    this.addFlag(ResponseFlag.UpstreamRequestTimeout);
    this.local(504, "upstream request timeout");
  }

  hashInput(): HashInput {
    return requestHashInput(this.flat, this.path, this.stream.session?.socket?.remoteAddress ?? "");
  }

  private upstreamPath(): string {
    const route = this.route!;
    if (!route.rewritePath) return this.path;
    const q = this.path.indexOf("?");
    return route.rewritePath(
      this.path,
      q === -1 ? this.path : this.path.slice(0, q),
      q === -1 ? "" : this.path.slice(q + 1),
    );
  }

  // ------------------------------------------------------------------------------ HTTP/2 upstream (gRPC)

  private forwardHttp2(
    cluster: Cluster,
    ep: Endpoint,
    route: CompiledRoute,
    wc: CompiledWeightedCluster,
  ): void {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": this.method,
      ":path": this.upstreamPath(),
      ":authority": route.action?.hostRewrite ?? (this.authority || ep.key),
      ":scheme": "http",
    };
    copyHeaders(this.flat, headers, wc.requestHeadersToRemove);
    for (const h of wc.requestHeadersToAdd)
      addHeader(headers, h.name.toLowerCase(), h.value, h.append === true);
    headers["x-forwarded-proto"] = this.rt.scheme;
    const xfcc = this.clientCertDetails();
    if (xfcc !== undefined) headers[XFCC_HEADER] = xfcc;
    this.addOwnPeer(headers, "source");
    if (this.trace !== undefined) {
      for (const n of TRACE_HEADERS) delete headers[n];
      for (const h of this.trace.upstreamHeaders) headers[h.name] = h.value;
    }
    if (!this.bodyHooked) this.hookBody();
    const noBody = this.bodyEnded && this.replayBytes === 0;
    let req: http2.ClientHttp2Stream;
    try {
      req = cluster.h2!.session(ep).request(headers, { endStream: noBody });
    } catch (e) {
      this.attemptFailed(FAIL_CONNECT, ResponseFlag.UpstreamConnectionFailure, (e as Error).message);
      return;
    }
    this.req = req;
    if (!noBody) {
      if (this.attempts > 1 && this.replay !== null) for (const b of this.replay) req.write(b);
      if (this.bodyEnded) req.end();
    }
    if (route.retry.perTryTimeoutMs > 0)
      this.tryTimer = setTimeout(() => this.tryTimedOut(req), route.retry.perTryTimeoutMs);
    req.on("response", (h, flags) => {
      if (this.req !== req) return;
      this.clearTryTimer();
      const status = Number(h[":status"] ?? 502);
      cluster.outlier?.report(ep, status);
      const grpc = h["grpc-status"] !== undefined ? Number(h["grpc-status"]) : undefined;
      const retry = route.retry;
      if (retry.numRetries > 0 && retry.retriableResponse(status, grpc)) {
        if (this.retry()) {
          req.close(http2.constants.NGHTTP2_CANCEL);
          return;
        }
        this.retryLimitExceeded();
      }
      const out: http2.OutgoingHttpHeaders = { ":status": status, ...this.cors };
      copyHeaders(flatOf(h), out, wc.responseHeadersToRemove);
      this.notePeer(h[PEER_METADATA_HEADER]);
      this.addOwnPeer(out, "destination");
      for (const x of wc.responseHeadersToAdd)
        addHeader(out, x.name.toLowerCase(), x.value, x.append === true);
      const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      this.rt.countResponse(status, cluster, ep);
      this.respond(out, endStream, !endStream);
      if (endStream) this.finish(true);
    });
    req.on("trailers", (t) => {
      if (this.req !== req) return;
      this.trailers = t;
      if (t["grpc-status"] !== undefined) this.grpcStatus = Number(t["grpc-status"]);
    });
    req.on("data", (chunk: Buffer) => {
      if (this.req !== req || !this.responded) return;
      this.bytesOut += chunk.length;
      if (!this.stream.write(chunk)) req.pause();
    });
    req.on("end", () => {
      if (this.req !== req) return;
      if (!this.stream.writableEnded && this.responded) this.stream.end();
      this.finish(true);
    });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (this.req !== req) return;
      if (!this.responded) {
        const refused =
          err.code === "ECONNREFUSED" || err.code === "ETIMEDOUT" || /connect/i.test(err.message);
        this.attemptFailed(
          refused ? FAIL_CONNECT : FAIL_RESET,
          refused ? ResponseFlag.UpstreamConnectionFailure : ResponseFlag.UpstreamConnectionTermination,
          err.message,
        );
      } else this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    req.on("close", () => {
      if (this.req !== req) return;
      if (!this.responded) {
        const refused = req.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM;
        this.attemptFailed(
          refused ? FAIL_REFUSED_STREAM : FAIL_RESET,
          ResponseFlag.UpstreamConnectionTermination,
          "stream reset",
        );
        return;
      }
      if (!this.stream.writableEnded && req.rstCode !== http2.constants.NGHTTP2_NO_ERROR)
        this.stream.close(req.rstCode);
      this.finish(false);
    });
  }

  /**
   * The request body, for every attempt: written to the current upstream stream with backpressure, and kept
   * (up to RETRY_BUFFER_BYTES) so that a retry can send it again. Trailers and drain are wired once here too.
   */
  private hookBody(): void {
    this.bodyHooked = true;
    this.stream.on("wantTrailers", () => {
      const t: http2.OutgoingHttpHeaders = {};
      if (this.trailers) copyHeaders(flatOf(this.trailers), t, []);
      this.stream.sendTrailers(t);
    });
    this.stream.on("drain", () => this.req?.resume());
    if (this.stream.readableEnded) {
      this.bodyEnded = true;
      return;
    }
    this.stream.on("data", (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.mirrorData(chunk);
      if (this.replay !== null) {
        this.replayBytes += chunk.length;
        if (this.replayBytes > RETRY_BUFFER_BYTES) this.replay = null;
        else this.replay.push(chunk);
      } else this.replayBytes += chunk.length;
      const r = this.req;
      if (r !== undefined && !r.write(chunk)) {
        this.stream.pause();
        r.once("drain", () => this.stream.resume());
      }
    });
    this.stream.on("end", () => {
      this.bodyEnded = true;
      this.mirrorEnd();
      this.req?.end();
    });
  }

  private attemptFailed(kind: AttemptFailure, flag: ResponseFlag, detail: string): void {
    this.clearTryTimer();
    if (this.endpoint)
      this.cluster?.outlier?.report(this.endpoint, kind === FAIL_PER_TRY_TIMEOUT ? 504 : 503);
    const retry = this.route!.retry;
    if (retry.numRetries > 0 && retry.retriableFailure(kind)) {
      if (this.retry()) return;
      this.retryLimitExceeded();
    }
    this.upstreamFailed(flag, detail);
  }

  /** Another attempt after the backoff, if allowed; closes the failed attempt's accounting. */
  private retry(): boolean {
    const route = this.route!;
    const cluster = this.cluster!;
    if (this.attempts > route.retry.numRetries || this.replay === null || !cluster.h2) return false;
    if (!retryAllowed(cluster)) {
      cluster.stats.retryOverflow.inc();
      return false;
    }
    const ep = this.endpoint;
    if (ep) {
      if (this.tried === null) this.tried = [ep];
      else this.tried.push(ep);
      cluster.limits.active.value--;
      ep.activeRequests--;
      ep.rqError++;
      this.endpoint = undefined;
    }
    this.req = undefined;
    this.attempts++;
    cluster.stats.retry.inc();
    cluster.activeRetries++;
    this.backoffTimer = setTimeout(
      () => {
        this.backoffTimer = undefined;
        cluster.activeRetries--;
        if (this.done) return;
        const next = chooseRetryEndpoint(route, cluster, this, this.tried ?? [], this.authority);
        if (typeof next === "string") {
          this.flag(next, "");
          return;
        }
        this.endpoint = next;
        this.forwardHttp2(cluster, next, route, this.wc!);
      },
      route.retry.backoffMs(this.attempts - 1, Math.random()),
    );
    return true;
  }

  private retryLimitExceeded(): void {
    this.cluster?.stats.retryLimitExceeded.inc();
    this.addFlag(ResponseFlag.UpstreamRetryLimitExceeded);
  }

  private tryTimedOut(req: http2.ClientHttp2Stream): void {
    this.tryTimer = undefined;
    if (this.req !== req) return;
    this.cluster?.stats.perTryTimeout.inc();
    this.req = undefined;
    req.close(http2.constants.NGHTTP2_CANCEL);
    this.attemptFailed(FAIL_PER_TRY_TIMEOUT, ResponseFlag.UpstreamRequestTimeout, "");
  }

  private clearTryTimer(): void {
    if (this.tryTimer !== undefined) {
      clearTimeout(this.tryTimer);
      this.tryTimer = undefined;
    }
  }

  // ------------------------------------------------------------------------- HTTP/1 upstream (translate)

  onPoolReady(conn: UpstreamHttp1Connection): void {
    if (this.done) {
      conn.pool.release(conn);
      return;
    }
    this.upstream = conn;
    const route = this.route!;
    const wc = this.wc!;
    const length = headerOf(this.flat, "content-length");
    const hasBody = !this.stream.readableEnded;
    conn.begin(this, this.method, false);
    let head = `${this.method} ${this.upstreamPath()} HTTP/1.1\r\nhost: ${route.action?.hostRewrite ?? (this.authority || this.endpoint!.key)}\r\n`;
    const trace = this.trace;
    for (let i = 0; i < this.flat.length; i += 2) {
      const n = this.flat[i]!;
      if (n === "te" || wc.requestHeadersToRemove.includes(n)) continue;
      if (trace !== undefined && TRACE_HEADERS.has(n)) continue;
      if (wc.requestHeadersToAdd.some((h) => h.append !== true && h.name.toLowerCase() === n)) continue;
      head += `${n}: ${this.flat[i + 1]}\r\n`;
    }
    for (const h of wc.requestHeadersToAdd) head += `${h.name}: ${h.value}\r\n`;
    if (trace !== undefined) for (const h of trace.upstreamHeaders) head += `${h.name}: ${h.value}\r\n`;
    // HTTP/2 bodies have no length in advance unless the client said so: HTTP/1 needs chunked then.
    const chunked = hasBody && length === undefined;
    if (chunked) head += "transfer-encoding: chunked\r\n";
    head += `x-forwarded-proto: ${this.rt.scheme}\r\n`;
    const xfcc = this.clientCertDetails();
    if (xfcc !== undefined) head += `${XFCC_HEADER}: ${xfcc}\r\n`;
    const own = this.rt.telemetry.ownPeerHeader;
    if (own !== "" && this.rt.reporter === "source") head += `${PEER_METADATA_HEADER}: ${own}\r\n`;
    head += "\r\n";
    conn.write(head);
    if (!hasBody) {
      conn.endRequest();
      return;
    }
    this.stream.on("data", (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      this.mirrorData(chunk);
      // Every part is written whatever write() returns: false asks us to pause, it does not refuse the bytes.
      let ok: boolean;
      if (chunked) {
        conn.write(`${chunk.length.toString(16)}\r\n`);
        conn.write(chunk);
        ok = conn.write("\r\n");
      } else ok = conn.write(chunk);
      if (!ok) this.stream.pause();
    });
    conn.handlerDrain = () => this.stream.resume();
    this.stream.on("end", () => {
      this.mirrorEnd();
      if (chunked) conn.write("0\r\n\r\n");
      conn.endRequest();
    });
  }

  onPoolFailure(flag: ResponseFlag, detail: string): void {
    if (flag === ResponseFlag.UpstreamConnectionFailure) this.cluster?.stats.cxConnectFail.inc();
    this.upstreamFailed(flag, detail);
  }

  onResponseHead(head: ResponseHead): void {
    const wc = this.wc!;
    const out: http2.OutgoingHttpHeaders = { ":status": head.status, ...this.cors };
    this.addOwnPeer(out, "destination");
    if (this.rt.telemetry.sink !== undefined && this.rt.reporter === "source")
      for (let i = 0; i < head.headers.length; i += 2)
        if (head.headers[i] === PEER_METADATA_HEADER) this.notePeer(head.headers[i + 1]);
    const skip = new Set([...(head.connectionTokens ?? []), ...wc.responseHeadersToRemove]);
    for (let i = 0; i < head.headers.length; i += 2) {
      const n = head.headers[i]!;
      if (CONNECTION_SPECIFIC.has(n) || skip.has(n) || n === "te" || n === "trailer") continue;
      addHeader(out, n, head.headers[i + 1]!, true);
    }
    for (const h of wc.responseHeadersToAdd) addHeader(out, h.name.toLowerCase(), h.value, h.append === true);
    if (head.chunked) this.dechunk = new ChunkedDecoder();
    this.rt.countResponse(head.status, this.cluster ?? null, this.endpoint ?? null);
    if (this.endpoint) this.cluster?.outlier?.report(this.endpoint, head.status);
    this.respond(out, false);
  }

  onResponseData(buf: Buffer, from: number, to: number): boolean {
    this.bytesOut += to - from;
    if (this.dechunk) {
      this.dechunk.feed(buf, from, to, (b, f, t) => {
        this.stream.write(b.subarray(f, t));
      });
      return !this.stream.writableNeedDrain;
    }
    const ok = this.stream.write(buf.subarray(from, to));
    if (!ok) this.stream.once("drain", () => this.upstream?.resume());
    return ok;
  }

  onResponseEnd(): void {
    this.upstream = undefined;
    if (!this.stream.writableEnded) this.stream.end();
    this.finish(true);
  }

  onResponseError(flag: ResponseFlag, detail: string, headSent: boolean): void {
    this.upstream = undefined;
    if (headSent) {
      this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      this.finish(false);
      return;
    }
    this.upstreamFailed(flag, detail);
  }

  onUpgrade(_head: ResponseHead, socket: net.Socket): void {
    socket.destroy();
    this.upstreamFailed(ResponseFlag.UpstreamProtocolError, "upgrade is not possible from HTTP/2");
  }

  // ------------------------------------------------------------------------------------------- helpers

  private respond(headers: http2.OutgoingHttpHeaders, endStream: boolean, waitForTrailers = false): void {
    if (this.responded || this.stream.destroyed || this.stream.closed) return;
    this.responded = true;
    this.status = Number(headers[":status"]);
    if (headers["grpc-status"] !== undefined) this.grpcStatus = Number(headers["grpc-status"]);
    if (this.endpoint !== undefined) this.upstreamHost = this.endpoint.key;
    try {
      this.stream.respond(headers, { endStream, waitForTrailers });
    } catch {
      this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  }

  private local(status: number, body: string): void {
    this.rt.countResponse(status, null, null);
    this.bytesOut += body.length;
    this.respond({ ":status": status, ...(body ? { "content-type": "text/plain" } : {}) }, body === "");
    if (body !== "" && !this.stream.destroyed) this.stream.end(body);
    this.finish(false);
  }

  /** Adds this proxy's metadata header on the side of the hop where it belongs. */
  private addOwnPeer(h: http2.OutgoingHttpHeaders, when: "source" | "destination"): void {
    const own = this.rt.telemetry.ownPeerHeader;
    // On responses, only to a peer that sent its own (a mesh proxy), as Istio's metadata exchange.
    if (own !== "" && this.rt.reporter === when && (when === "source" || this.peer !== undefined))
      h[PEER_METADATA_HEADER] = own;
  }

  /** x-forwarded-client-cert for the upstream, when the chain sets it and the peer's certificate verified. */
  private clientCertDetails(): string | undefined {
    if (!this.rt.setClientCert) return undefined;
    const socket = this.stream.session?.socket;
    return socket ? clientCertDetailsOf(socket) : undefined;
  }

  private notePeer(v: unknown): void {
    if (this.rt.telemetry.sink !== undefined && this.rt.reporter === "source" && typeof v === "string")
      this.peer = this.rt.telemetry.decodePeer(v);
  }

  private addFlag(flag: ResponseFlag): void {
    this.rt.flagCounter(flag).inc();
    this.flags = this.flags === "" ? flag : `${this.flags},${flag}`;
  }

  /** Hands the finished request to the telemetry sink. */
  private report(): void {
    const sink = this.rt.telemetry.sink!;
    const authority = this.authority;
    const socket = this.stream.session?.socket;
    if (!this.responded && this.status === 0) this.addFlag(ResponseFlag.DownstreamConnectionTermination);
    const trace = this.trace;
    const record: HttpRequestRecord = {
      startTimeMs: performance.timeOrigin + this.startedAt,
      durationMs: performance.now() - this.startedAt,
      method: this.method,
      path: this.path,
      authority,
      protocol: "HTTP/2",
      responseCode: this.status,
      responseFlags: formatFlags(this.flags),
      grpcStatus: this.grpcStatus,
      bytesReceived: this.bytesIn,
      bytesSent: this.bytesOut,
      upstreamHost: this.upstreamHost,
      upstreamCluster: this.wc?.name ?? "",
      retries: this.attempts > 1 ? this.attempts - 1 : 0,
      routeName: this.route?.name ?? "",
      downstreamRemoteAddress: `${socket?.remoteAddress ?? ""}:${socket?.remotePort ?? 0}`,
      requestId: trace?.requestId ?? headerOf(this.flat, "x-request-id") ?? "",
      traceId: trace?.traceId ?? "",
      userAgent: headerOf(this.flat, "user-agent") ?? "",
      connectionSecurityPolicy:
        (socket as { authorized?: boolean } | undefined)?.authorized === true ? "mutual_tls" : "none",
      reporter: this.rt.reporter,
      peer: this.peer,
      destinationService: destinationServiceOf(this.route?.virtualHost),
    };
    sink.onHttpRequest(record);
    if (trace !== undefined) this.rt.telemetry.tracer?.end(trace, record);
  }

  private flag(flag: ResponseFlag, detail: string): void {
    this.addFlag(flag);
    const { status, body } = replyForFlag(flag, detail);
    this.local(status, body);
  }

  private upstreamFailed(flag: ResponseFlag, detail: string): void {
    if (this.responded) return;
    if (this.endpoint) this.cluster?.outlier?.report(this.endpoint, 503);
    this.addFlag(flag);
    const { status, body } = replyForFlag(flag, detail);
    this.local(status, body);
  }

  private finish(ok: boolean): void {
    if (this.done) return;
    this.done = true;
    if (this.rt.telemetry.sink !== undefined) this.report();
    this.clearTryTimer();
    if (this.routeTimer !== undefined) clearTimeout(this.routeTimer);
    if (this.faultTimer !== undefined) clearTimeout(this.faultTimer);
    if (this.backoffTimer !== undefined) {
      clearTimeout(this.backoffTimer);
      this.cluster!.activeRetries--;
    }
    const c = this.cluster;
    const ep = this.endpoint;
    if (c && ep) {
      c.limits.active.value--;
      ep.activeRequests--;
      // Successes are counted with the response status (countResponse); failures without one here.
      if (!ok) ep.rqError++;
    }
  }

  private onDownstreamClose(): void {
    if (this.upstream) {
      this.upstream.abort();
      this.upstream = undefined;
    }
    this.finish(false);
  }
}

function flatOf(h: http2.IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(h)) {
    if (k.charCodeAt(0) === 0x3a || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

function copyHeaders(
  flat: readonly string[],
  out: http2.OutgoingHttpHeaders,
  remove: readonly string[],
): void {
  for (let i = 0; i < flat.length; i += 2) {
    const n = flat[i]!;
    if (CONNECTION_SPECIFIC.has(n) || remove.includes(n)) continue;
    if (n === "te" && flat[i + 1] !== "trailers") continue;
    addHeader(out, n, flat[i + 1]!, true);
  }
}

function addHeader(out: http2.OutgoingHttpHeaders, name: string, value: string, append: boolean): void {
  const prev = out[name];
  if (!append || prev === undefined) out[name] = value;
  else out[name] = Array.isArray(prev) ? [...prev, value] : [String(prev), value];
}

function headerOf(flat: readonly string[], name: string): string | undefined {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return flat[i + 1];
  return undefined;
}
