// Where a Bee Travels service reads its data, after its data version:
//   DATA_SOURCE=json      the JSON Lines files in data/ (v1), read once at startup; bookings kept in memory;
//   DATA_SOURCE=postgres  a PostgreSQL (v2: in the mesh, v3: "in the cloud", outside the mesh) with the `pg`
//                         client: DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD; DB_VIA_HTTP_PROXY=true opens
//                         each connection as a CONNECT tunnel through HTTP_PROXY (lib/connect-tunnel.mjs).
// DATA_VERSION (v1, v2, v3) and DATA_STORE (a human description) are returned with every answer, so a caller
// (and the canary test) can tell which version served it.
import { readFileSync } from "node:fs";
import pg from "pg";
import { ConnectTunnelSocket } from "./connect-tunnel.mjs";
import { fail, intEnv, stringEnv } from "./http-server.mjs";
import { proxyFromEnv } from "./mesh-http.mjs";

/** Every record of a JSON Lines file (one JSON object per line; blank lines skipped). */
export function readJsonLines(url) {
  const text = readFileSync(url, "utf8");
  const out = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new Error(`${url}:${i + 1}: ${e.message}`);
    }
  });
  return out;
}

/**
 * The data version this process serves: {version, source, store}, and for postgres a connection pool.
 * @param {string} app
 * @returns {{version: string, source: "json" | "postgres", store: string, pool?: pg.Pool}}
 */
export function dataVersionFromEnv(app, env = process.env) {
  const version = stringEnv(app, "DATA_VERSION", "v1", env);
  const source = stringEnv(app, "DATA_SOURCE", "json", env);
  if (source === "json") return { version, source, store: env.DATA_STORE || "JSON files" };
  if (source !== "postgres") fail(app, `DATA_SOURCE must be json or postgres, not ${JSON.stringify(source)}`);
  const host = stringEnv(app, "DB_HOST", undefined, env);
  const port = intEnv(app, "DB_PORT", 5432, 1, 65535, env);
  const viaProxy = env.DB_VIA_HTTP_PROXY === "true";
  const proxy = viaProxy ? proxyFromEnv(env) : undefined;
  const config = {
    host,
    port,
    database: stringEnv(app, "DB_NAME", undefined, env),
    user: stringEnv(app, "DB_USER", undefined, env),
    password: stringEnv(app, "DB_PASSWORD", undefined, env),
    application_name: `${app}-${version}`,
    max: intEnv(app, "DB_POOL_SIZE", 4, 1, 50, env),
    idleTimeoutMillis: 10_000,
    connectionTimeoutMillis: 3_000,
    query_timeout: 3_000,
    statement_timeout: 2_500,
    ...(proxy ? { stream: () => new ConnectTunnelSocket(proxy, { connectTimeoutMs: 3_000 }) } : {}),
  };
  const pool = new pg.Pool(config);
  // An idle connection that drops (the database restarted, the tunnel closed) is replaced on next use.
  pool.on("error", (e) => console.error(`${app}: idle database connection lost: ${e.message}`));
  const how = proxy
    ? `${host}:${port} through the sidecar (CONNECT via ${proxy.host}:${proxy.port})`
    : viaProxy
      ? `${host}:${port} directly (DB_VIA_HTTP_PROXY set, but no HTTP_PROXY)`
      : `${host}:${port}`;
  console.log(`${app}: data version ${version}: PostgreSQL ${config.database} at ${how}`);
  return { version, source, store: env.DATA_STORE || "PostgreSQL", pool };
}

/** Runs a query; a database failure becomes an Error whose message says what failed, for a 503. */
export async function query(pool, text, values) {
  try {
    return await pool.query(text, values);
  } catch (e) {
    const err = new Error(`database: ${e.message}`);
    err.code = e.code;
    throw err;
  }
}
