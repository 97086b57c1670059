// Shared by the control plane's end-to-end tests: the mesh as a user runs it, every part a real process.
// `isthmus control-plane` (push stream and config API on free ports, killed in closeAll()), the isthmus CLI
// against its config API (apply, proxy-status; run asynchronously so that backends living in the test process
// keep answering meanwhile), and an app's requests through its sidecar's outbound listener (HTTP_PROXY style:
// absolute-form requests to 127.0.0.1:15001 on the workload's address).
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { onClose, RawClient, type RawResponse } from "../proxy/test-support.ts";

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;

/** The sidecar's outbound listener port (Istio's 15001, names.ts' OUTBOUND_PORT). */
export const OUTBOUND_PORT = 15001;

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  /** Port of the push stream (proxies' --control-plane). */
  readonly pushPort: number;
  /** http://127.0.0.1:PORT of the config API (the CLI's --server). */
  readonly server: string;
  stderr(): string;
  /** SIGKILL (no goodbye to the proxies' streams); resolves once the process is gone. */
  kill(): Promise<void>;
}

/**
 * Runs `isthmus control-plane --config PATH... --listen LISTEN --api-listen 127.0.0.1:0 --monitoring-listen off
 * EXTRA...` with `token` in ISTHMUS_TOKEN; resolves once both servers have printed their ports.
 */
export async function startControlPlane(
  configs: readonly string[],
  token: string,
  listen = "127.0.0.1:0",
  extra: readonly string[] = [],
): Promise<ControlPlaneProcess> {
  const args = ["control-plane", "--listen", listen, "--api-listen", "127.0.0.1:0"];
  args.push("--monitoring-listen", "off");
  for (const c of configs) args.push("--config", c);
  args.push(...extra);
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ISTHMUS_FROM_SOURCE: "1", ISTHMUS_TOKEN: token },
  });
  let err = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => {
    err += d;
  });
  let gone = false;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      gone = true;
      resolve();
    });
  });
  const kill = async () => {
    if (!gone) child.kill("SIGKILL");
    await exited;
  };
  onClose(kill);
  const pushRe = /services on 127\.0\.0\.1:(\d+)/;
  const apiRe = /config API on 127\.0\.0\.1:(\d+)/;
  const deadline = Date.now() + 20_000;
  while (!pushRe.test(err) || !apiRe.test(err)) {
    if (gone) throw new Error(`the control plane exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`the control plane did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    pushPort: Number(pushRe.exec(err)![1]),
    server: `http://127.0.0.1:${apiRe.exec(err)![1]}`,
    stderr: () => err,
    kill,
  };
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `isthmus ARGS --server SERVER` with `token` in ISTHMUS_TOKEN, without blocking this process. */
export function isthmus(server: string, token: string, ...args: string[]): Promise<CliResult> {
  return runIsthmus([...args, "--server", server], token);
}

/**
 * `isthmus ARGS` with `token` in ISTHMUS_TOKEN until it exits (killed after `timeoutMs`), without blocking this
 * process: for commands that are expected to end, such as a control plane that refuses to start.
 */
export function runIsthmus(args: readonly string[], token: string, timeoutMs = 20_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ISTHMUS_FROM_SOURCE: "1", ISTHMUS_TOKEN: token },
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    let exited = false;
    // A test that fails before this ends must not leave it running (a control plane that did start).
    onClose(() => {
      if (!exited) child.kill("SIGKILL");
    });
    child.once("error", reject);
    child.once("close", (status) => {
      exited = true;
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** One proxy in `isthmus proxy-status -o json`. */
export interface ProxyStatusRow {
  readonly id: string;
  readonly state: string;
  readonly sent: string;
  readonly acked: string;
}

export async function proxyStatus(server: string, token: string): Promise<ProxyStatusRow[]> {
  const r = await isthmus(server, token, "proxy-status", "-o", "json");
  if (r.status !== 0) throw new Error(`isthmus proxy-status failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ProxyStatusRow[];
}

/**
 * Polls `isthmus proxy-status` until every proxy in `ids` is connected and SYNCED on a version other than
 * the one it had in `before` (when given): the change reached the proxy and the proxy applied it.
 */
export async function waitSynced(
  server: string,
  token: string,
  ids: readonly string[],
  before?: ReadonlyMap<string, string>,
  timeoutMs = 15_000,
): Promise<Map<string, string>> {
  const deadline = Date.now() + timeoutMs;
  let last: ProxyStatusRow[] = [];
  for (;;) {
    last = await proxyStatus(server, token).catch(() => []);
    const rows = ids.map((id) => last.find((r) => r.id === id));
    if (rows.every((r) => r !== undefined && r.state === "SYNCED" && r.acked !== before?.get(r.id)))
      return new Map(rows.map((r) => [r!.id, r!.acked]));
    if (Date.now() > deadline)
      throw new Error(`proxies not synced in ${timeoutMs} ms: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An app's HTTP/1.1 client to its sidecar: absolute-form requests to OUTBOUND_PORT on the workload's address. */
export class SidecarClient {
  private readonly ip: string;
  private conn: RawClient | undefined;

  constructor(ip: string) {
    this.ip = ip;
  }

  /**
   * GET http://AUTHORITY/PATH through the sidecar on a kept-alive connection; a connection the proxy closed
   * while idle is replaced before the request is written (as any HTTP client does), never after.
   */
  async get(
    authority: string,
    path = "/",
    headers: Record<string, string> = {},
    timeoutMs = 5000,
  ): Promise<RawResponse> {
    if (this.conn === undefined || this.conn.isClosed || this.conn.error !== null) {
      this.conn?.destroy();
      this.conn = await RawClient.connect(OUTBOUND_PORT, this.ip);
    }
    const c = this.conn;
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    c.write(`GET http://${authority}${path} HTTP/1.1\r\nhost: ${authority}\r\n${extra}\r\n`);
    try {
      const r = await c.read("GET", timeoutMs);
      if (r.header("connection")?.toLowerCase() === "close") this.close();
      return r;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    this.conn?.destroy();
    this.conn = undefined;
  }
}

/** A ServiceEntry for echo.example.internal:80 whose one endpoint is 127.0.0.1:PORT. */
export const echoServiceEntry = (port: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo.example.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${port} } }]
`;

/** A VirtualService aborting every request to echo.example.internal with STATUS (999 is invalid). */
export const faultVirtualService = (status: number) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo.example.internal]
  http:
    - fault: { abort: { httpStatus: ${status}, percentage: { value: 100 } } }
      route: [{ destination: { host: echo.example.internal } }]
`;

/** A workload token for NAMESPACE/SERVICE_ACCOUNT from the control plane's config API, in a 0600 file. */
export async function mintTokenFile(
  api: string,
  adminToken: string,
  dir: string,
  namespace: string,
  serviceAccount: string,
): Promise<string> {
  const r = await fetch(`${api}/apis/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ namespace, serviceAccount, ttlSeconds: 600 }),
  });
  if (r.status !== 200) throw new Error(`POST /apis/tokens: ${r.status} ${await r.text()}`);
  const file = join(dir, `${namespace}-${serviceAccount}-${Math.random().toString(36).slice(2)}.token`);
  writeFileSync(file, ((await r.json()) as { token: string }).token, { mode: 0o600 });
  return file;
}

/** PUT /apis/registrations/NAMESPACE/NAME: a pod or VM becomes an instance of the services selecting it. */
export async function registerWorkload(
  api: string,
  adminToken: string,
  namespace: string,
  name: string,
  body: unknown,
): Promise<void> {
  const r = await fetch(`${api}/apis/registrations/${namespace}/${name}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${adminToken}` },
    body: JSON.stringify(body),
  });
  if (r.status >= 300)
    throw new Error(`PUT registration ${namespace}/${name}: ${r.status} ${await r.text()}`);
}

/** `isthmus apply -f DIR/NAME` of `yaml`; throws with the CLI's stderr when it fails. */
export async function applyYaml(
  server: string,
  adminToken: string,
  dir: string,
  name: string,
  yaml: string,
): Promise<void> {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  const r = await isthmus(server, adminToken, "apply", "-f", file);
  if (r.status !== 0) throw new Error(`isthmus apply ${name}: ${r.stderr}`);
}

/** Retries `attempt` until `ok` holds of its result (a pushed change takes a moment to reach the proxies). */
export async function eventually<T>(
  attempt: () => Promise<T>,
  ok: (t: T) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let error: unknown;
  for (;;) {
    try {
      last = await attempt();
      if (ok(last)) return last;
    } catch (e) {
      error = e;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: last ${JSON.stringify(last) ?? String(error)}`.slice(0, 2000));
    await new Promise((r) => setTimeout(r, 100));
  }
}
