// The toolkit every semantic validator uses: typed, null-safe reads of plain data, and a reporter that turns
// a field path into a positioned diagnostic. Structural validation has already checked types, so the reads
// here only guard against the shapes it reported, never crash on them.
import type { Diagnostic, FieldPath } from "../diagnostic.ts";
import { diagnosticAt, type Resource } from "../resource.ts";

export type Path = ReadonlyArray<string | number>;
export type Obj = Readonly<Record<string, unknown>>;

export class Checker {
  readonly diagnostics: Diagnostic[] = [];
  private readonly errorPaths: string[] = [];
  readonly resource: Resource;
  constructor(resource: Resource) {
    this.resource = resource;
  }

  error(path: Path, message: string): void {
    this.diagnostics.push(diagnosticAt(this.resource, "error", path, message));
    this.errorPaths.push(pathKey(path));
  }

  warn(path: Path, message: string): void {
    this.diagnostics.push(diagnosticAt(this.resource, "warning", path, message));
  }

  /** True when an error was reported at `path` or below it. */
  reportedAt(path: FieldPath): boolean {
    const prefix = pathKey(path);
    return this.errorPaths.some((p) => p === prefix || p.startsWith(`${prefix}\u0000`));
  }
}

const pathKey = (path: FieldPath): string => path.map(String).join("\u0000");

export const obj = (v: unknown): Obj | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
export const arr = (v: unknown): readonly unknown[] => (Array.isArray(v) ? v : []);
export const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
export const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
export const has = (o: Obj | undefined, key: string): boolean => o !== undefined && o[key] !== undefined;
/** Fields of `o` that are set (not undefined or null). */
export const setKeys = (o: Obj | undefined, keys: readonly string[]): string[] =>
  o === undefined ? [] : keys.filter((k) => o[k] !== undefined && o[k] !== null);

/** Calls fn for each item of an array field with its path. */
export function each(v: unknown, path: Path, fn: (item: unknown, path: Path, index: number) => void): void {
  arr(v).forEach((item, i) => {
    fn(item, [...path, i], i);
  });
}

/** Calls fn for each object item of an array field. */
export function eachObj(v: unknown, path: Path, fn: (item: Obj, path: Path, index: number) => void): void {
  arr(v).forEach((item, i) => {
    const o = obj(item);
    if (o) fn(o, [...path, i], i);
  });
}

/** At most one of these fields (Istio's oneOf): reports the conflict at `path`. */
export function atMostOne(
  c: Checker,
  o: Obj | undefined,
  path: Path,
  keys: readonly string[],
  what?: string,
): void {
  const present = setKeys(o, keys);
  if (present.length > 1) {
    c.error(
      path,
      `only one of ${keys.join(", ")} may be set${what ? ` in ${what}` : ""}; found ${present.join(" and ")}`,
    );
  }
}
