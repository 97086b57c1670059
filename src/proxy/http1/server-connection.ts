// One downstream HTTP/1.1 connection: parses requests strictly, routes them, forwards them to an upstream
// connection with backpressure both ways, and writes responses back. It serves one request at a time (bytes of
// a pipelined next request wait in the buffer) and is itself the pool waiter and the response handler of its
// current request, so a request allocates no closures or promises.
import net from "node:net";
import type tls from "node:tls";
import { type CompiledCors, isPreflight } from "../filters/cors.ts";
import type { CompiledFault } from "../filters/fault.ts";
import type { SecurityVerdict } from "../filters/rbac-http.ts";
import { http2Module } from "../http2/lazy.ts";
import { holdUntilEndOfTurn } from "../io/end-of-turn-flush.ts";
import { tlsModule } from "../lazy-modules.ts";
import type { HashInput } from "../lb/hash-policy.ts";
import type { HttpRuntime } from "../listener/http-runtime.ts";
import { chooseRetryEndpoint, chooseUpstream, requestHashInput } from "../router/choose-upstream.ts";
import { redirectLocation } from "../router/redirect.ts";
import {
  type AttemptFailure,
  FAIL_CONNECT,
  FAIL_PER_TRY_TIMEOUT,
  FAIL_RESET,
} from "../router/retry-policy.ts";
import { type CompiledRoute, type CompiledWeightedCluster, pickCluster } from "../router/route-table.ts";
import { clientCertDetailsOf, peerWithPrincipal, XFCC_HEADER } from "../secrets/peer-identity.ts";
import { destinationServiceOf, type HttpRequestRecord, type PeerInfo } from "../telemetry/request-record.ts";
import { PEER_METADATA_HEADER } from "../telemetry/telemetry-slot.ts";
import type { TraceHandle } from "../telemetry/trace/request-tracer.ts";
import { TRACE_HEADERS } from "../telemetry/trace/trace-headers.ts";
import { type Cluster, type Endpoint, retryAllowed } from "../upstream/cluster.ts";
import type { UpstreamExchange } from "../upstream/exchange.ts";
import type { ResponseHandler } from "../upstream/http1-connection.ts";
import type { Http1Pool, PoolWaiter } from "../upstream/http1-pool.ts";
import { MirrorRequest } from "../upstream/mirror.ts";
import { formatFlags, ResponseFlag } from "../upstream/response-flags.ts";
import { watchUpstreamTls } from "../upstream/tls-failure.ts";
import { ChunkedDecoder } from "./chunked.ts";
import { parseRequestHead, type RequestHead, type ResponseHead } from "./head-parser.ts";
import { serializeHeaders } from "./headers.ts";
import { localReplyBytes, replyForFlag, statusText } from "./local-reply.ts";

const HEAD = 0;
const WAIT_POOL = 1;
const FORWARD = 2;
const TUNNEL = 3;
const CLOSED = 4;

export class Http1ServerConnection implements PoolWaiter, ResponseHandler {
  readonly socket: net.Socket;
  private readonly rt: HttpRuntime;
  private buf: Buffer | null = null;
  private state = HEAD;
  /** When the current head started arriving (ms), 0 when no partial head is buffered. */
  headStartedAt = 0;
  lastActivity = Date.now();

  // The request in flight.
  private req: RequestHead | null = null;
  private route: CompiledRoute | null = null;
  private wc: CompiledWeightedCluster | null = null;
  private cluster: Cluster | null = null;
  private endpoint: Endpoint | null = null;
  private pool: Http1Pool | null = null;
  private upstream: UpstreamExchange | null = null;
  private path = "";
  private authority = "";
  private bodyRemaining = 0;
  private bodyDecoder: ChunkedDecoder | null = null;
  private requestBodyDone = false;
  private responseStarted = false;
  private keepAlive = true;
  /** HTTP/1.0 client, chunked upstream: the body is decoded and the connection closed at its end. */
  private dechunk: ChunkedDecoder | null = null;
  // Resilience of the request in flight: attempts made, endpoints tried, the body kept for a retry (null when
  // it outgrew RETRY_BUFFER_BYTES and cannot be replayed), and the timers (none unless the route sets them).
  private attempts = 0;
  private tried: Endpoint[] | null = null;
  private replay: Buffer[] | null = null;
  private replayBytes = 0;
  private retrying = false;
  private routeTimer: NodeJS.Timeout | null = null;
  private tryTimer: NodeJS.Timeout | null = null;
  private backoffTimer: NodeJS.Timeout | null = null;
  private readonly onRouteTimeout: () => void;
  private readonly onTryTimeout: () => void;
  private readonly onBackoffDone: () => void;
  private faultTimer: NodeJS.Timeout | null = null;
  private readonly onFaultDelayDone: () => void;
  /** CORS header lines for the response, "" when the request is not from an allowed origin. */
  private corsHeaders = "";
  // Telemetry of the request in flight (kept only when a sink is configured).
  private startedAt = 0;
  private flags = "";
  private status = 0;
  private grpcStatus: number | undefined = undefined;
  private bytesIn = 0;
  private bytesOut = 0;
  private upstreamHost = "";
  private peer: PeerInfo | undefined = undefined;
  private trace: TraceHandle | null = null;
  /** Mirrored copies of the request in flight (null almost always). */
  private mirrors: MirrorRequest[] | null = null;
  private readonly writeDecoded: (buf: Buffer, from: number, to: number) => void;
  private readonly onUpstreamDrain: () => void;

  constructor(socket: net.Socket, rt: HttpRuntime) {
    this.socket = socket;
    this.rt = rt;
    rt.connections.add(this);
    rt.stats.cxTotal.inc();
    rt.stats.cxActive.value++;
    socket.setNoDelay(true);
    this.writeDecoded = (buf, from, to) => {
      this.socket.write(buf.subarray(from, to));
    };
    this.onUpstreamDrain = () => this.socket.resume();
    this.onRouteTimeout = () => this.routeTimedOut();
    this.onTryTimeout = () => this.tryTimedOut();
    this.onBackoffDone = () => this.retryNow();
    this.onFaultDelayDone = () => this.faultDelayDone();
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.upstream?.resume());
    socket.on("error", () => this.onClose());
    socket.on("close", () => this.onClose());
  }

  /** Bytes held for a request head or pipelined requests. */
  get buffered(): number {
    return this.buf === null ? 0 : this.buf.length;
  }

  get idle(): boolean {
    return this.state === HEAD && this.buf === null;
  }

  private onData(chunk: Buffer): void {
    this.lastActivity = Date.now();
    if (this.state === CLOSED) return;
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.process();
  }

  private process(): void {
    while (this.state === HEAD && this.buf !== null) {
      const r = parseRequestHead(this.buf, 0, this.rt.limits);
      if (r.kind === "incomplete") {
        if (this.headStartedAt === 0) this.headStartedAt = Date.now();
        return;
      }
      this.headStartedAt = 0;
      if (r.kind === "error") {
        this.rt.stats.protocolErrors.inc();
        this.replyAndClose(r.status, r.reason);
        return;
      }
      const head = r.head;
      this.buf = head.headBytes === this.buf.length ? null : this.buf.subarray(head.headBytes);
      this.startRequest(head);
    }
    if (this.state === FORWARD && !this.requestBodyDone) this.forwardBody();
    // Pipelined requests wait; a client that keeps sending meanwhile is paused, not buffered without bound.
    if (this.state !== HEAD && this.buf !== null && this.buf.length > this.rt.limits.maxHeadBytes)
      this.socket.pause();
  }

  private startRequest(head: RequestHead): void {
    this.req = head;
    if (this.rt.telemetry.sink !== undefined) {
      this.startedAt = performance.now();
      this.flags = "";
      this.status = 0;
      this.grpcStatus = undefined;
      this.bytesIn = 0;
      this.bytesOut = 0;
      this.upstreamHost = "";
      this.peer =
        this.rt.reporter === "destination"
          ? peerWithPrincipal(this.peerFrom(head.headers), this.socket)
          : undefined;
      const tracer = this.rt.telemetry.tracer;
      this.trace = tracer !== undefined ? tracer.begin(head.headers) : null;
    }
    this.rt.stats.rqTotal.inc();
    this.requestBodyDone = false;
    this.responseStarted = false;
    this.dechunk = null;
    this.keepAlive = !head.close && !this.rt.draining;
    let target = head.target;
    let authority = head.host ?? "";
    if (head.method === "CONNECT") {
      this.connect(head);
      return;
    }
    if (target.charCodeAt(0) !== 0x2f /* "/" */) {
      // absolute-form: http://authority/path (RFC 9112 3.2.2; what HTTP_PROXY clients send)
      const abs = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/.exec(target);
      if (abs) {
        authority = abs[2]!;
        target = abs[3] || "/";
      } else if (!(target === "*" && head.method === "OPTIONS")) {
        this.replyAndClose(400, "invalid request target");
        return;
      }
    }
    this.authority = authority.toLowerCase();
    this.path = target;
    const security = this.rt.security;
    if (security !== undefined) {
      const v = security.check({
        method: head.method,
        authority: this.authority,
        path: target,
        headers: head.headers,
        socket: this.socket,
      });
      if (v instanceof Promise) {
        // The body waits in the buffer (WAIT_POOL forwards nothing) until the filters decide.
        this.state = WAIT_POOL;
        this.socket.pause();
        v.then(
          (r) => this.securityDone(head, target, r),
          () => this.securityDone(head, target, { status: 500, body: "", headers: [] }),
        );
        return;
      }
      if (v !== null) {
        this.securityDenied(v);
        return;
      }
    }
    this.routeRequest(head, target);
  }

  private securityDone(head: RequestHead, target: string, v: SecurityVerdict): void {
    if (this.state !== WAIT_POOL || this.req !== head) return;
    this.socket.resume();
    if (v !== null) this.securityDenied(v);
    else this.routeRequest(head, target);
  }

  private securityDenied(v: NonNullable<SecurityVerdict>): void {
    let extra = "";
    for (let i = 0; i < v.headers.length; i += 2) extra += `${v.headers[i]}: ${v.headers[i + 1]}\r\n`;
    this.local(v.status, v.body, extra);
  }

  /** After the security filters: the chain's rate limit, routing and the route's filters. */
  private routeRequest(head: RequestHead, target: string): void {
    const limit = this.rt.rateLimit;
    if (limit !== undefined && !limit.take(Date.now())) {
      this.localFlag(ResponseFlag.RateLimited, "");
      return;
    }
    const table = this.rt.routeTable;
    const route = table?.route({
      method: head.method,
      authority: this.authority,
      path: target,
      scheme: this.rt.scheme,
      headers: head.headers,
    });
    if (!route) {
      this.localFlag(ResponseFlag.NoRouteFound, "");
      return;
    }
    this.route = route;
    if (route.rateLimit !== undefined && !route.rateLimit.take(Date.now())) {
      this.localFlag(ResponseFlag.RateLimited, "");
      return;
    }
    if (route.cors !== undefined && this.applyCors(route.cors, head)) return;
    const fault = route.fault;
    if (fault !== undefined) {
      const delay = fault.delay(Math.random());
      if (delay > 0) {
        // Body bytes wait in the buffer meanwhile (WAIT_POOL does not forward), the socket paused.
        this.addFlag(ResponseFlag.DelayInjected);
        this.state = WAIT_POOL;
        this.socket.pause();
        this.faultTimer = setTimeout(this.onFaultDelayDone, delay);
        return;
      }
      if (fault.aborts(Math.random())) {
        this.faultAbort(fault);
        return;
      }
    }
    this.routeTo(route, head);
  }

  /** The router's part: a direct response, a redirect, or the upstream. */
  private routeTo(route: CompiledRoute, head: RequestHead): void {
    if (route.directResponse) {
      this.local(
        route.directResponse.status,
        route.directResponse.body ?? "",
        this.responseOps(route) + this.corsHeaders,
      );
      return;
    }
    if (route.redirect) {
      this.redirect(route);
      return;
    }
    const choice = chooseUpstream(route, this.rt.clusters, this, this.authority);
    if (typeof choice === "string") {
      this.localFlag(choice, "");
      return;
    }
    const cluster = choice.cluster;
    const ep = choice.endpoint;
    this.wc = choice.wc;
    this.cluster = cluster;
    this.endpoint = ep;
    if (head.chunked) this.bodyDecoder = new ChunkedDecoder();
    else this.bodyRemaining = Math.max(head.contentLength, 0);
    this.attempts = 1;
    this.replayBytes = 0;
    this.replay = route.retry.numRetries > 0 && (head.chunked || head.contentLength > 0) ? [] : null;
    if (route.timeoutMs > 0) this.routeTimer = setTimeout(this.onRouteTimeout, route.timeoutMs);
    // Envoy answers 100-continue itself, so the client starts sending while the upstream is reached.
    if (head.expectContinue && head.minor === 1) this.socket.write("HTTP/1.1 100 Continue\r\n\r\n");
    this.state = WAIT_POOL;
    if (cluster.h2) {
      this.onPoolReady(new (http2Module().Http2UpstreamExchange)(cluster.h2, ep));
      return;
    }
    this.pool = cluster.pool(ep);
    this.pool.acquire(this);
    // Usually an idle connection was ready and the request is already on its way; otherwise stop reading
    // until one is (the body must not pile up here).
    if (this.state === WAIT_POOL) this.socket.pause();
  }

  private faultDelayDone(): void {
    this.faultTimer = null;
    const route = this.route;
    const req = this.req;
    if (route === null || req === null || this.state !== WAIT_POOL) return;
    this.socket.resume();
    if (route.fault!.aborts(Math.random())) this.faultAbort(route.fault!);
    else this.routeTo(route, req);
  }

  /** The fault filter's abort: the configured status, or for gRPC a trailers-only response with its status. */
  private faultAbort(fault: CompiledFault): void {
    this.addFlag(ResponseFlag.FaultInjected);
    const grpc = fault.abortGrpcStatus;
    if (grpc !== undefined)
      this.local(
        200,
        "",
        `content-type: application/grpc\r\ngrpc-status: ${grpc}\r\ngrpc-message: fault filter abort\r\n`,
      );
    else this.local(fault.abortStatus, "fault filter abort", this.corsHeaders);
  }

  /** CORS: answers an allowed preflight (true), or notes the headers the response will carry. */
  private applyCors(cors: CompiledCors, head: RequestHead): boolean {
    let origin: string | undefined;
    const h = head.headers;
    for (let i = 0; i < h.length; i += 2)
      if (h[i] === "origin") {
        origin = h[i + 1];
        break;
      }
    if (origin === undefined || !cors.allows(origin)) return false;
    if (isPreflight(head.method, h)) {
      this.local(200, "", cors.preflightHeaders(origin));
      return true;
    }
    this.corsHeaders = cors.responseHeaders(origin);
    return false;
  }

  /** Starts the route's mirrors (each for its share of requests); their body follows in forwardBody. */
  private startMirrors(route: CompiledRoute, method: string, head: string, host: string): void {
    for (const m of route.mirrors) {
      if (m.fraction < 1 && Math.random() >= m.fraction) continue;
      const cluster = this.rt.clusters.get(m.cluster);
      if (cluster === undefined) continue;
      const mirror = new MirrorRequest(cluster, method, head, host);
      if (!mirror.start()) continue;
      if (this.mirrors === null) this.mirrors = [mirror];
      else this.mirrors.push(mirror);
      const req = this.req!;
      if (!req.chunked && this.bodyRemaining === 0 && req.upgrade === null) mirror.end();
    }
  }

  hashInput(): HashInput {
    return requestHashInput(this.req!.headers, this.path, this.socket.remoteAddress ?? "");
  }

  // ---------------------------------------------------------------------------------------- PoolWaiter

  onPoolReady(conn: UpstreamExchange): void {
    if (this.state !== WAIT_POOL) {
      // The downstream went away while we waited; the connection goes back unused.
      conn.release();
      return;
    }
    this.upstream = conn;
    const req = this.req!;
    const wc = this.wc!;
    const route = this.route!;
    conn.begin(this, req.method, false);
    conn.handlerDrain = this.onUpstreamDrain;
    const path = route.rewritePath
      ? route.rewritePath(this.path, pathOnly(this.path), queryOf(this.path))
      : this.path;
    const host = route.action?.hostRewrite ?? (this.authority || this.endpoint!.key);
    let head = `${req.method} ${path} HTTP/1.1\r\nhost: ${host}\r\n`;
    const trace = this.trace;
    head +=
      trace === null
        ? serializeHeaders(
            req.headers,
            req.connectionTokens,
            wc.requestHeadersToRemove,
            wc.requestHeadersToAdd,
          )
        : serializeHeaders(
            req.headers,
            req.connectionTokens,
            [...wc.requestHeadersToRemove, ...TRACE_HEADERS],
            [...wc.requestHeadersToAdd, ...trace.upstreamHeaders],
          );
    if (req.upgrade !== null) head += `connection: upgrade\r\nupgrade: ${req.upgrade}\r\n`;
    if (req.chunked) head += "transfer-encoding: chunked\r\n";
    head += `x-forwarded-proto: ${this.rt.scheme}\r\n`;
    if (this.rt.setClientCert) {
      const xfcc = clientCertDetailsOf(this.socket);
      if (xfcc !== undefined) head += `${XFCC_HEADER}: ${xfcc}\r\n`;
    }
    const own = this.rt.telemetry.ownPeerHeader;
    if (own !== "" && this.rt.reporter === "source") head += `${PEER_METADATA_HEADER}: ${own}\r\n`;
    head += "\r\n";
    conn.write(head);
    if (this.attempts === 1 && route.mirrors.length > 0) this.startMirrors(route, req.method, head, host);
    this.state = FORWARD;
    if (route.retry.perTryTimeoutMs > 0)
      this.tryTimer = setTimeout(this.onTryTimeout, route.retry.perTryTimeoutMs);
    if (this.attempts > 1 && this.replay !== null) for (const b of this.replay) conn.write(b);
    if (this.requestBodyDone) {
      conn.endRequest();
    } else if (!req.chunked && this.bodyRemaining === 0) {
      this.requestBodyDone = true;
      conn.endRequest();
    } else if (this.buf !== null) {
      this.forwardBody();
    }
    if (this.state === FORWARD && this.socket.isPaused()) this.socket.resume();
  }

  onPoolFailure(flag: ResponseFlag, detail: string): void {
    if (this.state !== WAIT_POOL) return;
    if (flag === ResponseFlag.UpstreamConnectionFailure) {
      this.cluster?.stats.cxConnectFail.inc();
      if (this.endpoint) this.endpoint.cxConnectFail++;
    }
    this.socket.resume();
    if (flag === ResponseFlag.UpstreamConnectionFailure) this.attemptFailed(FAIL_CONNECT, flag, detail);
    else this.upstreamFailed(flag, detail);
  }

  private forwardBody(): void {
    const up = this.upstream!;
    const buf = this.buf;
    if (buf === null) return;
    let n: number;
    if (this.bodyDecoder !== null) {
      const stop = this.bodyDecoder.feed(buf, 0, buf.length);
      if (stop === -1) {
        this.rt.stats.protocolErrors.inc();
        up.abort();
        this.upstream = null;
        this.finishUpstreamAccounting(false);
        this.replyAndClose(400, `invalid chunked body: ${this.bodyDecoder.error}`);
        return;
      }
      n = stop;
      if (this.bodyDecoder.done) this.requestBodyDone = true;
    } else {
      n = Math.min(this.bodyRemaining, buf.length);
      this.bodyRemaining -= n;
      if (this.bodyRemaining === 0) this.requestBodyDone = true;
    }
    const part = n === buf.length ? buf : buf.subarray(0, n);
    if (this.replay !== null) {
      this.replayBytes += part.length;
      if (this.replayBytes > RETRY_BUFFER_BYTES) this.replay = null;
      else this.replay.push(part);
    }
    this.bytesIn += part.length;
    if (this.mirrors !== null) for (const m of this.mirrors) m.write(part);
    const ok = up.write(part);
    this.buf = n === buf.length ? null : buf.subarray(n);
    if (this.requestBodyDone) {
      this.bodyDecoder = null;
      if (this.mirrors !== null) for (const m of this.mirrors) m.end();
      up.endRequest();
    } else if (!ok) {
      this.socket.pause();
    }
  }

  // ----------------------------------------------------------------------------------- ResponseHandler

  onResponseHead(head: ResponseHead): void {
    const req = this.req!;
    const wc = this.wc!;
    this.clearTryTimer();
    if (this.endpoint !== null) this.cluster!.outlier?.report(this.endpoint, head.status);
    const retry = this.route!.retry;
    if (retry.numRetries > 0 && retry.retriableResponse(head.status, grpcStatusOf(head.headers))) {
      if (this.retry()) {
        // Not the response the client gets: that connection is dropped (its body is not wanted).
        const up = this.upstream;
        this.upstream = null;
        up?.abort();
        return;
      }
      this.addRetryLimitFlag();
    }
    this.responseStarted = true;
    if (this.rt.telemetry.sink !== undefined) {
      this.upstreamHost = this.endpoint?.key ?? "";
      this.grpcStatus = grpcStatusOf(head.headers);
      if (this.rt.reporter === "source") this.peer = this.peerFrom(head.headers);
    }
    const untilClose = !head.chunked && head.contentLength < 0 && hasBody(req.method, head.status);
    if (untilClose) this.keepAlive = false;
    if (head.chunked && req.minor === 0) {
      this.dechunk = new ChunkedDecoder();
      this.keepAlive = false;
    }
    let out = `HTTP/1.1 ${head.status} ${head.reason || statusText(head.status)}\r\n`;
    out += serializeHeaders(
      head.headers,
      head.connectionTokens,
      wc.responseHeadersToRemove,
      wc.responseHeadersToAdd,
    );
    if (head.chunked && this.dechunk === null) out += "transfer-encoding: chunked\r\n";
    if (this.corsHeaders !== "") out += this.corsHeaders;
    const own = this.rt.telemetry.ownPeerHeader;
    // Only a peer that sent its metadata is a mesh proxy that reads ours (Istio's metadata exchange does the
    // same): a plain client would just get more bytes per response.
    if (own !== "" && this.rt.reporter === "destination" && this.peer !== undefined)
      out += `${PEER_METADATA_HEADER}: ${own}\r\n`;
    if (!this.keepAlive) out += "connection: close\r\n";
    // An HTTP/1.0 client takes the connection as closing unless told otherwise (RFC 9112 9.3); without this it
    // waited for a close that never came, or dropped a connection we kept.
    else if (req.minor === 0) out += "connection: keep-alive\r\n";
    out += "\r\n";
    // The head, the body bytes that came with it, and the other responses of this turn leave together.
    holdUntilEndOfTurn(this.socket);
    this.socket.write(out, "latin1");
    this.countStatus(head.status);
  }

  onResponseData(buf: Buffer, from: number, to: number): boolean {
    this.bytesOut += to - from;
    if (this.dechunk !== null) {
      this.dechunk.feed(buf, from, to, this.writeDecoded);
      return this.socket.writableNeedDrain === false;
    }
    return this.socket.write(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
  }

  onResponseEnd(): void {
    this.finishUpstreamAccounting(true);
    if (!this.requestBodyDone) {
      // The upstream answered before reading the whole body: the rest of it is still on both connections.
      this.keepAlive = false;
      this.upstream?.abort();
    }
    this.upstream = null;
    this.endExchange();
  }

  onResponseError(flag: ResponseFlag, detail: string, headSent: boolean): void {
    this.upstream = null;
    if (headSent || this.responseStarted) {
      this.finishUpstreamAccounting(false);
      this.socket.destroy();
      return;
    }
    this.attemptFailed(FAIL_RESET, flag, detail);
  }

  // ------------------------------------------------------------------------------- retries and timeouts

  /** An attempt ended without a response: retry when the policy and the budget allow, else answer. */
  private attemptFailed(kind: AttemptFailure, flag: ResponseFlag, detail: string): void {
    this.clearTryTimer();
    // A failure without a response counts against the endpoint as a 503 (a timeout as a 504), as in Envoy.
    if (this.endpoint !== null)
      this.cluster!.outlier?.report(this.endpoint, kind === FAIL_PER_TRY_TIMEOUT ? 504 : 503);
    const retry = this.route!.retry;
    if (retry.numRetries > 0 && retry.retriableFailure(kind)) {
      if (this.retry()) return;
      this.addRetryLimitFlag();
    }
    this.upstreamFailed(flag, detail);
  }

  /**
   * Schedules another attempt after the backoff, if one is left, the body can be replayed and the cluster's
   * retry budget allows. The failed attempt's accounting is closed here.
   */
  private retry(): boolean {
    const route = this.route!;
    const cluster = this.cluster!;
    if (this.attempts > route.retry.numRetries) return false;
    const req = this.req!;
    if ((req.chunked || req.contentLength > 0) && this.replay === null) return false;
    if (!retryAllowed(cluster)) {
      cluster.stats.retryOverflow.inc();
      return false;
    }
    const ep = this.endpoint;
    if (ep !== null) {
      if (this.tried === null) this.tried = [ep];
      else this.tried.push(ep);
    }
    this.finishUpstreamAccounting(false);
    this.pool = null;
    this.attempts++;
    cluster.stats.retry.inc();
    cluster.activeRetries++;
    this.retrying = true;
    // Body bytes that arrive meanwhile stay in the buffer until the next attempt has a connection.
    this.state = WAIT_POOL;
    this.socket.pause();
    this.backoffTimer = setTimeout(
      this.onBackoffDone,
      route.retry.backoffMs(this.attempts - 1, Math.random()),
    );
    return true;
  }

  private retryNow(): void {
    this.backoffTimer = null;
    this.endRetry();
    if (this.state !== WAIT_POOL) return;
    const cluster = this.cluster!;
    const ep = chooseRetryEndpoint(this.route!, cluster, this, this.tried ?? [], this.authority);
    if (typeof ep === "string") {
      this.socket.resume();
      this.localFlag(ep, "");
      return;
    }
    this.endpoint = ep;
    if (cluster.h2) {
      this.onPoolReady(new (http2Module().Http2UpstreamExchange)(cluster.h2, ep));
      return;
    }
    this.pool = cluster.pool(ep);
    this.pool.acquire(this);
  }

  private endRetry(): void {
    if (!this.retrying) return;
    this.retrying = false;
    this.cluster!.activeRetries--;
  }

  private addRetryLimitFlag(): void {
    if (this.attempts > 1 || this.route!.retry.numRetries > 0) {
      this.cluster?.stats.retryLimitExceeded.inc();
      this.addFlag(ResponseFlag.UpstreamRetryLimitExceeded);
    }
  }

  private tryTimedOut(): void {
    this.tryTimer = null;
    this.cluster?.stats.perTryTimeout.inc();
    const up = this.upstream;
    this.upstream = null;
    up?.abort();
    if (this.state === WAIT_POOL && this.pool !== null) this.pool.cancel(this);
    this.attemptFailed(FAIL_PER_TRY_TIMEOUT, ResponseFlag.UpstreamRequestTimeout, "");
  }

  private routeTimedOut(): void {
    this.routeTimer = null;
    this.cluster?.stats.timeout.inc();
    if (this.responseStarted) {
      // Part of the response is out: the client can only learn of the timeout by a reset.
      this.socket.destroy();
      return;
    }
    if (this.endpoint !== null && this.upstream !== null) this.cluster!.outlier?.report(this.endpoint, 504);
    const up = this.upstream;
    this.upstream = null;
    up?.abort();
    if (this.state === WAIT_POOL && this.pool !== null) this.pool.cancel(this);
    this.clearTryTimer();
    if (this.backoffTimer !== null) {
      clearTimeout(this.backoffTimer);
      this.backoffTimer = null;
      this.endRetry();
    }
    this.socket.resume();
    this.upstreamFailed(ResponseFlag.UpstreamRequestTimeout, "");
  }

  private clearTryTimer(): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
  }

  private clearTimers(): void {
    this.clearTryTimer();
    if (this.faultTimer !== null) {
      clearTimeout(this.faultTimer);
      this.faultTimer = null;
    }
    if (this.routeTimer !== null) {
      clearTimeout(this.routeTimer);
      this.routeTimer = null;
    }
    if (this.backoffTimer !== null) {
      clearTimeout(this.backoffTimer);
      this.backoffTimer = null;
    }
    this.endRetry();
  }

  onUpgrade(head: ResponseHead, upSocket: net.Socket, rest: Buffer): void {
    this.finishUpstreamAccounting(true);
    this.upstream = null;
    const wc = this.wc!;
    let out = `HTTP/1.1 101 ${head.reason || "Switching Protocols"}\r\n`;
    out += serializeHeaders(
      head.headers,
      head.connectionTokens,
      wc.responseHeadersToRemove,
      wc.responseHeadersToAdd,
    );
    out += `connection: upgrade\r\nupgrade: ${head.upgrade ?? this.req?.upgrade ?? ""}\r\n\r\n`;
    this.countStatus(101);
    this.socket.write(out, "latin1");
    this.tunnel(upSocket, rest);
  }

  // ------------------------------------------------------------------------------------------ helpers

  /** Joins the downstream socket and an upstream socket byte for byte (WebSocket, CONNECT). */
  private tunnel(upSocket: net.Socket, rest: Buffer): void {
    this.state = TUNNEL;
    const down = this.socket;
    down.removeAllListeners("data");
    down.removeAllListeners("drain");
    if (rest.length > 0) down.write(rest);
    if (this.buf !== null) {
      upSocket.write(this.buf);
      this.buf = null;
    }
    upSocket.on("error", () => down.destroy());
    upSocket.on("close", () => down.destroy());
    down.on("close", () => upSocket.destroy());
    down.pipe(upSocket);
    upSocket.pipe(down);
    down.resume();
    upSocket.resume();
  }

  /** CONNECT authority: a TCP tunnel to the cluster the authority routes to (HTTP_PROXY mode). */
  private connect(head: RequestHead): void {
    const authority = head.target.toLowerCase();
    this.authority = authority;
    const route =
      this.rt.mode === "http_proxy"
        ? this.rt.routeTable?.route({
            method: "CONNECT",
            authority,
            path: "/",
            scheme: this.rt.scheme,
            headers: head.headers,
          })
        : undefined;
    const wc = route ? pickCluster(route, Math.random()) : undefined;
    const cluster = wc ? this.rt.clusters.get(wc.name) : undefined;
    if (!route || !wc || !cluster) {
      this.keepAlive = false;
      this.localFlag(route ? ResponseFlag.NoClusterFound : ResponseFlag.NoRouteFound, "");
      return;
    }
    const ep =
      cluster.config.type === "original_dst"
        ? cluster.originalDestination(authority)
        : (cluster.lb.pick({}) as Endpoint | undefined);
    if (!ep) {
      this.keepAlive = false;
      this.localFlag(ResponseFlag.NoHealthyUpstream, "");
      return;
    }
    this.state = WAIT_POOL;
    this.socket.pause();
    // Mutual TLS to the peer's sidecar when the cluster's transport socket for this endpoint says so.
    const tlsOptions = cluster.tlsFor(ep);
    const up = tlsOptions
      ? tlsModule().connect({ ...tlsOptions, host: ep.address, port: ep.port })
      : net.connect({ host: ep.address, port: ep.port, noDelay: true });
    if (tlsOptions) watchUpstreamTls(up as tls.TLSSocket, this.rt.clusters.store, cluster.name, ep.key);
    up.setTimeout(cluster.config.connectTimeoutMs ?? 10_000, () => up.destroy(new Error("connect timeout")));
    up.once(tlsOptions ? "secureConnect" : "connect", () => {
      up.setTimeout(0);
      this.countStatus(200);
      this.socket.write("HTTP/1.1 200 Connection established\r\n\r\n");
      this.tunnel(up, Buffer.alloc(0));
    });
    up.once("error", (err) => {
      if (this.state !== WAIT_POOL) return;
      this.socket.resume();
      this.keepAlive = false;
      this.localFlag(ResponseFlag.UpstreamConnectionFailure, err.message);
    });
  }

  private redirect(route: CompiledRoute): void {
    const location = redirectLocation(route, this.authority, this.path, this.rt.scheme);
    this.local(
      route.redirect!.responseCode ?? 301,
      "",
      `${this.responseOps(route)}location: ${location}\r\n`,
    );
  }

  private responseOps(route: CompiledRoute): string {
    let out = "";
    for (const h of route.responseHeadersToAdd) out += `${h.name}: ${h.value}\r\n`;
    return out;
  }

  private localFlag(flag: ResponseFlag, detail: string): void {
    const { status, body } = replyForFlag(flag, detail);
    this.addFlag(flag);
    this.local(status, body, "");
  }

  private upstreamFailed(flag: ResponseFlag, detail: string): void {
    this.finishUpstreamAccounting(false);
    const { status, body } = replyForFlag(flag, detail);
    this.addFlag(flag);
    // The request body may be half read: the connection cannot carry another request. Only when there is a
    // body: requestBodyDone is set when forwarding starts, so a GET that failed before (connect refused or
    // timed out, pending overflow) used to have its keep-alive connection closed along with the 503.
    const req = this.req;
    if (!this.requestBodyDone && req !== null && (req.chunked || req.contentLength > 0))
      this.keepAlive = false;
    this.local(status, body, "");
  }

  /** A response made by the proxy; ends the exchange. */
  private local(status: number, body: string, extraHeaders: string): void {
    const req = this.req;
    // A body we did not read (no route, direct response) would be parsed as the next request.
    if (req && (req.chunked || req.contentLength > 0) && !this.requestBodyDone && this.upstream === null)
      this.keepAlive = false;
    this.countStatus(status);
    if (req?.method !== "HEAD") this.bytesOut += body.length;
    // As for proxied responses: an HTTP/1.0 client must be told its connection persists.
    const keepAlive10 = this.keepAlive && req?.minor === 0 ? "connection: keep-alive\r\n" : "";
    this.socket.write(
      localReplyBytes(
        status,
        req?.method === "HEAD" ? "" : body,
        !this.keepAlive,
        extraHeaders + keepAlive10,
      ),
      "latin1",
    );
    this.endExchange();
  }

  private replyAndClose(status: number, reason: string): void {
    this.keepAlive = false;
    this.countStatus(status);
    this.socket.end(localReplyBytes(status, reason, true), "latin1");
    this.state = CLOSED;
  }

  private countStatus(status: number): void {
    this.status = status;
    this.rt.countResponse(status, this.responseStarted ? this.cluster : null, this.endpoint);
  }

  private peerFrom(headers: readonly string[]): PeerInfo | undefined {
    for (let i = 0; i < headers.length; i += 2)
      if (headers[i] === PEER_METADATA_HEADER) return this.rt.telemetry.decodePeer(headers[i + 1]!);
    return undefined;
  }

  private addFlag(flag: ResponseFlag): void {
    this.rt.flagCounter(flag).inc();
    this.flags = this.flags === "" ? flag : `${this.flags},${flag}`;
  }

  /** Hands the finished request to the telemetry sink (access log, metrics, traces). */
  private report(): void {
    const sink = this.rt.telemetry.sink;
    const req = this.req;
    if (sink === undefined || req === null) return;
    const h = req.headers;
    let requestId = "";
    let userAgent = "";
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] === "x-request-id") requestId = h[i + 1]!;
      else if (h[i] === "user-agent") userAgent = h[i + 1]!;
    }
    const authority = this.authority;
    const trace = this.trace;
    if (trace !== null) requestId = trace.requestId;
    const record: HttpRequestRecord = {
      startTimeMs: performance.timeOrigin + this.startedAt,
      durationMs: performance.now() - this.startedAt,
      method: req.method,
      path: this.path,
      authority,
      protocol: req.minor === 0 ? "HTTP/1.0" : "HTTP/1.1",
      responseCode: this.status,
      responseFlags: formatFlags(this.flags),
      grpcStatus: this.grpcStatus,
      bytesReceived: this.bytesIn,
      bytesSent: this.bytesOut,
      upstreamHost: this.upstreamHost,
      upstreamCluster: this.wc?.name ?? "",
      retries: this.attempts > 1 ? this.attempts - 1 : 0,
      routeName: this.route?.name ?? "",
      downstreamRemoteAddress: `${this.socket.remoteAddress ?? ""}:${this.socket.remotePort ?? 0}`,
      requestId,
      traceId: trace?.traceId ?? "",
      userAgent,
      connectionSecurityPolicy:
        (this.socket as { authorized?: boolean }).authorized === true ? "mutual_tls" : "none",
      reporter: this.rt.reporter,
      peer: this.peer,
      destinationService: destinationServiceOf(this.route?.virtualHost),
    };
    sink.onHttpRequest(record);
    if (trace !== null) {
      this.rt.telemetry.tracer?.end(trace, record);
      this.trace = null;
    }
  }

  private finishUpstreamAccounting(ok: boolean): void {
    const c = this.cluster;
    const ep = this.endpoint;
    if (c !== null && ep !== null) {
      c.limits.active.value--;
      ep.activeRequests--;
      if (!ok) ep.rqError++;
    }
    this.endpoint = null;
  }

  /** The exchange is over: close, or get ready for the next request on this connection. */
  private endExchange(): void {
    if (this.rt.telemetry.sink !== undefined) this.report();
    this.clearTimers();
    this.tried = null;
    this.replay = null;
    this.corsHeaders = "";
    this.mirrors = null;
    this.req = null;
    this.route = null;
    this.wc = null;
    this.cluster = null;
    this.pool = null;
    this.bodyDecoder = null;
    this.bodyRemaining = 0;
    if (!this.keepAlive) {
      this.state = CLOSED;
      this.socket.end();
      return;
    }
    this.state = HEAD;
    this.lastActivity = Date.now();
    if (this.socket.isPaused()) this.socket.resume();
    if (this.buf !== null) this.process();
  }

  /** Drain: close now if idle, otherwise after the current response. */
  drain(): void {
    this.keepAlive = false;
    if (this.idle) {
      this.state = CLOSED;
      this.socket.end();
    }
  }

  /** Called by the listener's sweep: headers too slow, or idle too long. */
  expire(reason: "headers" | "idle"): void {
    if (reason === "headers") {
      this.rt.stats.headerTimeouts.inc();
      this.replyAndClose(408, "request headers not received in time");
    } else {
      this.state = CLOSED;
      this.socket.end();
    }
  }

  private onClose(): void {
    if (!this.rt.connections.delete(this)) return;
    this.rt.stats.cxActive.value--;
    const prev = this.state;
    this.state = CLOSED;
    if (
      this.req !== null &&
      (prev === WAIT_POOL || prev === FORWARD) &&
      this.rt.telemetry.sink !== undefined
    ) {
      this.addFlag(ResponseFlag.DownstreamConnectionTermination);
      this.report();
    }
    this.clearTimers();
    if (prev === WAIT_POOL && this.pool !== null) {
      this.pool.cancel(this);
      this.finishUpstreamAccounting(false);
    }
    if (this.upstream !== null) {
      this.upstream.abort();
      this.upstream = null;
      this.finishUpstreamAccounting(false);
    }
    this.socket.destroy();
  }
}

/** Request body bytes kept so that a failed attempt can be retried (Envoy buffers up to 1 MiB per request). */
const RETRY_BUFFER_BYTES = 64 * 1024;

/** grpc-status of a response head (trailers-only gRPC responses carry it there), else undefined. */
function grpcStatusOf(headers: readonly string[]): number | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === "grpc-status") return Number(headers[i + 1]);
  return undefined;
}

function hasBody(method: string, status: number): boolean {
  return method !== "HEAD" && status >= 200 && status !== 204 && status !== 304;
}

function pathOnly(p: string): string {
  const q = p.indexOf("?");
  return q === -1 ? p : p.slice(0, q);
}

function queryOf(p: string): string {
  const q = p.indexOf("?");
  return q === -1 ? "" : p.slice(q + 1);
}
