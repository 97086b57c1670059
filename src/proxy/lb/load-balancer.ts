// The load-balancer interface: given a cluster's endpoints, pick one per request. Built once per cluster
// config (never per request); pick() is on the hot path and must not allocate.

import type { LbPolicy } from "../config/types.ts";

/** An endpoint as load balancers see it. The proxy's upstream layer owns and mutates the counters. */
export interface LbEndpoint {
  /** "address:port", unique within a cluster. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** > 0. */
  readonly weight: number;
  /** Requests in flight to this endpoint (LEAST_REQUEST reads it). */
  activeRequests: number;
  /** False while the endpoint is ejected or failing health checks; such endpoints are not picked. */
  healthy: boolean;
}

export interface PickContext {
  /** The request's consistent hash (RING_HASH / MAGLEV); absent: pick as RANDOM would. */
  hash?: number | undefined;
  /** An endpoint to avoid when another healthy one exists (retry on another host). */
  avoid?: LbEndpoint | undefined;
}

export interface LoadBalancer {
  readonly policy: LbPolicy;
  /** A healthy endpoint, or undefined when none is healthy (the caller answers 503 UH). */
  pick(ctx: PickContext): LbEndpoint | undefined;
}

export interface LoadBalancerOptions {
  readonly ringHash?: { readonly minimumRingSize?: number; readonly maximumRingSize?: number };
  readonly maglev?: { readonly tableSize?: number };
  /** Injected for deterministic tests; default Math.random. */
  readonly random?: () => number;
}
