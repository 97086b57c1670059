// Bee Travels' car-rental service: rental cars by city with their daily prices (US dollars), and bookings.
// Like the hotel service, one program for the three data versions (lib/store.mjs): v1 reads
// data/cars.jsonl and keeps bookings in memory; v2 and v3 read and write PostgreSQL. Every answer names the
// version and store that served it.
//
//   GET  /cars?city=ID[&category=economy|compact|suv|van|luxury|electric][&minSeats=N]
//                                                   -> {version, source, store, city, cars}
//   GET  /cars/ID                                   -> {version, source, store, car}
//   POST /bookings {carId, driver, pickUp, days}    -> 201 {version, source, store, booking}
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

const APP = "car-rental";
const MAX_BODY_BYTES = 4 * 1024;
const LIST_LIMIT = 100;
const CATEGORIES = new Set(["economy", "compact", "suv", "van", "luxury", "electric"]);

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
    if (url.pathname === "/cars") {
      allow(req, ["GET"]);
      const city = queryId(url, "city");
      const category = url.searchParams.get("category") || undefined;
      if (category !== undefined && !CATEGORIES.has(category))
        throw new HttpError(400, `category must be one of ${[...CATEGORIES].join(", ")}`);
      const filters = { category, minSeats: queryInt(url, "minSeats", 1, 9) };
      return sendJson(res, 200, { ...about, city, cars: await backend.list(city, filters) });
    }
    const one = /^\/cars\/([a-z0-9-]{1,64})$/.exec(url.pathname);
    if (one) {
      allow(req, ["GET"]);
      const car = await backend.get(one[1]);
      if (!car) throw new HttpError(404, `no car ${one[1]}`);
      return sendJson(res, 200, { ...about, car });
    }
    if (url.pathname === "/bookings") {
      allow(req, ["POST"]);
      const body = await readJsonBody(req, MAX_BODY_BYTES);
      const request = {
        id: randomUUID(),
        carId: requireString(body, "carId", 64),
        driver: requireString(body, "driver", 100),
        pickUp: requireDate(body, "pickUp"),
        days: requireInt(body, "days", 1, 30),
      };
      const booking = await backend.book(request);
      if (!booking) throw new HttpError(404, `no car ${request.carId}`);
      console.log(`${APP}: booked ${booking.id} (${booking.carId}, ${booking.days} days) in ${data.store}`);
      return sendJson(res, 201, { ...about, booking });
    }
    throw new HttpError(404, `not found: ${url.pathname}`);
  },
  { host, port, onStop: () => data.pool?.end() },
);

/** v1: the cars of data/cars.jsonl, bookings in memory (lost when the process stops). */
function jsonBackend() {
  const cars = readJsonLines(new URL("../data/cars.jsonl", import.meta.url));
  const byId = new Map(cars.map((c) => [c.id, c]));
  const bookings = new Map();
  console.log(`${APP}: ${cars.length} cars from data/cars.jsonl`);
  return {
    list: async (city, { category, minSeats }) =>
      cars
        .filter(
          (c) =>
            c.cityId === city &&
            (category === undefined || c.category === category) &&
            (minSeats === undefined || c.seats >= minSeats),
        )
        .sort((a, b) => a.priceUsd - b.priceUsd || a.id.localeCompare(b.id))
        .slice(0, LIST_LIMIT),
    get: async (id) => byId.get(id),
    book: async (r) => {
      const car = byId.get(r.carId);
      if (!car) return undefined;
      const booking = {
        id: r.id,
        carId: car.id,
        carModel: car.model,
        company: car.company,
        driver: r.driver,
        pickUp: r.pickUp,
        days: r.days,
        totalUsd: car.priceUsd * r.days,
        createdAt: new Date().toISOString(),
      };
      bookings.set(booking.id, booking);
      return booking;
    },
  };
}

/** v2 and v3: the tables of data/seed.sql. A database failure answers 503 (nothing was stored). */
function postgresBackend(pool) {
  const columns = "id, city_id, company, model, category, seats, transmission, price_usd";
  const car = (r) => ({
    id: r.id,
    cityId: r.city_id,
    company: r.company,
    model: r.model,
    category: r.category,
    seats: r.seats,
    transmission: r.transmission,
    priceUsd: r.price_usd,
  });
  const unavailable = (e) => new HttpError(503, `${data.store} unavailable (${e.message})`);
  return {
    list: async (city, { category, minSeats }) => {
      const rows = await query(
        pool,
        `SELECT ${columns} FROM cars
          WHERE city_id = $1 AND ($2::text IS NULL OR category = $2) AND ($3::int IS NULL OR seats >= $3)
          ORDER BY price_usd, id LIMIT ${LIST_LIMIT}`,
        [city, category ?? null, minSeats ?? null],
      ).catch((e) => {
        throw unavailable(e);
      });
      return rows.rows.map(car);
    },
    get: async (id) => {
      const rows = await query(pool, `SELECT ${columns} FROM cars WHERE id = $1`, [id]).catch((e) => {
        throw unavailable(e);
      });
      return rows.rows[0] && car(rows.rows[0]);
    },
    book: async (r) => {
      const rows = await query(
        pool,
        `WITH c AS (SELECT id, model, company, price_usd FROM cars WHERE id = $2),
              b AS (INSERT INTO car_bookings (id, car_id, driver, pick_up, days, total_usd)
                    SELECT $1, c.id, $3, $4::date, $5::int, c.price_usd * $5::int FROM c RETURNING *)
         SELECT b.id, b.car_id, c.model AS car_model, c.company, b.driver, b.pick_up::text AS pick_up, b.days,
                b.total_usd, b.created_at
           FROM b JOIN c ON c.id = b.car_id`,
        [r.id, r.carId, r.driver, r.pickUp, r.days],
      ).catch((e) => {
        throw unavailable(e);
      });
      const b = rows.rows[0];
      return (
        b && {
          id: b.id,
          carId: b.car_id,
          carModel: b.car_model,
          company: b.company,
          driver: b.driver,
          pickUp: b.pick_up,
          days: b.days,
          totalUsd: b.total_usd,
          createdAt: b.created_at.toISOString(),
        }
      );
    },
  };
}
