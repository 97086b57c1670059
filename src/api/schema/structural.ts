// Structural validation: field names and types as Istio's and Kubernetes' published schemas define them.
// Types, enums, required fields and int32 ranges come from the validators generated from those schemas
// (@kubernetes-models/*); unknown fields, which those validators let through, from known-fields.gen.json.
import { createRequire } from "node:module";
import type { Diagnostic, FieldPath } from "../diagnostic.ts";
import { diagnosticAt, type Resource } from "../resource.ts";
import type { KindModule } from "./kind-modules.ts";

const require = createRequire(import.meta.url);
const KNOWN = require("./known-fields.gen.json") as {
  kinds: Record<string, number>;
  nodes: Array<0 | 1 | { p?: Record<string, number>; m?: number; i?: number }>;
};

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}
type ModelClass = new (data: unknown) => { validate(): void };

const models = new Map<string, Promise<ModelClass>>();

function modelFor(k: KindModule): Promise<ModelClass> {
  let m = models.get(k.module);
  if (!m) {
    m = import(k.module).then((mod: Record<string, ModelClass>) => {
      const cls = mod[k.kind];
      if (!cls) throw new Error(`${k.module} has no export ${k.kind}`);
      return cls;
    });
    models.set(k.module, m);
  }
  return m;
}

/** Loads the validators for these kinds ahead of use, so that validation itself is synchronous. */
export async function prepareStructural(kinds: Iterable<KindModule>): Promise<Map<string, ModelClass>> {
  const out = new Map<string, ModelClass>();
  for (const k of kinds) out.set(`${k.apiVersion}/${k.kind}`, await modelFor(k));
  return out;
}

export interface StructuralResult {
  readonly diagnostics: Diagnostic[];
  /** Paths of oneOf/not failures: "these fields exclude each other", which semantic checks explain better. */
  readonly exclusivePaths: FieldPath[];
}

export function validateStructure(r: Resource, model: ModelClass): StructuralResult {
  const diagnostics: Diagnostic[] = [];
  const exclusivePaths: FieldPath[] = [];
  const root = KNOWN.kinds[`${r.apiVersion}/${r.kind}`];
  if (root !== undefined) unknownFields(r, r.object, root, [], diagnostics);
  try {
    new model(r.object).validate();
  } catch (e) {
    const errors = (e as { errors?: AjvError[] }).errors;
    if (!Array.isArray(errors)) throw e;
    for (const err of errors) {
      const path = pointerToPath(err.instancePath);
      if (err.keyword === "oneOf" || err.keyword === "not" || err.keyword === "anyOf") {
        exclusivePaths.push(path);
        continue;
      }
      const d = ajvDiagnostic(r, path, err);
      if (d) diagnostics.push(d);
    }
  }
  return { diagnostics, exclusivePaths: dedupePaths(exclusivePaths) };
}

/** The generic message for a oneOf failure that no semantic rule explained more precisely. */
export function conflictDiagnostic(r: Resource, path: FieldPath): Diagnostic {
  return diagnosticAt(
    r,
    "error",
    path,
    `conflicting fields: ${presentKeys(r.object, path)} cannot be combined`,
  );
}

/**
 * Fields that Istio's current API has and the generated models (built from an older CRD release) lack.
 * Keyed by kind, as a path with [] for list items.
 */
const NEWER_FIELDS: Record<string, ReadonlySet<string>> = {
  AuthorizationPolicy: new Set([
    "spec.rules[].from[].source.trustDomains",
    "spec.rules[].from[].source.notTrustDomains",
  ]),
};

function isNewerField(kind: string, path: readonly (string | number)[]): boolean {
  const set = NEWER_FIELDS[kind];
  if (!set) return false;
  const shape = path
    .map((p) => (typeof p === "number" ? "[]" : `.${p}`))
    .join("")
    .slice(1);
  return set.has(shape);
}

function unknownFields(
  r: Resource,
  value: unknown,
  nodeId: number,
  path: (string | number)[],
  out: Diagnostic[],
) {
  const node = KNOWN.nodes[nodeId];
  if (node === undefined || node === 0 || node === 1) return;
  if (Array.isArray(value)) {
    if (node.i !== undefined) {
      for (const [i, v] of value.entries()) unknownFields(r, v, node.i, [...path, i], out);
    }
    return;
  }
  if (typeof value !== "object" || value === null) return;
  for (const [key, v] of Object.entries(value)) {
    const child = node.p?.[key] ?? node.m;
    if (child === undefined && isNewerField(r.kind, [...path, key])) continue;
    if (child === undefined) {
      const hint = closest(key, Object.keys(node.p ?? {}));
      out.push(
        diagnosticAt(
          r,
          "error",
          [...path, key],
          `unknown field "${key}"${hint ? `; did you mean "${hint}"?` : ""}`,
          {
            key: true,
          },
        ),
      );
      continue;
    }
    unknownFields(r, v, child, [...path, key], out);
  }
}

function ajvDiagnostic(r: Resource, path: FieldPath, err: AjvError): Diagnostic | undefined {
  switch (err.keyword) {
    case "required": {
      const missing = String(err.params.missingProperty);
      return diagnosticAt(r, "error", [...path, missing], "required field is missing");
    }
    case "enum": {
      const allowed = (err.params.allowedValues as unknown[]).map(String).join(", ");
      return diagnosticAt(r, "error", path, `must be one of: ${allowed}`);
    }
    case "type": {
      const actual = valueAt(r.object, path);
      return diagnosticAt(
        r,
        "error",
        path,
        `must be ${article(String(err.params.type))}, not ${typeName(actual)}`,
      );
    }
    case "format":
      if (err.params.format === "int32" || err.params.format === "int64" || err.params.format === "uint32")
        return diagnosticAt(r, "error", path, `must be a ${err.params.format} integer`);
      return diagnosticAt(r, "error", path, `must be a valid ${String(err.params.format)}`);
    default:
      return diagnosticAt(r, "error", path, err.message ?? err.keyword);
  }
}

function pointerToPath(pointer: string): FieldPath {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

function dedupePaths(paths: FieldPath[]): FieldPath[] {
  const seen = new Set<string>();
  return paths.filter((p) => {
    const k = JSON.stringify(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function valueAt(root: unknown, path: FieldPath): unknown {
  let v: unknown = root;
  for (const part of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<string | number, unknown>)[part];
  }
  return v;
}

function presentKeys(root: unknown, path: FieldPath): string {
  const v = valueAt(root, path);
  if (typeof v !== "object" || v === null) return "these fields";
  return Object.keys(v)
    .map((k) => `"${k}"`)
    .join(", ");
}

/** What a value is, for "must be a string, not ...". Total: JSON.stringify gives undefined for some values. */
function typeName(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch {
    text = undefined; // a BigInt
  }
  return text === undefined ? typeof v : `${typeof v} ${text.slice(0, 40)}`;
}

function article(t: string): string {
  const name = t === "object" ? "map" : t === "array" ? "list" : t;
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

/** The known field nearest to a misspelt one (edit distance <= 2), for "did you mean". */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
