// Fault injection (Envoy's fault filter, Istio's HTTPFaultInjection), compiled per route: a delay and an abort,
// each for a percentage of requests, decided with one random draw each.
import type { FaultPolicy } from "../config/types.ts";

export class CompiledFault {
  readonly delayMs: number;
  private readonly delayFraction: number;
  /** HTTP status of the abort (200 for a gRPC abort, which carries grpcStatus); 0 for no abort. */
  readonly abortStatus: number;
  readonly abortGrpcStatus: number | undefined;
  private readonly abortFraction: number;

  constructor(p: FaultPolicy) {
    this.delayMs = p.delay?.fixedDelayMs ?? 0;
    this.delayFraction = (p.delay?.percentage ?? 100) / 100;
    this.abortGrpcStatus = p.abort?.grpcStatus;
    this.abortStatus = p.abort ? (p.abort.grpcStatus !== undefined ? 200 : (p.abort.httpStatus ?? 0)) : 0;
    this.abortFraction = (p.abort?.percentage ?? 100) / 100;
  }

  /** The delay for this request (0: none), given a uniform draw in [0, 1). */
  delay(random: number): number {
    return this.delayMs > 0 && random < this.delayFraction ? this.delayMs : 0;
  }

  /** Whether this request is aborted, given a uniform draw in [0, 1). */
  aborts(random: number): boolean {
    return this.abortStatus !== 0 && random < this.abortFraction;
  }
}

export function compileFault(p: FaultPolicy | undefined): CompiledFault | undefined {
  return p && (p.delay || p.abort) ? new CompiledFault(p) : undefined;
}
