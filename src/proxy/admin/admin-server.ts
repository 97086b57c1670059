// The admin listener (default 127.0.0.1:15000), with Envoy's endpoints: /ready, /config_dump, /clusters,
// /stats, /drain_listeners, /quitquitquit. Bind it to loopback: it can stop the proxy. It speaks HTTP/1.1
// through the proxy's own head parser rather than node:http, which would cost a sidecar about 10 MB of memory
// for a handful of requests a minute; one request per connection, then close.
import net from "node:net";
import v8 from "node:v8";
import { RE2 } from "../lazy-modules.ts";
import type { ProxyServer } from "../proxy.ts";
import { certsReport } from "../secrets/certs-report.ts";
import { respond, serveOneRequest } from "./one-request.ts";

export interface AdminOptions {
  readonly address: string;
  readonly port: number;
  /** Called by /quitquitquit after the response is sent. */
  readonly onQuit: () => void;
}

export class AdminServer {
  private readonly server: net.Server;
  private readonly proxy: ProxyServer;
  private readonly options: AdminOptions;

  constructor(proxy: ProxyServer, options: AdminOptions) {
    this.proxy = proxy;
    this.options = options;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `admin: cannot listen on ${this.options.address}:${this.options.port}: ${e.code ?? e.message}`,
          ),
        ),
      );
      this.server.listen(this.options.port, this.options.address, () => {
        const a = this.server.address();
        resolve(typeof a === "object" && a !== null ? a.port : this.options.port);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private readonly sockets = new Set<net.Socket>();

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    serveOneRequest(socket, (method, target, s) => this.handle(method, target, s));
  }

  private handle(method: string, target: string, socket: net.Socket): void {
    // URL.parse gives null where new URL throws: a target such as "http://[" used to throw here, inside the
    // socket's data handler, and take the whole proxy process down with an uncaught exception.
    const url = URL.parse(target, "http://admin");
    if (url === null) {
      respond(socket, 400, "invalid request target\n");
      return;
    }
    const json = url.searchParams.get("format") === "json";
    const send = (status: number, body: string, type = "text/plain; charset=utf-8") =>
      respond(socket, status, body, type);
    const post = method === "POST";
    switch (url.pathname) {
      case "/ready":
        send(
          this.proxy.ready ? 200 : 503,
          this.proxy.ready ? "LIVE\n" : this.proxy.draining ? "DRAINING\n" : "PRE_INITIALIZING\n",
        );
        return;
      case "/config_dump":
        send(200, `${JSON.stringify(this.proxy.dump(), null, 2)}\n`, "application/json");
        return;
      case "/clusters":
        send(
          200,
          json ? `${JSON.stringify(this.clustersJson(), null, 2)}\n` : this.clustersText(),
          json ? "application/json" : undefined,
        );
        return;
      case "/stats": {
        const filter = url.searchParams.get("filter");
        const re = filter ? safeRegExp(filter) : undefined;
        this.proxy.telemetryManager.logStats();
        const rows = this.proxy.stats.snapshot().filter(([k]) => !re || re.test(k));
        if (json)
          send(
            200,
            `${JSON.stringify({ stats: rows.map(([name, value]) => ({ name, value })) }, null, 2)}\n`,
            "application/json",
          );
        else send(200, rows.map(([k, v]) => `${k}: ${v}\n`).join(""));
        return;
      }
      case "/memory":
        send(200, `${JSON.stringify(memoryReport(), null, 2)}\n`, "application/json");
        return;
      case "/certs":
        send(200, `${JSON.stringify(certsReport(this.proxy.secrets), null, 2)}\n`, "application/json");
        return;
      case "/drain_listeners":
        if (!post) {
          send(405, "use POST\n");
          return;
        }
        this.proxy.drainListeners();
        send(200, "OK\n");
        return;
      case "/quitquitquit":
        if (!post) {
          send(405, "use POST\n");
          return;
        }
        send(200, "OK\n");
        setImmediate(this.options.onQuit);
        return;
      case "/":
        send(
          200,
          "/ready\n/config_dump\n/clusters\n/stats\n/memory\n/certs\n/drain_listeners (POST)\n/quitquitquit (POST)\n",
        );
        return;
      default:
        send(404, "not found\n");
    }
  }

  private clustersJson() {
    return {
      cluster_statuses: this.proxy.clusters.all().map((c) => ({
        name: c.name,
        lb_policy: c.policy,
        circuit_breakers: {
          max_connections: c.limits.maxConnections,
          max_pending_requests: c.limits.maxPendingRequests,
          max_requests: c.limits.maxRequests,
        },
        host_statuses: c.endpoints.map((e) => ({
          address: e.key,
          weight: e.weight,
          locality: e.locality,
          labels: e.labels,
          health_status: e.healthy ? "HEALTHY" : "UNHEALTHY",
          ...(e.outlier !== null
            ? {
                outlier_detection: {
                  ejected: e.outlier.ejectedUntil !== 0,
                  ejected_until:
                    e.outlier.ejectedUntil !== 0 ? new Date(e.outlier.ejectedUntil).toISOString() : null,
                  ejections: e.outlier.ejections,
                  consecutive_5xx: e.outlier.consecutive5xx,
                  consecutive_gateway_failure: e.outlier.consecutiveGateway,
                },
              }
            : {}),
          stats: {
            rq_active: e.activeRequests,
            rq_total: e.rqTotal,
            rq_success: e.rqSuccess,
            rq_error: e.rqError,
            cx_connect_fail: e.cxConnectFail,
          },
        })),
      })),
    };
  }

  /** Envoy's text format: cluster::host::stat::value. */
  private clustersText(): string {
    let out = "";
    for (const c of this.proxy.clusters.all()) {
      out += `${c.name}::default_priority::max_connections::${c.limits.maxConnections}\n`;
      out += `${c.name}::default_priority::max_pending_requests::${c.limits.maxPendingRequests}\n`;
      out += `${c.name}::default_priority::max_requests::${c.limits.maxRequests}\n`;
      for (const e of c.endpoints) {
        const p = `${c.name}::${e.key}::`;
        out += `${p}rq_active::${e.activeRequests}\n${p}rq_total::${e.rqTotal}\n${p}rq_success::${e.rqSuccess}\n${p}rq_error::${e.rqError}\n`;
        out += `${p}cx_connect_fail::${e.cxConnectFail}\n${p}weight::${e.weight}\n${p}health_flags::${e.healthy ? "healthy" : "/failed_outlier_check"}\n`;
        out += `${p}region::${e.locality.split("/")[0] ?? ""}\n${p}zone::${e.locality.split("/")[1] ?? ""}\n`;
      }
    }
    return out;
  }
}

/** Envoy's filter is an RE2 regex too: no backtracking on whatever an operator types. */
function safeRegExp(s: string): { test(s: string): boolean } | undefined {
  try {
    return new (RE2())(s, "u");
  } catch {
    return undefined;
  }
}

/**
 * Envoy's /memory, in Node's terms: the process' resident memory, the V8 heap (used and committed, per space)
 * and memory outside it (Buffers). Bytes.
 */
function memoryReport(): Record<string, unknown> {
  const m = process.memoryUsage();
  const spaces: Record<string, { used: number; committed: number }> = {};
  for (const s of v8.getHeapSpaceStatistics())
    spaces[s.space_name] = { used: s.space_used_size, committed: s.physical_space_size };
  return {
    rss: m.rss,
    heap_used: m.heapUsed,
    heap_committed: m.heapTotal,
    external: m.external,
    array_buffers: m.arrayBuffers,
    spaces,
  };
}
