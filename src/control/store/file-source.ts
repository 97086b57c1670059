// The control plane's --config files and directories as a live source of the store's files layer.
//
// The unit is the file: one save is one change. Each file keeps its last good resources; a new text that does
// not read, parse or validate (a half-written save, a resource with an error) changes nothing of that file,
// its errors are logged with file, line and field, and its last good resources stay served until a good text
// replaces them. A file that is gone removes its resources; a file emptied to no resources is refused like any
// other bad text (an interrupted write looks exactly like that), so deleting the file is how its resources are
// removed.
//
// Watching: one non-recursive fs.watch per directory. Node's recursive watch on Linux watches files by inode
// and loses a file that an editor replaces by a rename (measured on Node 24), while a directory's watch sees
// every create, write, rename and removal of its entries. Watched: the directory holding each given path (the
// path itself may be created, removed or replaced), every directory below a given directory, and the
// directory a symlinked file resolves into (Kubernetes' ConfigMap volumes swap a `..data` symlink). Any event
// schedules a re-read after a quiet time; the re-read reads every file again but parses only those whose text
// changed, and updates the set of watched directories as directories come and go.
import { type FSWatcher, watch } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { dirname, join, normalize, resolve, sep } from "node:path";
import { type Diagnostic, formatDiagnostic, sortDiagnostics } from "../../api/diagnostic.ts";
import { LIMITS } from "../../api/load/limits.ts";
import { parseResources } from "../../api/load/parse-documents.ts";
import { readSources } from "../../api/load/read-sources.ts";
import type { Resource } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { ConfigStore } from "./config-store.ts";

export interface FileSourceOptions {
  /** Quiet time after the last change before the files are read again (editors write in several steps). */
  readonly debounceMs?: number;
  /** Longest wait after the first change, so that a directory that never goes quiet is still read. */
  readonly maxDelayMs?: number;
  /** Watch the paths (default); without, only reload() reads them. */
  readonly watch?: boolean;
  /** Receives each line of output (errors, removals, applied changes), newline-terminated. */
  readonly log?: (line: string) => void;
  /** Called after every re-read, with what it did. */
  readonly onReload?: (report: ReloadReport) => void;
}

export interface ReloadReport {
  /** Files whose new text is now served. */
  readonly applied: string[];
  /** Files whose new text was refused; their last good resources stay served. */
  readonly refused: string[];
  /** Files gone, with their resources. */
  readonly removed: string[];
  /** Every error found (read, parse, validation), as logged. */
  readonly errors: Diagnostic[];
}

interface FileState {
  /** The text last read, good or not: a text seen before is not parsed again. */
  text: string | undefined;
  /** The last good resources: what this file contributes to the store. */
  good: readonly Resource[];
  /** When a re-read first found the file missing (a removal is confirmed by a later re-read). */
  missingSince?: number;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;

export class FileSource {
  private readonly store: ConfigStore;
  private readonly paths: readonly string[];
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly watching: boolean;
  private readonly log: (line: string) => void;
  private readonly onReload: ((report: ReloadReport) => void) | undefined;
  private readonly files = new Map<string, FileState>();
  private readonly watchers = new Map<string, { watcher: FSWatcher; ino: number }>();
  /** Read problems and watch failures already logged, so that a lasting one is logged once. */
  private readonly logged = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private firstEvent: number | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<ReloadReport> | undefined;
  private forceQueued = false;
  private started = false;
  private closed = false;

  constructor(store: ConfigStore, paths: readonly string[], opts: FileSourceOptions = {}) {
    this.store = store;
    this.paths = paths;
    this.debounceMs = opts.debounceMs ?? 200;
    this.maxDelayMs = opts.maxDelayMs ?? 2_000;
    this.watching = opts.watch ?? true;
    this.log = opts.log ?? (() => {});
    this.onReload = opts.onReload;
  }

  /** Reads every path, serves what is valid, and starts watching. */
  async start(): Promise<ReloadReport> {
    const report = await this.reload(true);
    this.started = true;
    return report;
  }

  /**
   * Reads the paths again (SIGHUP). Forced, every file is parsed and validated again and its errors logged
   * again; otherwise only files whose text changed are. Re-reads never overlap: a call during one runs after
   * it, and calls waiting together share one re-read.
   */
  reload(force = false): Promise<ReloadReport> {
    this.forceQueued ||= force;
    if (this.queued !== undefined) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      const forced = this.forceQueued;
      this.forceQueued = false;
      return this.scan(forced);
    });
    this.queued = run;
    this.chain = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const { watcher } of this.watchers.values()) watcher.close();
    this.watchers.clear();
    await this.chain;
  }

  /** Directories watched now (for tests and diagnostics). */
  watchedDirectories(): string[] {
    return [...this.watchers.keys()].sort();
  }

  private schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    this.firstEvent ??= now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstEvent + this.maxDelayMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstEvent = undefined;
      this.reload().catch((e: unknown) => {
        this.log(`config files: re-read failed: ${(e as Error).stack ?? String(e)}\n`);
      });
    }, wait);
    this.timer.unref();
  }

  private async scan(force: boolean): Promise<ReloadReport> {
    const report: ReloadReport = { applied: [], refused: [], removed: [], errors: [] };
    if (this.closed) return report;
    if (force) this.logged.clear();
    // Watch first: a change made while the files are read is then seen and read again.
    if (this.watching) await this.rewatch();
    const read = await readSources(this.paths);

    // A path with a read problem keeps the last good state of everything at and below it; a path that no
    // longer exists is a removal, not a problem.
    const troubled: string[] = [];
    const given = new Set(this.paths);
    for (const d of read.diagnostics) {
      const exists = await existing(d.file);
      if (!exists && !given.has(d.file)) continue;
      // A given path is named as given, the files below a directory as join() spells them (normalized).
      if (exists) troubled.push(d.file, normalize(d.file).replace(/[\\/]+$/, ""));
      report.errors.push(d);
      this.logOnce(d.file, `${formatDiagnostic(d)}\n`);
    }
    for (const key of [...this.logged.keys()])
      if (!key.startsWith("watch:") && !read.diagnostics.some((d) => d.file === key)) this.logged.delete(key);

    let changed = false;
    let served = this.store.size;
    const seen = new Set<string>();
    for (const f of read.files) {
      seen.add(f.file);
      let state = this.files.get(f.file);
      if (state === undefined) {
        state = { text: undefined, good: [] };
        this.files.set(f.file, state);
      }
      delete state.missingSince;
      if (!force && state.text === f.text) continue;
      state.text = f.text;
      const room = this.store.maxResources - (served - state.good.length);
      const errors = await checkFile(f.file, f.text, room);
      if (errors.diagnostics.length > 0) {
        report.refused.push(f.file);
        report.errors.push(...errors.diagnostics);
        for (const d of errors.diagnostics) this.log(`${formatDiagnostic(d)}\n`);
        this.log(
          `${f.file}: not applied; ${
            state.good.length > 0
              ? `its last good version (${plural(state.good.length, "resource")}) is still served`
              : "none of its resources are served"
          }\n`,
        );
        continue;
      }
      if (!force || !sameResources(state.good, errors.valid)) changed = true;
      served += errors.valid.length - state.good.length;
      state.good = errors.valid;
      report.applied.push(f.file);
      if (this.started) this.log(`${f.file}: applied, ${plural(state.good.length, "resource")}\n`);
    }

    const now = Date.now();
    let unconfirmed = false;
    for (const [file, state] of this.files) {
      if (seen.has(file) || troubled.some((t) => file === t || file.startsWith(t + sep))) continue;
      // An editor that saves by renaming leaves the name missing for a moment: a removal found by a watch
      // event is confirmed by a re-read a quiet time later.
      if (!force && this.started && state.good.length > 0) {
        state.missingSince ??= now;
        if (now - state.missingSince < this.debounceMs) {
          unconfirmed = true;
          continue;
        }
      }
      this.files.delete(file);
      if (state.good.length === 0) continue;
      changed = true;
      report.removed.push(file);
      this.log(`${file}: removed; no longer serving its ${plural(state.good.length, "resource")}\n`);
    }
    if (unconfirmed) this.schedule();

    if (changed || !this.started) this.publish(read.files.map((f) => f.file));
    this.onReload?.(report);
    return report;
  }

  /** Hands every file's last good resources to the store, in load order (the later file wins a duplicate). */
  private publish(order: readonly string[]): void {
    const layer = new Map<string, readonly Resource[]>();
    for (const file of order) {
      const state = this.files.get(file);
      if (state !== undefined && state.good.length > 0) layer.set(file, state.good);
    }
    // Files kept through a read problem are not in this read's order; they keep their resources.
    for (const [file, state] of this.files)
      if (!layer.has(file) && state.good.length > 0) layer.set(file, state.good);
    const { takenOver, duplicates } = this.store.replaceFiles(layer);
    for (const t of takenOver)
      this.log(
        `warning: ${t.file}: ${t.key} was applied through the config API; the file's version is served from now on\n`,
      );
    for (const d of duplicates)
      this.log(`warning: ${d.key} is defined in ${d.files[0]} and ${d.files[1]}; the latter is served\n`);
  }

  private logOnce(key: string, line: string): void {
    if (this.logged.get(key) === line) return;
    this.logged.set(key, line);
    this.log(line);
  }

  /** Brings the watched directories in line with what is on disk now. */
  private async rewatch(): Promise<void> {
    const want = new Map<string, number>();
    const addDir = async (dir: string): Promise<void> => {
      const st = await stat(dir).catch(() => undefined);
      if (st?.isDirectory()) want.set(dir, st.ino);
    };
    const walk = async (dir: string, depth: number): Promise<void> => {
      if (depth > LIMITS.maxDirectoryDepth || want.size >= LIMITS.maxFiles) return;
      const real = await realpath(dir).catch(() => undefined);
      if (real === undefined || want.has(real)) return;
      await addDir(real);
      const entries = await readdir(real, { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        // The loader skips hidden names; so does the watch (a ConfigMap's `..data` is seen through its links).
        if (e.name.startsWith(".")) continue;
        const full = join(real, e.name);
        if (e.isDirectory()) await walk(full, depth + 1);
        else if (e.isSymbolicLink()) {
          const st = await stat(full).catch(() => undefined);
          if (st?.isDirectory()) await walk(full, depth + 1);
          else if (st?.isFile() && CONFIG_FILE.test(e.name)) await addTarget(full);
        }
      }
    };
    const addTarget = async (file: string): Promise<void> => {
      const real = await realpath(file).catch(() => undefined);
      if (real !== undefined && dirname(real) !== dirname(file)) await addDir(dirname(real));
    };
    for (const p of this.paths) {
      const abs = resolve(p);
      await addDir(dirname(abs));
      const st = await stat(abs).catch(() => undefined);
      if (st?.isDirectory()) await walk(abs, 0);
      else if (st?.isFile()) await addTarget(abs);
    }
    if (this.closed) return;
    for (const [dir, w] of this.watchers)
      if (want.get(dir) !== w.ino) {
        w.watcher.close();
        this.watchers.delete(dir);
      }
    for (const [dir, ino] of want) {
      if (this.watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, () => this.schedule());
        watcher.on("error", () => {
          // The directory went away (or the watch broke): the next re-read watches what exists then.
          watcher.close();
          if (this.watchers.get(dir)?.watcher === watcher) this.watchers.delete(dir);
          this.schedule();
        });
        this.watchers.set(dir, { watcher, ino });
        this.logged.delete(`watch:${dir}`);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? String(e);
        this.logOnce(
          `watch:${dir}`,
          `warning: cannot watch ${dir} (${code}); changes there are read on SIGHUP or the next change elsewhere\n`,
        );
      }
    }
  }
}

/** One file's new text: its resources if all of them are valid, or the errors that refuse the whole file. */
async function checkFile(
  file: string,
  text: string,
  room: number,
): Promise<{ valid: Resource[]; diagnostics: Diagnostic[] }> {
  const parsed = parseResources(file, text, Math.max(0, room) + 1);
  const errors = parsed.diagnostics.filter((d) => d.severity === "error");
  if (parsed.resources.length > room)
    errors.push({
      severity: "error",
      file,
      message: `more resources than the control plane's store has room for (${Math.max(0, room)} more)`,
    });
  if (errors.length > 0) return { valid: [], diagnostics: sortDiagnostics(errors) };
  const checked = await validateResources(parsed.resources);
  const invalid = checked.diagnostics.filter((d) => d.severity === "error");
  if (invalid.length > 0) return { valid: [], diagnostics: sortDiagnostics(invalid) };
  return { valid: checked.valid, diagnostics: [] };
}

function sameResources(a: readonly Resource[], b: readonly Resource[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++)
    if (JSON.stringify(a[i]!.object) !== JSON.stringify(b[i]!.object)) return false;
  return true;
}

async function existing(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
