// Bee Travels' destination service: the cities the agency sells, with a description and highlights
// (data/cities.jsonl).
//
//   GET /cities      -> {cities: [{id, name, country, countryCode, currency}]}
//   GET /cities/ID   -> {city: {id, name, country, countryCode, currency, lat, lng, description, highlights}}
//   GET /healthz
//
// Environment: HOST, PORT.
import { allow, HttpError, listenAddress, sendJson, serve } from "../lib/http-server.mjs";
import { readJsonLines } from "../lib/store.mjs";

const APP = "destination";
const { host, port } = listenAddress(APP);
const servedBy = process.env.POD_NAME || APP;
const cities = readJsonLines(new URL("../data/cities.jsonl", import.meta.url));
const byId = new Map(cities.map((c) => [c.id, c]));
const summaries = cities.map(({ id, name, country, countryCode, currency }) => ({
  id,
  name,
  country,
  countryCode,
  currency,
}));
console.log(`${APP}: ${cities.length} cities from data/cities.jsonl`);

serve(
  APP,
  (req, res, url) => {
    res.setHeader("x-served-by", servedBy);
    allow(req, ["GET", "HEAD"]);
    if (url.pathname === "/healthz") return sendJson(res, 200, { status: "ok", app: APP });
    if (url.pathname === "/cities") return sendJson(res, 200, { cities: summaries });
    const one = /^\/cities\/([a-z0-9-]{1,64})$/.exec(url.pathname);
    if (one) {
      const city = byId.get(one[1]);
      if (!city) throw new HttpError(404, `no destination ${one[1]}`);
      return sendJson(res, 200, { city });
    }
    throw new HttpError(404, `not found: ${url.pathname}`);
  },
  { host, port },
);
