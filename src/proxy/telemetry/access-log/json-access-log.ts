// The access log: one JSON line per request (and per TCP connection), with Envoy's default field names, to a
// file or /dev/stdout. Lines are buffered and written asynchronously, a batch at a time (every 100 ms or
// 64 KiB); when the destination cannot keep up, lines beyond MAX_PENDING_BYTES are dropped and counted rather
// than held without bound. A write error is reported once on stderr and counted; it never reaches a request.
import fs from "node:fs";
import type { HttpRequestRecord, TcpConnectionRecord, TelemetrySink } from "../request-record.ts";

const FLUSH_MS = 100;
const FLUSH_BYTES = 64 * 1024;
const MAX_PENDING_BYTES = 4 * 1024 * 1024;

export class JsonAccessLog implements TelemetrySink {
  readonly path: string;
  private fd: number | undefined;
  /** Lines waiting for the next write, newline-terminated. Appending builds a rope; it is flattened once, when
   * written (an array of lines joined per batch cost a few % of the proxy's throughput). */
  private pending = "";
  private pendingLines = 0;
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

  // The line is written field by field rather than JSON.stringify of an object: this runs for every request,
  // and the object and the generic serializer cost a fifth of the proxy's throughput (npm run bench:proxy).
  onHttpRequest(r: HttpRequestRecord): void {
    this.push(
      `{"start_time":"${this.time(r.startTimeMs)}","method":${q(r.method)},"path":${q(r.path)},"protocol":"${r.protocol}","response_code":${r.responseCode},"response_flags":"${r.responseFlags}","grpc_status":${r.grpcStatus ?? null},"bytes_received":${r.bytesReceived},"bytes_sent":${r.bytesSent},"duration":${Math.round(r.durationMs)},"upstream_host":${qn(r.upstreamHost)},"upstream_cluster":${qn(r.upstreamCluster)},"upstream_retries":${r.retries},"route_name":${qn(r.routeName)},"authority":${q(r.authority)},"x_request_id":${qn(r.requestId)},"trace_id":${qn(r.traceId)},"user_agent":${qn(r.userAgent)},"downstream_remote_address":${q(r.downstreamRemoteAddress)},"connection_security_policy":"${r.connectionSecurityPolicy}","reporter":"${r.reporter}"}`,
    );
  }

  private lastSecond = -1;
  private secondPrefix = "";

  /** ISO-8601 with milliseconds; the date-and-seconds part is formatted once a second. */
  private time(ms: number): string {
    const t = Math.floor(ms);
    const second = Math.floor(t / 1000);
    if (second !== this.lastSecond) {
      this.lastSecond = second;
      this.secondPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    const frac = t - second * 1000;
    return `${this.secondPrefix}${frac < 10 ? "00" : frac < 100 ? "0" : ""}${frac}Z`;
  }

  onTcpClose(r: TcpConnectionRecord): void {
    this.push(
      JSON.stringify({
        start_time: new Date(r.startTimeMs).toISOString(),
        protocol: "tcp",
        response_flags: r.responseFlags,
        bytes_received: r.bytesReceived,
        bytes_sent: r.bytesSent,
        duration: Math.round(r.durationMs),
        upstream_host: r.upstreamHost || null,
        upstream_cluster: r.upstreamCluster || null,
        downstream_remote_address: r.downstreamRemoteAddress,
        connection_security_policy: r.connectionSecurityPolicy,
        reporter: r.reporter,
      }),
    );
  }

  private push(line: string): void {
    if (this.fd === undefined || this.pending.length + line.length > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    this.pending += `${line}\n`;
    this.pendingLines++;
    if (this.pending.length >= FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.writing || this.pendingLines === 0 || this.fd === undefined) return;
    const batch = this.pending;
    const lines = this.pendingLines;
    this.pending = "";
    this.pendingLines = 0;
    this.writing = true;
    // latin1: request strings are the wire's bytes read as latin1 (the proxy's parser), so this writes them back
    // unchanged, and skips a UTF-8 encoding pass over every line.
    fs.write(this.fd, batch, null, "latin1", (err) => {
      this.writing = false;
      if (err) {
        this.dropped += lines;
        this.fail(err);
      } else this.written += lines;
      if (this.pending.length >= FLUSH_BYTES) this.flush();
    });
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
    if (this.fd !== undefined && this.pendingLines > 0) {
      try {
        fs.writeSync(this.fd, this.pending, null, "latin1");
        this.written += this.pendingLines;
      } catch (e) {
        this.dropped += this.pendingLines;
        this.fail(e as Error);
      }
      this.pending = "";
      this.pendingLines = 0;
    }
    if (this.fd !== undefined && this.path !== "/dev/stdout" && this.path !== "/dev/stderr")
      fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

// Control characters are what must be escaped here: matching them is the point.
// biome-ignore lint/suspicious/noControlCharactersInRegex: see above
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u2028\u2029]/;

/** A JSON string; values without characters to escape (nearly all) skip the serializer. */
function q(v: string): string {
  return NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`;
}

function qn(v: string): string {
  return v === "" ? "null" : q(v);
}
