// Turns the paths a user names into config files read as UTF-8 text, walking directories and refusing what is
// not a readable text file within bounds. Never throws for a bad input: every problem becomes a diagnostic.
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import type { Diagnostic } from "../diagnostic.ts";
import { LIMITS } from "./limits.ts";

export interface SourceFile {
  readonly file: string;
  readonly text: string;
}

export interface ReadResult {
  readonly files: SourceFile[];
  readonly diagnostics: Diagnostic[];
}

const CONFIG_EXTENSIONS = new Set([".yaml", ".yml", ".json"]);

const problem = (file: string, message: string): Diagnostic => ({ severity: "error", file, message });

export async function readSources(paths: readonly string[]): Promise<ReadResult> {
  const files: SourceFile[] = [];
  const diagnostics: Diagnostic[] = [];
  const seen = new Set<string>();
  let budget: number = LIMITS.maxFiles;

  const readOne = async (file: string, size: number): Promise<void> => {
    if (size > LIMITS.maxFileBytes) {
      diagnostics.push(
        problem(file, `file is ${mib(size)}, larger than the ${mib(LIMITS.maxFileBytes)} limit; not read`),
      );
      return;
    }
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      diagnostics.push(problem(file, `cannot read file: ${errorText(e)}`));
      return;
    }
    const text = decodeText(bytes);
    if (typeof text !== "string") {
      diagnostics.push(problem(file, text.error));
      return;
    }
    files.push({ file, text });
  };

  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > LIMITS.maxDirectoryDepth) {
      diagnostics.push(
        problem(dir, `directory nested deeper than ${LIMITS.maxDirectoryDepth} levels; not read`),
      );
      return;
    }
    let entries: string[];
    try {
      entries = (await readdir(dir)).sort();
    } catch (e) {
      diagnostics.push(problem(dir, `cannot read directory: ${errorText(e)}`));
      return;
    }
    for (const name of entries) {
      if (name.startsWith(".")) continue;
      const full = join(dir, name);
      const st = await statOrReport(full, diagnostics);
      if (!st) continue;
      if (st.isDirectory()) {
        if (await firstVisit(full)) await walk(full, depth + 1);
      } else if (CONFIG_EXTENSIONS.has(extname(name).toLowerCase())) {
        if (!st.isFile()) {
          diagnostics.push(problem(full, "not a regular file; not read"));
        } else if (budget-- <= 0) {
          diagnostics.push(problem(full, `more than ${LIMITS.maxFiles} config files; the rest are not read`));
          return;
        } else if (await firstVisit(full)) {
          await readOne(full, st.size);
        }
      }
    }
  };

  // Symlink loops and a file named twice are read once.
  const firstVisit = async (p: string): Promise<boolean> => {
    let real: string;
    try {
      real = await realpath(p);
    } catch {
      real = p;
    }
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  };

  for (const p of paths) {
    const st = await statOrReport(p, diagnostics);
    if (!st) continue;
    if (st.isDirectory()) {
      if (await firstVisit(p)) await walk(p, 0);
    } else if (!st.isFile()) {
      diagnostics.push(problem(p, "not a regular file or directory; not read"));
    } else if (await firstVisit(p)) {
      await readOne(p, st.size);
    }
  }
  return { files, diagnostics };
}

async function statOrReport(p: string, diagnostics: Diagnostic[]) {
  try {
    return await stat(p);
  } catch (e) {
    diagnostics.push(problem(p, `cannot read: ${errorText(e)}`));
    return undefined;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 text, or why the bytes are not a config file (binary data, another encoding). */
export function decodeText(bytes: Uint8Array): string | { error: string } {
  const nul = bytes.indexOf(0);
  if (nul !== -1) return { error: `binary file (NUL byte at offset ${nul}); expected YAML or JSON text` };
  try {
    const text = utf8.decode(bytes);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } catch {
    return { error: "not UTF-8 text; expected YAML or JSON" };
  }
}

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function errorText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === "ENOENT") return "no such file or directory";
  if (err?.code === "EACCES") return "permission denied";
  if (err?.code === "ELOOP") return "too many levels of symbolic links";
  return err?.code ?? String(e);
}
