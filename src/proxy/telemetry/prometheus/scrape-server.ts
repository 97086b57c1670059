// The Prometheus scrape endpoint of a sidecar (Istio's :15090/stats/prometheus): Istio's standard metrics and
// the proxy's own counters and gauges under Envoy's Prometheus names (envoy_cluster_upstream_rq_total{
// cluster_name="..."}, envoy_http_downstream_rq_2xx{http_conn_manager_prefix="..."}, ...), as Istio's bootstrap
// names them.
import net from "node:net";
import { respond, serveOneRequest } from "../../admin/one-request.ts";
import { esc } from "./istio-metrics.ts";

export interface ScrapeSources {
  istio(): string;
  /** The proxy's stats: [dotted name, value]. */
  envoy(): Array<[string, number]>;
  gauges(): ReadonlySet<string>;
}

export class ScrapeServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly sources: ScrapeSources;

  constructor(sources: ScrapeSources) {
    this.sources = sources;
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      serveOneRequest(socket, (method, target, s) => this.handle(method, target, s));
    });
  }

  listen(address: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", (e: NodeJS.ErrnoException) =>
        reject(new Error(`prometheus: cannot listen on ${address}:${port}: ${e.code ?? e.message}`)),
      );
      this.server.listen(port, address, () => {
        const a = this.server.address();
        resolve(typeof a === "object" && a !== null ? a.port : port);
      });
    });
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private handle(method: string, target: string, socket: net.Socket): void {
    const path = target.split("?")[0];
    if (path !== "/stats/prometheus" && path !== "/metrics") {
      respond(socket, 404, "not found\n");
      return;
    }
    if (method !== "GET" && method !== "HEAD") {
      respond(socket, 405, "use GET\n");
      return;
    }
    const body = this.sources.istio() + envoyExposition(this.sources.envoy(), this.sources.gauges());
    respond(socket, 200, method === "HEAD" ? "" : body, "text/plain; version=0.0.4; charset=utf-8");
  }
}

/**
 * Envoy's Prometheus names for its stats: the cluster and HTTP prefixes become labels (cluster_name,
 * http_conn_manager_prefix), the rest of the dotted name joins with underscores after "envoy_".
 */
export function envoyExposition(stats: Array<[string, number]>, gauges: ReadonlySet<string>): string {
  const families = new Map<string, { type: string; lines: string[] }>();
  for (const [name, value] of stats) {
    let metric: string;
    let labels = "";
    const outlier = /^cluster\.(.+)\.outlier_detection\.([a-z0-9_]+)$/.exec(name);
    // TLS stats (ssl.*) of clusters and listeners, as Envoy names them: envoy_cluster_ssl_*{cluster_name} and
    // envoy_listener_ssl_*{envoy_listener_address}.
    const ssl = /^(cluster|listener)\.(.+)\.ssl\.([a-z0-9_]+)$/.exec(name);
    const cluster = /^cluster\.(.+)\.([a-z0-9_]+)$/.exec(name);
    // The HTTP stat prefix is free text (it may hold dots): the known stat names anchor the match at the end.
    const http = /^http\.(.+)\.(downstream_[a-z0-9_]+|response_flag\.[A-Z]+)$/.exec(name);
    if (outlier) {
      metric = `envoy_cluster_outlier_detection_${outlier[2]}`;
      labels = `{cluster_name="${esc(outlier[1]!)}"}`;
    } else if (ssl) {
      metric = `envoy_${ssl[1]}_ssl_${ssl[3]}`;
      labels = `{${ssl[1] === "cluster" ? "cluster_name" : "envoy_listener_address"}="${esc(ssl[2]!)}"}`;
    } else if (cluster) {
      metric = `envoy_cluster_${cluster[2]}`;
      labels = `{cluster_name="${esc(cluster[1]!)}"}`;
    } else if (http) {
      metric = `envoy_http_${http[2]!.replace(/\./g, "_")}`;
      labels = `{http_conn_manager_prefix="${esc(http[1]!)}"}`;
    } else {
      metric = `envoy_${name.replace(/[^a-zA-Z0-9_]/g, "_")}`;
    }
    metric = metric.replace(/[^a-zA-Z0-9_:]/g, "_");
    let f = families.get(metric);
    if (!f) {
      f = { type: gauges.has(name) ? "gauge" : "counter", lines: [] };
      families.set(metric, f);
    }
    f.lines.push(`${metric}${labels} ${value}`);
  }
  let out = "";
  for (const [metric, f] of families) out += `# TYPE ${metric} ${f.type}\n${f.lines.join("\n")}\n`;
  return out;
}
