// Outgoing HTTP for Bee Travels' apps (adapted from examples/guestbook/lib/mesh-http.mjs). In a pod,
// HTTP_PROXY is the pod's sidecar (http://POD_IP:15001): a request goes to it in proxy form (absolute-form
// request line, Host header = the service's host:port) and the sidecar routes it through the mesh (canary
// weights, retries, timeouts, faults, mutual TLS). Without HTTP_PROXY (the apps run standalone), or for a host
// in NO_PROXY, the request goes straight to the URL's host.
import http from "node:http";

const DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024;

/**
 * Request headers the ui passes on to the services it calls, as Istio's apps must for tracing and for
 * header-based routing: the trace context, and the two headers Bee Travels' VirtualServices match on
 * (x-data-version pins a data version, x-test-fault triggers the fault injection on currency-exchange).
 */
export const PROPAGATED_HEADERS = [
  "x-request-id",
  "traceparent",
  "tracestate",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-flags",
  "b3",
  "x-data-version",
  "x-test-fault",
];

/** The headers of `req` to pass on (see PROPAGATED_HEADERS). */
export function propagatedHeaders(req) {
  const out = {};
  for (const name of PROPAGATED_HEADERS) {
    const v = req.headers[name];
    if (typeof v === "string" && v.length <= 256) out[name] = v;
  }
  return out;
}

export class UpstreamError extends Error {
  /**
   * @param {string} message
   * @param {"timeout" | "unreachable" | "status" | "invalid"} kind
   * @param {number} [status]
   */
  constructor(message, kind, status) {
    super(message);
    this.name = "UpstreamError";
    this.kind = kind;
    this.status = status;
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
      const err = new UpstreamError(`${target.hostname}: no response within ${timeoutMs} ms`, "timeout");
      finish(err);
      req.destroy(err);
    }, timeoutMs);
    req.on("error", (e) => {
      finish(
        e instanceof UpstreamError ? e : new UpstreamError(`${target.hostname}: ${e.message}`, "unreachable"),
      );
    });
    req.on("response", (res) => {
      const chunks = [];
      let size = 0;
      res.on("data", (chunk) => {
        size += chunk.length;
        if (size > maxBytes) {
          const err = new UpstreamError(
            `${target.hostname}: response larger than ${maxBytes} bytes`,
            "invalid",
          );
          finish(err);
          req.destroy(err);
          return;
        }
        chunks.push(chunk);
      });
      res.on("end", () =>
        finish(null, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", (e) => finish(new UpstreamError(`${target.hostname}: ${e.message}`, "unreachable")));
    });
    req.end(body);
  });
}

/**
 * A JSON exchange: resolves with the status and the parsed body of any answer that is JSON (2xx or not);
 * an answer that is not JSON, a timeout or an unreachable service is an UpstreamError. The mesh's own error
 * answers (503 from an injected fault or no healthy upstream, 504 from a route timeout, 429 from a rate limit,
 * 403 from a policy) are plain text: they come back as UpstreamError kind "status" with that status.
 * @param {string} url
 * @param {{method?: string, headers?: Record<string, string>, payload?: unknown, timeoutMs?: number,
 *   env?: NodeJS.ProcessEnv}} [options]
 * @returns {Promise<{status: number, json: any}>}
 */
export async function requestJson(url, options = {}) {
  const { payload, ...rest } = options;
  const res = await meshRequest(url, {
    ...rest,
    headers: {
      accept: "application/json",
      ...(payload !== undefined ? { "content-type": "application/json" } : {}),
      ...options.headers,
    },
    ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
  });
  const host = new URL(url).hostname;
  const type = String(res.headers["content-type"] ?? "");
  const text = res.body.toString("utf8");
  if (!type.includes("application/json")) {
    const detail = text.slice(0, 200).trim();
    throw new UpstreamError(
      `${host} answered ${res.status}${detail ? `: ${detail}` : ""}`,
      res.status >= 200 && res.status < 300 ? "invalid" : "status",
      res.status,
    );
  }
  try {
    return { status: res.status, json: JSON.parse(text) };
  } catch {
    throw new UpstreamError(`${host} answered ${res.status} with a body that is not JSON`, "invalid");
  }
}

function stripBrackets(h) {
  return h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h;
}
