// FileSource against real files and real watches: per-file last good state (half-written and invalid saves
// change nothing and are reported with file and line), removals, editors' rename-and-replace, directories
// coming and going, a ConfigMap-style symlink swap, debouncing, and the forced re-read of SIGHUP.
import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { formatDiagnostic } from "../../api/diagnostic.ts";
import { parseResources } from "../../api/load/parse-documents.ts";
import { validateResources } from "../../api/validate/index.ts";
import { ConfigStore } from "./config-store.ts";
import { FileSource, type FileSourceOptions, type ReloadReport } from "./file-source.ts";

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const se = (name: string, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.example.internal]
  resolution: DNS
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
`;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-files-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store fed by a FileSource on `paths`; its output and re-reads are recorded. Closed after the file. */
async function source(paths: string[], opts: FileSourceOptions = {}) {
  const store = new ConfigStore();
  const out: string[] = [];
  const reloads: ReloadReport[] = [];
  let changes = 0;
  store.onChange(() => changes++);
  const files = new FileSource(store, paths, {
    debounceMs: 50,
    log: (line) => out.push(line),
    onReload: (r) => reloads.push(r),
    ...opts,
  });
  cleanups.push(() => files.close());
  await files.start();
  return {
    store,
    files,
    reloads,
    log: () => out.join(""),
    changes: () => changes,
    /** Names of the ServiceEntries served, with their first port: "a:80". */
    served: () =>
      store
        .get("ServiceEntry")
        .map(
          (r) => `${r.name}:${(r.object.spec as { ports?: Array<{ number: number }> }).ports?.[0]?.number}`,
        )
        .sort(),
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The errors the validator reports for `text` as FILE:LINE:COL lines, as the CLI prints them. */
async function validatorErrors(file: string, text: string): Promise<string[]> {
  const checked = await validateResources(parseResources(file, text).resources);
  return checked.diagnostics.filter((d) => d.severity === "error").map((d) => formatDiagnostic(d));
}

test("start: a file with an error is left out and reported with FILE:LINE; the other files are served", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "a.yaml"), se("a"));
  writeFileSync(join(dir, "b.yaml"), se("b", 70000));
  const s = await source([dir], { watch: false });
  assert.deepEqual(s.served(), ["a:80"]);
  for (const line of await validatorErrors(join(dir, "b.yaml"), se("b", 70000)))
    assert.ok(s.log().includes(line));
  assert.match(s.log(), /b\.yaml:7:\d+ ServiceEntry default\/b spec\.ports\[0\]\.number: /);
  assert.match(s.log(), /b\.yaml: not applied; none of its resources are served/);
});

// A cut that happens to fall where the prefix is itself a valid file (after a whole document, or after an
// optional field) cannot be told from a shorter file; the quiet time before a re-read and writing by rename
// are the protection there. Every other cut is refused.
test("a half-written file, cut anywhere, is refused and changes nothing unless the cut is a valid file", async () => {
  const dir = tempDir();
  const file = join(dir, "svc.yaml");
  const full = `${se("a")}---\n${se("b")}`;
  writeFileSync(file, full);
  const s = await source([file], { watch: false });
  assert.deepEqual(s.served(), ["a:80", "b:80"]);
  // Every cut of the file's new text (ports changed to 81) at every line and in the middle of every line.
  const next = `${se("a", 81)}---\n${se("b", 81)}`;
  const cuts = new Set<number>();
  let at = 0;
  for (const line of next.split("\n")) {
    cuts.add(at + Math.floor(line.length / 2));
    at += line.length + 1;
    cuts.add(at);
  }
  let refused = 0;
  for (const cut of [...cuts].filter((c) => c > 0 && c < next.length).sort((x, y) => x - y)) {
    writeFileSync(file, full);
    await s.files.reload();
    writeFileSync(file, next.slice(0, cut));
    const r = await s.files.reload();
    if (r.refused.length > 0) {
      refused++;
      assert.deepEqual(s.served(), ["a:80", "b:80"], `cut at ${cut}: the last good version still served`);
      assert.ok(
        r.errors.every((d) => d.file === file && d.line !== undefined),
        `cut at ${cut}: errors name the file and a line: ${JSON.stringify(r.errors)}`,
      );
    } else {
      assert.deepEqual(r.applied, [file], `cut at ${cut}`);
      assert.deepEqual(await validatorErrors(file, next.slice(0, cut)), [], `cut at ${cut} is a valid file`);
    }
  }
  assert.ok(refused > cuts.size / 2, `most cuts are refused (${refused} of ${cuts.size})`);
  assert.match(
    s.log(),
    /svc\.yaml:\d+:\d+ .*\n.*svc\.yaml: not applied; its last good version \(2 resources\) is still served/,
  );
});

test("watched: a half-written save keeps the services and names file:line; the completed save applies", async () => {
  const dir = tempDir();
  const file = join(dir, "svc.yaml");
  writeFileSync(file, `${se("a")}---\n${se("b")}`);
  const s = await source([dir]);
  assert.deepEqual(s.served(), ["a:80", "b:80"]);
  const next = `${se("a", 81)}---\n${se("b", 81)}`;
  // Cut inside the second document's flow sequence: a YAML syntax error on line 13.
  writeFileSync(file, next.slice(0, next.indexOf("[b.example") + 5));
  await until(() => s.reloads.some((r) => r.refused.includes(file)), "the half-written save to be refused");
  assert.deepEqual(s.served(), ["a:80", "b:80"]);
  assert.match(s.log(), new RegExp(`${escapeRegExp(file)}:13:\\d+ `));
  writeFileSync(file, next);
  await until(() => s.served().join() === "a:81,b:81", "the completed save to be applied");
  assert.match(s.log(), /svc\.yaml: applied, 2 resources/);
});

test("watched: an invalid resource is refused with the validator's message; the file's old version stays", async () => {
  const dir = tempDir();
  const file = join(dir, "a.yaml");
  writeFileSync(file, se("a"));
  const s = await source([dir]);
  const changesBefore = s.changes();
  const bad = `${se("a", 81)}---\n${se("c", 70000)}`;
  writeFileSync(file, bad);
  await until(() => s.reloads.some((r) => r.refused.includes(file)), "the invalid save to be refused");
  const expected = await validatorErrors(file, bad);
  assert.ok(expected.length > 0);
  for (const line of expected) assert.ok(s.log().includes(`${line}\n`), `logged: ${line}\n${s.log()}`);
  assert.deepEqual(s.served(), ["a:80"], "neither the valid nor the invalid resource of the save is applied");
  assert.equal(s.changes(), changesBefore, "nothing was pushed");
});

test("watched: a deleted file removes its resources; an emptied one keeps them", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "a.yaml"), se("a"));
  writeFileSync(join(dir, "b.yaml"), se("b"));
  const s = await source([dir]);
  truncateSync(join(dir, "b.yaml"), 0);
  await until(() => s.reloads.some((r) => r.refused.includes(join(dir, "b.yaml"))), "the emptied file");
  assert.match(s.log(), /b\.yaml empty file: no resources found/);
  assert.deepEqual(s.served(), ["a:80", "b:80"]);
  unlinkSync(join(dir, "a.yaml"));
  await until(() => s.served().join() === "b:80", "the removal");
  assert.match(s.log(), /a\.yaml: removed; no longer serving its 1 resource\n/);
});

test("watched: an editor's rename-and-replace save, then in-place writes to the new file, are picked up", async () => {
  const dir = tempDir();
  const file = join(dir, "a.yaml");
  writeFileSync(file, se("a"));
  const s = await source([file]);
  const tmp = join(dir, ".a.yaml.swp");
  writeFileSync(tmp, se("a", 81));
  renameSync(tmp, file);
  await until(() => s.served().join() === "a:81", "the renamed-over file");
  writeFileSync(file, se("a", 82));
  await until(() => s.served().join() === "a:82", "an in-place write after the rename");
  // vim's way: the old file moved aside, a new one written under the name.
  renameSync(file, `${file}~`);
  writeFileSync(file, se("a", 83));
  await until(() => s.served().join() === "a:83", "a backup-and-write save");
  assert.equal(
    s.reloads.some((r) => r.removed.length > 0),
    false,
    "the moment the name was missing did not remove the file",
  );
});

test("watched: files in new and nested directories are picked up; a removed directory removes its files", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "a.yaml"), se("a"));
  const s = await source([dir]);
  mkdirSync(join(dir, "team-b"));
  writeFileSync(join(dir, "team-b", "b.yaml"), se("b"));
  await until(() => s.served().includes("b:80"), "a file in a new directory");
  mkdirSync(join(dir, "team-c", "prod"), { recursive: true });
  await until(
    () => s.files.watchedDirectories().includes(join(dir, "team-c", "prod")),
    "the new nested dir watched",
  );
  writeFileSync(join(dir, "team-c", "prod", "c.yaml"), se("c"));
  await until(() => s.served().includes("c:80"), "a file in a new nested directory");
  writeFileSync(join(dir, "team-c", "prod", "c.yaml"), se("c", 81));
  await until(() => s.served().includes("c:81"), "a write in the nested directory");
  writeFileSync(join(dir, "notes.txt"), "not config");
  rmSync(join(dir, "team-b"), { recursive: true });
  await until(() => !s.served().includes("b:80"), "the removed directory's file");
  assert.deepEqual(s.served(), ["a:80", "c:81"]);
  assert.equal(s.files.watchedDirectories().includes(join(dir, "team-b")), false, "its watch is gone");
});

test("watched: a --config path that does not exist yet is served once it is created", async () => {
  const dir = tempDir();
  const file = join(dir, "later.yaml");
  const s = await source([file, join(dir, "later-dir")]);
  assert.match(s.log(), /later\.yaml cannot read: no such file or directory/);
  writeFileSync(file, se("a"));
  await until(() => s.served().join() === "a:80", "the created file");
  mkdirSync(join(dir, "later-dir"));
  writeFileSync(join(dir, "later-dir", "b.yaml"), se("b"));
  await until(() => s.served().join() === "a:80,b:80", "the created directory's file");
  rmSync(join(dir, "later-dir"), { recursive: true });
  await until(() => s.served().join() === "a:80", "the removed --config directory");
});

test("watched: a Kubernetes ConfigMap volume update (the ..data symlink swapped) is picked up", async () => {
  const dir = tempDir();
  const version = (n: number, port: number) => {
    mkdirSync(join(dir, `..v${n}`));
    writeFileSync(join(dir, `..v${n}`, "mesh.yaml"), se("a", port));
  };
  version(1, 80);
  symlinkSync(`..v1`, join(dir, "..data"));
  symlinkSync(join("..data", "mesh.yaml"), join(dir, "mesh.yaml"));
  const s = await source([dir]);
  assert.deepEqual(s.served(), ["a:80"]);
  // What the kubelet does: write the new version, point a new link at it and rename it over ..data.
  version(2, 81);
  symlinkSync(`..v2`, join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  rmSync(join(dir, "..v1"), { recursive: true });
  await until(() => s.served().join() === "a:81", "the swapped ConfigMap");
});

test("watched: a burst of writes is read once, after the writes stop", async () => {
  const dir = tempDir();
  const file = join(dir, "a.yaml");
  writeFileSync(file, se("a"));
  const s = await source([dir], { debounceMs: 400, maxDelayMs: 10_000 });
  const before = s.reloads.length;
  const changesBefore = s.changes();
  for (let port = 81; port <= 90; port++) {
    writeFileSync(file, se("a", port));
    await sleep(20);
  }
  await until(() => s.served().join() === "a:90", "the last write");
  await sleep(600);
  assert.equal(s.changes() - changesBefore, 1, "one change pushed for ten writes");
  // Reading a file updates its access time, which the directory's watch reports like a write: one more
  // re-read may follow, finds the text unchanged and pushes nothing.
  assert.ok(s.reloads.length - before <= 2, `${s.reloads.length - before} re-reads for ten writes`);
  assert.equal(s.reloads.slice(before).filter((r) => r.applied.length > 0).length, 1, "one version applied");
  assert.equal(s.served().join(), "a:90");
});

test("a forced re-read (SIGHUP) reports the errors of a file still refused; unchanged files push nothing", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "a.yaml"), se("a"));
  writeFileSync(join(dir, "b.yaml"), se("b", 70000));
  const s = await source([dir], { watch: false });
  const errorsAtStart = s.log().split("b.yaml:7:").length;
  const changes = s.changes();
  const r = await s.files.reload(true);
  assert.deepEqual(r.refused, [join(dir, "b.yaml")]);
  assert.equal(s.log().split("b.yaml:7:").length, errorsAtStart + 1, "the error printed again");
  assert.equal(s.changes(), changes, "nothing changed, nothing pushed");
  // Not forced: an unchanged text is not parsed again, and not reported again.
  assert.deepEqual((await s.files.reload()).refused, []);
});

test("a file that can no longer be read as text keeps its last good resources", async () => {
  const dir = tempDir();
  const file = join(dir, "a.yaml");
  writeFileSync(file, se("a"));
  const s = await source([dir], { watch: false });
  // What a read problem looks like to the loader when the tests run as root (no permission denied then).
  writeFileSync(file, Buffer.from([0x6b, 0x69, 0x00, 0x6e]));
  const r = await s.files.reload();
  assert.deepEqual(r.removed, []);
  assert.deepEqual(s.served(), ["a:80"]);
  assert.match(s.log(), /a\.yaml binary file \(NUL byte at offset 2\)/);
  await s.files.reload();
  assert.equal(s.log().split("NUL byte").length, 2, "a lasting problem is printed once");
  writeFileSync(file, se("a", 81));
  await s.files.reload();
  assert.deepEqual(s.served(), ["a:81"]);
});

test("a file that starts defining a resource applied through the API takes it over, with a warning", async () => {
  const dir = tempDir();
  const s = await source([dir]);
  assert.equal((await s.store.apply("req.yaml", se("a", 81))).ok, true);
  writeFileSync(join(dir, "a.yaml"), se("a"));
  await until(() => s.served().join() === "a:80", "the file's version");
  assert.match(
    s.log(),
    /warning: .*a\.yaml: ServiceEntry\/default\/a was applied through the config API; the file's version is served/,
  );
  const r = await s.store.apply("req.yaml", se("a", 82));
  assert.equal(r.reason, "conflict");
  unlinkSync(join(dir, "a.yaml"));
  await until(() => s.served().length === 0, "the removal of the file and of its resource");
});

test("a file that would take the store over its bound is refused; the rest is served", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "a.yaml"), `${se("a")}---\n${se("b")}`);
  writeFileSync(join(dir, "b.yaml"), `${se("c")}---\n${se("d")}`);
  const store = new ConfigStore(3);
  const out: string[] = [];
  const files = new FileSource(store, [dir], { watch: false, log: (l) => out.push(l) });
  cleanups.push(() => files.close());
  const r = await files.start();
  assert.deepEqual(r.refused, [join(dir, "b.yaml")]);
  assert.equal(store.size, 2);
  assert.match(out.join(""), /b\.yaml more resources than the control plane's store has room for \(1 more\)/);
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
