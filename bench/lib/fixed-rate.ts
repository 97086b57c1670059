// An open-loop load generator at a fixed request rate over keep-alive HTTP/1.1 connections, recording each
// request's latency from its scheduled send time (so queueing counts, unlike closed-loop tools). Used to
// measure the latency a proxy adds at a given load.
import net from "node:net";

export interface FixedRateResult {
  readonly sent: number;
  readonly ok: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
}

export async function fixedRate(opts: {
  host: string;
  port: number;
  path: string;
  hostHeader: string;
  rps: number;
  seconds: number;
  connections: number;
}): Promise<FixedRateResult> {
  const request = Buffer.from(
    `GET ${opts.path} HTTP/1.1\r\nhost: ${opts.hostHeader}\r\nuser-agent: fixed-rate\r\n\r\n`,
  );
  const total = opts.rps * opts.seconds;
  const latencies = new Float64Array(total);
  let done = 0;
  let ok = 0;
  let errors = 0;
  const free: Conn[] = [];
  const queue: number[] = [];

  interface Conn {
    socket: net.Socket;
    buf: Buffer | null;
    index: number;
    scheduled: number;
  }

  let start = 0;
  const finishOne = (c: Conn, success: boolean) => {
    latencies[c.index] = performance.now() - c.scheduled;
    done++;
    if (success) ok++;
    else errors++;
    const next = queue.shift();
    if (next !== undefined) send(c, next);
    else free.push(c);
  };
  const send = (c: Conn, index: number) => {
    c.index = index;
    c.scheduled = start + (index * 1000) / opts.rps;
    c.buf = null;
    c.socket.write(request);
  };
  const conns: Conn[] = [];
  await Promise.all(
    Array.from({ length: opts.connections }, () => {
      return new Promise<void>((resolve, reject) => {
        const socket = net.connect({ host: opts.host, port: opts.port, noDelay: true }, () => resolve());
        const c: Conn = { socket, buf: null, index: -1, scheduled: 0 };
        conns.push(c);
        socket.on("error", reject);
        socket.on("data", (chunk: Buffer) => {
          c.buf = c.buf ? Buffer.concat([c.buf, chunk]) : chunk;
          const end = c.buf.indexOf("\r\n\r\n");
          if (end === -1) return;
          const head = c.buf.toString("latin1", 0, end);
          const m = /content-length:\s*(\d+)/i.exec(head);
          const len = m ? Number(m[1]) : 0;
          if (c.buf.length < end + 4 + len) return;
          const status = Number(head.slice(9, 12));
          finishOne(c, status >= 200 && status < 400);
        });
      });
    }),
  );
  free.push(...conns);
  // The schedule starts once every connection is open.
  start = performance.now();
  const t0 = start;
  let next = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) * opts.rps) / 1000) + 1);
      while (next < due) {
        const c = free.pop();
        if (c) send(c, next);
        else queue.push(next);
        next++;
      }
      if (done >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  for (const c of conns) c.socket.destroy();
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  return { sent: total, ok, errors, p50Ms: pct(50), p90Ms: pct(90), p99Ms: pct(99) };
}
