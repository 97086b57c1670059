// The Guestbook on the local runtime, end to end: `isthmus up --detach` on a copy of this directory (its
// ingress on a free port), then real traffic through the ingress gateway: the page, entries written through
// the mesh and scored by the analyzer (which calls the external tone API through its ServiceEntry), the data
// in the Redis master and replica, the 90/10 analyzer canary over 2,000 entries, the timeout path with the
// tone API gone, the AuthorizationPolicies at the sidecars, and `isthmus down` leaving nothing behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { eventually, freePort, isthmus, processesIn } from "../../src/runtime/runtime-test-support.ts";

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Entry {
  text: string;
  score: number | null;
  tone?: string;
  analyzer?: string;
}

test("the Guestbook on isthmus up: ingress, mesh calls, Redis, the canary, faults, policies, down", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-guestbook-"));
  cpSync(import.meta.dirname, dir, { recursive: true, filter: (src) => !src.includes(".isthmus") });
  // The apps' packages (sentiment) resolve from the repository's node_modules, as in examples/guestbook.
  symlinkSync(join(import.meta.dirname, "..", "..", "node_modules"), join(dir, "node_modules"));
  const port = await freePort();
  writeFileSync(
    join(dir, "mesh.yaml"),
    readFileSync(join(dir, "mesh.yaml"), "utf8").replace("port: 8080", `port: ${port}`),
  );
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
  console.log(`guestbook ready in ${readyS.toFixed(1)} s, ${ready.pods.length} pods`);
  const base = ready.clusters.iks!.ingress;
  assert.equal(base, `http://127.0.0.1:${port}`);
  assert.ok(ready.pods.every((p) => p.ready));

  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);

  const post = async (text: string) => {
    const r = await fetch(`${base}/api/entries`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text }),
    });
    return { status: r.status, body: (await r.json()) as { entry?: Entry; error?: string } };
  };
  const good = await post("What a wonderful, lovely day");
  assert.equal(good.status, 201);
  assert.equal(good.body.entry?.tone, "positive", JSON.stringify(good.body));
  const bad = await post("This is terrible, awful and sad");
  assert.equal(bad.body.entry?.tone, "negative", JSON.stringify(bad.body));
  assert.equal((await post("")).status, 400);

  // In Redis: written to the master through the mesh, replicated to the replica through its own tunnel.
  const master = ready.pods.find((p) => p.name === "redis-master-0")!;
  const replica = ready.pods.find((p) => p.name === "redis-replica-0")!;
  const lrange = (host: string) =>
    spawnSync("redis-cli", ["-h", host, "-p", "6379", "--raw", "LRANGE", "guestbook:entries", "0", "-1"], {
      encoding: "utf8",
    }).stdout;
  assert.match(lrange(master.address), /What a wonderful, lovely day/);
  await eventually(
    async () => lrange(replica.address),
    (t) => t.includes("terrible, awful"),
    "replicated",
    20_000,
  );

  // The analyzer canary: 90/10 between v1 and v2, within 5 points over 2,000 entries.
  const versions = { v1: 0, v2: 0, none: 0 };
  for (let i = 0; i < 2000; i += 50) {
    const batch = await Promise.all(Array.from({ length: 50 }, (_, k) => post(`entry ${i + k} is fine`)));
    for (const r of batch) {
      const v = r.body.entry?.analyzer;
      if (v === "v1" || v === "v2") versions[v]++;
      else versions.none++;
    }
  }
  const v2Share = versions.v2 / (versions.v1 + versions.v2);
  console.log(
    `canary: v1 ${versions.v1}, v2 ${versions.v2}, unscored ${versions.none}; v2 share ${v2Share.toFixed(3)}`,
  );
  assert.equal(versions.none, 0, "every entry scored");
  assert.ok(Math.abs(v2Share - 0.1) <= 0.05, `v2 share ${v2Share}`);

  // The tone API gone: the analyzer's timeout and the frontend's fallback keep the page working.
  const tone = processesIn(dir).find((p) =>
    readFileSync(`/proc/${p}/cmdline`, "latin1").includes("tone-api/server.mjs"),
  );
  assert.ok(tone !== undefined);
  const stopTone = spawnSync("kill", ["-STOP", String(tone)]);
  assert.equal(stopTone.status, 0);
  const degraded = await post("written while the tone API hangs");
  spawnSync("kill", ["-CONT", String(tone)]);
  assert.equal(degraded.status, 201, JSON.stringify(degraded));
  assert.equal(degraded.body.entry?.score, null, "stored without a score");

  // The AuthorizationPolicies at the sidecars: only the frontend may call the analyzer.
  const analyzer = ready.pods.find((p) => p.name === "analyzer-v1-0")!;
  const direct = await fetch(`http://${analyzer.address}:15006/`).catch((e: Error) => e);
  assert.ok(direct instanceof Error, "the analyzer's sidecar takes mutual TLS only");

  const down = await isthmus(["down", dir]);
  assert.equal(down.code, 0, down.err);
  await eventually(
    async () => processesIn(dir),
    (p) => p.length === 0,
    "no process left",
    20_000,
  );
});
