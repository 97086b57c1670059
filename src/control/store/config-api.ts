// The control plane's config API (for `isthmus apply / get / delete`): HTTP with a bearer token, bounded
// bodies, JSON answers. POST /apis/resources (YAML or JSON body) applies all or nothing; GET
// /apis/resources/KIND[/NAMESPACE[/NAME]] lists; DELETE /apis/resources/KIND/NAMESPACE/NAME deletes.
// Refusals: 400 invalid, 404 not found, 409 a resource a --config file defines, 413 over APPLY_LIMITS.
// Workload registrations (workload-source.ts; the local runtime registers each pod): PUT
// /apis/registrations/NAMESPACE/NAME with a JSON body ({address, labels, serviceAccount, locality, network,
// cluster, weight, ports, group, healthy}; at most 64 KiB), GET /apis/registrations[/NAMESPACE[/NAME]],
// DELETE /apis/registrations/NAMESPACE/NAME.
// Workload tokens for the CA (src/control/ca/tokens.ts): POST /apis/tokens {namespace, serviceAccount,
// ttlSeconds} answers {token, expiresAt}.
// The debug views behind the same token (as istiod's /debug endpoints): GET /debug/syncz (every connected
// proxy's sync state, for isthmus proxy-status), GET /debug/config_dump?proxyID=ID (isthmus proxy-config) and
// GET /debug/tls_check?proxyID=ID[&host=HOST] (isthmus tls-check) and GET /debug/remote_clusters (isthmus
// remote-clusters).
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { closeServer, listenOn } from "../http/server-lifecycle.ts";
import { type ProxyStatus, type SyncState, syncState } from "../push/discovery-server.ts";
import type { RegistrationSource } from "../registry/workload-source.ts";
import type { TlsCheckRow } from "../translate/tls-check.ts";
import { APPLY_LIMITS, type ChangeResult, type ConfigStore } from "./config-store.ts";

/** What the debug views read: the push side's view of its proxies. */
export interface DebugSource {
  status(): ProxyStatus[];
  currentConfig(id: string): { status: ProxyStatus; version: string; config: ProxyConfig } | undefined;
  /** isthmus tls-check: the proxy's service ports with client and server mTLS modes; undefined: not connected. */
  tlsCheck?(id: string, host: string | undefined): readonly TlsCheckRow[] | undefined;
  /** isthmus remote-clusters: this cluster, its peers, link states and last syncs (multi-cluster only). */
  remoteClusters?(): object;
}

/** One proxy in /debug/syncz. */
export interface SyncStatus extends ProxyStatus {
  readonly state: SyncState;
}

const MAX_BODY = APPLY_LIMITS.maxBytes;
const MAX_REGISTRATION_BODY = 64 * 1024;

/** Issues workload tokens from a request body (WorkloadTokens.issueFor). */
export interface TokenIssuer {
  issueFor(
    body: unknown,
  ): Promise<{ ok: true; token: string; expiresAt: string } | { ok: false; errors: string[] }>;
}

const STATUS: Record<NonNullable<ChangeResult["reason"]>, number> = {
  invalid: 400,
  "not-found": 404,
  conflict: 409,
  "too-large": 413,
};
const statusOf = (r: ChangeResult): number => (r.ok ? 200 : STATUS[r.reason ?? "invalid"]);

const tooLarge = (bytes?: number) =>
  `the body${bytes === undefined ? "" : ` (${bytes} bytes)`} is larger than ${MAX_BODY} bytes ` +
  `(${MAX_BODY / 1048576} MiB), the limit of one apply; split it into several`;

export class ConfigApi {
  private readonly server: http.Server;
  private readonly store: ConfigStore;
  private readonly token: Buffer;
  private readonly debug: DebugSource | undefined;
  private readonly registrations: RegistrationSource | undefined;
  private readonly tokens: TokenIssuer | undefined;

  constructor(
    store: ConfigStore,
    token: string,
    debug?: DebugSource,
    registrations?: RegistrationSource,
    tokens?: TokenIssuer,
  ) {
    if (token.length < 16) throw new Error("the API token must have at least 16 characters");
    this.store = store;
    this.debug = debug;
    this.registrations = registrations;
    this.tokens = tokens;
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
    if (parts[0] === "apis" && parts[1] === "registrations" && this.registrations !== undefined) {
      await this.serveRegistrations(req, res, parts.slice(2), send);
      return;
    }
    if (parts[0] === "apis" && parts[1] === "tokens" && parts.length === 2 && this.tokens !== undefined) {
      if (req.method !== "POST") {
        req.resume();
        send(405, { error: "unsupported method" });
        return;
      }
      const body = await readBody(req, MAX_REGISTRATION_BODY);
      if (body.problem !== undefined) {
        if (body.problem === "too-large")
          refuseBody(req, res, `a token request is at most ${MAX_REGISTRATION_BODY} bytes`);
        return;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.text);
      } catch (e) {
        send(400, { ok: false, errors: [`the body is not JSON: ${(e as Error).message}`] });
        return;
      }
      const issued = await this.tokens.issueFor(parsed);
      send(issued.ok ? 200 : 400, issued.ok ? { token: issued.token, expiresAt: issued.expiresAt } : issued);
      return;
    }
    if (parts[0] !== "apis" || parts[1] !== "resources") {
      req.resume();
      send(404, { error: "not found" });
      return;
    }
    const [, , kind, namespace, name] = parts;
    if (req.method === "POST" && kind === undefined) {
      const declared = Number(req.headers["content-length"] ?? Number.NaN);
      if (declared > MAX_BODY) {
        refuseBody(req, res, tooLarge(declared));
        return;
      }
      const body = await readBody(req, MAX_BODY);
      if (body.problem !== undefined) {
        if (body.problem === "too-large") refuseBody(req, res, tooLarge());
        return;
      }
      const r = await this.store.apply(String(req.headers["x-source"] ?? "request"), body.text);
      send(statusOf(r), r);
      return;
    }
    req.resume();
    if (req.method === "GET" && kind !== undefined) {
      send(200, { items: this.store.get(kind, namespace, name).map((r) => r.object) });
      return;
    }
    if (req.method === "DELETE" && kind && namespace && name) {
      const r = this.store.delete(kind, namespace, name);
      send(statusOf(r), r);
      return;
    }
    send(405, { error: "unsupported method or path" });
  }

  private async serveRegistrations(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    [namespace, name, extra]: string[],
    send: (status: number, body: unknown) => void,
  ): Promise<void> {
    const registrations = this.registrations!;
    if (req.method === "GET" && extra === undefined) {
      req.resume();
      send(200, { items: registrations.get(namespace, name) });
      return;
    }
    if (namespace === undefined || name === undefined || extra !== undefined) {
      req.resume();
      send(404, { error: "a registration is /apis/registrations/NAMESPACE/NAME" });
      return;
    }
    if (req.method === "DELETE") {
      req.resume();
      if (registrations.deregister(namespace, name)) send(200, { ok: true });
      else send(404, { error: `no instance ${namespace}/${name} is registered` });
      return;
    }
    if (req.method !== "PUT") {
      req.resume();
      send(405, { error: "unsupported method" });
      return;
    }
    const body = await readBody(req, MAX_REGISTRATION_BODY);
    if (body.problem !== undefined) {
      if (body.problem === "too-large")
        refuseBody(req, res, `a registration is at most ${MAX_REGISTRATION_BODY} bytes`);
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.text);
    } catch (e) {
      send(400, { ok: false, errors: [`the body is not JSON: ${(e as Error).message}`] });
      return;
    }
    const errors = registrations.register(namespace, name, parsed);
    send(errors.length === 0 ? 200 : 400, errors.length === 0 ? { ok: true } : { ok: false, errors });
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
    if (view === "tls_check" && debug.tlsCheck !== undefined) {
      const id = query.get("proxyID") ?? "";
      const rows = id === "" ? undefined : debug.tlsCheck(id, query.get("host") ?? undefined);
      if (rows === undefined) {
        send(404, { error: `no proxy "${id}" is connected` });
        return;
      }
      send(200, { items: rows });
      return;
    }
    if (view === "remote_clusters") {
      if (debug.remoteClusters === undefined) {
        send(404, { error: "this control plane runs alone (no --cluster): it has no remote clusters" });
        return;
      }
      send(200, debug.remoteClusters());
      return;
    }
    send(404, { error: "not found" });
  }
}

/** The body as UTF-8 text; past `max` bytes the rest is read and dropped (see refuseBody). */
function readBody(
  req: http.IncomingMessage,
  max: number,
): Promise<{ text: string; problem?: undefined } | { problem: "too-large" | "aborted" }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      if (size > max) return;
      size += c.length;
      if (size > max) {
        chunks.length = 0;
        resolve({ problem: "too-large" });
      } else chunks.push(c);
    });
    req.once("end", () => resolve({ text: Buffer.concat(chunks).toString("utf8") }));
    // A promise settles once: after "end" or "too-large" this changes nothing.
    req.once("close", () => resolve({ problem: "aborted" }));
  });
}

/**
 * Answers 413 to a request whose body is still arriving, once the rest of the body has been read and dropped:
 * a client still writing into a socket that is closed sees the reset instead of the answer. Dropping is bounded
 * in time; a client that keeps sending is cut off.
 */
function refuseBody(req: http.IncomingMessage, res: http.ServerResponse, error: string): void {
  const text = `${JSON.stringify({ error }, null, 2)}\n`;
  const answer = () => {
    clearTimeout(cutOff);
    res.writeHead(413, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      connection: "close",
    });
    res.end(text);
  };
  const cutOff = setTimeout(() => req.destroy(), 10_000);
  cutOff.unref();
  if (req.complete) {
    answer();
    return;
  }
  req.once("end", answer);
  req.once("close", () => clearTimeout(cutOff));
  req.resume();
}
