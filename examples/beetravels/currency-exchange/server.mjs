// Bee Travels' currency-exchange service: converts amounts between the currencies of data/currencies.jsonl
// (fixed demo rates against the US dollar, not market data).
//
//   GET /currencies                          -> {base: "USD", currencies: [{code, name, perUsd}]}
//   GET /rate?from=USD&to=EUR                -> {from, to, rate}
//   GET /convert?from=USD&to=EUR&amount=100  -> {from, to, amount, rate, result}
//   GET /healthz
//
// Environment: HOST, PORT.
import { allow, HttpError, listenAddress, sendJson, serve } from "../lib/http-server.mjs";
import { readJsonLines } from "../lib/store.mjs";

const APP = "currency-exchange";
const { host, port } = listenAddress(APP);
const servedBy = process.env.POD_NAME || APP;
const currencies = readJsonLines(new URL("../data/currencies.jsonl", import.meta.url));
const perUsd = new Map(currencies.map((c) => [c.code, c.perUsd]));
console.log(`${APP}: ${currencies.length} currencies from data/currencies.jsonl`);

/** The rate from one currency to another, rounded to 6 significant digits. */
function rate(url) {
  const from = (url.searchParams.get("from") ?? "").toUpperCase();
  const to = (url.searchParams.get("to") ?? "").toUpperCase();
  for (const [name, code] of [
    ["from", from],
    ["to", to],
  ])
    if (!perUsd.has(code))
      throw new HttpError(400, `${name} must be one of ${[...perUsd.keys()].join(", ")}, not "${code}"`);
  return { from, to, rate: Number((perUsd.get(to) / perUsd.get(from)).toPrecision(6)) };
}

serve(
  APP,
  (req, res, url) => {
    res.setHeader("x-served-by", servedBy);
    allow(req, ["GET", "HEAD"]);
    if (url.pathname === "/healthz") return sendJson(res, 200, { status: "ok", app: APP });
    if (url.pathname === "/currencies") return sendJson(res, 200, { base: "USD", currencies });
    if (url.pathname === "/rate") return sendJson(res, 200, { ...rate(url), servedBy });
    if (url.pathname === "/convert") {
      const r = rate(url);
      const raw = url.searchParams.get("amount") ?? "";
      const amount = Number(raw);
      if (raw === "" || !Number.isFinite(amount) || amount < 0 || amount > 1e12)
        throw new HttpError(400, "amount must be a number from 0 to 1e12");
      return sendJson(res, 200, { ...r, amount, result: Math.round(amount * r.rate * 100) / 100, servedBy });
    }
    throw new HttpError(404, `not found: ${url.pathname}`);
  },
  { host, port },
);
