// Reconnection delays: exponential from `initialMs` to `maxMs`, each delay moved by up to ±jitter of itself so
// that the control planes of a mesh that lost their network together do not redial in step.

export class Backoff {
  private attempt = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(initialMs: number, maxMs: number, jitter: number, random: () => number = Math.random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.jitter = jitter;
    this.random = random;
  }

  /** The delay before the next attempt; each call doubles the next one, up to the cap. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const spread = base * this.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.min(this.maxMs, Math.round(base + spread)));
  }

  /** After a successful sync: the next failure retries quickly again. */
  reset(): void {
    this.attempt = 0;
  }
}
