// The applied layer's state file on its own and with the store: every committed change is on disk before the
// caller hears of it, in commit order; a reload gives the same resources in the same order; anything but a
// complete valid file is refused with its line; a failed write changes nothing.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ChangeTooLargeError, ConfigStore } from "./config-store.ts";
import {
  documentChunks,
  InvalidStateError,
  STATE_FILE,
  STATE_LIMITS,
  STATE_TEMP,
  StateFile,
} from "./state-file.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "isthmus-state-"));
  dirs.push(d);
  return d;
};

const se = (name: string, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.example.internal]
  resolution: DNS
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
`;

/** A store persisting into `dir`, restored from it as the control plane does at start. */
async function openStore(dir: string) {
  const state = new StateFile(dir);
  const store = new ConfigStore(undefined, { persister: state });
  const loaded = await state.load(store.maxResources);
  store.restoreApplied(loaded.resources);
  return { store, state, loaded };
}

const objects = (store: ConfigStore) => store.all().map((r) => r.object);

test("applies and deletes are on disk when they return; a restart restores the same resources in order", async () => {
  const dir = join(tempDir(), "nested", "state");
  const { store, state, loaded } = await openStore(dir);
  assert.equal(loaded.found, false);
  assert.equal(statSync(dir).mode & 0o777, 0o700, "the directory is created 0700");
  assert.equal((await store.apply("a.yaml", se("b"))).ok, true);
  assert.equal(statSync(state.file).mode & 0o777, 0o600);
  assert.match(readFileSync(state.file, "utf8"), /name: b/);
  // Values YAML could read back as something else, and a regex that must stay on one line.
  const tricky = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tricky
  namespace: default
  labels: { a: "yes", b: "0x10", c: "1e3", d: "null", f: "" }
  annotations: { e: "~", g: "---", h: "# not a comment", i: "ü✓", note: "line one\\nline two\\n---\\n" }
spec:
  hosts: [b.example.internal]
  http:
  - match: [{ uri: { regex: "/${"x".repeat(200)}/(a|b)+[0-9]{1,3}$" }, headers: { x: { exact: "1.0" } } }]
    route: [{ destination: { host: b.example.internal }, weight: 100 }]
    timeout: 1.5s
`;
  const r = await store.apply("t.yaml", tricky);
  assert.equal(r.ok, true, JSON.stringify(r.diagnostics));
  await store.apply("a.yaml", se("a"));
  await store.apply("c.yaml", se("b", 81)); // replaced in place: keeps its position
  const before = objects(store);

  const again = await openStore(dir);
  assert.deepEqual(objects(again.store), before, "same resources, same order, same values");
  assert.deepEqual(
    again.store.all().map((x) => x.name),
    ["b", "tricky", "a"],
  );
  assert.deepEqual(again.store.delete("ServiceEntry", "default", "b").changed, ["ServiceEntry/default/b"]);
  const third = await openStore(dir);
  assert.deepEqual(
    third.store.all().map((x) => x.name),
    ["tricky", "a"],
    "the delete persisted",
  );
  assert.deepEqual(readdirSync(dir), [STATE_FILE], "no temporary file stays");
});

test("concurrent applies are written in commit order: the file ends with all of them", async () => {
  const dir = tempDir();
  const { store } = await openStore(dir);
  const results = await Promise.all(
    Array.from({ length: 15 }, (_, i) => store.apply(`${i}.yaml`, se(`s${i}`))),
  );
  assert.ok(results.every((r) => r.ok));
  const again = await openStore(dir);
  assert.deepEqual(
    again.store.all().map((r) => r.name),
    store.all().map((r) => r.name),
  );
  assert.equal(again.store.size, 15);
});

test("a corrupt or invalid state file is refused with its file and line; nothing is served", async () => {
  const cases: Array<[string, string, RegExp]> = [
    ["unparseable", `${se("a")}---\nkind: [unclosed\n`, /applied\.yaml:(8|9|10):\d+ invalid YAML/],
    ["invalid", `${se("a")}---\n${se("b", 70000)}`, /applied\.yaml:15:21 ServiceEntry default\/b /],
    ["duplicate", `${se("a")}---\n${se("a")}`, /applied\.yaml:11:19 ServiceEntry default\/a .*twice/],
    ["not utf-8", "kind: \xff\n", /applied\.yaml not UTF-8/],
  ];
  for (const [what, text, expected] of cases) {
    const dir = tempDir();
    writeFileSync(
      join(dir, STATE_FILE),
      what === "not utf-8" ? Buffer.from([0x6b, 0x3a, 0x20, 0xff, 0x0a]) : text,
    );
    await assert.rejects(
      new StateFile(dir).load(50_000),
      (e: unknown) => e instanceof InvalidStateError && expected.test(e.message),
      what,
    );
  }
});

test("a state file larger than the bound is refused before it is read", async () => {
  const dir = tempDir();
  const file = join(dir, STATE_FILE);
  writeFileSync(file, "");
  // A sparse file: the size check must come before any read.
  const { truncateSync } = await import("node:fs");
  truncateSync(file, STATE_LIMITS.maxBytes + 1);
  await assert.rejects(new StateFile(dir).load(50_000), /applied\.yaml .*bytes; a state file holds at most/);
});

test("a temporary file left by a crash is ignored and overwritten", async () => {
  const dir = tempDir();
  const { store } = await openStore(dir);
  await store.apply("a.yaml", se("a"));
  writeFileSync(join(dir, STATE_TEMP), `${se("ghost")}---\nkind: [trunc`);
  const again = await openStore(dir);
  assert.deepEqual(
    again.store.all().map((r) => r.name),
    ["a"],
  );
  await again.store.apply("b.yaml", se("b"));
  assert.deepEqual(readdirSync(dir), [STATE_FILE]);
});

test("a failed write refuses the change and leaves memory and file as they were", async () => {
  const dir = tempDir();
  const { store, state } = await openStore(dir);
  await store.apply("a.yaml", se("a"));
  const onDisk = readFileSync(state.file, "utf8");
  // A directory where the temporary file goes: the write fails for root too (unlike a read-only directory).
  mkdirSync(join(dir, STATE_TEMP));
  await assert.rejects(store.apply("b.yaml", se("b")), /cannot write the state file/);
  assert.throws(() => store.delete("ServiceEntry", "default", "a"), /cannot write the state file/);
  assert.deepEqual(
    store.all().map((r) => r.name),
    ["a"],
  );
  assert.equal(readFileSync(state.file, "utf8"), onDisk);
  rmSync(join(dir, STATE_TEMP), { recursive: true });
  assert.equal((await store.apply("b.yaml", se("b"))).ok, true, "works again once the cause is gone");
});

test("a change past the state file's bound is refused as too large", async () => {
  const dir = tempDir();
  const state = new StateFile(dir);
  const store = new ConfigStore(undefined, {
    persister: {
      save: (rs) => {
        const list = [...rs];
        if (list.length > 1) {
          // Stands in for a large layer: the real bound is 64 MiB.
          throw new ChangeTooLargeError("too big");
        }
        state.save(list);
      },
    },
  });
  await store.apply("a.yaml", se("a"));
  const r = await store.apply("b.yaml", se("b"));
  assert.equal(r.ok, false);
  assert.equal(r.reason, "too-large");
  assert.equal(store.size, 1);
});

test("a file taking an applied resource over is persisted: the old copy does not come back", async () => {
  const dir = tempDir();
  const { store } = await openStore(dir);
  await store.apply("a.yaml", se("a"));
  await store.apply("b.yaml", se("b"));
  const { parseResources } = await import("../../api/load/parse-documents.ts");
  store.replaceFiles(new Map([["/etc/a.yaml", parseResources("/etc/a.yaml", se("a")).resources]]));
  const again = await openStore(dir);
  assert.deepEqual(
    again.store.all().map((r) => r.name),
    ["b"],
  );
});

test("a large state file is parsed in chunks with the file's own line numbers", async () => {
  const text = Array.from({ length: 50 }, (_, i) => se(`s${i}`)).join("---\n");
  const chunks = [...documentChunks(text, 30)];
  assert.ok(chunks.length > 5, `${chunks.length} chunks`);
  assert.equal(chunks.map((c) => c.text).join(""), text);
  const lines = text.split("\n");
  for (const c of chunks) assert.equal(lines[c.firstLine - 1], c.text.split("\n")[0]);
  // A bad resource deep in a file of many chunks is reported at its line.
  const dir = tempDir();
  const bad = `${Array.from({ length: 300 }, (_, i) => se(`s${i}`)).join("---\n")}---\n${se("bad", 70000)}`;
  writeFileSync(join(dir, STATE_FILE), bad);
  const badLine = bad.split("\n").findIndex((l) => l.includes("70000")) + 1;
  await assert.rejects(new StateFile(dir, { chunkLines: 50 }).load(50_000), (e: unknown) => {
    assert.ok(e instanceof InvalidStateError);
    assert.match(e.message, new RegExp(`applied\\.yaml:${badLine}:\\d+ ServiceEntry default/bad`));
    return true;
  });
  // And a good one of many chunks loads whole, in order.
  writeFileSync(join(dir, STATE_FILE), text);
  const loaded = await new StateFile(dir, { chunkLines: 30 }).load(50_000);
  assert.deepEqual(
    loaded.resources.map((r) => r.name),
    Array.from({ length: 50 }, (_, i) => `s${i}`),
  );
});

test("an emptied applied layer is a state; a file cut to nothing is not", async () => {
  const dir = tempDir();
  const { store } = await openStore(dir);
  await store.apply("a.yaml", se("a"));
  store.delete("ServiceEntry", "default", "a");
  const again = await openStore(dir);
  assert.equal(again.loaded.found, true);
  assert.equal(again.store.size, 0);
  writeFileSync(join(dir, STATE_FILE), "");
  await assert.rejects(new StateFile(dir).load(50_000), /applied\.yaml empty, without the header/);
});
