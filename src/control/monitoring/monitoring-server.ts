// istiod's monitoring port (15014): GET /metrics in Prometheus' text format and GET /ready. Unauthenticated,
// as Prometheus scrapes it; it serves nothing but metrics (the debug views need the config API's token).
import http from "node:http";
import { closeServer, listenOn } from "../http/server-lifecycle.ts";
import type { ControlPlaneMetrics } from "./control-plane-metrics.ts";

export class MonitoringServer {
  private readonly server: http.Server;

  constructor(metrics: ControlPlaneMetrics) {
    this.server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
      req.resume();
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" || (path !== "/metrics" && path !== "/ready")) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
        return;
      }
      if (path === "/ready") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ready\n");
        return;
      }
      metrics.exposition().then(
        (text) => res.writeHead(200, { "content-type": metrics.contentType }).end(text),
        (e: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(`${e.message}\n`),
      );
    });
  }

  listen(address: string, port: number): Promise<number> {
    return listenOn(this.server, address, port);
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}
