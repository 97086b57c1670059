// One HTTP/1.1 connection to an upstream endpoint: writes a request, parses the response strictly, streams the
// body to the handler with backpressure, and returns itself to the pool when the exchange allows reuse.
import type net from "node:net";
import { ChunkedDecoder } from "../http1/chunked.ts";
import {
  DEFAULT_HEAD_LIMITS,
  parseResponseHead,
  type ResponseHead,
  responseHasBody,
} from "../http1/head-parser.ts";
import { holdUntilEndOfTurn } from "../io/end-of-turn-flush.ts";
import type { UpstreamExchange } from "./exchange.ts";
import type { Http1Pool, PoolWaiter } from "./http1-pool.ts";
import { ResponseFlag } from "./response-flags.ts";

/** The receiver of one response; the downstream side implements it. */
export interface ResponseHandler {
  onResponseHead(head: ResponseHead): void;
  /** Body bytes buf[from, to). Return false to pause the upstream until resume(). */
  onResponseData(buf: Buffer, from: number, to: number): boolean;
  onResponseEnd(): void;
  /** The exchange failed. `headSent` tells whether onResponseHead was already called. */
  onResponseError(flag: ResponseFlag, detail: string, headSent: boolean): void;
  /** 101 Switching Protocols: the socket is handed over, with bytes already read after the head. */
  onUpgrade(head: ResponseHead, socket: net.Socket, rest: Buffer): void;
}

const CONNECTING = 0;
const IDLE = 1;
const ACTIVE = 2;
const CLOSED = 3;

export class UpstreamHttp1Connection implements UpstreamExchange {
  readonly pool: Http1Pool;
  readonly socket: net.Socket;
  private waiter: PoolWaiter | null;
  private handler: ResponseHandler | null = null;
  private state = CONNECTING;
  private requests = 0;
  private method = "GET";
  private buf: Buffer | null = null;
  private head: ResponseHead | null = null;
  private remaining = 0;
  private chunked: ChunkedDecoder | null = null;
  private untilClose = false;
  private requestDone = false;
  private responseDone = false;
  private requestClose = false;
  private upgrading = false;

  constructor(pool: Http1Pool, socket: net.Socket, waiter: PoolWaiter) {
    this.pool = pool;
    this.socket = socket;
    this.waiter = waiter;
    socket.setTimeout(pool.options.connectTimeoutMs);
    socket.once(pool.options.tls ? "secureConnect" : "connect", () => this.onConnect());
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("timeout", () => this.onTimeout());
    socket.on("error", (err: Error) => this.onClose(err));
    socket.on("close", () => this.onClose(null));
    socket.on("drain", () => this.handlerDrain?.());
  }

  /** Set by the request writer to learn when a full socket buffer has drained. */
  handlerDrain: (() => void) | null = null;

  private onConnect(): void {
    // From now on the socket timeout is the idle timeout; it fires only after that long without any byte, and
    // closes the connection only if it is idle then (set once: re-arming per request costs a timer update).
    this.socket.setTimeout(this.pool.options.idleTimeoutMs);
    this.socket.setNoDelay(true);
    const w = this.waiter;
    this.waiter = null;
    this.pool.connected(this);
    this.state = ACTIVE;
    // Its waiter gave up while it was connecting (timeout, retry, downstream gone): the pool gets it.
    if (w === null) this.pool.release(this);
    else w.onPoolReady(this);
  }

  /** The waiter this connection is being opened for, until it connects or fails. */
  get pendingWaiter(): PoolWaiter | null {
    return this.waiter;
  }

  /** The waiter gave up: once connected, the connection goes to the pool instead. */
  forgetWaiter(): void {
    this.waiter = null;
  }

  private onTimeout(): void {
    if (this.state === CONNECTING) {
      // Connected but still in the TLS handshake: the peer stalled it, a TLS failure of its own.
      const detail =
        this.pool.options.tls !== undefined && !this.socket.connecting
          ? this.pool.tlsFailure(this.socket, handshakeTimeout())
          : undefined;
      this.failConnect(ResponseFlag.UpstreamConnectionFailure, detail ?? "connect timeout");
    } else if (this.state === IDLE) {
      this.destroy();
    }
  }

  private failConnect(flag: ResponseFlag, detail: string): void {
    const w = this.waiter;
    this.waiter = null;
    this.state = CLOSED;
    this.socket.destroy();
    this.pool.connected(this);
    this.pool.removed(this);
    w?.onPoolFailure(flag, detail);
  }

  /** Pool hands this connection out. */
  activate(): void {
    this.state = ACTIVE;
  }

  idleSince(): void {
    this.state = IDLE;
    this.handler = null;
    this.handlerDrain = null;
  }

  /** Starts an exchange: the caller then writes the head and body with write() and calls endRequest(). */
  begin(handler: ResponseHandler, method: string, requestClose: boolean): void {
    this.handler = handler;
    this.method = method;
    this.requests++;
    this.head = null;
    this.buf = null;
    this.chunked = null;
    this.untilClose = false;
    this.requestDone = false;
    this.responseDone = false;
    this.upgrading = false;
    this.requestClose = requestClose || this.requests >= this.pool.options.maxRequestsPerConnection;
  }

  write(data: string | Buffer): boolean {
    // The request leaves with the other writes of this turn (see end-of-turn-flush.ts); a body written in the
    // same turn as its head joins it in one syscall.
    holdUntilEndOfTurn(this.socket);
    return typeof data === "string" ? this.socket.write(data, "latin1") : this.socket.write(data);
  }

  endRequest(): void {
    this.requestDone = true;
    if (this.responseDone) this.finish();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Back to the pool unused (handed out to a downstream that had gone). */
  release(): void {
    this.pool.release(this);
  }

  /** The downstream went away mid-exchange: this connection cannot be reused. */
  abort(): void {
    this.handler = null;
    this.destroy();
  }

  destroy(): void {
    if (this.state === CLOSED) return;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const h = this.handler;
    if (!h || this.state !== ACTIVE) {
      // Bytes nobody asked for: the connection is out of step; never reuse it.
      this.destroy();
      return;
    }
    this.receive(chunk, h);
  }

  private receive(chunk: Buffer, h: ResponseHandler): void {
    let buf = chunk;
    let pos = 0;
    if (this.head === null) {
      if (this.buf !== null) buf = Buffer.concat([this.buf, chunk]);
      for (;;) {
        const r = parseResponseHead(buf, pos, DEFAULT_HEAD_LIMITS);
        if (r.kind === "incomplete") {
          this.buf = pos === 0 ? buf : buf.subarray(pos);
          return;
        }
        if (r.kind === "error") {
          this.fail(ResponseFlag.UpstreamProtocolError, r.reason);
          return;
        }
        pos += r.head.headBytes;
        if (r.head.status === 101) {
          this.upgrading = true;
          this.handler = null;
          this.state = CLOSED;
          this.socket.removeAllListeners("data");
          this.socket.removeAllListeners("timeout");
          this.socket.removeAllListeners("drain");
          this.socket.removeAllListeners("close");
          this.socket.removeAllListeners("error");
          this.pool.removed(this);
          h.onUpgrade(r.head, this.socket, buf.subarray(pos));
          return;
        }
        // Other 1xx (100 Continue is answered by the proxy itself): skip, the final response follows.
        if (r.head.status < 200) continue;
        this.buf = null;
        this.head = r.head;
        break;
      }
      const head = this.head;
      if (!responseHasBody(this.method, head.status)) {
        this.remaining = 0;
      } else if (head.chunked) {
        this.chunked = new ChunkedDecoder();
      } else if (head.contentLength >= 0) {
        this.remaining = head.contentLength;
      } else {
        this.untilClose = true;
      }
      h.onResponseHead(head);
      if (this.handler !== h) return; // the handler aborted on the head
      if (!this.chunked && !this.untilClose && this.remaining === 0) {
        if (pos < buf.length) {
          this.fail(ResponseFlag.UpstreamProtocolError, "data after a complete response");
          return;
        }
        this.completeResponse();
        return;
      }
    }
    this.body(buf, pos);
  }

  private body(buf: Buffer, pos: number): void {
    const h = this.handler!;
    const end = buf.length;
    if (pos >= end) return;
    let more = true;
    if (this.chunked) {
      const d = this.chunked;
      const stop = d.feed(buf, pos, end);
      if (stop === -1) {
        this.fail(ResponseFlag.UpstreamProtocolError, `bad chunked body: ${d.error}`);
        return;
      }
      more = h.onResponseData(buf, pos, stop);
      if (d.done) {
        if (stop < end) {
          this.fail(ResponseFlag.UpstreamProtocolError, "data after a complete response");
          return;
        }
        this.completeResponse();
        return;
      }
    } else if (this.untilClose) {
      more = h.onResponseData(buf, pos, end);
    } else {
      const n = Math.min(this.remaining, end - pos);
      this.remaining -= n;
      more = h.onResponseData(buf, pos, pos + n);
      if (this.remaining === 0) {
        if (pos + n < end) {
          this.fail(ResponseFlag.UpstreamProtocolError, "data after a complete response");
          return;
        }
        this.completeResponse();
        return;
      }
    }
    if (!more) this.socket.pause();
  }

  private completeResponse(): void {
    this.responseDone = true;
    const h = this.handler;
    // Reuse needs the request finished too; finish() runs now or at endRequest().
    if (this.requestDone) this.finish();
    h?.onResponseEnd();
  }

  private finish(): void {
    const reusable = !this.requestClose && !this.head?.close && !this.untilClose && this.state === ACTIVE;
    this.handler = null;
    if (reusable) this.pool.release(this);
    else this.destroy();
  }

  private fail(flag: ResponseFlag, detail: string): void {
    const h = this.handler;
    const headSent = this.head !== null;
    this.handler = null;
    this.destroy();
    h?.onResponseError(flag, detail, headSent);
  }

  private onClose(err: Error | null): void {
    if (this.state === CLOSED) return;
    const wasConnecting = this.state === CONNECTING;
    if (wasConnecting) {
      const tlsDetail =
        err !== null && this.pool.options.tls !== undefined
          ? this.pool.tlsFailure(this.socket, err)
          : undefined;
      this.failConnect(
        ResponseFlag.UpstreamConnectionFailure,
        tlsDetail ?? (err ? errorText(err) : "connection closed"),
      );
      return;
    }
    this.state = CLOSED;
    this.socket.destroy();
    this.pool.removed(this);
    const h = this.handler;
    this.handler = null;
    if (!h) return;
    if (this.untilClose && this.head && !err) {
      h.onResponseEnd();
      return;
    }
    h.onResponseError(
      ResponseFlag.UpstreamConnectionTermination,
      err ? errorText(err) : "upstream closed the connection",
      this.head !== null,
    );
  }

  get requestCount(): number {
    return this.requests;
  }

  get isUpgrading(): boolean {
    return this.upgrading;
  }
}

function handshakeTimeout(): Error {
  return Object.assign(new Error("the TLS handshake did not finish within the connect timeout"), {
    code: "ERR_TLS_HANDSHAKE_TIMEOUT",
  });
}

function errorText(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `${code}: ${err.message}` : err.message;
}
