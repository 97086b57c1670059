// The control plane's config API (for `isthmus apply / get / delete`): HTTP with a bearer token, bounded
// bodies, JSON answers. POST /apis/resources (YAML or JSON body) applies all or nothing; GET
// /apis/resources/KIND[/NAMESPACE[/NAME]] lists; DELETE /apis/resources/KIND/NAMESPACE/NAME deletes.
// The debug views behind the same token (as istiod's /debug endpoints): GET /debug/syncz (every connected
// proxy's sync state, for isthmus proxy-status) and GET /debug/config_dump?proxyID=ID (isthmus proxy-config).
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { closeServer, listenOn } from "../http/server-lifecycle.ts";
import { type ProxyStatus, type SyncState, syncState } from "../push/discovery-server.ts";
import type { ConfigStore } from "./config-store.ts";

/** What the debug views read: the push side's view of its proxies. */
export interface DebugSource {
  status(): ProxyStatus[];
  currentConfig(id: string): { status: ProxyStatus; version: string; config: ProxyConfig } | undefined;
}

/** One proxy in /debug/syncz. */
export interface SyncStatus extends ProxyStatus {
  readonly state: SyncState;
}

const MAX_BODY = 8 * 1024 * 1024;

export class ConfigApi {
  private readonly server: http.Server;
  private readonly store: ConfigStore;
  private readonly token: Buffer;
  private readonly debug: DebugSource | undefined;

  constructor(store: ConfigStore, token: string, debug?: DebugSource) {
    if (token.length < 16) throw new Error("the API token must have at least 16 characters");
    this.store = store;
    this.debug = debug;
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
    return listenOn(this.server, address, port);
  }

  close(): Promise<void> {
    return closeServer(this.server);
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
    const url = new URL(req.url ?? "/", "http://control-plane");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "debug" && req.method === "GET" && this.debug !== undefined) {
      req.resume();
      this.serveDebug(parts[1], url.searchParams, send);
      return;
    }
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

  private serveDebug(
    view: string | undefined,
    query: URLSearchParams,
    send: (status: number, body: unknown) => void,
  ): void {
    const debug = this.debug!;
    if (view === "syncz") {
      const items: SyncStatus[] = debug
        .status()
        .map((s) => ({ ...s, state: syncState(s) }))
        .sort((a, b) => a.id.localeCompare(b.id));
      send(200, { items });
      return;
    }
    if (view === "config_dump") {
      const id = query.get("proxyID") ?? "";
      const found = id === "" ? undefined : debug.currentConfig(id);
      if (found === undefined) {
        send(404, { error: `no proxy "${id}" is connected` });
        return;
      }
      send(200, { ...found, state: syncState(found.status) });
      return;
    }
    send(404, { error: "not found" });
  }
}
