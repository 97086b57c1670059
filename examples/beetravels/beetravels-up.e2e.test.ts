// Bee Travels on the local runtime, end to end: `isthmus up --detach` on a copy of this directory (its ingress
// and the cloud database on free ports), then real traffic through the ingress gateway: the page and the ui's
// APIs aggregating destination, hotel, car-rental and currency-exchange; the three data versions (JSON files,
// PostgreSQL in the mesh, PostgreSQL outside it through a ServiceEntry) answering the same data; the weighted
// canaries over 2,000 searches; bookings written through the mesh landing in each version's database; the
// fault injection (abort and delay) and the ui's fallbacks, the mesh's timeout, its retries when a replica
// dies, the rate limit on bookings at the gateway; the AuthorizationPolicies (only hotel and car-rental reach
// PostgreSQL); and `isthmus down` leaving no process and no database directory behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  eventually,
  exclusiveMesh,
  freePort,
  isthmus,
  processesIn,
} from "../../src/runtime/runtime-test-support.ts";

const MESH_DB = { user: "beetravels", password: "beetravels-mesh-demo", db: "beetravels" };
const CLOUD_DB = { user: "beetravels", password: "beetravels-cloud-demo", db: "beetravels" };
const cleanups: Array<() => Promise<void> | void> = [];
// One whole mesh at a time (the lock is released last, after this file's mesh is down).
before(async () => {
  cleanups.push(await exclusiveMesh());
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** psql against a database, as a one-off client outside the mesh; stdout (unaligned, tuples only). */
function psql(
  host: string,
  port: number,
  creds: { user: string; password: string; db: string },
  sql: string,
): { ok: boolean; out: string; err: string } {
  const r = spawnSync(
    "psql",
    ["-X", "-At", "-h", host, "-p", String(port), "-U", creds.user, "-d", creds.db, "-c", sql],
    {
      encoding: "utf8",
      env: { ...process.env, PGPASSWORD: creds.password, PGCONNECT_TIMEOUT: "3" },
      timeout: 10_000,
    },
  );
  return { ok: r.status === 0, out: (r.stdout ?? "").trim(), err: (r.stderr ?? "").trim() };
}

interface Part {
  version?: string;
  source?: string;
  store?: string;
  items?: Array<{ id: string; price: number; priceUsd: number }>;
  error?: string;
}
interface BookingAnswer {
  version?: string;
  store?: string;
  booking: { id: string };
  error?: string;
}
interface Search {
  city: { id: string; name: string; currency: string };
  currency: { code: string; rate: number; ok: boolean; error?: string };
  hotels: Part;
  cars: Part;
  warnings: string[];
}

test("Bee Travels on isthmus up: page and APIs, data versions, canaries, PostgreSQL, faults, retries, rate limit, policies, down", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-beetravels-"));
  cpSync(import.meta.dirname, dir, { recursive: true, filter: (src) => !src.includes(".isthmus") });
  // The apps' packages (pg) resolve from the repository's node_modules.
  symlinkSync(join(import.meta.dirname, "..", "..", "node_modules"), join(dir, "node_modules"));
  const port = await freePort();
  const cloudPort = await freePort();
  const rewrite = (file: string, from: string, to: string) => {
    const text = readFileSync(join(dir, file), "utf8");
    assert.ok(text.includes(from), `${file} has ${from}`);
    writeFileSync(join(dir, file), text.replaceAll(from, to));
  };
  rewrite("mesh.yaml", "port: 8090", `port: ${port}`);
  // The cloud database's port on 127.0.0.1, in its Deployment and in the ServiceEntry's endpoint.
  rewrite("cloud-db.yaml", "15432", String(cloudPort));
  rewrite("traffic.yaml", "tcp-postgres: 15432", `tcp-postgres: ${cloudPort}`);
  cleanups.push(async () => {
    await isthmus(["down", dir]);
    rmSync(dir, { recursive: true, force: true });
  });

  const started = Date.now();
  const up = await isthmus(["up", dir, "--detach", "-o", "json"]);
  assert.equal(up.code, 0, up.err);
  const readyS = (Date.now() - started) / 1000;
  const ready = JSON.parse(up.out) as {
    clusters: Record<string, { ingress: string }>;
    pods: Array<{ name: string; namespace: string; address: string; ready: boolean }>;
  };
  console.log(`beetravels ready in ${readyS.toFixed(1)} s, ${ready.pods.length} pods`);
  const base = ready.clusters.iks!.ingress;
  assert.equal(base, `http://127.0.0.1:${port}`);
  assert.ok(
    ready.pods.every((p) => p.ready),
    JSON.stringify(ready.pods),
  );
  const pod = (name: string) => {
    const p = ready.pods.find((x) => x.name === name);
    assert.ok(p, `pod ${name}`);
    return p;
  };
  // Everything the mesh runs, to check after `down` (postgres leaves the directory for its data one).
  const running = meshProcesses(dir);
  const dataDirs = ["iks/beetravels/postgres-0", "iks/cloud/cloud-postgres-0"].map((p) => {
    const log = readFileSync(join(dir, ".isthmus", "logs", p, "postgres.log"), "utf8");
    const m = /\(data (\S+)\/data\)/.exec(log);
    assert.ok(m, `${p}: data directory in its log`);
    return m[1]!;
  });

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await fetch(`${base}${path}`, { headers });
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, text, json: json as Record<string, unknown> & Search };
  };
  const book = async (body: Record<string, unknown>, headers: Record<string, string> = {}) => {
    const r = await fetch(`${base}/api/bookings`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    return { status: r.status, json: (await r.json().catch(() => ({}))) as BookingAnswer };
  };

  // The page and the ui's APIs, through the ingress gateway.
  const page = await get("/");
  assert.equal(page.status, 200);
  assert.match(page.text, /<title>Bee Travels<\/title>/);
  assert.equal((await get("/app.js")).status, 200);
  const destinations = await get("/api/destinations");
  assert.equal(destinations.status, 200);
  const cities = (destinations.json.destinations as Array<{ id: string }>).map((c) => c.id);
  assert.equal(cities.length, 20);
  const paris = await get("/api/search?city=paris");
  assert.equal(paris.status, 200, paris.text);
  assert.equal(paris.json.city.name, "Paris");
  assert.deepEqual(paris.json.currency, { code: "EUR", rate: 0.92, ok: true });
  assert.equal(paris.json.hotels.items?.length, 15);
  assert.equal(paris.json.cars.items?.length, 12);
  const firstHotel = paris.json.hotels.items![0]!;
  assert.equal(firstHotel.price, Math.round(firstHotel.priceUsd * 92) / 100);
  assert.deepEqual(paris.json.warnings, []);
  assert.equal((await get("/api/search?city=atlantis")).status, 404);
  const converted = await get("/api/convert?from=USD&to=JPY&amount=10");
  assert.equal(converted.status, 200, converted.text);
  assert.equal(converted.json.result, 1515);

  // The three data versions, pinned by header: the same hotels and cars from JSON files, the PostgreSQL in
  // the mesh, and the cloud PostgreSQL through the ServiceEntry.
  const stores: Record<string, string> = {};
  let v1Ids: string[] = [];
  for (const v of ["v1", "v2", "v3"]) {
    for (const [path, key] of [
      ["/api/hotels?city=rome", "hotels"],
      ["/api/cars?city=rome", "cars"],
    ] as const) {
      const r = await get(path, { "x-data-version": v });
      assert.equal(r.status, 200, `${v} ${path}: ${r.text}`);
      assert.equal(r.json.version, v);
      stores[`${key} ${v}`] = String(r.json.store);
      const ids = (r.json[key] as Array<{ id: string }>).map((x) => x.id);
      assert.equal(ids.length, key === "hotels" ? 15 : 12);
      if (v === "v1" && key === "hotels") v1Ids = ids;
      if (key === "hotels") assert.deepEqual(ids, v1Ids, `${v}: the same hotels in the same order`);
    }
  }
  assert.equal(stores["hotels v1"], "JSON files");
  assert.equal(stores["hotels v2"], "PostgreSQL in the mesh");
  assert.equal(stores["hotels v3"], "cloud PostgreSQL");

  // The canaries: hotel 80/10/10 and car-rental 70/20/10 over 2,000 searches, each within 5 points; every
  // answer names the version that served it.
  const counts = {
    hotels: { v1: 0, v2: 0, v3: 0 } as Record<string, number>,
    cars: { v1: 0, v2: 0, v3: 0 } as Record<string, number>,
  };
  const canaryStarted = Date.now();
  for (let i = 0; i < 2000; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, (_, k) => get(`/api/search?city=${cities[(i + k) % cities.length]}`)),
    );
    for (const r of batch) {
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.warnings, [], "no part failed");
      for (const part of ["hotels", "cars"] as const) {
        const v = r.json[part].version ?? "none";
        assert.ok(v in counts[part], `${part} answered by ${v}`);
        counts[part][v]!++;
      }
    }
  }
  const share = (c: Record<string, number>, v: string) => c[v]! / 2000;
  console.log(
    `canary over 2000 searches in ${((Date.now() - canaryStarted) / 1000).toFixed(1)} s: ` +
      `hotel ${JSON.stringify(counts.hotels)}, car-rental ${JSON.stringify(counts.cars)}`,
  );
  for (const [v, want] of Object.entries({ v1: 0.8, v2: 0.1, v3: 0.1 }))
    assert.ok(Math.abs(share(counts.hotels, v) - want) <= 0.05, `hotel ${v}: ${share(counts.hotels, v)}`);
  for (const [v, want] of Object.entries({ v1: 0.7, v2: 0.2, v3: 0.1 }))
    assert.ok(Math.abs(share(counts.cars, v) - want) <= 0.05, `car-rental ${v}: ${share(counts.cars, v)}`);

  // Bookings written through the mesh land in each version's PostgreSQL (read back outside the mesh).
  const postgres = pod("postgres-0");
  const hotelV2 = await book(
    { kind: "hotel", hotelId: "paris-h03", guest: "Maya O'Neil", checkIn: "2027-05-01", nights: 3 },
    { "x-data-version": "v2" },
  );
  assert.equal(hotelV2.status, 201, JSON.stringify(hotelV2.json));
  assert.equal(hotelV2.json.version, "v2");
  const inMesh = psql(
    postgres.address,
    5432,
    MESH_DB,
    `SELECT hotel_id, guest, check_in, nights FROM hotel_bookings WHERE id = '${hotelV2.json.booking.id}'`,
  );
  assert.equal(inMesh.out, "paris-h03|Maya O'Neil|2027-05-01|3", inMesh.err);
  const carV3 = await book(
    { kind: "car", carId: "tokyo-c06", driver: "Kenji", pickUp: "2027-06-10", days: 4 },
    { "x-data-version": "v3" },
  );
  assert.equal(carV3.status, 201, JSON.stringify(carV3.json));
  assert.equal(carV3.json.version, "v3");
  const inCloud = psql(
    "127.0.0.1",
    cloudPort,
    CLOUD_DB,
    `SELECT car_id, driver, pick_up, days FROM car_bookings WHERE id = '${carV3.json.booking.id}'`,
  );
  assert.equal(inCloud.out, "tokyo-c06|Kenji|2027-06-10|4", inCloud.err);
  // v1 keeps its bookings in memory: none of them in either database.
  const carV1 = await book(
    { kind: "car", carId: "tokyo-c06", driver: "Aiko", pickUp: "2027-06-10", days: 1 },
    { "x-data-version": "v1" },
  );
  assert.equal(carV1.status, 201);
  assert.equal(carV1.json.store, "JSON files");
  assert.equal(psql(postgres.address, 5432, MESH_DB, "SELECT count(*) FROM car_bookings").out, "0");
  // The services' own answers pass through the ui: an unknown hotel, a bad date.
  assert.equal(
    (await book({ kind: "hotel", hotelId: "nowhere-h01", guest: "A", checkIn: "2027-05-01", nights: 1 }))
      .status,
    404,
  );
  assert.equal(
    (await book({ kind: "hotel", hotelId: "paris-h03", guest: "A", checkIn: "2027-02-30", nights: 1 }))
      .status,
    400,
  );

  // Fault injection on currency-exchange, by header: the abort answers 503 at the ui's sidecar; the ui says
  // so, and a search falls back to US dollars.
  const aborted = await get("/api/convert?from=USD&to=EUR&amount=1", { "x-test-fault": "abort" });
  assert.equal(aborted.status, 502, aborted.text);
  assert.equal(aborted.json.upstreamStatus, 503);
  const degraded = await get("/api/search?city=tokyo", { "x-test-fault": "abort" });
  assert.equal(degraded.status, 200);
  assert.equal(degraded.json.currency.code, "USD");
  assert.equal(degraded.json.currency.ok, false);
  assert.match(degraded.json.warnings.join(" "), /prices are in USD: .*503/);
  assert.equal(degraded.json.hotels.items![0]!.price, degraded.json.hotels.items![0]!.priceUsd);
  // The delay (3 s) is longer than the time budget for currency-exchange: the search still answers in
  // about a second, in US dollars.
  const t0 = Date.now();
  const slow = await get("/api/search?city=tokyo", { "x-test-fault": "delay" });
  const slowMs = Date.now() - t0;
  console.log(`delay fault: search answered in ${slowMs} ms: ${slow.json.currency.error}`);
  assert.equal(slow.status, 200);
  assert.equal(slow.json.currency.ok, false);
  assert.ok(slowMs >= 900 && slowMs < 2500, `answered in ${slowMs} ms`);
  const slowConvert = await get("/api/convert?from=USD&to=EUR&amount=1", { "x-test-fault": "delay" });
  assert.equal(slowConvert.status, 504, slowConvert.text);

  // Timeout, retry and circuit breaking: one currency-exchange replica hangs (its app stopped). The mesh
  // gives each try 500 ms, retries on the other replica, and after 3 failures in a row ejects the hung one
  // (outlierDetection), so only the first requests of each ui sidecar wait. Every conversion succeeds.
  const before = await uiSidecarStats(ready.pods);
  // The app (sidecars get no POD_NAME).
  const hung = processesIn(dir).find((p) =>
    readFileSync(`/proc/${p}/environ`, "latin1").split("\0").includes("POD_NAME=currency-exchange-0"),
  );
  assert.ok(hung !== undefined, "currency-exchange-0's app");
  process.kill(hung, "SIGSTOP");
  const conversions: Array<{ status: number; ms: number; text: string }> = [];
  try {
    for (let i = 0; i < 30; i++) {
      const t = Date.now();
      const r = await get(`/api/convert?from=EUR&to=USD&amount=${i}`);
      conversions.push({ status: r.status, ms: Date.now() - t, text: r.text });
    }
  } finally {
    process.kill(hung, "SIGCONT");
  }
  const after = await uiSidecarStats(ready.pods);
  const waited = conversions.filter((c) => c.ms >= 400).length;
  console.log(
    `replica hung: 30 conversions, ${waited} waited for the per-try timeout (max ${Math.max(...conversions.map((c) => c.ms))} ms); ` +
      `ui sidecars: ${after.retries - before.retries} retries, ${after.ejections - before.ejections} ejections`,
  );
  assert.deepEqual(
    conversions.map((c) => c.status),
    Array(30).fill(200),
    conversions.map((c) => c.text).join("\n"),
  );
  assert.ok(
    conversions.every((c) => c.ms < 1000),
    "each within the mesh's 1 s timeout",
  );
  assert.ok(after.retries - before.retries >= 1, "the mesh retried on the other replica");
  assert.ok(after.ejections - before.ejections >= 1, "the hung replica was ejected");
  assert.ok(
    conversions.slice(-10).every((c) => c.ms < 400),
    "once ejected, no request waits for it",
  );

  // The rate limit on bookings at the gateway: 10 at once, then 10 more a second. Invalid bookings (400 from
  // the service) cost a token like any other.
  const burst = await Promise.all(Array.from({ length: 30 }, () => book({ kind: "hotel" })));
  const limited = burst.filter((b) => b.status === 429).length;
  console.log(`rate limit: ${limited} of 30 bookings at once answered 429`);
  assert.ok(limited >= 10, `${limited} limited`);
  assert.ok(
    burst.every((b) => b.status === 429 || b.status === 400),
    burst.map((b) => b.status).join(),
  );
  assert.equal((await get("/api/destinations")).status, 200, "the rest of the site is not limited");

  // The AuthorizationPolicies: hotel may reach PostgreSQL through its sidecar, the ui may not (its
  // connection is closed by the server's sidecar); a sidecar takes mutual TLS only.
  const tunnelOf = (podName: string) => {
    const pid = processesIn(dir).find((p) =>
      readFileSync(`/proc/${p}/environ`, "latin1").split("\0").includes(`POD_NAME=${podName}`),
    );
    assert.ok(pid !== undefined, podName);
    const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
    const value = (k: string) => env.find((e) => e.startsWith(`${k}=`))!.slice(k.length + 1);
    return { host: value("POSTGRES_SERVICE_HOST"), port: Number(value("POSTGRES_SERVICE_PORT")) };
  };
  const fromHotel = tunnelOf("hotel-v2-0");
  assert.equal(psql(fromHotel.host, fromHotel.port, MESH_DB, "SELECT count(*) FROM hotels").out, "300");
  const fromUi = tunnelOf("ui-0");
  const refused = psql(fromUi.host, fromUi.port, MESH_DB, "SELECT count(*) FROM hotels");
  assert.equal(refused.ok, false, "the ui may not reach PostgreSQL");
  const direct = await fetch(`http://${pod("hotel-v1-0").address}:15006/hotels?city=rome`).catch(
    (e: Error) => e,
  );
  assert.ok(direct instanceof Error, "the hotel's sidecar takes mutual TLS only");

  const down = await isthmus(["down", dir]);
  assert.equal(down.code, 0, down.err);
  await eventually(
    async () => [...running].filter(([pid, start]) => startTime(pid) === start),
    (left) => left.length === 0,
    "no process left",
  );
  for (const d of dataDirs) assert.equal(existsSync(d), false, `${d} removed`);
});

/** What the ui's sidecars did with currency-exchange: retries and outlier ejections (Prometheus counters). */
async function uiSidecarStats(
  pods: Array<{ name: string; address: string }>,
): Promise<{ retries: number; ejections: number }> {
  const out = { retries: 0, ejections: 0 };
  for (const p of pods.filter((x) => x.name.startsWith("ui-"))) {
    const text = await (await fetch(`http://${p.address}:15090/stats/prometheus`)).text();
    for (const line of text.split("\n")) {
      if (!line.includes("currency-exchange")) continue;
      const value = Number(line.split(" ").at(-1));
      if (line.startsWith("envoy_cluster_upstream_rq_retry{")) out.retries += value;
      if (line.startsWith("envoy_cluster_outlier_detection_ejections_consecutive_5xx{"))
        out.ejections += value;
    }
  }
  return out;
}

/** Processes in `dir` and all their descendants (postgres runs in its data directory), with start times. */
function meshProcesses(dir: string): Map<number, string> {
  const parent = new Map<number, number>();
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    const ppid = statField(Number(p), 1);
    if (ppid !== undefined) parent.set(Number(p), Number(ppid));
  }
  const roots = new Set(processesIn(dir));
  const inMesh = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; hops++) {
      if (roots.has(p)) return true;
      p = parent.get(p);
    }
    return false;
  };
  const out = new Map<number, string>();
  for (const pid of parent.keys())
    if (inMesh(pid)) {
      const start = startTime(pid);
      if (start !== undefined) out.set(pid, start);
    }
  return out;
}

/** Field `n` (0 = state) after the command name of /proc/PID/stat: 1 is the parent, 19 the start time. */
function statField(pid: number, n: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .at(n);
  } catch {
    return undefined;
  }
}

function startTime(pid: number): string | undefined {
  return statField(pid, 19);
}
