// The control plane's config store: the Istio and Kubernetes resources it serves, keyed by kind, namespace and
// name, in two layers with one owner per resource:
//
// - the files layer: each --config file's last good resources (FileSource keeps it; a file is replaced as a
//   whole, so one save is one change);
// - the applied layer: what `isthmus apply` sent through the config API.
//
// Files win. A file that names a resource owns it: an apply or delete of that resource through the API is
// refused with the file's name (its change would be undone by the next save, or silently shadowed), and a file
// that starts naming a resource applied through the API takes it over (the applied copy is dropped, so
// deleting the file later removes the resource instead of resurrecting an old one). This is what GitOps users
// expect of files on disk: they are the source of truth, and the API manages everything else.
//
// Applies are all-or-nothing: a batch (one `isthmus apply -f`) is validated and if any resource of it has an
// error nothing changes and the errors come back (Caddy's validate -> swap; an invalid resource never replaces
// a valid one).
//
// Durability (--state-dir): every change of the applied layer, including a file taking a resource over, is
// handed to a persister (StateFile) at the moment it is committed and before the caller hears of it; when the
// persister throws, the change is not made. A restarted control plane restores the layer with restoreApplied()
// in the same order, so it renders the same configs with the same versions.
import type { Diagnostic } from "../../api/diagnostic.ts";
import { LIMITS } from "../../api/load/limits.ts";
import { parseResources } from "../../api/load/parse-documents.ts";
import { diagnosticAt, type Resource, resourceRef } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";

/**
 * Bounds on one apply through the config API. Parsing YAML with positions costs about 2.5 KB of memory per
 * line or flow item at its peak (measured: 10,000 ServiceEntries, 3 MB of YAML, take 3.5 s and 250 MB), so the
 * body size alone does not bound memory: 2 MB of one-key list items cost 800 MB. The line count is checked
 * before anything is parsed.
 */
export const APPLY_LIMITS = {
  /** Request body, as large as the largest config file the loader reads. */
  maxBytes: LIMITS.maxFileBytes,
  /** Resources in one apply (documents and List items). */
  maxResources: 20_000,
  /** Lines plus commas (flow-collection items) in one apply: about 1 GB of parse memory at most. */
  maxLines: 400_000,
} as const;

/** Why a change was refused: the config API answers 400, 409, 404 and 413 for these. */
export type RefusalReason = "invalid" | "conflict" | "not-found" | "too-large";

export interface ChangeResult {
  readonly ok: boolean;
  /** Errors (and warnings) as FILE:LINE:COL Kind ns/name: message. */
  readonly diagnostics: Diagnostic[];
  /** kind/namespace/name of the resources created, changed or deleted. */
  readonly changed: string[];
  readonly reason?: RefusalReason;
}

/** What replacing the files layer did besides serving the files' resources. */
export interface FilesReport {
  /** kind/namespace/name of resources applied through the API that a file now defines (the file's is served). */
  readonly takenOver: Array<{ key: string; file: string }>;
  /** Resources defined by more than one file: the later file in load order wins. */
  readonly duplicates: Array<{ key: string; files: [string, string] }>;
}

/** Where the applied layer is kept across restarts; save() is durable when it returns, and throws otherwise. */
export interface AppliedPersister {
  save(resources: Iterable<Resource>): void;
}

/** Thrown by a persister when the change would exceed its bounds: the change is refused as too large (413). */
export class ChangeTooLargeError extends Error {}

export interface ConfigStoreOptions {
  readonly persister?: AppliedPersister;
  /** Receives lines about changes that could not be persisted outside any request (a file's take-over). */
  readonly log?: (line: string) => void;
}

export const resourceKey = (r: { kind: string; namespace: string; name: string }) =>
  `${r.kind}/${r.namespace}/${r.name}`;

const refused = (reason: RefusalReason, diagnostics: Diagnostic[]): ChangeResult => ({
  ok: false,
  diagnostics,
  changed: [],
  reason,
});

export class ConfigStore {
  /** Resources applied through the config API. */
  private applied = new Map<string, Resource>();
  /** Each file's last good resources, in load order. */
  private files: ReadonlyMap<string, readonly Resource[]> = new Map();
  /** What is served: the applied layer with the files' resources over it. */
  private effective = new Map<string, Resource>();
  /** Resource key -> the file that defines it. */
  private owners = new Map<string, string>();
  private readonly listeners: Array<() => void> = [];
  /** Resources at most in the store (both layers). */
  readonly maxResources: number;
  private readonly persister: AppliedPersister | undefined;
  private readonly log: (line: string) => void;

  constructor(maxResources = 50_000, opts: ConfigStoreOptions = {}) {
    this.maxResources = maxResources;
    this.persister = opts.persister;
    this.log = opts.log ?? (() => {});
  }

  /**
   * Sets the applied layer to what a previous run persisted (validated by the caller), in its order, without
   * writing it back; before any file is loaded and any proxy is served. Notifies once.
   */
  restoreApplied(resources: readonly Resource[]): void {
    this.applied = new Map(resources.map((r) => [resourceKey(r), r]));
    const report = this.rebuild();
    if (report.takenOver.length > 0) this.persistTakeOver();
    this.changed();
  }

  get size(): number {
    return this.effective.size;
  }

  all(): Resource[] {
    return [...this.effective.values()];
  }

  get(kind: string, namespace?: string, name?: string): Resource[] {
    return this.all().filter(
      (r) =>
        r.kind.toLowerCase() === kind.toLowerCase() &&
        (namespace === undefined || r.namespace === namespace) &&
        (name === undefined || r.name === name),
    );
  }

  /** The file that defines a resource, or undefined when it came through the API (or does not exist). */
  ownerOf(r: { kind: string; namespace: string; name: string }): string | undefined {
    return this.owners.get(resourceKey(r));
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  /**
   * Replaces the files layer with `files` (file -> its validated resources, in load order) and notifies once.
   * The caller validates; FileSource passes each file's last good resources.
   */
  replaceFiles(files: ReadonlyMap<string, readonly Resource[]>): FilesReport {
    this.files = new Map(files);
    const report = this.rebuild();
    if (report.takenOver.length > 0) this.persistTakeOver();
    this.changed();
    return report;
  }

  /**
   * A file took applied resources over: the applied layer shrank, and a restart must not bring the old copies
   * back once the file is gone. A file's change cannot be refused (it is on disk already), so a failed write is
   * logged and the next successful one carries it.
   */
  private persistTakeOver(): void {
    try {
      this.persister?.save(this.applied.values());
    } catch (e) {
      this.log(`isthmus control-plane: ${(e as Error).message}\n`);
    }
  }

  private rebuild(): FilesReport {
    const takenOver: FilesReport["takenOver"] = [];
    const duplicates: FilesReport["duplicates"] = [];
    const owners = new Map<string, string>();
    for (const [file, resources] of this.files) {
      for (const r of resources) {
        const k = resourceKey(r);
        const earlier = owners.get(k);
        if (earlier !== undefined && earlier !== file) duplicates.push({ key: k, files: [earlier, file] });
        if (this.applied.delete(k)) takenOver.push({ key: k, file });
        owners.set(k, file);
      }
    }
    const effective = new Map(this.applied);
    for (const resources of this.files.values()) for (const r of resources) effective.set(resourceKey(r), r);
    this.owners = owners;
    this.effective = effective;
    return { takenOver, duplicates };
  }

  /** Applies run one after another: each validates against, and replaces, what the previous one left. */
  private last: Promise<unknown> = Promise.resolve();

  /** Parses YAML/JSON text (one or many documents) and creates or replaces its resources, all or none. */
  apply(source: string, text: string): Promise<ChangeResult> {
    const run = this.last.then(() => this.applyNow(source, text));
    this.last = run.catch(() => {});
    return run;
  }

  private async applyNow(source: string, text: string): Promise<ChangeResult> {
    const tooLarge = (message: string) =>
      refused("too-large", [{ severity: "error", file: source, message }]);
    // Checked before parsing: the parser's memory grows with lines, not bytes, and documents are resources.
    const shape = countShape(text);
    if (shape.documents > APPLY_LIMITS.maxResources)
      return tooLarge(
        `${shape.documents} documents; one apply takes at most ${APPLY_LIMITS.maxResources} resources, split it`,
      );
    if (shape.lines > APPLY_LIMITS.maxLines)
      return tooLarge(
        `${shape.lines} lines and flow items; one apply takes at most ${APPLY_LIMITS.maxLines}, split it`,
      );
    const parsed = parseResources(source, text, APPLY_LIMITS.maxResources + 1);
    if (parsed.resources.length > APPLY_LIMITS.maxResources)
      return tooLarge(`more than ${APPLY_LIMITS.maxResources} resources in one apply, split it`);
    if (parsed.diagnostics.some((d) => d.severity === "error")) return refused("invalid", parsed.diagnostics);
    if (parsed.resources.length === 0)
      return refused("invalid", [{ severity: "error", file: source, message: "no resources" }]);
    const conflicts = this.conflicts(parsed.resources);
    if (conflicts.length > 0) return refused("conflict", conflicts);
    // Only the batch's own problems refuse it; what the store already held was accepted before.
    const checked = await validateResources(parsed.resources);
    if (checked.diagnostics.some((d) => d.severity === "error"))
      return refused("invalid", checked.diagnostics);
    // The files layer may have changed while the batch was validated: ownership and size are checked again
    // here, where nothing else can run before the batch is committed.
    const late = this.conflicts(parsed.resources);
    if (late.length > 0) return refused("conflict", late);
    const next = new Map(this.applied);
    for (const r of parsed.resources) next.set(resourceKey(r), r);
    let total = next.size;
    for (const k of this.owners.keys()) if (!next.has(k)) total++;
    if (total > this.maxResources)
      return tooLarge(
        `the store holds at most ${this.maxResources} resources; this apply would make ${total}`,
      );
    // Durable before it is served or answered; a failed write throws (the API answers 500) and changes nothing.
    try {
      this.persister?.save(next.values());
    } catch (e) {
      if (e instanceof ChangeTooLargeError) return tooLarge(e.message);
      throw e;
    }
    this.applied = next;
    this.rebuild();
    this.changed();
    return { ok: true, diagnostics: checked.diagnostics, changed: parsed.resources.map(resourceKey) };
  }

  private conflicts(resources: readonly Resource[]): Diagnostic[] {
    const out: Diagnostic[] = [];
    for (const r of resources) {
      const file = this.owners.get(resourceKey(r));
      if (file !== undefined)
        out.push(
          diagnosticAt(
            r,
            "error",
            ["metadata", "name"],
            `${resourceRef(r)} is defined in ${file}, a --config file of the control plane; files take ` +
              "precedence over the config API, so change it there",
          ),
        );
    }
    return out;
  }

  delete(kind: string, namespace: string, name: string): ChangeResult {
    const found = this.get(kind, namespace, name);
    if (found.length === 0)
      return refused("not-found", [
        { severity: "error", file: "", message: `${kind} ${namespace}/${name} not found` },
      ]);
    const owned = found.filter((r) => this.owners.has(resourceKey(r)));
    if (owned.length > 0)
      return refused(
        "conflict",
        owned.map((r) => ({
          severity: "error",
          file: this.owners.get(resourceKey(r))!,
          message: `${resourceRef(r)} is defined in this --config file of the control plane; remove it there`,
        })),
      );
    const next = new Map(this.applied);
    for (const r of found) next.delete(resourceKey(r));
    // Synchronous like the rest of delete: the write is ordered with the applies' commits, which are too.
    this.persister?.save(next.values());
    this.applied = next;
    this.rebuild();
    this.changed();
    return { ok: true, diagnostics: [], changed: found.map(resourceKey) };
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }
}

/**
 * Upper bounds, in one pass without parsing: documents (a `---` at the start of a line begins one) and lines
 * plus commas (each a possible YAML node).
 */
export function countShape(text: string): { documents: number; lines: number } {
  let documents = 1;
  let lines = 1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) {
      lines++;
      if (text.startsWith("---", i + 1)) documents++;
    } else if (c === 44) lines++;
  }
  return { documents, lines };
}
