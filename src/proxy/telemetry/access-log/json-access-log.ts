// The access log: one JSON line per request (and per TCP connection), with Envoy's default field names, to a
// file or /dev/stdout. Lines are encoded straight into 64 KiB chunks (json-bytes.ts) and written asynchronously,
// a chunk at a time (every 100 ms or when one fills); when the destination cannot keep up, lines beyond
// MAX_PENDING_BYTES are dropped and counted rather than held without bound. A write error is reported once on
// stderr and counted; it never reaches a request. Short writes (pipes) are continued, never lost.
import fs from "node:fs";
import type { HttpRequestRecord, TcpConnectionRecord, TelemetrySink } from "../request-record.ts";
import { asciiBytes, JsonBytes, maxQuotedBytes } from "./json-bytes.ts";

const FLUSH_MS = 100;
const CHUNK_BYTES = 64 * 1024;
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** Spare chunks kept for reuse (the rest are left to the GC). */
const SPARE_CHUNKS = 4;

// Keys and punctuation, encoded once. The field order is the line's order.
const K = {
  start: asciiBytes('{"start_time":"'),
  method: asciiBytes('","method":'),
  path: asciiBytes(',"path":'),
  protocol: asciiBytes(',"protocol":"'),
  code: asciiBytes('","response_code":'),
  flags: asciiBytes(',"response_flags":"'),
  grpc: asciiBytes('","grpc_status":'),
  received: asciiBytes(',"bytes_received":'),
  sent: asciiBytes(',"bytes_sent":'),
  duration: asciiBytes(',"duration":'),
  upHost: asciiBytes(',"upstream_host":'),
  upCluster: asciiBytes(',"upstream_cluster":'),
  retries: asciiBytes(',"upstream_retries":'),
  route: asciiBytes(',"route_name":'),
  authority: asciiBytes(',"authority":'),
  requestId: asciiBytes(',"x_request_id":'),
  traceId: asciiBytes(',"trace_id":'),
  userAgent: asciiBytes(',"user_agent":'),
  remote: asciiBytes(',"downstream_remote_address":'),
  security: asciiBytes(',"connection_security_policy":"'),
  reporter: asciiBytes('","reporter":"'),
  end: asciiBytes('"}\n'),
  tcpProtocol: asciiBytes('","protocol":"tcp","response_flags":"'),
  tcpReceived: asciiBytes('","bytes_received":'),
};
/** Every fixed byte of a line, its timestamp and numbers included, with room to spare. */
const FIXED_BYTES = Object.values(K).reduce((n, b) => n + b.length, 0) + 32 + 8 * 16;

interface Chunk {
  readonly buf: Buffer;
  readonly length: number;
  readonly lines: number;
}

export class JsonAccessLog implements TelemetrySink {
  readonly path: string;
  private fd: number | undefined;
  /** The chunk lines are encoded into. */
  private out = new JsonBytes(Buffer.allocUnsafe(CHUNK_BYTES));
  private outLines = 0;
  /** Full chunks, oldest first, waiting for the write in flight. */
  private readonly queue: Chunk[] = [];
  private queuedBytes = 0;
  private readonly spare: Buffer[] = [];
  private writing = false;
  private readonly timer: NodeJS.Timeout;
  private reportedError = false;
  /** Lines dropped because the destination fell behind or failed. */
  dropped = 0;
  written = 0;
  errors = 0;

  constructor(path: string) {
    this.path = path;
    // stdout is where Istio's sidecars log by default (meshConfig.accessLogFile: /dev/stdout).
    try {
      this.fd = fs.openSync(path, "a");
    } catch (e) {
      this.fail(e as Error);
    }
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  onHttpRequest(r: HttpRequestRecord): void {
    const bound =
      FIXED_BYTES +
      maxQuotedBytes(r.method) +
      maxQuotedBytes(r.path) +
      maxQuotedBytes(r.upstreamHost) +
      maxQuotedBytes(r.upstreamCluster) +
      maxQuotedBytes(r.routeName) +
      maxQuotedBytes(r.authority) +
      maxQuotedBytes(r.requestId) +
      maxQuotedBytes(r.traceId) +
      maxQuotedBytes(r.userAgent) +
      maxQuotedBytes(r.downstreamRemoteAddress) +
      r.protocol.length +
      r.responseFlags.length;
    const o = this.begin(bound, r.startTimeMs);
    if (o === undefined) return;
    o.bytes(K.method);
    o.wire(r.method);
    o.bytes(K.path);
    o.wire(r.path);
    o.bytes(K.protocol);
    o.ascii(r.protocol);
    o.bytes(K.code);
    o.uint(r.responseCode);
    o.bytes(K.flags);
    o.ascii(r.responseFlags);
    o.bytes(K.grpc);
    if (r.grpcStatus === undefined) o.null();
    else o.uint(r.grpcStatus);
    o.bytes(K.received);
    o.uint(r.bytesReceived);
    o.bytes(K.sent);
    o.uint(r.bytesSent);
    o.bytes(K.duration);
    o.uint(r.durationMs);
    o.bytes(K.upHost);
    o.textOrNull(r.upstreamHost);
    o.bytes(K.upCluster);
    o.textOrNull(r.upstreamCluster);
    o.bytes(K.retries);
    o.uint(r.retries);
    o.bytes(K.route);
    o.textOrNull(r.routeName);
    o.bytes(K.authority);
    o.wire(r.authority);
    o.bytes(K.requestId);
    o.wireOrNull(r.requestId);
    o.bytes(K.traceId);
    o.wireOrNull(r.traceId);
    o.bytes(K.userAgent);
    o.wireOrNull(r.userAgent);
    this.end(o, r);
  }

  onTcpClose(r: TcpConnectionRecord): void {
    const bound =
      FIXED_BYTES +
      maxQuotedBytes(r.upstreamHost) +
      maxQuotedBytes(r.upstreamCluster) +
      maxQuotedBytes(r.downstreamRemoteAddress) +
      r.responseFlags.length;
    const o = this.begin(bound, r.startTimeMs);
    if (o === undefined) return;
    o.bytes(K.tcpProtocol);
    o.ascii(r.responseFlags);
    o.bytes(K.tcpReceived);
    o.uint(r.bytesReceived);
    o.bytes(K.sent);
    o.uint(r.bytesSent);
    o.bytes(K.duration);
    o.uint(r.durationMs);
    o.bytes(K.upHost);
    o.textOrNull(r.upstreamHost);
    o.bytes(K.upCluster);
    o.textOrNull(r.upstreamCluster);
    this.end(o, r);
  }

  /** Starts a line of at most `bound` bytes with its start time; undefined (dropped) when there is no room. */
  private begin(bound: number, startTimeMs: number): JsonBytes | undefined {
    if (!this.room(bound)) return undefined;
    const o = this.out;
    o.bytes(K.start);
    this.time(o, startTimeMs);
    return o;
  }

  /** The fields every line ends with, HTTP and TCP alike. */
  private end(
    o: JsonBytes,
    r: Pick<HttpRequestRecord, "downstreamRemoteAddress" | "connectionSecurityPolicy" | "reporter">,
  ): void {
    o.bytes(K.remote);
    o.text(r.downstreamRemoteAddress);
    o.bytes(K.security);
    o.ascii(r.connectionSecurityPolicy);
    o.bytes(K.reporter);
    o.ascii(r.reporter);
    o.bytes(K.end);
    this.outLines++;
  }

  private lastSecond = -1;
  private secondPrefix = "";

  /** ISO-8601 with milliseconds; the date-and-seconds part is formatted once a second. */
  private time(o: JsonBytes, ms: number): void {
    const t = Math.floor(ms);
    const second = Math.floor(t / 1000);
    if (second !== this.lastSecond) {
      this.lastSecond = second;
      this.secondPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    o.ascii(this.secondPrefix);
    const frac = t - second * 1000;
    const b = o.buf;
    b[o.pos++] = 0x30 + Math.floor(frac / 100);
    b[o.pos++] = 0x30 + (Math.floor(frac / 10) % 10);
    b[o.pos++] = 0x30 + (frac % 10);
    b[o.pos++] = 0x5a; // Z
  }

  /** Makes room for a line of at most `bound` bytes; false (the line counted as dropped) when there is none. */
  private room(bound: number): boolean {
    if (this.fd === undefined) {
      this.dropped++;
      return false;
    }
    const out = this.out;
    if (out.pos + bound <= out.buf.length) return true;
    if (this.queuedBytes + out.pos + bound > MAX_PENDING_BYTES) {
      this.dropped++;
      return false;
    }
    this.seal();
    // A line longer than a chunk (a huge path) gets a buffer of its own.
    if (bound > this.out.buf.length) this.out = new JsonBytes(Buffer.allocUnsafe(bound));
    this.writeNext();
    return true;
  }

  /** Queues the current chunk for writing, if it holds any line. */
  private seal(): void {
    if (this.outLines === 0) return;
    this.queue.push({ buf: this.out.buf, length: this.out.pos, lines: this.outLines });
    this.queuedBytes += this.out.pos;
    this.out = new JsonBytes(this.spare.pop() ?? Buffer.allocUnsafe(CHUNK_BYTES));
    this.outLines = 0;
  }

  private flush(): void {
    if (this.writing || this.fd === undefined) return;
    this.seal();
    this.writeNext();
  }

  private writeNext(): void {
    if (this.writing || this.fd === undefined) return;
    const chunk = this.queue.shift();
    if (chunk === undefined) return;
    this.writing = true;
    this.writeFrom(chunk, 0);
  }

  private writeFrom(chunk: Chunk, offset: number): void {
    fs.write(this.fd!, chunk.buf, offset, chunk.length - offset, null, (err, n) => {
      if (err) {
        this.done(chunk);
        this.dropped += chunk.lines;
        this.fail(err);
      } else if (offset + n < chunk.length && this.fd !== undefined) {
        this.writeFrom(chunk, offset + n);
        return;
      } else {
        this.done(chunk);
        this.written += chunk.lines;
      }
      this.writeNext();
    });
  }

  private done(chunk: Chunk): void {
    this.writing = false;
    this.queuedBytes -= chunk.length;
    if (chunk.buf.length === CHUNK_BYTES && this.spare.length < SPARE_CHUNKS) this.spare.push(chunk.buf);
  }

  private fail(e: Error): void {
    this.errors++;
    if (this.reportedError) return;
    this.reportedError = true;
    process.stderr.write(`isthmus proxy: access log ${this.path}: ${e.message}\n`);
  }

  /** Writes what is pending and closes the file. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
    this.seal();
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    for (let chunk = this.queue.shift(); chunk !== undefined; chunk = this.queue.shift()) {
      try {
        for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk.buf, off, chunk.length - off);
        this.written += chunk.lines;
      } catch (e) {
        this.dropped += chunk.lines;
        this.fail(e as Error);
      }
    }
    this.queuedBytes = 0;
    if (this.path !== "/dev/stdout" && this.path !== "/dev/stderr") fs.closeSync(fd);
  }
}
