// Bee Travels' hotel service: hotels by city with their nightly prices (US dollars), and bookings. One program
// for the three data versions the mesh splits traffic between (lib/store.mjs): v1 reads data/hotels.jsonl
// and keeps bookings in memory; v2 and v3 read and write PostgreSQL (in the mesh, and "in the cloud" outside
// it). Every answer names the version and store that served it.
//
//   GET  /hotels?city=ID[&minStars=1..5][&maxPrice=USD]  -> {version, source, store, city, hotels}
//   GET  /hotels/ID                                      -> {version, source, store, hotel}
//   POST /bookings {hotelId, guest, checkIn, nights}     -> 201 {version, source, store, booking}
//   GET  /healthz
//
// Environment: HOST, PORT; DATA_VERSION, DATA_SOURCE, DATA_STORE and for PostgreSQL DB_* (lib/store.mjs).
import { randomUUID } from "node:crypto";
import {
  allow,
  HttpError,
  listenAddress,
  queryId,
  queryInt,
  readJsonBody,
  requireDate,
  requireInt,
  requireString,
  sendJson,
  serve,
} from "../lib/http-server.mjs";
import { dataVersionFromEnv, query, readJsonLines } from "../lib/store.mjs";

const APP = "hotel";
const MAX_BODY_BYTES = 4 * 1024;
const LIST_LIMIT = 100;

const { host, port } = listenAddress(APP);
const data = dataVersionFromEnv(APP);
const servedBy = process.env.POD_NAME || APP;
const backend = data.pool ? postgresBackend(data.pool) : jsonBackend();
const about = { version: data.version, source: data.source, store: data.store };

serve(
  APP,
  async (req, res, url) => {
    res.setHeader("x-served-by", servedBy);
    if (url.pathname === "/healthz") {
      allow(req, ["GET", "HEAD"]);
      return sendJson(res, 200, { status: "ok", app: APP, ...about });
    }
    if (url.pathname === "/hotels") {
      allow(req, ["GET"]);
      const city = queryId(url, "city");
      const filters = {
        minStars: queryInt(url, "minStars", 1, 5),
        maxPrice: queryInt(url, "maxPrice", 1, 100_000),
      };
      return sendJson(res, 200, { ...about, city, hotels: await backend.list(city, filters) });
    }
    const one = /^\/hotels\/([a-z0-9-]{1,64})$/.exec(url.pathname);
    if (one) {
      allow(req, ["GET"]);
      const hotel = await backend.get(one[1]);
      if (!hotel) throw new HttpError(404, `no hotel ${one[1]}`);
      return sendJson(res, 200, { ...about, hotel });
    }
    if (url.pathname === "/bookings") {
      allow(req, ["POST"]);
      const body = await readJsonBody(req, MAX_BODY_BYTES);
      const request = {
        id: randomUUID(),
        hotelId: requireString(body, "hotelId", 64),
        guest: requireString(body, "guest", 100),
        checkIn: requireDate(body, "checkIn"),
        nights: requireInt(body, "nights", 1, 30),
      };
      const booking = await backend.book(request);
      if (!booking) throw new HttpError(404, `no hotel ${request.hotelId}`);
      console.log(
        `${APP}: booked ${booking.id} (${booking.hotelId}, ${booking.nights} nights) in ${data.store}`,
      );
      return sendJson(res, 201, { ...about, booking });
    }
    throw new HttpError(404, `not found: ${url.pathname}`);
  },
  { host, port, onStop: () => data.pool?.end() },
);

/** v1: the hotels of data/hotels.jsonl, bookings in memory (lost when the process stops). */
function jsonBackend() {
  const hotels = readJsonLines(new URL("../data/hotels.jsonl", import.meta.url));
  const byId = new Map(hotels.map((h) => [h.id, h]));
  const bookings = new Map();
  console.log(`${APP}: ${hotels.length} hotels from data/hotels.jsonl`);
  return {
    list: async (city, { minStars, maxPrice }) =>
      hotels
        .filter(
          (h) =>
            h.cityId === city &&
            (minStars === undefined || h.stars >= minStars) &&
            (maxPrice === undefined || h.priceUsd <= maxPrice),
        )
        .sort((a, b) => a.priceUsd - b.priceUsd || a.id.localeCompare(b.id))
        .slice(0, LIST_LIMIT),
    get: async (id) => byId.get(id),
    book: async (r) => {
      const hotel = byId.get(r.hotelId);
      if (!hotel) return undefined;
      const booking = {
        id: r.id,
        hotelId: hotel.id,
        hotelName: hotel.name,
        guest: r.guest,
        checkIn: r.checkIn,
        nights: r.nights,
        totalUsd: hotel.priceUsd * r.nights,
        createdAt: new Date().toISOString(),
      };
      bookings.set(booking.id, booking);
      return booking;
    },
  };
}

/** v2 and v3: the tables of data/seed.sql. A database failure answers 503 (nothing was stored). */
function postgresBackend(pool) {
  const columns = "id, city_id, name, chain, stars, rating, price_usd, amenities";
  const hotel = (r) => ({
    id: r.id,
    cityId: r.city_id,
    name: r.name,
    chain: r.chain,
    stars: r.stars,
    rating: r.rating,
    priceUsd: r.price_usd,
    amenities: r.amenities,
  });
  const unavailable = (e) => new HttpError(503, `${data.store} unavailable (${e.message})`);
  return {
    list: async (city, { minStars, maxPrice }) => {
      const rows = await query(
        pool,
        `SELECT ${columns} FROM hotels
          WHERE city_id = $1 AND ($2::int IS NULL OR stars >= $2) AND ($3::int IS NULL OR price_usd <= $3)
          ORDER BY price_usd, id LIMIT ${LIST_LIMIT}`,
        [city, minStars ?? null, maxPrice ?? null],
      ).catch((e) => {
        throw unavailable(e);
      });
      return rows.rows.map(hotel);
    },
    get: async (id) => {
      const rows = await query(pool, `SELECT ${columns} FROM hotels WHERE id = $1`, [id]).catch((e) => {
        throw unavailable(e);
      });
      return rows.rows[0] && hotel(rows.rows[0]);
    },
    book: async (r) => {
      const rows = await query(
        pool,
        `WITH h AS (SELECT id, name, price_usd FROM hotels WHERE id = $2),
              b AS (INSERT INTO hotel_bookings (id, hotel_id, guest, check_in, nights, total_usd)
                    SELECT $1, h.id, $3, $4::date, $5::int, h.price_usd * $5::int FROM h RETURNING *)
         SELECT b.id, b.hotel_id, h.name AS hotel_name, b.guest, b.check_in::text AS check_in, b.nights,
                b.total_usd, b.created_at
           FROM b JOIN h ON h.id = b.hotel_id`,
        [r.id, r.hotelId, r.guest, r.checkIn, r.nights],
      ).catch((e) => {
        throw unavailable(e);
      });
      const b = rows.rows[0];
      return (
        b && {
          id: b.id,
          hotelId: b.hotel_id,
          hotelName: b.hotel_name,
          guest: b.guest,
          checkIn: b.check_in,
          nights: b.nights,
          totalUsd: b.total_usd,
          createdAt: b.created_at.toISOString(),
        }
      );
    },
  };
}
