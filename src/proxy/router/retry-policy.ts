// A route's retry policy compiled once: the conditions as bits, the status codes as a set, the backoff. The
// exchanges ask it after each failed attempt whether another one is allowed, and how long to wait first.
//
// Conditions follow Envoy's router (retry_state_impl): 5xx and gateway-error also cover resets and connection
// failures (they would become a 503 otherwise); a per-try timeout counts as a 504 from the upstream.
import type { RetryPolicy } from "../config/types.ts";

export const RETRY_5XX = 1;
export const RETRY_GATEWAY_ERROR = 2;
export const RETRY_RESET = 4;
export const RETRY_CONNECT_FAILURE = 8;
export const RETRY_REFUSED_STREAM = 16;
export const RETRY_4XX = 32;
export const RETRY_STATUS_CODES = 64;
export const RETRY_GRPC_CANCELLED = 128;
export const RETRY_GRPC_DEADLINE_EXCEEDED = 256;
export const RETRY_GRPC_RESOURCE_EXHAUSTED = 512;
export const RETRY_GRPC_UNAVAILABLE = 1024;

const CONDITIONS: Readonly<Record<string, number>> = {
  "5xx": RETRY_5XX,
  "gateway-error": RETRY_GATEWAY_ERROR,
  reset: RETRY_RESET,
  "connect-failure": RETRY_CONNECT_FAILURE,
  "refused-stream": RETRY_REFUSED_STREAM,
  "retriable-4xx": RETRY_4XX,
  "retriable-status-codes": RETRY_STATUS_CODES,
  cancelled: RETRY_GRPC_CANCELLED,
  "deadline-exceeded": RETRY_GRPC_DEADLINE_EXCEEDED,
  "resource-exhausted": RETRY_GRPC_RESOURCE_EXHAUSTED,
  unavailable: RETRY_GRPC_UNAVAILABLE,
};

/** The names retryOn accepts (config validation). */
export const RETRY_ON_NAMES: readonly string[] = Object.keys(CONDITIONS);

/** Istio's mesh default for routes that say nothing. */
export const MESH_DEFAULT_RETRY: RetryPolicy = {
  numRetries: 2,
  retryOn: ["connect-failure", "refused-stream", "unavailable", "cancelled"],
};

/** How an attempt failed. */
export const FAIL_CONNECT = 0;
export const FAIL_RESET = 1;
export const FAIL_REFUSED_STREAM = 2;
export const FAIL_PER_TRY_TIMEOUT = 3;
export type AttemptFailure = 0 | 1 | 2 | 3;

export class CompiledRetryPolicy {
  readonly numRetries: number;
  readonly perTryTimeoutMs: number;
  private readonly on: number;
  private readonly statusCodes: ReadonlySet<number>;
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(p: RetryPolicy) {
    this.numRetries = p.numRetries;
    this.perTryTimeoutMs = p.perTryTimeoutMs ?? 0;
    let on = 0;
    for (const name of p.retryOn ?? MESH_DEFAULT_RETRY.retryOn!) on |= CONDITIONS[name] ?? 0;
    this.on = on;
    this.statusCodes = new Set(p.retriableStatusCodes ?? []);
    this.baseMs = p.backoff?.baseIntervalMs ?? 25;
    this.maxMs = p.backoff?.maxIntervalMs ?? this.baseMs * 10;
  }

  /** Whether a failure without a response (connect failure, reset, per-try timeout) may be retried. */
  retriableFailure(kind: AttemptFailure): boolean {
    const on = this.on;
    if (on & (RETRY_5XX | RETRY_GATEWAY_ERROR)) return true;
    switch (kind) {
      case FAIL_CONNECT:
        return (on & (RETRY_CONNECT_FAILURE | RETRY_RESET)) !== 0;
      case FAIL_RESET:
        return (on & RETRY_RESET) !== 0;
      case FAIL_REFUSED_STREAM:
        return (on & (RETRY_REFUSED_STREAM | RETRY_RESET)) !== 0;
      default:
        return (on & RETRY_RESET) !== 0;
    }
  }

  /** Whether a response (status, and grpc-status when the response carried one in its headers) is retried. */
  retriableResponse(status: number, grpcStatus: number | undefined): boolean {
    const on = this.on;
    if (status >= 500) {
      if (on & RETRY_5XX) return true;
      if (on & RETRY_GATEWAY_ERROR && (status === 502 || status === 503 || status === 504)) return true;
    }
    if (on & RETRY_4XX && status === 409) return true;
    if (on & RETRY_STATUS_CODES && this.statusCodes.has(status)) return true;
    if (grpcStatus !== undefined) {
      if (on & RETRY_GRPC_CANCELLED && grpcStatus === 1) return true;
      if (on & RETRY_GRPC_DEADLINE_EXCEEDED && grpcStatus === 4) return true;
      if (on & RETRY_GRPC_RESOURCE_EXHAUSTED && grpcStatus === 8) return true;
      if (on & RETRY_GRPC_UNAVAILABLE && grpcStatus === 14) return true;
    }
    return false;
  }

  /** Milliseconds to wait before retry number `retry` (1-based): Envoy's, random in [0, (2^retry - 1) x base]. */
  backoffMs(retry: number, random: number): number {
    const bound = Math.min(this.maxMs, this.baseMs * (2 ** retry - 1));
    return Math.floor(random * bound);
  }
}

export const NO_RETRIES = new CompiledRetryPolicy({ numRetries: 0 });
export const MESH_DEFAULT = new CompiledRetryPolicy(MESH_DEFAULT_RETRY);

export function compileRetryPolicy(p: RetryPolicy | undefined): CompiledRetryPolicy {
  if (p === undefined) return MESH_DEFAULT;
  if (p.numRetries === 0 && p.perTryTimeoutMs === undefined) return NO_RETRIES;
  return new CompiledRetryPolicy(p);
}
