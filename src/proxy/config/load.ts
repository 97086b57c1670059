// Reading a ProxyConfig from a bootstrap file (YAML or JSON), with errors that name the file, line and field.
import { readFile, stat } from "node:fs/promises";
import type { ProxyConfig } from "./types.ts";
import { type ConfigProblem, validateProxyConfig } from "./validate.ts";

const MAX_BOOTSTRAP_BYTES = 16 * 1024 * 1024;

export type LoadedConfig =
  | { readonly ok: true; readonly config: ProxyConfig; readonly warnings: string[] }
  | { readonly ok: false; readonly errors: string[]; readonly warnings: string[] };

/** Formats a problem as FILE:LINE:COL field.path: message. */
function format(file: string, where: { line: number; col: number } | undefined, p: ConfigProblem): string {
  const field = p.path
    .map((x) => (typeof x === "number" ? `[${x}]` : `.${x}`))
    .join("")
    .replace(/^\./, "");
  return `${file}${where ? `:${where.line}:${where.col}` : ""} ${field ? `${field}: ` : ""}${p.message}`;
}

export async function loadProxyConfigFile(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    const st = await stat(file);
    if (!st.isFile()) return { ok: false, errors: [`${file}: not a regular file`], warnings: [] };
    if (st.size > MAX_BOOTSTRAP_BYTES)
      return { ok: false, errors: [`${file}: larger than 16 MiB`], warnings: [] };
    text = await readFile(file, "utf8");
  } catch (e) {
    return {
      ok: false,
      errors: [`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`],
      warnings: [],
    };
  }
  return parseProxyConfig(file, text);
}

/**
 * A valid JSON config is read without loading the YAML library (about 12 MB a sidecar need not carry);
 * YAML, and any config with problems, goes through it for line and column numbers.
 */
export async function parseProxyConfig(file: string, text: string): Promise<LoadedConfig> {
  if (/^\s*\{/.test(text)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = undefined;
    }
    if (value !== undefined) {
      const quick = checkProxyConfig(value, (p) => format(file, undefined, p));
      if (quick.ok) return quick;
    }
  }
  const { LineCounter, parseDocument } = await import("yaml");
  const { positionOf } = await import("../../common/yaml-position.ts");
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, logLevel: "silent" });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((e) => {
        const lp = lineCounter.linePos(e.pos[0]);
        return `${file}:${lp.line}:${lp.col} invalid YAML: ${e.message.split("\n")[0]}`;
      }),
      warnings: [],
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return { ok: false, errors: [`${file}: ${(e as Error).message}`], warnings: [] };
  }
  return checkProxyConfig(value, (p) => format(file, positionOf(doc, lineCounter, p.path, { key: true }), p));
}

/** Validates a config object; `describe` turns a problem into text (with positions when there is a source). */
export function checkProxyConfig(value: unknown, describe: (p: ConfigProblem) => string): LoadedConfig {
  const problems = validateProxyConfig(value);
  const errors = problems.filter((p) => p.severity === "error").map(describe);
  const warnings = problems.filter((p) => p.severity === "warning").map(describe);
  if (errors.length > 0) return { ok: false, errors, warnings };
  return { ok: true, config: value as ProxyConfig, warnings };
}
