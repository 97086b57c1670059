// Bee Travels' ui: the page (public/) and a JSON API that aggregates the destination, hotel, car-rental and
// currency-exchange services, each called by name through the pod's sidecar (lib/mesh-http.mjs), passing on
// the trace headers and the two routing headers (x-data-version, x-test-fault; lib/mesh-http.mjs).
//
//   GET  /api/destinations               -> {destinations}
//   GET  /api/destinations/ID            -> {city}
//   GET  /api/currencies                 -> {base, currencies}
//   GET  /api/convert?from&to&amount     -> currency-exchange's answer
//   GET  /api/hotels?city=ID[&...]       -> hotel's answer (names the data version that served it)
//   GET  /api/cars?city=ID[&...]         -> car-rental's answer (idem)
//   GET  /api/search?city=ID[&currency=EUR]
//        -> {servedBy, city, currency: {code, rate, ok}, hotels: {version, source, store, items} | {error},
//            cars: {...} | {error}, warnings}; prices converted with one rate from currency-exchange; a
//            service that fails or is too slow leaves its part empty with a warning (prices stay in USD when
//            currency-exchange does not answer)
//   POST /api/bookings {kind: "hotel", hotelId, guest, checkIn, nights}
//                      {kind: "car", carId, driver, pickUp, days}      -> the service's answer (201 {booking})
//   GET  /healthz
//
// A service's own error answers (400, 404, ...) pass through with their status; a service that cannot be
// reached, or whose answer is the mesh's (an injected fault, no healthy endpoint), is a 502 with
// upstreamStatus; one that does not answer in time is a 504.
//
// Environment: HOST, PORT; DESTINATION_URL, HOTEL_URL, CAR_RENTAL_URL, CURRENCY_EXCHANGE_URL (the services'
// base URLs, http://NAME.beetravels.svc.cluster.local:80 by default); DESTINATION_TIMEOUT_MS (1500),
// CATALOG_TIMEOUT_MS (hotel and car-rental, 3500), CURRENCY_TIMEOUT_MS (1500); POD_NAME, ISTHMUS_CLUSTER.
import { readFileSync } from "node:fs";
import {
  allow,
  HttpError,
  intEnv,
  listenAddress,
  readJsonBody,
  sendJson,
  serve,
} from "../lib/http-server.mjs";
import { propagatedHeaders, requestJson, UpstreamError } from "../lib/mesh-http.mjs";

const APP = "ui";
const MAX_BODY_BYTES = 4 * 1024;
const { host, port } = listenAddress(APP);
const servedBy = process.env.POD_NAME || APP;
const cluster = process.env.ISTHMUS_CLUSTER || "";
const serviceUrl = (name, variable) =>
  (process.env[variable] || `http://${name}.beetravels.svc.cluster.local:80`).replace(/\/+$/, "");
const services = {
  destination: serviceUrl("destination", "DESTINATION_URL"),
  hotel: serviceUrl("hotel", "HOTEL_URL"),
  carRental: serviceUrl("car-rental", "CAR_RENTAL_URL"),
  currency: serviceUrl("currency-exchange", "CURRENCY_EXCHANGE_URL"),
};
const timeouts = {
  destination: intEnv(APP, "DESTINATION_TIMEOUT_MS", 1500, 1, 60_000),
  catalog: intEnv(APP, "CATALOG_TIMEOUT_MS", 3500, 1, 60_000),
  currency: intEnv(APP, "CURRENCY_TIMEOUT_MS", 1500, 1, 60_000),
};

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
    if (url.pathname.startsWith("/api/")) return api(req, res, url);
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
  { host, port },
);

async function api(req, res, url) {
  const headers = propagatedHeaders(req);
  const call = (base, path, timeoutMs, options = {}) =>
    requestJson(`${base}${path}`, { timeoutMs, ...options, headers: { ...headers, ...options.headers } });
  const query = (names) => {
    const q = new URLSearchParams();
    for (const n of names) {
      const v = url.searchParams.get(n);
      if (v !== null && v !== "") q.set(n, v);
    }
    const s = q.toString();
    return s ? `?${s}` : "";
  };
  const relay = async (what, promise) => {
    const answer = await promise.catch((e) => upstreamFailure(what, e));
    return sendJson(res, answer.status, { ...answer.json, servedBy });
  };

  if (url.pathname === "/api/bookings") {
    allow(req, ["POST"]);
    const { kind, ...booking } = await readJsonBody(req, MAX_BODY_BYTES);
    if (kind !== "hotel" && kind !== "car") throw new HttpError(400, '"kind" must be "hotel" or "car"');
    const [what, base] = kind === "hotel" ? ["hotel", services.hotel] : ["car-rental", services.carRental];
    return relay(what, call(base, "/bookings", timeouts.catalog, { method: "POST", payload: booking }));
  }
  allow(req, ["GET", "HEAD"]);
  if (url.pathname === "/api/destinations") {
    const answer = await call(services.destination, "/cities", timeouts.destination).catch((e) =>
      upstreamFailure("destination", e),
    );
    if (answer.status !== 200) return sendJson(res, answer.status, { ...answer.json, servedBy });
    return sendJson(res, 200, { destinations: answer.json.cities ?? [], servedBy, cluster });
  }
  const destination = /^\/api\/destinations\/([a-z0-9-]{1,64})$/.exec(url.pathname);
  if (destination)
    return relay(
      "destination",
      call(services.destination, `/cities/${destination[1]}`, timeouts.destination),
    );
  if (url.pathname === "/api/currencies")
    return relay("currency-exchange", call(services.currency, "/currencies", timeouts.currency));
  if (url.pathname === "/api/convert")
    return relay(
      "currency-exchange",
      call(services.currency, `/convert${query(["from", "to", "amount"])}`, timeouts.currency),
    );
  if (url.pathname === "/api/hotels")
    return relay(
      "hotel",
      call(services.hotel, `/hotels${query(["city", "minStars", "maxPrice"])}`, timeouts.catalog),
    );
  if (url.pathname === "/api/cars")
    return relay(
      "car-rental",
      call(services.carRental, `/cars${query(["city", "category", "minSeats"])}`, timeouts.catalog),
    );
  if (url.pathname === "/api/search") return sendJson(res, 200, await search(url, call));
  throw new HttpError(404, `no API at ${url.pathname}`);
}

/** One destination with its hotels and cars, prices converted to the requested currency. */
async function search(url, call) {
  const city = url.searchParams.get("city") ?? "";
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(city)) throw new HttpError(400, "city must be a destination id");
  const requested = (url.searchParams.get("currency") ?? "").toUpperCase();
  if (requested !== "" && !/^[A-Z]{3}$/.test(requested))
    throw new HttpError(400, "currency must be a 3-letter currency code");
  const q = `?city=${encodeURIComponent(city)}`;
  const destination = call(services.destination, `/cities/${city}`, timeouts.destination);
  const hotels = call(services.hotel, `/hotels${q}`, timeouts.catalog);
  const cars = call(services.carRental, `/cars${q}`, timeouts.catalog);
  // The currency: the one asked for, else the city's own (known once the destination answers).
  const rate = (async () => {
    const code =
      requested || (await destination.then((d) => d.json?.city?.currency).catch(() => "")) || "USD";
    if (code === "USD") return { code, rate: 1, ok: true };
    const answer = await call(services.currency, `/rate?from=USD&to=${code}`, timeouts.currency);
    if (answer.status !== 200 || typeof answer.json?.rate !== "number")
      throw new UpstreamError(
        `currency-exchange answered ${answer.status}: ${answer.json?.error ?? ""}`,
        "status",
      );
    return { code, rate: answer.json.rate, ok: true };
  })();
  const [d, h, c, r] = await Promise.allSettled([destination, hotels, cars, rate]);
  if (d.status === "rejected") {
    const failure = upstreamFailure("destination", d.reason);
    throw new HttpError(failure.status, failure.json.error);
  }
  if (d.value.status !== 200)
    throw new HttpError(d.value.status, d.value.json?.error ?? "destination failed");
  const warnings = [];
  let currency;
  if (r.status === "fulfilled") currency = r.value;
  else {
    warnings.push(`prices are in USD: ${describe("currency-exchange", r.reason)}`);
    currency = { code: "USD", rate: 1, ok: false, error: describe("currency-exchange", r.reason) };
  }
  const convert = (usd) => Math.round(usd * currency.rate * 100) / 100;
  const part = (what, settled, key) => {
    if (settled.status === "rejected") {
      warnings.push(describe(what, settled.reason));
      return { error: describe(what, settled.reason) };
    }
    const { status, json } = settled.value;
    if (status !== 200) {
      warnings.push(`${what} answered ${status}: ${json?.error ?? ""}`);
      return { error: `${what} answered ${status}: ${json?.error ?? ""}` };
    }
    return {
      version: json.version,
      source: json.source,
      store: json.store,
      items: (json[key] ?? []).map((item) => ({ ...item, price: convert(item.priceUsd) })),
    };
  };
  return {
    servedBy,
    cluster,
    city: d.value.json.city,
    currency,
    hotels: part("hotel", h, "hotels"),
    cars: part("car-rental", c, "cars"),
    warnings,
  };
}

/** Why a call failed, in one line. */
function describe(what, e) {
  if (e instanceof UpstreamError) return e.message.startsWith(what) ? e.message : `${what}: ${e.message}`;
  return `${what}: ${e?.message ?? e}`;
}

/** The ui's answer for a service that did not give one of its own: 504 (too slow) or 502. */
function upstreamFailure(what, e) {
  if (!(e instanceof UpstreamError)) throw e;
  console.error(`${APP}: ${what}: ${e.message}`);
  const json = { error: describe(what, e), ...(e.status ? { upstreamStatus: e.status } : {}) };
  return { status: e.kind === "timeout" || e.status === 504 ? 504 : 502, json };
}
