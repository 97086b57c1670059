// PostgreSQL for Bee Travels, as a container command for `isthmus up` (which runs commands, not images):
// Debian's postgresql package, a fresh throwaway database per start.
//
//  1. a data directory in a new temporary directory, owned by the postgres user (postgres refuses to run as
//     root; when this wrapper runs as root, initdb, pg_ctl and postgres run as PG_RUN_AS, "postgres");
//  2. initdb; client authentication: the Unix socket (in the temporary directory) trusted for the loading
//     step, TCP from loopback addresses (the pod's sidecar, or the host for a hostNetwork pod) with a password;
//  3. a first start on the Unix socket only, to create the role and database and load the seed SQL
//     (data/seed.sql) before anyone can connect over TCP; the runtime calls the pod ready once PG_PORT
//     accepts connections, so the data is there by then;
//  4. postgres itself, bound to PG_HOST:PG_PORT ($(HOST): the pod's address), in the foreground. SIGTERM or
//     SIGINT: a fast shutdown, then the temporary directory is removed.
// Nothing is kept across starts (fsync off): the demo's data comes from the seed each time.
//
// Environment: PG_HOST, PG_PORT, PG_DATABASE, PG_USER, PG_PASSWORD (required); PG_SEED (data/seed.sql);
// PG_BIN (the directory of initdb, pg_ctl and postgres; default: the newest /usr/lib/postgresql/*/bin, else
// PATH); PG_RUN_AS (postgres).
import { spawn, spawnSync } from "node:child_process";
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const APP = "postgres";
const TEMP_PREFIX = "beetravels-pg-";
const started = Date.now();

const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`${APP}: ${name} is required`);
    process.exit(2);
  }
  return v;
};
const host = need("PG_HOST");
const port = need("PG_PORT");
const database = need("PG_DATABASE");
const user = need("PG_USER");
const password = need("PG_PASSWORD");
if (host === "0.0.0.0" || host === "*") {
  console.error(`${APP}: PG_HOST=${host}: bind the pod's own address`);
  process.exit(2);
}
const seedFile = new URL(`../${process.env.PG_SEED || "data/seed.sql"}`, import.meta.url);
const bin = pgBin();
const runAs = process.getuid?.() === 0 ? account(process.env.PG_RUN_AS || "postgres") : undefined;

removeStaleDirectories();
const temp = mkdtempSync(join(tmpdir(), TEMP_PREFIX));
const data = join(temp, "data");
writeFileSync(join(temp, "wrapper.pid"), String(process.pid));
if (runAs) chownSync(temp, runAs.uid, runAs.gid);

/** @type {import("node:child_process").ChildProcess | undefined} */
let server;
let stopping = false;
const cleanUp = () => rmSync(temp, { recursive: true, force: true });
const stop = (signal) => {
  if (stopping) return;
  stopping = true;
  console.log(`${APP}: ${signal}, stopping`);
  // Fast shutdown: open sessions are rolled back (the apps are being stopped too).
  if (server && server.exitCode === null) server.kill("SIGINT");
  else {
    cleanUp();
    process.exit(0);
  }
};
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

try {
  // 1-2. A new cluster: superuser "postgres", UTF-8, C locale.
  run("initdb", [
    ...["-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C"],
    ...["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
  ]);
  writeFileSync(
    join(data, "pg_hba.conf"),
    [
      "# Written by postgres/run.mjs: the Unix socket (only in this temporary directory) for loading the seed,",
      "# TCP from loopback addresses (the pod's sidecar or the host) with a password.",
      "local all all trust",
      "host all all 127.0.0.0/8 scram-sha-256",
      "host all all ::1/128 scram-sha-256",
      "",
    ].join("\n"),
  );
  // 3. The Unix socket only, to load the data.
  run("pg_ctl", [
    "-D",
    data,
    "-w",
    "-s",
    "-l",
    join(temp, "load.log"),
    "-o",
    `-c listen_addresses='' -k ${temp}`,
    "start",
  ]);
  psql(
    "postgres",
    "postgres",
    `CREATE ROLE :"user" LOGIN PASSWORD :'password';\nCREATE DATABASE :"db" OWNER :"user";\n`,
  );
  psql(database, user, readFileSync(seedFile, "utf8"));
  run("pg_ctl", ["-D", data, "-w", "-s", "-m", "fast", "stop"]);
} catch (e) {
  console.error(`${APP}: ${e.message}`);
  const log = join(temp, "load.log");
  if (existsSync(log)) console.error(readFileSync(log, "utf8"));
  cleanUp();
  process.exit(1);
}
if (stopping) {
  cleanUp();
  process.exit(0);
}

// 4. The server, in the foreground, logging to this process' output.
console.log(
  `${APP}: ${database} loaded in ${Date.now() - started} ms; serving ${host}:${port} (data ${data})`,
);
server = spawn(
  join(bin, "postgres"),
  [
    ...["-D", data, "-h", host, "-p", port, "-k", temp],
    ...["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
    ...["-c", "max_connections=50", "-c", "shared_buffers=32MB"],
  ],
  { stdio: ["ignore", "inherit", "inherit"], cwd: temp, ...ids() },
);
server.on("exit", (code, signal) => {
  cleanUp();
  console.log(`${APP}: postgres exited (${signal ?? `code ${code}`})`);
  process.exit(stopping ? 0 : (code ?? 1));
});

/** Runs a PostgreSQL program to completion as the postgres user; throws with its output if it fails. */
function run(program, args) {
  const r = spawnSync(join(bin, program), args, { cwd: temp, encoding: "utf8", ...ids() });
  if (r.error) throw new Error(`${program}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${program} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
}

/** Runs SQL through psql on the Unix socket (as this process' user: it only needs the socket). */
function psql(db, role, sql) {
  const r = spawnSync(
    join(bin, "psql"),
    [
      ...["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", temp, "-p", "5432", "-d", db, "-U", role],
      ...["-v", `user=${user}`, "-v", `password=${password}`, "-v", `db=${database}`],
    ],
    { input: sql, encoding: "utf8", env: { ...process.env, PGPORT: "5432" } },
  );
  if (r.error) throw new Error(`psql: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`psql ${db} failed (${r.status}):\n${r.stdout}${r.stderr}`);
}

function ids() {
  return runAs ? { uid: runAs.uid, gid: runAs.gid } : {};
}

/** The directory of initdb, pg_ctl and postgres. */
function pgBin() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length > 0) return join(root, versions[0], "bin");
  for (const dir of (process.env.PATH ?? "").split(":"))
    if (dir && existsSync(join(dir, "initdb"))) return dir;
  console.error(`${APP}: initdb not found (install Debian's postgresql, or set PG_BIN)`);
  process.exit(2);
}

/** uid and gid of a local account, from /etc/passwd. */
function account(name) {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  console.error(`${APP}: running as root, and there is no "${name}" user to run PostgreSQL as`);
  process.exit(2);
}

/** Temporary directories of earlier runs whose wrapper is gone (killed before it could clean up). */
function removeStaleDirectories() {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let pid;
    try {
      pid = Number(readFileSync(join(dir, "wrapper.pid"), "utf8"));
    } catch {
      continue; // being set up by another wrapper right now, or not ours
    }
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    const postmaster = readPostmasterPid(dir);
    if (postmaster !== undefined && alive(postmaster)) continue;
    rmSync(dir, { recursive: true, force: true });
    console.log(`${APP}: removed ${dir}, left by an earlier run`);
  }
}

function readPostmasterPid(dir) {
  try {
    return Number(readFileSync(join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}
