// Open-loop load through an HTTP proxy (a sidecar's outbound port) that records every request: when it was
// due, how long it took, its status and its body (the echo apps answer with the cluster and pod that served
// them). For failover measurements: which requests failed while a cluster died, and who served the others.
// A request that does not answer within timeoutMs counts as failed; a connection that breaks is replaced.
import net from "node:net";

export interface RecordedRequest {
  /** When it was due, ms since the load started. */
  readonly at: number;
  readonly latencyMs: number;
  /** 0: no response (connection error or timeout). */
  readonly status: number;
  readonly body: string;
}

export interface RecordedLoad {
  /** Stops the schedule; resolves with every request once those in flight ended. */
  stop(): Promise<RecordedRequest[]>;
  /** Requests finished so far. */
  readonly finished: readonly RecordedRequest[];
  /** ms since the load started. */
  now(): number;
}

export function recordedLoad(opts: {
  proxyHost: string;
  proxyPort: number;
  url: string;
  rps: number;
  connections: number;
  timeoutMs?: number;
}): RecordedLoad {
  const u = new URL(opts.url);
  const request = Buffer.from(
    `GET ${opts.url} HTTP/1.1\r\nhost: ${u.host}\r\nuser-agent: recorded-load\r\n\r\n`,
  );
  const timeoutMs = opts.timeoutMs ?? 5000;
  const finished: RecordedRequest[] = [];
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const queue: number[] = [];
  let stopped = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;

  interface Conn {
    socket: net.Socket | undefined;
    buf: Buffer | null;
    due: number;
    busy: boolean;
    timer: NodeJS.Timeout | undefined;
  }
  const conns: Conn[] = Array.from({ length: opts.connections }, () => ({
    socket: undefined,
    buf: null,
    due: 0,
    busy: false,
    timer: undefined,
  }));

  const finish = (c: Conn, status: number, body: string) => {
    if (!c.busy) return;
    clearTimeout(c.timer);
    c.busy = false;
    inFlight--;
    finished.push({ at: c.due, latencyMs: now() - c.due, status, body });
    if (status === 0) {
      c.socket?.destroy();
      c.socket = undefined;
    }
    const next = queue.shift();
    if (next !== undefined && !stopped) send(c, next);
    else if (stopped && inFlight === 0) drained?.();
  };
  const connect = (c: Conn) => {
    const socket = net.connect({ host: opts.proxyHost, port: opts.proxyPort, noDelay: true });
    c.socket = socket;
    c.buf = null;
    socket.on("error", () => finish(c, 0, ""));
    socket.on("close", () => {
      if (c.socket === socket) {
        c.socket = undefined;
        finish(c, 0, "");
      }
    });
    socket.on("data", (chunk: Buffer) => {
      c.buf = c.buf ? Buffer.concat([c.buf, chunk]) : chunk;
      const end = c.buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = c.buf.toString("latin1", 0, end);
      const m = /content-length:\s*(\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (c.buf.length < end + 4 + len) return;
      const body = c.buf.toString("utf8", end + 4, end + 4 + len);
      c.buf = null;
      finish(c, Number(head.slice(9, 12)), body);
    });
  };
  const send = (c: Conn, due: number) => {
    c.busy = true;
    inFlight++;
    c.due = due;
    if (c.socket === undefined || c.socket.destroyed) connect(c);
    c.socket!.write(request);
    c.timer = setTimeout(() => finish(c, 0, "timeout"), timeoutMs);
  };
  let next = 0;
  const tick = () => {
    if (stopped) return;
    const due = Math.floor((now() * opts.rps) / 1000) + 1;
    while (next < due) {
      const at = (next * 1000) / opts.rps;
      const c = conns.find((x) => !x.busy);
      if (c) send(c, at);
      else queue.push(at);
      next++;
    }
    setTimeout(tick, 1);
  };
  tick();
  return {
    finished,
    now,
    stop: () =>
      new Promise<RecordedRequest[]>((resolve) => {
        stopped = true;
        queue.length = 0;
        const end = () => {
          for (const c of conns) c.socket?.destroy();
          resolve(finished.slice().sort((a, b) => a.at - b.at));
        };
        if (inFlight === 0) end();
        else drained = end;
      }),
  };
}

/** The failures among requests due at or after `from`, and when the last one was due (ms after `from`). */
export function failuresAfter(
  records: readonly RecordedRequest[],
  from: number,
): { readonly count: number; readonly lastMs: number } {
  let count = 0;
  let last = 0;
  for (const r of records)
    if (r.at >= from && (r.status < 200 || r.status >= 400)) {
      count++;
      last = Math.max(last, r.at - from);
    }
  return { count, lastMs: last };
}
