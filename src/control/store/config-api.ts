// The control plane's config API (for `isthmus apply / get / delete`): HTTP with a bearer token, bounded
// bodies, JSON answers. POST /apis/resources (YAML or JSON body) applies all or nothing; GET
// /apis/resources/KIND[/NAMESPACE[/NAME]] lists; DELETE /apis/resources/KIND/NAMESPACE/NAME deletes.
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { ConfigStore } from "./config-store.ts";

const MAX_BODY = 8 * 1024 * 1024;

export class ConfigApi {
  private readonly server: http.Server;
  private readonly store: ConfigStore;
  private readonly token: Buffer;

  constructor(store: ConfigStore, token: string) {
    if (token.length < 16) throw new Error("the API token must have at least 16 characters");
    this.store = store;
    this.token = Buffer.from(`Bearer ${token}`);
    this.server = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
      // A failure inside one request answers 500; it must never become an unhandled rejection that stops the
      // control plane.
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(`${JSON.stringify({ error: (e as Error).message })}\n`);
        } else res.destroy();
      });
    });
  }

  listen(address: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, address, () => resolve((this.server.address() as { port: number }).port));
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private authorized(req: http.IncomingMessage): boolean {
    const given = Buffer.from(req.headers.authorization ?? "");
    return given.length === this.token.length && timingSafeEqual(given, this.token);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      const text = `${JSON.stringify(body, null, 2)}\n`;
      res.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
      });
      res.end(text);
    };
    if (!this.authorized(req)) {
      req.resume();
      send(401, { error: "missing or wrong token" });
      return;
    }
    const parts = (req.url ?? "/").split("?")[0]!.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== "apis" || parts[1] !== "resources") {
      req.resume();
      send(404, { error: "not found" });
      return;
    }
    const [, , kind, namespace, name] = parts;
    if (req.method === "POST" && kind === undefined) {
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req as AsyncIterable<Buffer>) {
        size += c.length;
        if (size > MAX_BODY) {
          send(413, { error: `body larger than ${MAX_BODY} bytes` });
          req.destroy();
          return;
        }
        chunks.push(c);
      }
      const text = Buffer.concat(chunks).toString("utf8");
      const r = await this.store.apply(String(req.headers["x-source"] ?? "request"), text);
      send(r.ok ? 200 : 400, r);
      return;
    }
    req.resume();
    if (req.method === "GET" && kind !== undefined) {
      send(200, { items: this.store.get(kind, namespace, name).map((r) => r.object) });
      return;
    }
    if (req.method === "DELETE" && kind && namespace && name) {
      const r = this.store.delete(kind, namespace, name);
      send(r.ok ? 200 : 404, r);
      return;
    }
    send(405, { error: "unsupported method or path" });
  }
}
