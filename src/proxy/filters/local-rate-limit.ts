// Envoy's local rate limit: a token bucket of maxTokens, refilled with tokensPerFill every fillIntervalMs.
// Refills are computed when a token is asked for, so an idle bucket costs no timer.
import type { LocalRateLimit } from "../config/types.ts";

export class TokenBucket {
  private tokens: number;
  private lastFill: number;
  private readonly max: number;
  private readonly perFill: number;
  private readonly intervalMs: number;

  constructor(c: LocalRateLimit, now: number) {
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
