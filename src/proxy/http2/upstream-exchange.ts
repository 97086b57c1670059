// An HTTP/1 downstream request to an HTTP/2 upstream (a cluster with protocol http2). The HTTP/1 connection
// drives every upstream the same way (begin, write the head and body as HTTP/1 bytes, endRequest); this
// exchange translates at the boundary: the HTTP/1 head it is given becomes HTTP/2 headers, a chunked body is
// decoded into DATA frames, and the response comes back as an HTTP/1 head with a chunked body.
import http2 from "node:http2";
import { ChunkedDecoder } from "../http1/chunked.ts";
import { parseRequestHead, type ResponseHead } from "../http1/head-parser.ts";
import type { Endpoint } from "../upstream/cluster.ts";
import type { ResponseHandler } from "../upstream/http1-connection.ts";
import { ResponseFlag } from "../upstream/response-flags.ts";
import type { Http2Sessions } from "./upstream-sessions.ts";

const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "host",
]);
const CRLF = Buffer.from("\r\n");
const LAST_CHUNK = Buffer.from("0\r\n\r\n");

export class Http2UpstreamExchange {
  private readonly sessions: Http2Sessions;
  private readonly endpoint: Endpoint;
  private handler: ResponseHandler | null = null;
  private stream: http2.ClientHttp2Stream | null = null;
  private requestChunks: ChunkedDecoder | null = null;
  private headSent = false;
  private ended = false;
  handlerDrain: (() => void) | null = null;

  constructor(sessions: Http2Sessions, endpoint: Endpoint) {
    this.sessions = sessions;
    this.endpoint = endpoint;
  }

  begin(handler: ResponseHandler, _method: string, _close: boolean): void {
    this.handler = handler;
  }

  /** The first write is the HTTP/1 request head; later writes are body bytes. */
  write(data: string | Buffer): boolean {
    const buf = typeof data === "string" ? Buffer.from(data, "latin1") : data;
    if (this.stream === null) return this.open(buf);
    if (this.requestChunks !== null) {
      this.requestChunks.feed(buf, 0, buf.length, (b, f, t) => {
        this.stream?.write(b.subarray(f, t));
      });
      return !this.stream.writableNeedDrain;
    }
    return this.stream.write(buf);
  }

  private open(head: Buffer): boolean {
    const r = parseRequestHead(head, 0, { maxHeadBytes: head.length + 1, maxHeaders: 10_000 });
    if (r.kind !== "ok") {
      this.fail(ResponseFlag.UpstreamProtocolError, "could not translate the request to HTTP/2");
      return true;
    }
    const req = r.head;
    const headers: http2.OutgoingHttpHeaders = {
      ":method": req.method,
      ":path": req.target,
      ":authority": req.host ?? this.endpoint.key,
      ":scheme": "http",
    };
    for (let i = 0; i < req.headers.length; i += 2) {
      const n = req.headers[i]!;
      if (CONNECTION_SPECIFIC.has(n) || (n === "te" && req.headers[i + 1] !== "trailers")) continue;
      const prev = headers[n];
      headers[n] =
        prev === undefined
          ? req.headers[i + 1]!
          : [...(Array.isArray(prev) ? prev : [String(prev)]), req.headers[i + 1]!];
    }
    if (req.chunked) this.requestChunks = new ChunkedDecoder();
    const hasBody = req.chunked || req.contentLength > 0;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.sessions.session(this.endpoint).request(headers, { endStream: !hasBody });
    } catch (e) {
      this.fail(ResponseFlag.UpstreamConnectionFailure, (e as Error).message);
      return true;
    }
    this.stream = stream;
    stream.on("response", (h) => this.onResponse(h));
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("end", () => this.onEnd());
    stream.on("drain", () => this.handlerDrain?.());
    stream.on("error", (err: Error) =>
      this.fail(
        this.headSent ? ResponseFlag.UpstreamConnectionTermination : ResponseFlag.UpstreamConnectionFailure,
        err.message,
      ),
    );
    stream.on("close", () => {
      if (!this.ended) this.fail(ResponseFlag.UpstreamConnectionTermination, "stream reset");
    });
    return true;
  }

  endRequest(): void {
    if (this.stream && !this.stream.writableEnded) this.stream.end();
  }

  private onResponse(h: http2.IncomingHttpHeaders): void {
    const headers: string[] = [];
    let contentLength = -1;
    for (const [k, v] of Object.entries(h)) {
      if (k.charCodeAt(0) === 0x3a || v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [String(v)]) headers.push(k, x);
      if (k === "content-length") contentLength = Number(v);
    }
    const status = Number(h[":status"] ?? 502);
    const head: ResponseHead = {
      status,
      reason: "",
      minor: 1,
      headers,
      contentLength,
      // Without a length, the HTTP/1 side gets a chunked body that this exchange frames.
      chunked: contentLength < 0 && status >= 200 && status !== 204 && status !== 304,
      close: false,
      connectionTokens: null,
      upgrade: null,
      headBytes: 0,
    };
    this.headSent = true;
    this.chunkedOut = head.chunked;
    this.handler?.onResponseHead(head);
  }

  private chunkedOut = false;

  private onData(chunk: Buffer): void {
    const h = this.handler;
    if (!h || chunk.length === 0) return;
    const framed = this.chunkedOut
      ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, CRLF])
      : chunk;
    if (!h.onResponseData(framed, 0, framed.length)) this.stream?.pause();
  }

  private onEnd(): void {
    const h = this.handler;
    this.ended = true;
    if (!h) return;
    if (this.chunkedOut) h.onResponseData(LAST_CHUNK, 0, LAST_CHUNK.length);
    this.handler = null;
    h.onResponseEnd();
  }

  private fail(flag: ResponseFlag, detail: string): void {
    const h = this.handler;
    this.handler = null;
    this.ended = true;
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
    h?.onResponseError(flag, detail, this.headSent);
  }

  pause(): void {
    this.stream?.pause();
  }

  resume(): void {
    this.stream?.resume();
  }

  abort(): void {
    this.handler = null;
    this.ended = true;
    this.stream?.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** Nothing to give back: the session is shared and the stream is done. */
  release(): void {}
}
