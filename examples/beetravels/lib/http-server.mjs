// Server side helpers shared by Bee Travels' apps (adapted from examples/guestbook/lib/http-server.mjs): where
// to listen (HOST:PORT from the environment, never every interface), bounded JSON bodies, checked fields, JSON
// answers, one log line per request and a clean stop on SIGTERM.
import http from "node:http";

export class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {Record<string, string>} [headers]
   */
  constructor(status, message, headers) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/**
 * The address to bind: HOST (the pod's own loopback address under `isthmus up`, 127.0.0.1 when unset) and
 * the port from PORT, which must be given.
 * @param {string} app
 */
export function listenAddress(app, env = process.env) {
  const host = env.HOST || "127.0.0.1";
  if (host === "0.0.0.0" || host === "::") fail(app, `HOST=${host}: bind the pod's own address`);
  const port = intEnv(app, "PORT", undefined, 1, 65535, env);
  return { host, port };
}

/**
 * An integer from the environment, within [min, max]; `fallback` when unset (undefined: required).
 * @param {string} app
 * @param {string} name
 * @param {number | undefined} fallback
 * @param {number} min
 * @param {number} max
 * @returns {number}
 */
export function intEnv(app, name, fallback, min, max, env = process.env) {
  const raw = env[name];
  if (raw === undefined || raw === "") {
    if (fallback === undefined) fail(app, `${name} is required`);
    return /** @type {number} */ (fallback);
  }
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max)
    fail(app, `${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

/** A string from the environment; `fallback` when unset (undefined: required). */
export function stringEnv(app, name, fallback, env = process.env) {
  const raw = env[name];
  if (raw === undefined || raw === "") {
    if (fallback === undefined) fail(app, `${name} is required`);
    return fallback;
  }
  return raw;
}

/** Exits with a configuration error. */
export function fail(app, message) {
  console.error(`${app}: ${message}`);
  process.exit(2);
}

/**
 * Reads a JSON object body of at most maxBytes; throws HttpError 413 / 415 / 400.
 * @param {import("node:http").IncomingMessage} req
 * @param {number} maxBytes
 * @returns {Promise<Record<string, unknown>>}
 */
export async function readJsonBody(req, maxBytes) {
  const type = String(req.headers["content-type"] ?? "")
    .split(";")[0]
    .trim()
    .toLowerCase();
  if (type !== "application/json")
    throw new HttpError(415, "the body must be JSON (Content-Type: application/json)");
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes)
    throw new HttpError(413, `the body is larger than ${maxBytes} bytes`);
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpError(413, `the body is larger than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let value;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "the body is not valid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new HttpError(400, "the body must be a JSON object");
  return value;
}

/** A required string field: 1..maxChars characters after trimming. */
export function requireString(body, field, maxChars) {
  const v = body[field];
  if (typeof v !== "string") throw new HttpError(400, `"${field}" is required and must be a string`);
  const trimmed = v.trim();
  if (trimmed === "") throw new HttpError(400, `"${field}" must not be empty`);
  const length = [...trimmed].length;
  if (length > maxChars)
    throw new HttpError(400, `"${field}" is ${length} characters long; at most ${maxChars} are allowed`);
  return trimmed;
}

/** A required integer field within [min, max]. */
export function requireInt(body, field, min, max) {
  const v = body[field];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw new HttpError(400, `"${field}" must be an integer from ${min} to ${max}`);
  return v;
}

/** A required calendar date field, YYYY-MM-DD. */
export function requireDate(body, field) {
  const v = body[field];
  if (typeof v !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(v))
    throw new HttpError(400, `"${field}" must be a date (YYYY-MM-DD)`);
  const d = new Date(`${v}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v)
    throw new HttpError(400, `"${field}" is not a valid date: ${v}`);
  return v;
}

/** An optional integer query parameter within [min, max]; undefined when absent or empty. */
export function queryInt(url, name, min, max) {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max)
    throw new HttpError(400, `${name} must be an integer from ${min} to ${max}`);
  return Number(raw);
}

/** A required id-like query parameter (lowercase letters, digits and dashes). */
export function queryId(url, name) {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") throw new HttpError(400, `the query parameter ${name} is required`);
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(raw)) throw new HttpError(400, `${name} is not a valid id`);
  return raw;
}

/**
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {unknown} value
 * @param {Record<string, string>} [headers]
 */
export function sendJson(res, status, value, headers = {}) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(body);
}

/**
 * Starts an HTTP server on HOST:PORT. `handler` may throw HttpError (answered as JSON {error}); any other
 * error is a 500. Stops on SIGTERM/SIGINT, running `onStop` before exiting.
 * @param {string} app
 * @param {(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse, url: URL) => Promise<void> | void} handler
 * @param {{host: string, port: number, onStop?: () => Promise<void> | void, quietPaths?: string[]}} options
 */
export function serve(app, handler, options) {
  const quiet = new Set(options.quietPaths ?? ["/healthz"]);
  const server = http.createServer(async (req, res) => {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? "/", "http://local");
    res.on("finish", () => {
      if (quiet.has(url.pathname) && res.statusCode < 400) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      console.log(`${app}: ${req.method} ${url.pathname}${url.search} ${res.statusCode} ${ms.toFixed(1)}ms`);
    });
    try {
      await handler(req, res, url);
    } catch (e) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (e instanceof HttpError) {
        // A body that was refused unread is not drained: the connection closes after the answer.
        if (e.status === 413 || !req.complete) res.setHeader("connection", "close");
        sendJson(res, e.status, { error: e.message }, e.headers);
      } else {
        console.error(`${app}: ${req.method} ${url.pathname}:`, e);
        sendJson(res, 500, { error: "internal error" });
      }
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.on("error", (e) => fail(app, `cannot listen on ${options.host}:${options.port}: ${e.message}`));
  server.listen(options.port, options.host, () => {
    console.log(`${app}: listening on http://${options.host}:${options.port}`);
  });
  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`${app}: ${signal}, stopping`);
    const force = setTimeout(() => process.exit(0), 4_000);
    force.unref();
    server.close();
    server.closeIdleConnections();
    try {
      await options.onStop?.();
    } finally {
      process.exit(0);
    }
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return server;
}

/**
 * Answers 405 unless the request's method is one of `methods`.
 * @param {import("node:http").IncomingMessage} req
 * @param {string[]} methods
 */
export function allow(req, methods) {
  if (!methods.includes(req.method ?? ""))
    throw new HttpError(405, `method ${req.method} not allowed`, { allow: methods.join(", ") });
}
