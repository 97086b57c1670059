// A mirrored copy of a request (Envoy's request_mirror_policies, Istio's mirror): sent to another cluster with
// "-shadow" added to the host, its response read and thrown away. Fire and forget: it must never slow or fail
// the primary request, so a mirror that cannot keep up (no connection yet and too much body queued, or a full
// socket) is dropped rather than waited for, and its failures are only counted.

import type { ResponseHead } from "../http1/head-parser.ts";
import { http2Module } from "../http2/lazy.ts";
import type { Cluster, Endpoint } from "./cluster.ts";
import type { UpstreamExchange } from "./exchange.ts";
import type { PoolWaiter } from "./http1-pool.ts";
import type { ResponseFlag } from "./response-flags.ts";

/** Body bytes queued while the mirror's connection opens; beyond them the mirror is dropped. */
const MAX_QUEUED_BYTES = 64 * 1024;

export class MirrorRequest implements PoolWaiter {
  private readonly cluster: Cluster;
  private readonly method: string;
  private readonly head: string;
  private endpoint: Endpoint | null = null;
  private conn: UpstreamExchange | null = null;
  private queue: Array<string | Buffer> | null = [];
  private queued = 0;
  private ended = false;
  private dropped = false;
  private finished = false;

  /** `head`: the request head as sent to the primary, host line included; it gets the shadow host here. */
  constructor(cluster: Cluster, method: string, head: string, host: string) {
    this.cluster = cluster;
    this.method = method;
    this.head = head.replace(`\r\nhost: ${host}\r\n`, `\r\nhost: ${shadowHost(host)}\r\n`);
  }

  /** Picks an endpoint and asks for a connection; false when the cluster has none or is at its limit. */
  start(): boolean {
    const c = this.cluster;
    if (c.limits.active.value >= c.limits.maxRequests) {
      c.limits.overflowRequests.inc();
      return false;
    }
    const ep = c.lb.pick({}) as Endpoint | undefined;
    if (!ep) return false;
    this.endpoint = ep;
    c.limits.active.value++;
    ep.activeRequests++;
    ep.rqTotal++;
    c.stats.rqTotal.inc();
    c.stats.mirrorTotal.inc();
    if (c.h2) this.onPoolReady(new (http2Module().Http2UpstreamExchange)(c.h2, ep));
    else c.pool(ep).acquire(this);
    return true;
  }

  write(data: Buffer): void {
    if (this.dropped) return;
    if (this.conn === null) {
      this.queued += data.length;
      if (this.queued > MAX_QUEUED_BYTES) this.drop();
      else this.queue!.push(data);
      return;
    }
    if (!this.conn.write(data)) this.drop();
  }

  end(): void {
    this.ended = true;
    if (this.conn !== null && !this.dropped) this.conn.endRequest();
  }

  onPoolReady(conn: UpstreamExchange): void {
    if (this.dropped) {
      conn.release();
      return;
    }
    this.conn = conn;
    conn.begin(this.handler, this.method, false);
    conn.write(this.head);
    for (const b of this.queue!) conn.write(b);
    this.queue = null;
    if (this.ended) conn.endRequest();
  }

  onPoolFailure(_flag: ResponseFlag, _detail: string): void {
    this.done(false);
  }

  private drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    this.queue = null;
    this.cluster.stats.mirrorDropped.inc();
    const c = this.conn;
    this.conn = null;
    c?.abort();
    this.done(false);
  }

  private done(ok: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const ep = this.endpoint;
    if (ep === null) return;
    this.cluster.limits.active.value--;
    ep.activeRequests--;
    if (ok) ep.rqSuccess++;
    else ep.rqError++;
  }

  /** The response is read and discarded; only its outcome is counted. */
  private readonly handler = {
    onResponseHead: (_head: ResponseHead): void => {},
    onResponseData: (): boolean => true,
    onResponseEnd: (): void => {
      this.conn = null;
      this.done(true);
    },
    onResponseError: (): void => {
      this.conn = null;
      this.done(false);
    },
    onUpgrade: (_h: ResponseHead, socket: import("node:net").Socket): void => {
      socket.destroy();
      this.done(false);
    },
    flush: (): void => {},
  };
}

/** Envoy's shadow host: "-shadow" after the host name, before any port ("foo:8080" -> "foo-shadow:8080"). */
export function shadowHost(host: string): string {
  const colon = host.lastIndexOf(":");
  if (colon > 0 && host.indexOf("]") < colon) return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}
