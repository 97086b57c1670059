// HTTP/1.1 connections to one upstream endpoint: kept alive and reused, opened on demand up to the cluster's
// limits, with waiters queued (and refused beyond the pending limit). Waiters and response handlers are
// long-lived objects implementing the interfaces below: no closure or promise is created per request.
import net from "node:net";
import type tls from "node:tls";
import { tlsModule } from "../lazy-modules.ts";
import type { LbEndpoint } from "../lb/load-balancer.ts";
import { tunnelModule } from "../tunnel/lazy.ts";
import type { TunnelRegistry } from "../tunnel/registry.ts";
import type { ClusterLimits } from "./cluster.ts";
import { UpstreamHttp1Connection } from "./http1-connection.ts";
import { ResponseFlag } from "./response-flags.ts";
import { poolTlsFailure } from "./tls-failure.ts";

export interface PoolWaiter {
  onPoolReady(conn: UpstreamHttp1Connection): void;
  onPoolFailure(flag: ResponseFlag, detail: string): void;
}

export interface PoolOptions {
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxRequestsPerConnection: number;
  readonly tls: tls.ConnectionOptions | undefined;
  /** Where endpoints with a `tunnel` are reached (a CONNECT stream instead of a dial). */
  readonly tunnels?: TunnelRegistry;
}

export class Http1Pool {
  readonly endpoint: LbEndpoint;
  private readonly idle: UpstreamHttp1Connection[] = [];
  private readonly waiters: PoolWaiter[] = [];
  private readonly connecting: UpstreamHttp1Connection[] = [];
  private closed = false;
  private readonly limits: ClusterLimits;
  readonly options: PoolOptions;

  constructor(endpoint: LbEndpoint, limits: ClusterLimits, options: PoolOptions) {
    this.endpoint = endpoint;
    this.limits = limits;
    this.options = options;
  }

  /** Calls waiter.onPoolReady with a connection now or later, or onPoolFailure. */
  acquire(waiter: PoolWaiter): void {
    if (this.closed) {
      waiter.onPoolFailure(ResponseFlag.UpstreamConnectionFailure, "pool closed");
      return;
    }
    const conn = this.idle.pop();
    if (conn) {
      conn.activate();
      waiter.onPoolReady(conn);
      return;
    }
    if (this.limits.connections.value < this.limits.maxConnections) {
      this.open(waiter);
      return;
    }
    if (this.limits.pending.value >= this.limits.maxPendingRequests) {
      this.limits.overflowPending.inc();
      waiter.onPoolFailure(ResponseFlag.UpstreamOverflow, "pending requests overflow");
      return;
    }
    this.limits.pending.value++;
    this.waiters.push(waiter);
  }

  /**
   * A waiter that gave up (its downstream went away, a timeout, a retry elsewhere) is forgotten, also by a
   * connection being opened for it: otherwise that connection would hand itself to the waiter's next request.
   */
  cancel(waiter: PoolWaiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i !== -1) {
      this.waiters.splice(i, 1);
      this.limits.pending.value--;
    }
    for (const c of this.connecting) if (c.pendingWaiter === waiter) c.forgetWaiter();
  }

  /** From a connection: it is no longer connecting (connected or failed). */
  connected(conn: UpstreamHttp1Connection): void {
    const i = this.connecting.indexOf(conn);
    if (i !== -1) this.connecting.splice(i, 1);
  }

  private open(waiter: PoolWaiter): void {
    this.limits.connections.value++;
    this.limits.connectionsTotal.inc();
    const o = this.options;
    const host = this.endpoint.address;
    const port = this.endpoint.port;
    // An endpoint behind a reverse tunnel is never dialled: its address is one of the far network's.
    const tunnel = (this.endpoint as { tunnel?: string }).tunnel;
    const through =
      tunnel !== undefined
        ? tunnelModule().tunnelSocket(o.tunnels, tunnel, tunnelModule().authorityOf(host, port))
        : undefined;
    const socket =
      through !== undefined
        ? o.tls
          ? tlsModule().connect({ ...o.tls, host, port, socket: through })
          : through
        : o.tls
          ? tlsModule().connect({ ...o.tls, host, port })
          : net.connect({ host, port, noDelay: true });
    this.connecting.push(new UpstreamHttp1Connection(this, socket, waiter));
  }

  /** From a connection: its request/response exchange finished and it can carry another. */
  release(conn: UpstreamHttp1Connection): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      this.limits.pending.value--;
      conn.activate();
      waiter.onPoolReady(conn);
      return;
    }
    if (this.closed) {
      conn.destroy();
      return;
    }
    conn.idleSince();
    this.idle.push(conn);
  }

  /** From a connection: it closed. Frees its slot, and opens a new connection for a waiter if any. */
  removed(conn: UpstreamHttp1Connection): void {
    this.limits.connections.value--;
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    const waiter = this.waiters.shift();
    if (waiter) {
      this.limits.pending.value--;
      this.acquire(waiter);
    }
  }

  /**
   * From a TLS connection that failed to open: when TLS was the cause (the peer's certificate did not verify or
   * named another identity, the handshake failed), the failure is counted under the cluster's ssl.* stats and
   * logged, and the reason returned for the 503's transport failure reason; undefined otherwise.
   */
  tlsFailure(socket: net.Socket, err: Error): string | undefined {
    return poolTlsFailure(
      this.limits.connectionsTotal,
      `${this.endpoint.address}:${this.endpoint.port}`,
      err,
      socket as tls.TLSSocket,
    );
  }

  /** A waiter whose connection failed to open: tell it, and keep the others' hopes up. */
  failWaiter(waiter: PoolWaiter, flag: ResponseFlag, detail: string): void {
    waiter.onPoolFailure(flag, detail);
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** Closes idle connections now and every other one when its exchange ends. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
    for (const w of this.waiters.splice(0)) {
      this.limits.pending.value--;
      w.onPoolFailure(ResponseFlag.UpstreamConnectionFailure, "cluster removed");
    }
  }
}
