// The Guestbook's analyzer: POST /analyze {text} -> {score, comparative, tone, version, pod, cluster}, from the
// external tone-analysis API (in the source documents IBM Watson Tone Analyzer; here tone-api/, reached through
// the mesh's egress to the ServiceEntry tone-analyzer.example.com). It answers 502 when that API fails and 504
// when it is too slow, so that the caller can store the entry without a score. Every answer, errors too, names
// who gave it in its headers (x-served-by: the pod, x-served-cluster: the cluster, x-analyzer-version), and a
// score names its pod and cluster in the body as well: the Guestbook runs the analyzer in another cluster than
// its caller, and the page shows where each entry was scored.
//
// Environment: HOST, PORT; TONE_API_URL (http://tone-analyzer.example.com:80/v3/tone), TONE_API_TIMEOUT_MS
// (800), optional TONE_API_KEY (sent as Watson's Basic "apikey:KEY"), ANALYZER_VERSION (v1); POD_NAME and
// ISTHMUS_CLUSTER (who answered); HTTP_PROXY / NO_PROXY (lib/mesh-http.mjs).
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
import { postJson, UpstreamError } from "../lib/mesh-http.mjs";

const APP = "analyzer";
const MAX_TEXT_CHARS = 1000;
const MAX_BODY_BYTES = 16 * 1024;
const TONES = new Set(["positive", "neutral", "negative"]);

const { host, port } = listenAddress(APP);
const toneApiUrl = process.env.TONE_API_URL || "http://tone-analyzer.example.com:80/v3/tone";
const toneTimeoutMs = intEnv(APP, "TONE_API_TIMEOUT_MS", 800, 1, 60_000);
const version = process.env.ANALYZER_VERSION || "v1";
const pod = process.env.POD_NAME || APP;
const cluster = process.env.ISTHMUS_CLUSTER || "";
const servedBy = { "x-served-by": pod, "x-served-cluster": cluster, "x-analyzer-version": version };
const apiKey = process.env.TONE_API_KEY || "";
const headers = apiKey
  ? { authorization: `Basic ${Buffer.from(`apikey:${apiKey}`).toString("base64")}` }
  : {};

serve(
  APP,
  async (req, res, url) => {
    for (const [name, value] of Object.entries(servedBy)) res.setHeader(name, value);
    if (url.pathname === "/healthz") {
      allow(req, ["GET", "HEAD"]);
      return sendJson(res, 200, { status: "ok", app: APP, version });
    }
    if (url.pathname !== "/analyze") throw new HttpError(404, `not found: ${url.pathname}`);
    allow(req, ["POST"]);
    const text = requireText(await readJsonBody(req, MAX_BODY_BYTES), MAX_TEXT_CHARS);
    let answer;
    try {
      answer = await postJson(toneApiUrl, { text }, { timeoutMs: toneTimeoutMs, headers });
    } catch (e) {
      console.error(`${APP}: tone API: ${e.message}`);
      const timeout = e instanceof UpstreamError && e.kind === "timeout";
      throw new HttpError(timeout ? 504 : 502, `tone API ${timeout ? "timed out" : "failed"}: ${e.message}`);
    }
    const { score, comparative, tone } = answer ?? {};
    if (typeof score !== "number" || !Number.isFinite(score) || !TONES.has(tone))
      throw new HttpError(502, "the tone API's answer has no valid score and tone");
    sendJson(res, 200, {
      score,
      comparative: typeof comparative === "number" ? comparative : null,
      tone,
      version,
      pod,
      cluster,
    });
  },
  { host, port },
);
