// The "external" tone-analysis API that stands in for IBM Watson Tone Analyzer: outside the mesh, a plain
// local process. POST /v3/tone {text} -> {score, comparative, tone: positive|neutral|negative}, scored with
// the `sentiment` package (AFINN-165 word list, with negation).
//
// Environment: TONE_API_HOST (127.0.0.1), TONE_API_PORT (required); optional TONE_API_KEY: when set, requests
// must carry it as Watson's did (Basic auth, user "apikey") or as "Authorization: Bearer KEY".
import { timingSafeEqual } from "node:crypto";
import Sentiment from "sentiment";
import {
  allow,
  HttpError,
  listenAddress,
  readJsonBody,
  requireText,
  sendJson,
  serve,
} from "../lib/http-server.mjs";

const APP = "tone-api";
const MAX_TEXT_CHARS = 10_000;
const MAX_BODY_BYTES = 64 * 1024;

const { host, port } = listenAddress(APP, { hostVar: "TONE_API_HOST", portVar: "TONE_API_PORT" });
const apiKey = process.env.TONE_API_KEY || "";
const sentiment = new Sentiment();

/** The tone for an AFINN score: its sign. */
function toneOf(score) {
  if (score > 0) return "positive";
  if (score < 0) return "negative";
  return "neutral";
}

serve(
  APP,
  async (req, res, url) => {
    if (url.pathname === "/healthz") {
      allow(req, ["GET", "HEAD"]);
      return sendJson(res, 200, { status: "ok", app: APP });
    }
    if (url.pathname !== "/v3/tone") throw new HttpError(404, `not found: ${url.pathname}`);
    allow(req, ["POST"]);
    if (apiKey && !authorized(req.headers.authorization ?? ""))
      throw new HttpError(401, "missing or wrong API key", { "www-authenticate": 'Basic realm="tone-api"' });
    const text = requireText(await readJsonBody(req, MAX_BODY_BYTES), MAX_TEXT_CHARS);
    const result = sentiment.analyze(text);
    sendJson(res, 200, {
      score: result.score,
      comparative: Math.round(result.comparative * 1000) / 1000,
      tone: toneOf(result.score),
    });
  },
  { host, port },
);

function authorized(header) {
  const [scheme, value = ""] = header.split(" ", 2);
  let given = "";
  if (scheme?.toLowerCase() === "bearer") given = value;
  else if (scheme?.toLowerCase() === "basic") {
    const decoded = Buffer.from(value, "base64").toString("utf8");
    if (decoded.startsWith("apikey:")) given = decoded.slice("apikey:".length);
  }
  const a = Buffer.from(given);
  const b = Buffer.from(apiKey);
  return a.length === b.length && timingSafeEqual(a, b);
}
