// The Guestbook's frontend: the page (public/), and a JSON API over Redis. A new entry is scored by the
// analyzer (HTTP through the mesh) before it is stored; when the analyzer fails or is too slow the entry is
// stored without a score and the answer says why. Writes go to the Redis master, reads to the replica when
// one is configured (the master when there is none, or when the replica does not answer). Each entry records
// which analyzer handled it (analyzedBy: its pod, cluster and version, from the answer's headers), also when it
// could not score it: the analyzer may run in another cluster.
//
// Environment: HOST, PORT; REDIS_MASTER_SERVICE_HOST/PORT; optional REDIS_REPLICA_SERVICE_HOST/PORT;
// ANALYZER_URL (http://analyzer.guestbook.svc.cluster.local:80), ANALYZER_TIMEOUT_MS (2000);
// GUESTBOOK_TITLE; POD_NAME and ISTHMUS_CLUSTER (shown on the page); HTTP_PROXY / NO_PROXY (lib/mesh-http.mjs).
import { readFileSync } from "node:fs";
import {
  allow,
  HttpError,
  intEnv,
  listenAddress,
  readJsonBody,
  requireText,
  sendJson,
  serve,
} from "../lib/http-server.mjs";
import { postJsonResponse } from "../lib/mesh-http.mjs";
import { RedisClient } from "../lib/redis.mjs";

const APP = "frontend";
const MAX_TEXT_CHARS = 1000;
const MAX_BODY_BYTES = 16 * 1024;
const LIST_LIMIT = 100;
const KEPT_ENTRIES = 1000;
const ENTRIES_KEY = "guestbook:entries";
const NEXT_ID_KEY = "guestbook:next-id";
const TONES = new Set(["positive", "neutral", "negative"]);

const { host, port } = listenAddress(APP);
const analyzerUrl = new URL(
  "/analyze",
  process.env.ANALYZER_URL || "http://analyzer.guestbook.svc.cluster.local:80",
).toString();
const analyzerTimeoutMs = intEnv(APP, "ANALYZER_TIMEOUT_MS", 2000, 1, 60_000);
const title = process.env.GUESTBOOK_TITLE || "Guestbook";
const servedBy = process.env.POD_NAME || "frontend";
const cluster = process.env.ISTHMUS_CLUSTER || "";

const master = redisFromEnv("REDIS_MASTER", true);
const replica = redisFromEnv("REDIS_REPLICA", false);

const PUBLIC = new URL("./public/", import.meta.url);
const STATIC = new Map(
  [
    ["/", "index.html", "text/html; charset=utf-8"],
    ["/app.js", "app.js", "text/javascript; charset=utf-8"],
    ["/style.css", "style.css", "text/css; charset=utf-8"],
  ].map(([path, file, type]) => [path, { body: readFileSync(new URL(file, PUBLIC)), type }]),
);
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

serve(
  APP,
  async (req, res, url) => {
    res.setHeader("x-served-by", servedBy);
    if (url.pathname === "/healthz") {
      allow(req, ["GET", "HEAD"]);
      return sendJson(res, 200, { status: "ok", app: APP, pod: servedBy });
    }
    if (url.pathname === "/api/entries") {
      allow(req, ["GET", "HEAD", "POST"]);
      if (req.method === "POST") return sendJson(res, 201, await addEntry(req));
      return sendJson(res, 200, await listEntries());
    }
    if (url.pathname.startsWith("/api/")) throw new HttpError(404, `no API at ${url.pathname}`);
    const file = STATIC.get(url.pathname);
    if (file === undefined) throw new HttpError(404, `not found: ${url.pathname}`);
    allow(req, ["GET", "HEAD"]);
    res.writeHead(200, {
      "content-type": file.type,
      "content-length": file.body.length,
      "cache-control": "no-cache",
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    });
    res.end(req.method === "HEAD" ? undefined : file.body);
  },
  {
    host,
    port,
    onStop: () => {
      master.close();
      replica?.close();
    },
  },
);

async function addEntry(req) {
  const text = requireText(await readJsonBody(req, MAX_BODY_BYTES), MAX_TEXT_CHARS);
  const analysis = await analyze(text);
  let id;
  try {
    id = await master.command("INCR", NEXT_ID_KEY);
  } catch (e) {
    throw new HttpError(503, `the entry was not stored: Redis master unavailable (${e.message})`);
  }
  const entry = {
    id,
    text,
    score: analysis.ok ? analysis.score : null,
    tone: analysis.ok ? analysis.tone : null,
    analyzer: analysis.ok ? analysis.version : null,
    analyzedBy: analysis.by,
    createdAt: new Date().toISOString(),
  };
  try {
    await Promise.all([
      master.command("LPUSH", ENTRIES_KEY, JSON.stringify(entry)),
      master.command("LTRIM", ENTRIES_KEY, 0, KEPT_ENTRIES - 1),
    ]);
  } catch (e) {
    throw new HttpError(503, `the entry was not stored: Redis master unavailable (${e.message})`);
  }
  if (analysis.ok) return { entry };
  return { entry, warning: `stored without a tone score: ${analysis.error}` };
}

/** The analyzer's verdict, or why there is none, and which analyzer answered (null: none did); never throws. */
async function analyze(text) {
  try {
    const { value: answer, headers } = await postJsonResponse(
      analyzerUrl,
      { text },
      { timeoutMs: analyzerTimeoutMs },
    );
    const by = answeredBy(headers);
    if (typeof answer?.score !== "number" || !Number.isFinite(answer.score) || !TONES.has(answer.tone))
      return { ok: false, by, error: "the analyzer's answer has no valid score and tone" };
    return {
      ok: true,
      by,
      score: answer.score,
      tone: answer.tone,
      version: typeof answer.version === "string" ? answer.version : null,
    };
  } catch (e) {
    console.error(`${APP}: analyzer: ${e.message}`);
    const by = answeredBy(e.headers);
    // An error that names its analyzer came from the analyzer itself (the tone API behind it failed), not
    // from the mesh.
    const error = by
      ? `the analyzer (${by.pod}${by.cluster ? ` in ${by.cluster}` : ""}) could not score it: ${e.message}`
      : `the analyzer is unavailable (${e.message})`;
    return { ok: false, by, error };
  }
}

const MAX_NAME_CHARS = 253;

/** {pod, cluster, version} from the analyzer's x-served-* headers; null when the answer has none. */
function answeredBy(headers) {
  const pod = headerValue(headers, "x-served-by");
  if (pod === null) return null;
  return {
    pod,
    cluster: headerValue(headers, "x-served-cluster"),
    version: headerValue(headers, "x-analyzer-version"),
  };
}

function headerValue(headers, name) {
  const v = headers?.[name];
  return typeof v === "string" && v !== "" ? v.slice(0, MAX_NAME_CHARS) : null;
}

async function listEntries() {
  let raw;
  let source = "master";
  try {
    if (replica === undefined) throw new Error("no replica");
    raw = await replica.command("LRANGE", ENTRIES_KEY, 0, LIST_LIMIT - 1);
    source = "replica";
  } catch (e) {
    if (replica !== undefined) console.error(`${APP}: replica read failed, reading the master: ${e.message}`);
    try {
      raw = await master.command("LRANGE", ENTRIES_KEY, 0, LIST_LIMIT - 1);
    } catch (e2) {
      throw new HttpError(503, `Redis unavailable (${e2.message})`);
    }
  }
  const entries = [];
  for (const item of Array.isArray(raw) ? raw : []) {
    try {
      entries.push(JSON.parse(item));
    } catch {
      // Not one of ours: skipped.
    }
  }
  return { title, servedBy, cluster, source, entries };
}

/** A client for the Service whose Kubernetes variables start with `prefix` (PREFIX_SERVICE_HOST/PORT). */
function redisFromEnv(prefix, required) {
  const h = process.env[`${prefix}_SERVICE_HOST`];
  if (!h) {
    if (required) {
      console.error(`${APP}: ${prefix}_SERVICE_HOST and ${prefix}_SERVICE_PORT are required`);
      process.exit(2);
    }
    return undefined;
  }
  const p = intEnv(APP, `${prefix}_SERVICE_PORT`, 6379, 1, 65535);
  return new RedisClient({ host: h, port: p, name: `${prefix.toLowerCase().replace("_", "-")} ${h}:${p}` });
}
