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
  private pending: string[] = [];
  private pendingBytes = 0;
  private writing = false;
  private readonly timer: NodeJS.Timeout;
  private reportedError = false;
  /** Lines dropped because the destination fell behind or failed. */
  dropped = 0;
  written = 0;
  errors = 0;

  constructor(path: string) {
    this.path = path;
    try {
      this.fd = fs.openSync(path, "a");
    } catch (e) {
      this.fail(e as Error);
    }
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  onHttpRequest(r: HttpRequestRecord): void {
    this.push(
      JSON.stringify({
        start_time: new Date(r.startTimeMs).toISOString(),
        method: r.method,
        path: r.path,
        protocol: r.protocol,
        response_code: r.responseCode,
        response_flags: r.responseFlags,
        grpc_status: r.grpcStatus ?? null,
        bytes_received: r.bytesReceived,
        bytes_sent: r.bytesSent,
        duration: Math.round(r.durationMs),
        upstream_host: r.upstreamHost || null,
        upstream_cluster: r.upstreamCluster || null,
        upstream_retries: r.retries,
        route_name: r.routeName || null,
        authority: r.authority,
        x_request_id: r.requestId || null,
        trace_id: r.traceId || null,
        user_agent: r.userAgent || null,
        downstream_remote_address: r.downstreamRemoteAddress,
        connection_security_policy: r.connectionSecurityPolicy,
        reporter: r.reporter,
      }),
    );
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
    if (this.fd === undefined || this.pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
  }

  private flush(): void {
    if (this.writing || this.pending.length === 0 || this.fd === undefined) return;
    const batch = `${this.pending.join("\n")}\n`;
    const lines = this.pending.length;
    this.pending = [];
    this.pendingBytes = 0;
    this.writing = true;
    fs.write(this.fd, batch, (err) => {
      this.writing = false;
      if (err) {
        this.dropped += lines;
        this.fail(err);
      } else this.written += lines;
      if (this.pendingBytes >= FLUSH_BYTES) this.flush();
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
    if (this.fd !== undefined && this.pending.length > 0) {
      try {
        fs.writeSync(this.fd, `${this.pending.join("\n")}\n`);
        this.written += this.pending.length;
      } catch (e) {
        this.dropped += this.pending.length;
        this.fail(e as Error);
      }
      this.pending = [];
    }
    if (this.fd !== undefined && this.path !== "/dev/stdout" && this.path !== "/dev/stderr")
      fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
