// Bee Travels' data set, generated deterministically (a seeded PRNG, no clock, no randomness from outside):
// 20 destinations, the currencies they use with fixed demo exchange rates, 15 hotels and 12 rental cars per
// destination. Every data version reads the same records: v1 the JSON Lines files written here, v2 and v3 a
// PostgreSQL loaded from seed.sql, written here from the same records.
//
//   node data/generate.mjs           writes cities.jsonl, currencies.jsonl, hotels.jsonl, cars.jsonl, seed.sql
//   node data/generate.mjs --check   exits 1 if the committed files differ from what it would write
//
// JSON Lines (one JSON object per line), not .json: `isthmus validate DIR` and `analyze DIR` read every .json,
// .yaml and .yml file under DIR as Kubernetes manifests.
import { readFileSync, writeFileSync } from "node:fs";

const OUT = new URL("./", import.meta.url);
const SEED = 0xbee7_2a5e;
const HOTELS_PER_CITY = 15;
const CARS_PER_CITY = 12;

/** Mulberry32: small, fast, and the same sequence on every platform for a given seed. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const between = (lo, hi) => lo + (hi - lo) * random();
const pick = (list) => list[Math.floor(random() * list.length)];
const chance = (p) => random() < p;

// Fixed demo rates (units of the currency per US dollar), not market data.
const CURRENCIES = [
  ["USD", "US dollar", 1],
  ["EUR", "Euro", 0.92],
  ["GBP", "Pound sterling", 0.79],
  ["JPY", "Japanese yen", 151.5],
  ["AUD", "Australian dollar", 1.52],
  ["BRL", "Brazilian real", 5.05],
  ["ZAR", "South African rand", 18.6],
  ["CAD", "Canadian dollar", 1.36],
  ["MXN", "Mexican peso", 17.1],
  ["INR", "Indian rupee", 83.3],
  ["SGD", "Singapore dollar", 1.35],
  ["KRW", "South Korean won", 1350],
  ["CHF", "Swiss franc", 0.9],
  ["SEK", "Swedish krona", 10.6],
  ["AED", "UAE dirham", 3.6725],
  ["THB", "Thai baht", 36.2],
  ["TRY", "Turkish lira", 32.1],
  ["NZD", "New Zealand dollar", 1.66],
  ["CZK", "Czech koruna", 23.4],
].map(([code, name, perUsd]) => ({ code, name, perUsd }));

// [id, name, country, ISO country, currency, lat, lng, cost index (hotel and car prices), description,
// highlights]
const CITIES = [
  [
    "tokyo",
    "Tokyo",
    "Japan",
    "JP",
    "JPY",
    35.68,
    139.69,
    1.1,
    "Neon-lit towers and quiet shrines: the world's largest city runs on punctual trains and superb food.",
    ["Sensō-ji temple", "Shibuya crossing", "Tsukiji outer market"],
  ],
  [
    "paris",
    "Paris",
    "France",
    "FR",
    "EUR",
    48.86,
    2.35,
    1.2,
    "Boulevards, cafés and museums along the Seine, from the Louvre to the hill of Montmartre.",
    ["The Louvre", "Montmartre", "A boat on the Seine"],
  ],
  [
    "new-york",
    "New York",
    "United States",
    "US",
    "USD",
    40.71,
    -74.01,
    1.4,
    "Five boroughs that never sleep: skyline, parks, theatres and food from every corner of the world.",
    ["Central Park", "Brooklyn Bridge", "Broadway"],
  ],
  [
    "london",
    "London",
    "United Kingdom",
    "GB",
    "GBP",
    51.51,
    -0.13,
    1.35,
    "Two thousand years of history on the Thames, with free museums and markets in every neighbourhood.",
    ["British Museum", "Tower of London", "Borough Market"],
  ],
  [
    "sydney",
    "Sydney",
    "Australia",
    "AU",
    "AUD",
    -33.87,
    151.21,
    1.15,
    "A harbour city of beaches and ferries, framed by the Opera House and the Harbour Bridge.",
    ["Sydney Opera House", "Bondi to Coogee walk", "Harbour Bridge climb"],
  ],
  [
    "rio-de-janeiro",
    "Rio de Janeiro",
    "Brazil",
    "BR",
    "BRL",
    -22.91,
    -43.17,
    0.7,
    "Mountains dropping into the Atlantic, samba in the streets and some of the world's best-known beaches.",
    ["Sugarloaf Mountain", "Copacabana", "Christ the Redeemer"],
  ],
  [
    "cape-town",
    "Cape Town",
    "South Africa",
    "ZA",
    "ZAR",
    -33.92,
    18.42,
    0.65,
    "Table Mountain above a lively waterfront, with vineyards and penguin beaches a short drive away.",
    ["Table Mountain", "Cape of Good Hope", "Boulders Beach penguins"],
  ],
  [
    "toronto",
    "Toronto",
    "Canada",
    "CA",
    "CAD",
    43.65,
    -79.38,
    1.05,
    "Canada's biggest city, on Lake Ontario: neighbourhoods from every culture and islands a ferry ride off.",
    ["CN Tower", "Kensington Market", "Toronto Islands"],
  ],
  [
    "mexico-city",
    "Mexico City",
    "Mexico",
    "MX",
    "MXN",
    19.43,
    -99.13,
    0.6,
    "Aztec ruins under colonial squares, murals, markets and a street-food scene like no other.",
    ["Zócalo", "Frida Kahlo Museum", "Teotihuacan pyramids"],
  ],
  [
    "mumbai",
    "Mumbai",
    "India",
    "IN",
    "INR",
    19.08,
    72.88,
    0.55,
    "India's city of dreams: Bollywood, seaside promenades and grand Victorian railway stations.",
    ["Gateway of India", "Marine Drive", "Elephanta Caves"],
  ],
  [
    "singapore",
    "Singapore",
    "Singapore",
    "SG",
    "SGD",
    1.35,
    103.82,
    1.25,
    "A garden city-state where hawker centres serve Michelin-starred dishes beside futuristic skylines.",
    ["Gardens by the Bay", "Maxwell hawker centre", "Sentosa"],
  ],
  [
    "seoul",
    "Seoul",
    "South Korea",
    "KR",
    "KRW",
    37.57,
    126.98,
    0.95,
    "Palaces and hanok houses among glass towers, with night markets that stay open until dawn.",
    ["Gyeongbokgung Palace", "Bukchon Hanok Village", "Myeongdong"],
  ],
  [
    "zurich",
    "Zurich",
    "Switzerland",
    "CH",
    "CHF",
    47.38,
    8.54,
    1.5,
    "A calm old town on a clear lake, with the Alps on the horizon and trains that leave on the second.",
    ["Old Town", "Lake Zurich", "Uetliberg"],
  ],
  [
    "stockholm",
    "Stockholm",
    "Sweden",
    "SE",
    "SEK",
    59.33,
    18.07,
    1.1,
    "Fourteen islands joined by bridges, a medieval old town and an archipelago of thirty thousand more.",
    ["Gamla Stan", "Vasa Museum", "Archipelago ferries"],
  ],
  [
    "dubai",
    "Dubai",
    "United Arab Emirates",
    "AE",
    "AED",
    25.2,
    55.27,
    1.2,
    "The tallest tower on Earth, old souks along the creek and the desert at the city's edge.",
    ["Burj Khalifa", "Dubai Creek souks", "Desert safari"],
  ],
  [
    "bangkok",
    "Bangkok",
    "Thailand",
    "TH",
    "THB",
    13.76,
    100.5,
    0.5,
    "Golden temples, floating markets and river boats in a city that cooks around the clock.",
    ["Grand Palace", "Chatuchak market", "Chao Phraya river boats"],
  ],
  [
    "istanbul",
    "Istanbul",
    "Türkiye",
    "TR",
    "TRY",
    41.01,
    28.98,
    0.6,
    "Where Europe meets Asia across the Bosphorus: domes, bazaars and tea on the ferry.",
    ["Hagia Sophia", "Grand Bazaar", "Bosphorus cruise"],
  ],
  [
    "auckland",
    "Auckland",
    "New Zealand",
    "NZ",
    "NZD",
    -36.85,
    174.76,
    1.0,
    "The city of sails, built on volcanoes between two harbours, with vineyard islands nearby.",
    ["Sky Tower", "Waiheke Island", "Mount Eden"],
  ],
  [
    "prague",
    "Prague",
    "Czechia",
    "CZ",
    "CZK",
    50.08,
    14.44,
    0.75,
    "A fairy-tale skyline of spires over the Vltava, with a castle, a stone bridge and famous beer.",
    ["Charles Bridge", "Prague Castle", "Astronomical clock"],
  ],
  [
    "rome",
    "Rome",
    "Italy",
    "IT",
    "EUR",
    41.9,
    12.5,
    1.05,
    "The Eternal City: ancient ruins, Renaissance art and a plate of pasta in every piazza.",
    ["Colosseum", "Vatican Museums", "Trastevere"],
  ],
].map(([id, name, country, countryCode, currency, lat, lng, costIndex, description, highlights]) => ({
  id,
  name,
  country,
  countryCode,
  currency,
  lat,
  lng,
  costIndex,
  description,
  highlights,
}));

// Hotel chains (bee-themed, fictional), each with a range of stars.
const CHAINS = [
  ["Hive Hotels", 3, 4],
  ["Honeycomb Suites", 4, 5],
  ["Nectar Inn", 2, 3],
  ["Apiary Grand", 5, 5],
  ["Pollen House", 2, 4],
  ["Queen Bee Resort", 4, 5],
  ["Meadow Lodge", 2, 3],
  ["Clover Hotel", 3, 4],
  ["Waggle Dance Hostel", 1, 2],
  ["Wildflower Boutique", 3, 5],
];
const DISTRICTS = [
  "Central",
  "Old Town",
  "Riverside",
  "Station",
  "Harbour",
  "Airport",
  "Park",
  "Market",
  "Gardens",
  "Heights",
  "Plaza",
  "Bay",
  "University",
  "Museum Quarter",
  "Waterfront",
  "Hillside",
];
const NIGHT_BASE_USD = { 1: 45, 2: 70, 3: 110, 4: 170, 5: 290 };

const COMPANIES = ["Buzz Rentals", "Swarm Car Hire", "Stinger Drive", "Drone Motors"];
const CAR_CATEGORIES = {
  economy: { seats: 4, dayUsd: 35, models: ["Toyota Yaris", "Kia Picanto", "Fiat 500"] },
  compact: { seats: 5, dayUsd: 45, models: ["Volkswagen Golf", "Honda Civic", "Ford Focus"] },
  suv: { seats: 5, dayUsd: 65, models: ["Toyota RAV4", "Hyundai Tucson", "Nissan Qashqai"] },
  van: { seats: 8, dayUsd: 90, models: ["Ford Transit Custom", "Mercedes-Benz Vito", "Toyota HiAce"] },
  luxury: { seats: 5, dayUsd: 120, models: ["BMW 5 Series", "Mercedes-Benz E-Class", "Audi A6"] },
  electric: { seats: 5, dayUsd: 70, models: ["Tesla Model 3", "Nissan Leaf", "Hyundai Ioniq 5"] },
};
const AUTOMATIC_MOSTLY = new Set(["US", "CA", "JP", "AU", "AE", "SG", "KR", "NZ"]);

function hotelsOf(city) {
  const districts = [...DISTRICTS];
  const out = [];
  for (let i = 1; i <= HOTELS_PER_CITY; i++) {
    const [chain, minStars, maxStars] = pick(CHAINS);
    const district = districts.splice(Math.floor(random() * districts.length), 1)[0];
    const stars = minStars + Math.floor(random() * (maxStars - minStars + 1));
    const price = Math.round(NIGHT_BASE_USD[stars] * city.costIndex * between(0.85, 1.15));
    const rating = Math.round(Math.min(9.8, between(5.8, 7.6) + stars * 0.35) * 10) / 10;
    const amenities = ["wifi"];
    if (chance(0.6)) amenities.push("breakfast");
    if (stars >= 4 ? chance(0.8) : chance(0.15)) amenities.push("pool");
    if (stars >= 3 && chance(0.6)) amenities.push("gym");
    if (stars >= 4 && chance(0.5)) amenities.push("spa");
    if (chance(0.5)) amenities.push("parking");
    if (chance(0.3)) amenities.push("airport-shuttle");
    if (chance(0.25)) amenities.push("pet-friendly");
    out.push({
      id: `${city.id}-h${String(i).padStart(2, "0")}`,
      cityId: city.id,
      name: `${chain} ${city.name} ${district}`,
      chain,
      stars,
      rating,
      priceUsd: price,
      amenities,
    });
  }
  return out;
}

function carsOf(city) {
  const categories = Object.keys(CAR_CATEGORIES);
  const out = [];
  for (let i = 1; i <= CARS_PER_CITY; i++) {
    // Every category at least once per city, then at random.
    const category = i <= categories.length ? categories[i - 1] : pick(categories);
    const spec = CAR_CATEGORIES[category];
    const automatic =
      category === "electric" ||
      category === "luxury" ||
      chance(AUTOMATIC_MOSTLY.has(city.countryCode) ? 0.9 : 0.4);
    out.push({
      id: `${city.id}-c${String(i).padStart(2, "0")}`,
      cityId: city.id,
      company: pick(COMPANIES),
      model: pick(spec.models),
      category,
      seats: spec.seats,
      transmission: automatic ? "automatic" : "manual",
      priceUsd: Math.round(spec.dayUsd * city.costIndex * between(0.85, 1.15)),
    });
  }
  return out;
}

const cities = CITIES.map(({ costIndex: _, ...c }) => c);
const hotels = CITIES.flatMap(hotelsOf);
const cars = CITIES.flatMap(carsOf);

const jsonl = (rows) => `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`;
const sqlText = (s) => `'${String(s).replaceAll("'", "''")}'`;
const sqlArray = (a) => `ARRAY[${a.map(sqlText).join(", ")}]::text[]`;

const seed = `-- Bee Travels' data for the PostgreSQL data versions (v2 in the mesh, v3 "in the cloud"). Generated by
-- data/generate.mjs from the same records as hotels.jsonl and cars.jsonl (v1): do not edit, regenerate.
-- postgres/run.mjs loads it into a new database at startup.
BEGIN;

CREATE TABLE hotels (
  id text PRIMARY KEY,
  city_id text NOT NULL,
  name text NOT NULL,
  chain text NOT NULL,
  stars smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
  rating real NOT NULL,
  price_usd integer NOT NULL CHECK (price_usd > 0),
  amenities text[] NOT NULL
);
CREATE INDEX hotels_by_city ON hotels (city_id, price_usd);

CREATE TABLE cars (
  id text PRIMARY KEY,
  city_id text NOT NULL,
  company text NOT NULL,
  model text NOT NULL,
  category text NOT NULL,
  seats smallint NOT NULL,
  transmission text NOT NULL CHECK (transmission IN ('automatic', 'manual')),
  price_usd integer NOT NULL CHECK (price_usd > 0)
);
CREATE INDEX cars_by_city ON cars (city_id, price_usd);

CREATE TABLE hotel_bookings (
  id uuid PRIMARY KEY,
  hotel_id text NOT NULL REFERENCES hotels (id),
  guest text NOT NULL,
  check_in date NOT NULL,
  nights smallint NOT NULL CHECK (nights BETWEEN 1 AND 30),
  total_usd integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE car_bookings (
  id uuid PRIMARY KEY,
  car_id text NOT NULL REFERENCES cars (id),
  driver text NOT NULL,
  pick_up date NOT NULL,
  days smallint NOT NULL CHECK (days BETWEEN 1 AND 30),
  total_usd integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO hotels (id, city_id, name, chain, stars, rating, price_usd, amenities) VALUES
${hotels
  .map(
    (h) =>
      `  (${[sqlText(h.id), sqlText(h.cityId), sqlText(h.name), sqlText(h.chain), h.stars, h.rating, h.priceUsd, sqlArray(h.amenities)].join(", ")})`,
  )
  .join(",\n")};

INSERT INTO cars (id, city_id, company, model, category, seats, transmission, price_usd) VALUES
${cars
  .map(
    (c) =>
      `  (${[sqlText(c.id), sqlText(c.cityId), sqlText(c.company), sqlText(c.model), sqlText(c.category), c.seats, sqlText(c.transmission), c.priceUsd].join(", ")})`,
  )
  .join(",\n")};

COMMIT;
`;

const files = {
  "cities.jsonl": jsonl(cities),
  "currencies.jsonl": jsonl(CURRENCIES),
  "hotels.jsonl": jsonl(hotels),
  "cars.jsonl": jsonl(cars),
  "seed.sql": seed,
};

if (process.argv.includes("--check")) {
  const stale = Object.entries(files).filter(([name, text]) => {
    try {
      return readFileSync(new URL(name, OUT), "utf8") !== text;
    } catch {
      return true;
    }
  });
  if (stale.length > 0) {
    console.error(`out of date: ${stale.map(([n]) => n).join(", ")} (run node data/generate.mjs)`);
    process.exit(1);
  }
  console.log(`up to date: ${Object.keys(files).join(", ")}`);
} else {
  for (const [name, text] of Object.entries(files)) writeFileSync(new URL(name, OUT), text);
  console.log(
    `wrote ${cities.length} cities, ${CURRENCIES.length} currencies, ${hotels.length} hotels, ${cars.length} cars, seed.sql`,
  );
}
