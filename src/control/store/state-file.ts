// The applied layer on disk (--state-dir): what `isthmus apply` and `delete` left, so that a restarted control
// plane serves the same resources, renders the same versions, and the reconnecting proxies get nothing new.
// Istio has the Kubernetes API server for this; isthmus has one file.
//
// The file is YAML, one document per resource in the applied layer's order (the order the renderer sees, so the
// versions match), readable and diffable by an operator. It is replaced as a whole on every change: written to
// a temporary file in the same directory, fsynced, renamed over the state file, and the directory fsynced, so a
// crash at any point leaves either the previous state or the new one, never a mix. A temporary file left by a
// crash is never read.
//
// Writes are synchronous on purpose: the store calls save() at the moment it commits a change, so the file
// order is the commit order and no other change can interleave between the write and the in-memory swap. The
// cost is the event loop paused for one write and two fsyncs per apply (milliseconds for usual sizes).
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { stringify } from "yaml";
import { type Diagnostic, formatDiagnostic, sortDiagnostics } from "../../api/diagnostic.ts";
import { parseResources } from "../../api/load/parse-documents.ts";
import { diagnosticAt, type Resource, resourceRef } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";
import { APPLY_LIMITS, ChangeTooLargeError } from "./config-store.ts";

export const STATE_FILE = "applied.yaml";
/** Fixed name: a leftover of a crash is overwritten by the next write instead of accumulating. */
export const STATE_TEMP = ".applied.yaml.tmp";

export const STATE_LIMITS = {
  /**
   * Largest state file written or read. Four applies' worth: the store's 50,000 resources of a usual size
   * fit, and reading it is bounded before anything is parsed.
   */
  maxBytes: 4 * APPLY_LIMITS.maxBytes,
} as const;

const HEADER =
  "# isthmus control-plane: the resources applied through the config API (isthmus apply / delete).\n" +
  "# Rewritten as a whole on every change; edit only while the control plane is stopped.\n";

/** The state file could not be loaded: the control plane must not start (it would push a config without it). */
export class InvalidStateError extends Error {
  readonly file: string;
  readonly diagnostics: readonly Diagnostic[];

  constructor(file: string, diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === "error");
    super(
      `invalid state file ${file}:\n${errors
        .slice(0, 20)
        .map((d) => `  ${formatDiagnostic(d)}\n`)
        .join("")}${errors.length > 20 ? `  ... and ${errors.length - 20} more\n` : ""}`,
    );
    this.file = file;
    this.diagnostics = diagnostics;
  }
}

export interface LoadedState {
  /** The applied layer, in its order; empty when there is no state file yet. */
  readonly resources: Resource[];
  /** Warnings of validation (errors refuse the whole file). */
  readonly diagnostics: Diagnostic[];
  /** Whether a state file was found. */
  readonly found: boolean;
}

export class StateFile {
  readonly dir: string;
  readonly file: string;
  private readonly temp: string;
  /** Each resource's document, serialized once: an apply of one resource does not re-serialize 50,000. */
  private readonly texts = new WeakMap<Resource, string>();

  /** Lines and flow items parsed at once when loading (see documentChunks). */
  private readonly chunkLines: number;

  constructor(dir: string, opts: { chunkLines?: number } = {}) {
    this.dir = dir;
    this.chunkLines = opts.chunkLines ?? APPLY_LIMITS.maxLines;
    this.file = join(dir, STATE_FILE);
    this.temp = join(dir, STATE_TEMP);
  }

  /**
   * Creates the directory (0700: the resources can hold what an operator considers sensitive) when missing,
   * and reads, parses and validates the state file as an apply would. Throws InvalidStateError, naming the
   * file and the lines, for anything but a complete, valid file: starting empty instead would push a config
   * without the applied resources to every proxy.
   */
  async load(maxResources: number): Promise<LoadedState> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const fail = (message: string): never => {
      throw new InvalidStateError(this.file, [{ severity: "error", file: this.file, message }]);
    };
    let size: number;
    try {
      const st = await stat(this.file);
      if (!st.isFile()) fail("not a regular file");
      size = st.size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT")
        return { resources: [], diagnostics: [], found: false };
      throw e;
    }
    if (size > STATE_LIMITS.maxBytes)
      fail(`${size} bytes; a state file holds at most ${STATE_LIMITS.maxBytes} bytes`);
    // Read through the descriptor with the size checked above, so that a file growing meanwhile is not read
    // past the bound.
    const fh = await open(this.file, "r");
    let bytes: Buffer;
    try {
      bytes = Buffer.alloc(size);
      let at = 0;
      while (at < size) {
        const { bytesRead } = await fh.read(bytes, at, size - at, at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
      bytes = bytes.subarray(0, at);
    } finally {
      await fh.close();
    }
    let text = "";
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      fail("not UTF-8 text");
    }
    if (text.includes("\u0000")) fail("contains NUL bytes: not a text file");

    // Only comments: the layer is empty, which is a state in its own right when isthmus wrote it (the header).
    // A file without even the header was not written by isthmus, or was cut to nothing: refused, as that is
    // not what an operator wanting a fresh start does (removing the file is).
    if (/^(\s*#[^\n]*)*\s*$/.test(text)) {
      if (!text.startsWith(HEADER))
        fail("empty, without the header isthmus writes; remove it to start empty");
      return { resources: [], diagnostics: [], found: true };
    }
    const resources: Resource[] = [];
    const diagnostics: Diagnostic[] = [];
    const seen = new Map<string, Resource>();
    for (const chunk of documentChunks(text, this.chunkLines)) {
      // Padded with the newlines before it, so every position (now and in later messages) is the file's own.
      const parsed = parseResources(this.file, "\n".repeat(chunk.firstLine - 1) + chunk.text, Infinity);
      diagnostics.push(...parsed.diagnostics);
      if (parsed.diagnostics.some((d) => d.severity === "error")) continue;
      const checked = await validateResources(parsed.resources);
      diagnostics.push(...checked.diagnostics);
      for (const r of parsed.resources) {
        const key = `${r.kind}/${r.namespace}/${r.name}`;
        if (seen.has(key))
          diagnostics.push(
            diagnosticAt(r, "error", ["metadata", "name"], `${resourceRef(r)} is in the state file twice`),
          );
        seen.set(key, r);
        resources.push(r);
      }
      if (resources.length > maxResources)
        fail(`more than ${maxResources} resources, the most the store holds`);
    }
    if (diagnostics.some((d) => d.severity === "error"))
      throw new InvalidStateError(this.file, sortDiagnostics(diagnostics));
    for (const r of resources) this.texts.set(r, documentOf(r));
    return { resources, diagnostics, found: true };
  }

  /** Whether the state file is readable by others than its owner (it is written 0600). */
  looseMode(): boolean {
    try {
      return (statSync(this.file).mode & 0o077) !== 0;
    } catch {
      return false;
    }
  }

  /**
   * Replaces the state file with `resources`, durably, before returning. Throws ChangeTooLargeError (the store refuses the change, 413) past the
   * bound (nothing written) and the file system's error when a write fails; either way the previous state file
   * is intact.
   */
  save(resources: Iterable<Resource>): void {
    const parts = [HEADER];
    let bytes = HEADER.length;
    for (const r of resources) {
      let doc = this.texts.get(r);
      if (doc === undefined) {
        doc = documentOf(r);
        this.texts.set(r, doc);
      }
      parts.push(doc);
      bytes += doc.length;
      if (bytes > STATE_LIMITS.maxBytes)
        throw new ChangeTooLargeError(
          `the applied resources would take more than ${STATE_LIMITS.maxBytes} bytes in the state file ` +
            `${this.file}, its limit`,
        );
    }
    const text = parts.join("");
    if (Buffer.byteLength(text) > STATE_LIMITS.maxBytes)
      throw new ChangeTooLargeError(
        `the applied resources would take more than ${STATE_LIMITS.maxBytes} bytes in the state file ` +
          `${this.file}, its limit`,
      );
    // A state directory removed while running is created again rather than failing every apply.
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    let fd: number | undefined;
    try {
      // "w" truncates a leftover temporary file; its mode is set explicitly since an existing file keeps its own.
      fd = openSync(this.temp, "w", 0o600);
      writeFileSync(fd, text);
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(this.temp, this.file);
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(this.temp);
      } catch {}
      throw new Error(`cannot write the state file ${this.file}: ${(e as Error).message}`);
    }
    // The rename is durable only once the directory entry is on disk.
    const dfd = openSync(this.dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

/** One resource as a YAML document. lineWidth 0: no folding, so a long regex stays on one line. */
function documentOf(r: Resource): string {
  return `---\n${stringify(r.object, { lineWidth: 0 })}`;
}

/**
 * The text cut at `---` lines into runs of whole documents of about `maxLines` lines and flow items each (a
 * run ends at the first document start past the budget): parsing with positions costs memory per line, and
 * this keeps the peak of loading a large state file at that of one apply instead of the whole store's.
 */
export function* documentChunks(
  text: string,
  maxLines: number,
): Generator<{ text: string; firstLine: number }> {
  let start = 0;
  let startLine = 1;
  let line = 1;
  let shape = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 44) shape++;
    else if (c === 10) {
      line++;
      shape++;
      if (shape > maxLines && text.startsWith("---", i + 1) && /^(\s|$)/.test(text.charAt(i + 4))) {
        yield { text: text.slice(start, i + 1), firstLine: startLine };
        start = i + 1;
        startLine = line;
        shape = 0;
      }
    }
  }
  if (start < text.length) yield { text: text.slice(start), firstLine: startLine };
}
