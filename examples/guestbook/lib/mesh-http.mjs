// Outgoing HTTP for the Guestbook's apps. In a pod, HTTP_PROXY is the pod's sidecar (http://POD_IP:15001):
// a request goes to it in proxy form (absolute-form request line, Host header = the service's host:port) and
// the sidecar routes it through the mesh. Without HTTP_PROXY (the apps run standalone), or for a host in
// NO_PROXY, the request goes straight to the URL's host.
import http from "node:http";

const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;

export class UpstreamError extends Error {
  /**
   * @param {string} message
   * @param {"timeout" | "unreachable" | "status" | "invalid"} kind
   * @param {number} [status]
   * @param {import("node:http").IncomingHttpHeaders} [headers] the response's, when one came
   */
  constructor(message, kind, status, headers) {
    super(message);
    this.name = "UpstreamError";
    this.kind = kind;
    this.status = status;
    this.headers = headers;
  }
}

/** The proxy from HTTP_PROXY / http_proxy, or undefined when unset or empty. */
export function proxyFromEnv(env = process.env) {
  const raw = env.HTTP_PROXY || env.http_proxy;
  if (!raw) return undefined;
  let u;
  try {
    u = new URL(raw.includes("://") ? raw : `http://${raw}`);
  } catch {
    throw new Error(`HTTP_PROXY is not a URL: ${JSON.stringify(raw)}`);
  }
  if (u.protocol !== "http:") throw new Error(`HTTP_PROXY must be an http:// URL, not ${raw}`);
  return { host: stripBrackets(u.hostname), port: Number(u.port || 80) };
}

/** Whether NO_PROXY / no_proxy (comma-separated names, ".suffix" or "*") exempts `hostname`. */
export function bypassesProxy(hostname, env = process.env) {
  const list = (env.NO_PROXY ?? env.no_proxy ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const h = stripBrackets(hostname.toLowerCase());
  return list.some((entry) => {
    if (entry === "*") return true;
    const name = stripBrackets(entry.replace(/:\d+$/, "")).replace(/^\*?\./, "");
    return h === name || h.endsWith(`.${name}`);
  });
}

/**
 * Sends one request and reads the whole response (at most maxResponseBytes).
 * @param {string} url absolute http:// URL
 * @param {{method?: string, headers?: Record<string, string>, body?: string | Buffer,
 *   timeoutMs?: number, maxResponseBytes?: number, env?: NodeJS.ProcessEnv}} [options]
 * @returns {Promise<{status: number, headers: import("node:http").IncomingHttpHeaders, body: Buffer}>}
 */
export function meshRequest(url, options = {}) {
  const target = new URL(url);
  if (target.protocol !== "http:") throw new Error(`only http:// URLs are supported, not ${url}`);
  const env = options.env ?? process.env;
  const hostname = stripBrackets(target.hostname);
  const port = Number(target.port || 80);
  const hostPort = `${target.hostname}:${port}`;
  const pathAndQuery = `${target.pathname}${target.search}`;
  const proxy = bypassesProxy(hostname, env) ? undefined : proxyFromEnv(env);
  const timeoutMs = options.timeoutMs ?? 2000;
  const maxBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  const headers = { ...options.headers, host: hostPort, connection: "close" };
  if (body) headers["content-length"] = String(body.length);

  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(value);
    };
    const req = http.request({
      host: proxy ? proxy.host : hostname,
      port: proxy ? proxy.port : port,
      method: options.method ?? "GET",
      // Proxy form: the absolute URL on the request line, as the sidecar's HTTP_PROXY port expects.
      path: proxy ? `http://${hostPort}${pathAndQuery}` : pathAndQuery,
      headers,
      agent: false,
    });
    // One deadline for the whole exchange (connect, request, response), not an idle timeout.
    const timer = setTimeout(() => {
      const err = new UpstreamError(`${hostPort}: no response within ${timeoutMs} ms`, "timeout");
      finish(err);
      req.destroy(err);
    }, timeoutMs);
    req.on("error", (e) => {
      finish(e instanceof UpstreamError ? e : new UpstreamError(`${hostPort}: ${e.message}`, "unreachable"));
    });
    req.on("response", (res) => {
      const chunks = [];
      let size = 0;
      res.on("data", (chunk) => {
        size += chunk.length;
        if (size > maxBytes) {
          const err = new UpstreamError(`${hostPort}: response larger than ${maxBytes} bytes`, "invalid");
          finish(err);
          req.destroy(err);
          return;
        }
        chunks.push(chunk);
      });
      res.on("end", () =>
        finish(null, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", (e) => finish(new UpstreamError(`${hostPort}: ${e.message}`, "unreachable")));
    });
    req.end(body);
  });
}

/**
 * POSTs JSON and returns the parsed JSON answer of a 2xx response; anything else is an UpstreamError.
 * @param {string} url
 * @param {unknown} payload
 * @param {{headers?: Record<string, string>, timeoutMs?: number, env?: NodeJS.ProcessEnv}} [options]
 */
export async function postJson(url, payload, options = {}) {
  return (await postJsonResponse(url, payload, options)).value;
}

/**
 * postJson, with the response's headers too (who answered: the analyzer names its pod and cluster there). An
 * UpstreamError for a response that came carries its headers as well.
 * @param {string} url
 * @param {unknown} payload
 * @param {{headers?: Record<string, string>, timeoutMs?: number, env?: NodeJS.ProcessEnv}} [options]
 * @returns {Promise<{value: unknown, headers: import("node:http").IncomingHttpHeaders}>}
 */
export async function postJsonResponse(url, payload, options = {}) {
  const res = await meshRequest(url, {
    ...options,
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", ...options.headers },
    body: JSON.stringify(payload),
  });
  const host = new URL(url).host;
  if (res.status < 200 || res.status > 299) {
    const detail = res.body.toString("utf8").slice(0, 200).trim();
    throw new UpstreamError(
      `${host} answered ${res.status}${detail ? `: ${detail}` : ""}`,
      "status",
      res.status,
      res.headers,
    );
  }
  try {
    return { value: JSON.parse(res.body.toString("utf8")), headers: res.headers };
  } catch {
    throw new UpstreamError(
      `${host} answered ${res.status} with a body that is not JSON`,
      "invalid",
      res.status,
      res.headers,
    );
  }
}

function stripBrackets(h) {
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}
