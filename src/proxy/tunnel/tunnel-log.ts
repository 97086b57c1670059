// The tunnels' log lines (stderr, as the proxy's other lines). A tunnel that cannot be established retries
// forever, and an acceptor can be knocked on by anyone: a line is written when a reason first appears and then
// at most once per interval per reason, with the number held back, so that neither floods the log.

/** Where the lines go. Replaceable (tests read them). */
export const tunnelLog = {
  write(line: string): void {
    process.stderr.write(line);
  },
};

const MAX_KEYS = 64;

export class TunnelLog {
  private readonly prefix: string;
  private readonly intervalMs: number;
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(scope: string, intervalMs = 30_000) {
    this.prefix = `isthmus proxy: ${scope}: `;
    this.intervalMs = intervalMs;
  }

  /** Always written (state changes: a tunnel up, a tunnel lost). */
  info(message: string): void {
    this.write(message);
  }

  /** Written when `key` is new or quiet for the interval; otherwise counted into the next line of that key. */
  problem(key: string, message: string): void {
    const now = Date.now();
    const e = this.last.get(key);
    if (e !== undefined && now - e.at < this.intervalMs) {
      e.held++;
      return;
    }
    if (e === undefined && this.last.size >= MAX_KEYS)
      for (const [k, v] of this.last) if (now - v.at >= this.intervalMs) this.last.delete(k);
    const held = e?.held ?? 0;
    if (e === undefined && this.last.size >= MAX_KEYS) return;
    this.last.set(key, { at: now, held: 0 });
    this.write(held > 0 ? `${message} (and ${held} more like it since the last line)` : message);
  }

  private write(message: string): void {
    try {
      tunnelLog.write(`${this.prefix}${message}\n`);
    } catch {
      // a log that cannot be written never fails a tunnel
    }
  }
}
