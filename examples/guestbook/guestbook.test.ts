// The Guestbook's apps as real processes, with the environment of `isthmus up`'s contract: a real Redis
// master and replica (Debian's redis-server), the tone API, the analyzer and the frontend, without a sidecar
// (no HTTP_PROXY: the apps call each other directly). Through real sidecars, on `isthmus up`, they are tested in
// guestbook-up.e2e.test.ts. Nothing from the apps is imported: only their HTTP APIs,
// their exit codes and what they leave in Redis are looked at. Every process is stopped, even on failure.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

const DIR = import.meta.dirname; // examples/guestbook: the runtime's working directory for the apps
const LOOPBACK = "127.0.0.1";
const ENTRIES_KEY = "guestbook:entries";

// ---- processes ----------------------------------------------------------------------------------------

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly output: string[];
  exited: boolean;
  readonly exit: Promise<number | null>;
}

const procs: Proc[] = [];

function start(name: string, command: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(command, args, { cwd: DIR, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const proc: Proc = {
    name,
    child,
    output,
    exited: false,
    exit: new Promise((resolve) => {
      child.on("exit", (code) => {
        proc.exited = true;
        resolve(code);
      });
      child.on("error", (e) => {
        output.push(`spawn failed: ${e.message}`);
        proc.exited = true;
        resolve(null);
      });
    }),
  };
  procs.push(proc);
  return proc;
}

async function stop(proc: Proc): Promise<void> {
  if (!proc.exited) {
    proc.child.kill("SIGTERM");
    const killed = await Promise.race([proc.exit.then(() => true), sleep(3000).then(() => false)]);
    if (!killed) {
      proc.child.kill("SIGKILL");
      await proc.exit;
    }
  }
  procs.splice(procs.indexOf(proc), 1);
}

// A last resort if the test process exits without its after() hooks having run.
process.on("exit", () => {
  for (const p of procs) if (!p.exited) p.child.kill("SIGKILL");
});

function logs(proc: Proc): string {
  return `--- ${proc.name} output ---\n${proc.output.slice(-40).join("\n")}`;
}

// ---- helpers --------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, LOOPBACK, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  proc?: Proc,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc?.exited) throw new Error(`${proc.name} exited while waiting for ${what}\n${logs(proc)}`);
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${proc ? `\n${logs(proc)}` : ""}`);
    await sleep(50);
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field
  json: any;
}

function request(
  port: number,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: LOOPBACK, port, method, path, headers, agent: false, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(body);
  });
}

const postJson = (port: number, path: string, value: unknown) =>
  request(port, "POST", path, JSON.stringify(value), { "content-type": "application/json" });

async function healthy(port: number): Promise<boolean> {
  return (await request(port, "GET", "/healthz")).status === 200;
}

/** The environment `isthmus up` gives a pod's container, without a sidecar (no HTTP_PROXY). */
function podEnv(pod: string, extra: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    POD_IP: LOOPBACK,
    HOST: LOOPBACK,
    POD_NAME: pod,
    POD_NAMESPACE: "guestbook",
    ISTHMUS_CLUSTER: "test",
    NO_PROXY: "localhost,127.0.0.1,::1",
    no_proxy: "localhost,127.0.0.1,::1",
    ...extra,
  };
}

function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/bin", "/usr/sbin", "/usr/local/bin"];
  for (const d of dirs) if (d && existsSync(join(d, name))) return join(d, name);
  return undefined;
}

// ---- Redis ----------------------------------------------------------------------------------------------

let redisServer = "";
let redisCli = "";
let redisDir = "";
let masterPort = 0;
let replicaPort = 0;

function redis(port: number, ...args: string[]): string {
  const r = spawnSync(redisCli, ["-h", LOOPBACK, "-p", String(port), "--raw", ...args], {
    encoding: "utf8",
    timeout: 5000,
  });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

// biome-ignore lint/suspicious/noExplicitAny: stored entries are checked field by field
function storedEntries(port = masterPort): any[] {
  return redis(port, "LRANGE", ENTRIES_KEY, "0", "-1")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

function startRedis(name: string, port: number, extra: string[]): Proc {
  // As in app.yaml: bound to the pod's address, nothing on disk.
  const args = ["--bind", LOOPBACK, "--port", String(port), "--protected-mode", "no", "--save", ""];
  args.push("--appendonly", "no", "--dir", redisDir, ...extra);
  return start(name, redisServer, args, { PATH: process.env.PATH ?? "/usr/bin:/bin" });
}

before(async () => {
  const server = findTool("redis-server");
  const cli = findTool("redis-cli");
  if (server === undefined || cli === undefined)
    throw new Error(
      "redis-server/redis-cli not found: the Guestbook test runs a real Redis. Install Debian's package " +
        "(apt-get install -y redis-server), as .ci/run does.",
    );
  redisServer = server;
  redisCli = cli;
  redisDir = mkdtempSync(join(tmpdir(), "guestbook-redis-"));
  masterPort = await freePort();
  replicaPort = await freePort();
  const master = startRedis("redis-master", masterPort, ["--repl-diskless-sync-delay", "0"]);
  await waitFor("redis-master", () => redis(masterPort, "PING").trim() === "PONG", 15_000, master);
  const replica = startRedis("redis-replica", replicaPort, [
    "--replicaof",
    LOOPBACK,
    String(masterPort),
    "--repl-diskless-load",
    "on-empty-db",
  ]);
  await waitFor(
    "redis-replica in sync",
    () => redis(replicaPort, "INFO", "replication").includes("master_link_status:up"),
    15_000,
    replica,
  );
});

after(async () => {
  for (const p of [...procs].reverse()) await stop(p);
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
});

// ---- the apps -------------------------------------------------------------------------------------------

const TONE_KEY = "test-key";

async function startTone(): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const proc = start("tone-api", process.execPath, ["tone-api/server.mjs"], {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    TONE_API_HOST: LOOPBACK,
    TONE_API_PORT: String(port),
    TONE_API_KEY: TONE_KEY,
  });
  await waitFor("tone-api", () => healthy(port), 15_000, proc);
  return { proc, port };
}

async function startAnalyzer(
  pod: string,
  env: Record<string, string>,
): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const proc = start(pod, process.execPath, ["analyzer/server.mjs"], {
    ...podEnv(pod, { PORT: String(port), ANALYZER_VERSION: "v1", TONE_API_KEY: TONE_KEY }),
    ...env,
  });
  await waitFor(pod, () => healthy(port), 15_000, proc);
  return { proc, port };
}

async function startFrontend(
  pod: string,
  env: Record<string, string>,
): Promise<{ proc: Proc; port: number }> {
  const port = await freePort();
  const proc = start(pod, process.execPath, ["frontend/server.mjs"], {
    ...podEnv(pod, {
      PORT: String(port),
      REDIS_MASTER_SERVICE_HOST: LOOPBACK,
      REDIS_MASTER_SERVICE_PORT: String(masterPort),
      REDIS_REPLICA_SERVICE_HOST: LOOPBACK,
      REDIS_REPLICA_SERVICE_PORT: String(replicaPort),
      GUESTBOOK_TITLE: "Test Guestbook",
    }),
    ...env,
  });
  await waitFor(pod, () => healthy(port), 15_000, proc);
  return { proc, port };
}

describe("guestbook apps, standalone (no HTTP_PROXY: direct calls)", () => {
  let tonePort = 0;
  let analyzer: { proc: Proc; port: number };
  let frontend = 0;

  before(async () => {
    const tone = await startTone();
    tonePort = tone.port;
    analyzer = await startAnalyzer("analyzer-v1-0", {
      TONE_API_URL: `http://${LOOPBACK}:${tonePort}/v3/tone`,
    });
    frontend = (await startFrontend("frontend-0", { ANALYZER_URL: `http://${LOOPBACK}:${analyzer.port}` }))
      .port;
  });

  it("serves the page, its script and /healthz", async () => {
    const page = await request(frontend, "GET", "/");
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.match(page.text, /<form id="entry-form"/);
    assert.match(page.text, /src="\/app\.js"/);
    assert.match(String(page.headers["content-security-policy"]), /default-src 'self'/);
    const script = await request(frontend, "GET", "/app.js");
    assert.equal(script.status, 200);
    assert.match(String(script.headers["content-type"]), /^text\/javascript/);
    assert.match(script.text, /\/api\/entries/);
    assert.equal((await request(frontend, "GET", "/style.css")).status, 200);
    const health = await request(frontend, "GET", "/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.json.status, "ok");
    assert.equal(health.headers["x-served-by"], "frontend-0");
    assert.equal((await request(analyzer.port, "GET", "/healthz")).status, 200);
    assert.equal((await request(tonePort, "GET", "/healthz")).status, 200);
    assert.equal((await request(frontend, "GET", "/../../package.json")).status, 404);
  });

  it("scores entries through the analyzer and stores them with their score in Redis", async () => {
    const happy = await postJson(frontend, "/api/entries", { text: "  I love this wonderful, happy day!  " });
    assert.equal(happy.status, 201, happy.text);
    assert.equal(happy.json.warning, undefined);
    assert.equal(happy.json.entry.text, "I love this wonderful, happy day!");
    assert.ok(happy.json.entry.score > 0, `positive text scored ${happy.json.entry.score}`);
    assert.equal(happy.json.entry.tone, "positive");
    assert.equal(happy.json.entry.analyzer, "v1");
    // Which analyzer scored it (its pod and cluster: under isthmus up it runs in another cluster).
    assert.deepEqual(happy.json.entry.analyzedBy, { pod: "analyzer-v1-0", cluster: "test", version: "v1" });

    const sad = await postJson(frontend, "/api/entries", { text: "This is terrible, I hate it. Awful." });
    assert.equal(sad.status, 201, sad.text);
    assert.ok(sad.json.entry.score < 0, `negative text scored ${sad.json.entry.score}`);
    assert.equal(sad.json.entry.tone, "negative");

    const plain = await postJson(frontend, "/api/entries", { text: "The meeting is on Tuesday." });
    assert.equal(plain.status, 201, plain.text);
    assert.equal(plain.json.entry.score, 0);
    assert.equal(plain.json.entry.tone, "neutral");

    // In Redis (the master), with the same scores.
    const stored = storedEntries();
    for (const posted of [happy, sad, plain]) {
      const found = stored.find((e) => e.id === posted.json.entry.id);
      assert.ok(found, `entry ${posted.json.entry.id} is in Redis`);
      assert.equal(found.text, posted.json.entry.text);
      assert.equal(found.score, posted.json.entry.score);
      assert.equal(found.tone, posted.json.entry.tone);
      assert.deepEqual(found.analyzedBy, posted.json.entry.analyzedBy);
    }
    // Listed, newest first, read from the replica once it has them.
    await waitFor("the replica to list the new entries", async () => {
      const list = await request(frontend, "GET", "/api/entries");
      return list.json.source === "replica" && list.json.entries[0]?.id === plain.json.entry.id;
    });
    const list = await request(frontend, "GET", "/api/entries");
    assert.equal(list.json.title, "Test Guestbook");
    assert.equal(list.json.servedBy, "frontend-0");
    assert.equal(list.json.cluster, "test");
    assert.deepEqual(
      list.json.entries.slice(0, 3).map((e: { id: number }) => e.id),
      [plain.json.entry.id, sad.json.entry.id, happy.json.entry.id],
    );
  });

  it("answers bad input with clear 4xx errors and stores nothing", async () => {
    const before = storedEntries().length;
    const cases: [string, string | Buffer, Record<string, string>, number, RegExp][] = [
      ["empty text", JSON.stringify({ text: "   " }), {}, 400, /must not be empty/],
      ["no text", JSON.stringify({ message: "hi" }), {}, 400, /"text" is required/],
      ["text not a string", JSON.stringify({ text: 42 }), {}, 400, /must be a string/],
      ["text too long", JSON.stringify({ text: "a".repeat(1001) }), {}, 400, /1001 characters.*at most 1000/],
      ["invalid JSON", "{text:", {}, 400, /not valid JSON/],
      ["not an object", JSON.stringify(["hi"]), {}, 400, /JSON object/],
      ["not JSON", "text=hi", { "content-type": "application/x-www-form-urlencoded" }, 415, /JSON/],
      ["body too large", JSON.stringify({ text: "a".repeat(17 * 1024) }), {}, 413, /larger than 16384/],
    ];
    for (const [what, body, headers, status, message] of cases) {
      const res = await request(frontend, "POST", "/api/entries", body, {
        "content-type": "application/json",
        ...headers,
      });
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.match(res.json?.error ?? "", message, what);
    }
    assert.equal((await request(frontend, "DELETE", "/api/entries")).status, 405);
    assert.equal((await request(frontend, "GET", "/api/nothing")).status, 404);
    assert.equal((await postJson(analyzer.port, "/analyze", { text: "" })).status, 400);
    assert.equal((await postJson(tonePort, "/v3/tone", { text: "fine" })).status, 401, "the key is required");
    assert.equal(storedEntries().length, before);

    // Exactly 1,000 characters (counted as characters, not bytes) are fine.
    const longest = await postJson(frontend, "/api/entries", { text: "é".repeat(1000) });
    assert.equal(longest.status, 201, longest.text);
  });

  it("lists only the latest 100 entries", async () => {
    let last = 0;
    for (let i = 0; i < 105; i++) {
      const res = await postJson(frontend, "/api/entries", { text: `entry number ${i}` });
      assert.equal(res.status, 201);
      last = res.json.entry.id;
    }
    await waitFor("the replica to list the last entry", async () => {
      const list = await request(frontend, "GET", "/api/entries");
      return list.json.entries[0]?.id === last;
    });
    const list = await request(frontend, "GET", "/api/entries");
    assert.equal(list.json.entries.length, 100);
    assert.equal(list.json.entries[99].id, last - 99);
  });

  it("the analyzer names itself in every answer; the frontend records it even when the tone API failed", async () => {
    const scored = await postJson(analyzer.port, "/analyze", { text: "a fine day" });
    assert.equal(scored.status, 200, scored.text);
    assert.equal(scored.headers["x-served-by"], "analyzer-v1-0");
    assert.equal(scored.headers["x-served-cluster"], "test");
    assert.equal(scored.headers["x-analyzer-version"], "v1");
    assert.equal(scored.json.pod, "analyzer-v1-0");
    assert.equal(scored.json.cluster, "test");

    // An analyzer whose tone API is gone (nothing listens on its port) answers 502, naming itself.
    const lonely = await startAnalyzer("analyzer-v2-0", {
      ANALYZER_VERSION: "v2",
      TONE_API_URL: `http://${LOOPBACK}:${await freePort()}/v3/tone`,
    });
    const failed = await postJson(lonely.port, "/analyze", { text: "a fine day" });
    assert.equal(failed.status, 502, failed.text);
    assert.match(failed.json.error, /tone API failed/);
    assert.equal(failed.headers["x-served-by"], "analyzer-v2-0");
    const front = await startFrontend("frontend-1", { ANALYZER_URL: `http://${LOOPBACK}:${lonely.port}` });
    const res = await postJson(front.port, "/api/entries", { text: "Scored by nobody" });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.entry.score, null);
    assert.equal(res.json.entry.analyzer, null);
    assert.deepEqual(res.json.entry.analyzedBy, { pod: "analyzer-v2-0", cluster: "test", version: "v2" });
    assert.match(
      res.json.warning,
      /stored without a tone score: the analyzer \(analyzer-v2-0 in test\) could not score it: .*tone API failed/,
    );
    await stop(front.proc);
    await stop(lonely.proc);
  });

  it("refuses to bind every interface (HOST=0.0.0.0)", async () => {
    const proc = start("frontend-bad-host", process.execPath, ["frontend/server.mjs"], {
      ...podEnv("frontend-bad-host", {
        HOST: "0.0.0.0",
        PORT: String(await freePort()),
        REDIS_MASTER_SERVICE_HOST: LOOPBACK,
        REDIS_MASTER_SERVICE_PORT: String(masterPort),
      }),
    });
    assert.equal(await proc.exit, 2);
    assert.match(proc.output.join("\n"), /bind the pod's own address/);
    await stop(proc);
  });

  it("stores the entry without a score when the analyzer is down, and says so", async () => {
    await stop(analyzer.proc);
    const res = await postJson(frontend, "/api/entries", { text: "What a great party!" });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.entry.score, null);
    assert.equal(res.json.entry.tone, null);
    assert.match(res.json.warning, /stored without a tone score: the analyzer is unavailable/);
    assert.equal(res.json.entry.analyzedBy, null, "no analyzer answered");
    const stored = storedEntries().find((e) => e.id === res.json.entry.id);
    assert.ok(stored, "the entry is in Redis");
    assert.equal(stored.score, null);
    assert.equal(stored.text, "What a great party!");
    // The page and the list still work.
    assert.equal((await request(frontend, "GET", "/")).status, 200);
    await waitFor("the replica to list the unscored entry", async () => {
      const list = await request(frontend, "GET", "/api/entries");
      return list.json.entries[0]?.id === res.json.entry.id;
    });
  });
});
