// Kubernetes resources are JSON data: maps with string keys, lists, strings, numbers, booleans and null.
// YAML can say more (a !!binary scalar loads as a Buffer, !!timestamp as a Date, !!set as a Set, !!omap as a
// Map), and so can a caller building resources in code. Such values are refused before anything validates
// them: the validators, ajv included, take any object for a map.
import type { FieldPath } from "../diagnostic.ts";

export interface NonJsonValue {
  /** Where the value is, from the resource's root. */
  readonly path: FieldPath;
  /** What is wrong, for a user: "YAML tag !!timestamp is not allowed: Kubernetes resources are JSON data". */
  readonly message: string;
}

const NOT_JSON = "Kubernetes resources are JSON data";

/**
 * The values under `root` that are not JSON data, each reported once at the outermost place it shows (its
 * contents are not looked into). A value nested deeper than `maxDepth`, or one that contains itself, is
 * reported too, so that whatever walks the data afterwards terminates. `undefined` counts as absent, as in
 * JSON.stringify; numbers JSON cannot write (NaN, Infinity, from YAML's .nan and .inf) are left to the
 * validators. Shared sub-values are looked at once.
 */
export function nonJsonValues(root: unknown, maxDepth: number): NonJsonValue[] {
  const out: NonJsonValue[] = [];
  const done = new Set<object>();
  const onPath = new Set<object>();
  const walk = (v: unknown, path: (string | number)[]): void => {
    const what = nonJsonKind(v);
    if (what !== undefined) {
      out.push({ path, message: `${what} is not allowed: ${NOT_JSON}` });
      return;
    }
    if (typeof v !== "object" || v === null || done.has(v)) return;
    if (onPath.has(v)) {
      out.push({ path, message: `a value that contains itself is not allowed: ${NOT_JSON}` });
      return;
    }
    if (path.length >= maxDepth) {
      out.push({ path, message: `nesting deeper than ${maxDepth} levels is not allowed` });
      return;
    }
    onPath.add(v);
    if (Array.isArray(v)) for (const [i, item] of v.entries()) walk(item, [...path, i]);
    else for (const [k, item] of Object.entries(v)) walk(item, [...path, k]);
    onPath.delete(v);
    done.add(v);
  };
  walk(root, []);
  return out;
}

/** Why a value is not JSON data (the YAML tag that makes such a value, or its type), or undefined if it is. */
function nonJsonKind(v: unknown): string | undefined {
  switch (typeof v) {
    case "string":
    case "number":
    case "boolean":
    case "undefined":
      return undefined;
    case "object": {
      if (v === null || Array.isArray(v)) return undefined;
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto === Object.prototype || proto === null) return undefined;
      if (v instanceof Uint8Array) return "YAML tag !!binary"; // a Buffer is a Uint8Array
      if (v instanceof Date) return "YAML tag !!timestamp";
      if (v instanceof Set) return "YAML tag !!set";
      if (v instanceof Map) return "YAML tag !!omap";
      const name = (proto as { constructor?: { name?: unknown } } | null)?.constructor?.name;
      return typeof name === "string" && name !== ""
        ? `a value of type ${name}`
        : "a value that is not a map";
    }
    default:
      return `a value of type ${typeof v}`;
  }
}
