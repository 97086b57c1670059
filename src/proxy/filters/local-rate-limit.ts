// Envoy's local rate limit: a token bucket of maxTokens, refilled with tokensPerFill every fillIntervalMs.
// Refills are computed when a token is asked for, so an idle bucket costs no timer.
import type { LocalRateLimit } from "../config/types.ts";

export class TokenBucket {
  private tokens: number;
  private lastFill: number;
  private readonly max: number;
  private readonly perFill: number;
  private readonly intervalMs: number;
  /** The settings, so that a config swap keeps a bucket whose settings did not change (Envoy's too). */
  readonly settings: string;

  constructor(c: LocalRateLimit, now: number) {
    this.settings = `${c.maxTokens}/${c.tokensPerFill ?? c.maxTokens}/${c.fillIntervalMs}`;
    this.max = c.maxTokens;
    this.perFill = c.tokensPerFill ?? c.maxTokens;
    this.intervalMs = c.fillIntervalMs;
    this.tokens = c.maxTokens;
    this.lastFill = now;
  }

  /** Takes a token if there is one. */
  take(now: number): boolean {
    if (now - this.lastFill >= this.intervalMs) {
      const fills = Math.floor((now - this.lastFill) / this.intervalMs);
      this.tokens = Math.min(this.max, this.tokens + fills * this.perFill);
      this.lastFill += fills * this.intervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * `next`, or `current` if it has the same settings: a config pushed for an unrelated change (an endpoint
 * elsewhere) must not refill every bucket, or a client could reset its limit by waiting for a push.
 */
export function keepBucket(
  current: TokenBucket | undefined,
  next: TokenBucket | undefined,
): TokenBucket | undefined {
  return current !== undefined && next !== undefined && current.settings === next.settings ? current : next;
}
