// Shared by the proxy's integration tests: real backends (node:http and node:net on 127.0.0.1, port 0), the
// proxy in-process, and a raw HTTP/1 client that reads responses off a socket without node:http's leniency
// (so a test sees exactly what the proxy sent). Everything started here is registered and stopped by
// closeAll(), which each test file calls in after(): nothing outlives a failed test.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { AdminServer } from "./admin/admin-server.ts";
import type { ClusterConfig, ListenerLimits, ProxyConfig, RouteConfiguration } from "./config/types.ts";
import { ProxyServer } from "./proxy.ts";

const closers: Array<() => Promise<void> | void> = [];

/** Registers something to stop in closeAll(), newest first. */
export function onClose(fn: () => Promise<void> | void): void {
  closers.push(fn);
}

export async function closeAll(): Promise<void> {
  while (closers.length > 0) {
    const fn = closers.pop()!;
    try {
      await fn();
    } catch {
      // keep closing the rest
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when `cond()` holds, polling; fails after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// ------------------------------------------------------------------------------------------------ backends

export interface HttpBackend {
  readonly server: http.Server;
  readonly port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  readonly open: Set<net.Socket>;
  /** Requests received so far. */
  requests: number;
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1; the handler gets every request. */
export async function httpBackend(handler: http.RequestListener): Promise<HttpBackend> {
  const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
    backend.requests++;
    handler(req, res);
  });
  const open = new Set<net.Socket>();
  const backend: HttpBackend = {
    server,
    port: 0,
    connections: 0,
    open,
    requests: 0,
    close: () => closeServer(server, open),
  };
  server.on("connection", (s: net.Socket) => {
    backend.connections++;
    open.add(s);
    s.once("close", () => open.delete(s));
  });
  await listen(server);
  (backend as { port: number }).port = (server.address() as net.AddressInfo).port;
  onClose(backend.close);
  return backend;
}

/** A backend that echoes what it received: method, url, headers (raw, in order) and a body digest. */
export function echo(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const out = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyLength: body.length,
      body: body.length <= 1024 ? body.toString("latin1") : undefined,
    });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
    res.end(out);
  });
}

export interface NetBackend {
  readonly server: net.Server;
  readonly port: number;
  connections: number;
  readonly open: Set<net.Socket>;
  close(): Promise<void>;
}

/** A raw TCP backend: the handler gets each connection. */
export async function netBackend(onConnection: (s: net.Socket) => void): Promise<NetBackend> {
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    backend.connections++;
    open.add(s);
    s.once("close", () => open.delete(s));
    s.on("error", () => {});
    onConnection(s);
  });
  const backend: NetBackend = {
    server,
    port: 0,
    connections: 0,
    open,
    close: () => closeServer(server, open),
  };
  await listen(server);
  (backend as { port: number }).port = (server.address() as net.AddressInfo).port;
  onClose(backend.close);
  return backend;
}

function listen(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: net.Server, open: Set<net.Socket>): Promise<void> {
  for (const s of open) s.destroy();
  return new Promise((resolve) => {
    if (!server.listening) resolve();
    else server.close(() => resolve());
  });
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await listen(s);
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// --------------------------------------------------------------------------------------------------- proxy

export interface RunningProxy {
  readonly proxy: ProxyServer;
  /** Bound port of listener "main". */
  readonly port: number;
  close(): Promise<void>;
}

export interface SimpleConfig {
  readonly routes: RouteConfiguration;
  readonly clusters?: readonly ClusterConfig[];
  readonly limits?: ListenerLimits;
  readonly mode?: "server" | "http_proxy";
  readonly statPrefix?: string;
  readonly version?: string;
}

/** A config with one HTTP listener "main" on 127.0.0.1:0 and the given routes and clusters. */
export function config(c: SimpleConfig): ProxyConfig {
  return {
    ...(c.version !== undefined ? { version: c.version } : {}),
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        ...(c.limits ? { limits: c.limits } : {}),
        filterChains: [
          {
            name: "http",
            filter: {
              type: "http",
              routeConfig: c.routes,
              codec: "http1",
              ...(c.mode ? { mode: c.mode } : {}),
              ...(c.statPrefix ? { statPrefix: c.statPrefix } : {}),
            },
          },
        ],
      },
    ],
    clusters: c.clusters ?? [],
  };
}

/** Routes everything for any authority to `cluster`. */
export function catchAll(cluster: string): RouteConfiguration {
  return {
    name: "routes",
    virtualHosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster } }] }],
  };
}

/** A cluster of endpoints on 127.0.0.1. */
export function cluster(
  name: string,
  ports: readonly number[],
  extra: Partial<ClusterConfig> = {},
): ClusterConfig {
  return { name, endpoints: ports.map((port) => ({ address: "127.0.0.1", port })), ...extra };
}

export async function startProxy(cfg: ProxyConfig): Promise<RunningProxy> {
  const proxy = new ProxyServer();
  const r = await proxy.apply(cfg);
  assert.deepEqual(r.errors, [], "the test config applies");
  const close = () => proxy.shutdown(0);
  onClose(close);
  const port = proxy.listener(cfg.listeners[0]!.name)!.boundPort;
  return { proxy, port, close };
}

export async function startAdmin(proxy: ProxyServer): Promise<number> {
  const admin = new AdminServer(proxy, { address: "127.0.0.1", port: 0, onQuit: () => {} });
  const port = await admin.listen();
  onClose(() => admin.close());
  return port;
}

// ---------------------------------------------------------------------------------------------- raw client

export interface RawResponse {
  readonly status: number;
  readonly reason: string;
  /** Lower-cased name -> values, in order. */
  readonly headers: Map<string, string[]>;
  /** The head as received, for exact assertions. */
  readonly rawHead: string;
  /** The body after de-chunking. */
  readonly body: Buffer;
  /** How the body was framed. */
  readonly framing: "none" | "length" | "chunked" | "close";
  header(name: string): string | undefined;
}

/**
 * An HTTP/1 client on a raw socket: write any bytes, read responses one at a time with an independent, simple
 * parser (lenient where the proxy must be strict, so that it reports what was sent rather than refusing it).
 */
export class RawClient {
  readonly socket: net.Socket;
  /** Received and not consumed yet, as it arrived (joined only when a search needs it). */
  private chunks: Buffer[] = [];
  private len = 0;
  private ended = false;
  private wake: (() => void) | null = null;
  /** Resolves when the socket is closed (by either side). */
  readonly closed: Promise<void>;
  /** Set when the connection failed (e.g. reset by the peer). */
  error: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (c: Buffer) => {
      this.chunks.push(c);
      this.len += c.length;
      this.poke();
    });
    socket.on("error", (e) => {
      this.error = e;
    });
    this.closed = new Promise((resolve) => {
      socket.once("close", () => {
        this.ended = true;
        this.poke();
        resolve();
      });
    });
    socket.once("end", () => {
      this.ended = true;
      this.poke();
    });
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, noDelay: true });
      const c = new RawClient(s);
      onClose(() => {
        s.destroy();
      });
      s.once("connect", () => resolve(c));
      s.once("error", reject);
    });
  }

  get isClosed(): boolean {
    return this.ended;
  }

  write(data: string | Buffer): boolean {
    return this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for more bytes (or the end); throws on timeout, or when the connection has ended. */
  private async more(timeoutMs: number): Promise<void> {
    if (this.ended) throw new Error(`connection closed; had ${JSON.stringify(this.text().slice(0, 300))}`);
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      this.wake = resolve;
      timer = setTimeout(
        () =>
          reject(
            new Error(`nothing more in ${timeoutMs} ms; had ${JSON.stringify(this.text().slice(0, 300))}`),
          ),
        timeoutMs,
      );
    }).finally(() => clearTimeout(timer));
  }

  /** The unconsumed bytes as one buffer. */
  private flat(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  private text(): string {
    return this.flat().toString("latin1");
  }

  private take(n: number): Buffer {
    const all = this.flat();
    const out = all.subarray(0, n);
    this.chunks = n < all.length ? [all.subarray(n)] : [];
    this.len -= out.length;
    return out;
  }

  /** Waits until `needle` is among the unconsumed bytes; returns its index. */
  private async find(needle: string, deadline: number): Promise<number> {
    for (;;) {
      const i = this.flat().indexOf(needle);
      if (i !== -1) return i;
      await this.more(Math.max(1, deadline - Date.now()));
    }
  }

  /** Bytes received and not consumed yet. */
  get pending(): Buffer {
    return this.flat();
  }

  /** Waits until `n` bytes are buffered, then takes them. */
  async readBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.len < n) await this.more(Math.max(1, deadline - Date.now()));
    return Buffer.from(this.take(n));
  }

  /** Everything until the peer closes. */
  async readToEnd(timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      try {
        await this.more(Math.max(1, deadline - Date.now()));
      } catch (e) {
        if (!this.ended) throw e;
      }
    }
    return Buffer.from(this.take(this.len));
  }

  /** Reads one response (1xx included). `method` tells whether a body can follow. */
  async read(method = "GET", timeoutMs = 5000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const end = await this.find("\r\n\r\n", deadline);
    const rawHead = this.take(end + 4).toString("latin1");
    const lines = rawHead.slice(0, -4).split("\r\n");
    const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, [...(headers.get(name) ?? []), value]);
    }
    const h = (name: string) => headers.get(name)?.join(", ");
    let body: Buffer = Buffer.alloc(0);
    let framing: RawResponse["framing"] = "none";
    if (
      method === "HEAD" ||
      status < 200 ||
      status === 204 ||
      status === 304 ||
      (method === "CONNECT" && status < 300)
    ) {
      // no body
    } else if (h("transfer-encoding")?.toLowerCase() === "chunked") {
      framing = "chunked";
      const parts: Buffer[] = [];
      for (;;) {
        const eol = await this.find("\r\n", deadline);
        const size = Number.parseInt(this.take(eol + 2).toString("latin1"), 16);
        if (size === 0) {
          // trailers, then the empty line
          for (;;) {
            const line = await this.find("\r\n", deadline);
            if (this.take(line + 2).length === 2) break;
          }
          break;
        }
        while (this.len < size + 2) await this.more(left());
        parts.push(Buffer.from(this.take(size)));
        this.take(2);
      }
      body = Buffer.concat(parts);
    } else if (h("content-length") !== undefined) {
      framing = "length";
      body = await this.readBytes(Number(h("content-length")), left());
    } else {
      framing = "close";
      body = await this.readToEnd(left());
    }
    return { status, reason: m[2] ?? "", headers, rawHead, body, framing, header: h };
  }

  /** Resolves true when the peer closes within `timeoutMs`. */
  async closesWithin(timeoutMs: number): Promise<boolean> {
    if (this.ended) return true;
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), timeoutMs);
    });
    const r = await Promise.race([this.closed.then(() => true), t]);
    clearTimeout(timer);
    return r;
  }
}

/** One request on a fresh connection, closed afterwards. */
export async function send(port: number, raw: string | Buffer, method = "GET"): Promise<RawResponse> {
  const c = await RawClient.connect(port);
  try {
    c.write(raw);
    return await c.read(method);
  } finally {
    c.destroy();
  }
}

/** GET `path` with a Host header on a fresh connection. */
export function get(port: number, path: string, host = "example.com", headers: Record<string, string> = {}) {
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return send(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`);
}

/** A keep-alive client on one connection, for many requests in a row. */
export async function keepAliveClient(port: number) {
  const c = await RawClient.connect(port);
  return {
    client: c,
    async get(
      path: string,
      host = "example.com",
      headers: Record<string, string> = {},
    ): Promise<RawResponse> {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      c.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`);
      return c.read("GET");
    },
  };
}

export function json(r: RawResponse): Record<string, unknown> & {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
  bodyLength: number;
  body?: string;
} {
  return JSON.parse(r.body.toString("utf8"));
}

// --------------------------------------------------------------------------------------- proxy as a process

export interface ProxyProcess {
  readonly child: import("node:child_process").ChildProcess;
  readonly pid: number;
  /** Bound ports by listener name, from the startup lines. */
  readonly ports: Map<string, number>;
  adminPort: number | undefined;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Resolves when stderr matches `re` (already or later); fails after `timeoutMs`. */
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<void>;
}

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;

/**
 * Runs `bin/isthmus.js proxy ARGS` with this Node (from the sources, with this tree's fixes) and waits until
 * every listener named in `listeners` has printed its bound port. Killed (SIGKILL) in closeAll() if still up.
 */
export async function spawnProxy(args: string[], listeners: string[] = ["main"]): Promise<ProxyProcess> {
  const { spawn } = await import("node:child_process");
  const child = spawn(process.execPath, [BIN, "proxy", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
  });
  let err = "";
  const waiters: Array<() => void> = [];
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    err += d;
    for (const w of waiters.splice(0)) w();
  });
  child.stdout!.resume();
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      for (const w of waiters.splice(0)) w();
      resolve(code ?? signal ?? "unknown");
    });
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  onClose(async () => {
    if (!done) {
      child.kill("SIGKILL");
      await exited;
    }
  });
  const waitForStderr = async (re: RegExp, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(err)) {
      if (done) throw new Error(`proxy exited; stderr:\n${err}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} on stderr:\n${err}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 50);
      });
    }
  };
  const p: ProxyProcess = {
    child,
    pid: child.pid!,
    ports: new Map(),
    adminPort: undefined,
    stderr: () => err,
    exited,
    waitForStderr,
  };
  for (const name of listeners) {
    const re = new RegExp(`listener ${name} on [^\\s]+:(\\d+)`);
    await waitForStderr(re);
    p.ports.set(name, Number(re.exec(err)![1]));
  }
  const admin = /admin on [^\s]+:(\d+)/.exec(err);
  if (admin) p.adminPort = Number(admin[1]);
  return p;
}

/** Resident memory of a process in bytes, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}
