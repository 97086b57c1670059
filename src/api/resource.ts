// A loaded resource: its identity, its content as plain data, and where it came from so that any field of it
// can be traced back to a line and column.
import type { Document, LineCounter, Node } from "yaml";
import { isMap, isNode, isPair, isScalar, isSeq } from "yaml";
import type { Diagnostic, FieldPath, Severity } from "./diagnostic.ts";
import { formatFieldPath } from "./diagnostic.ts";

export interface Origin {
  readonly file: string;
  readonly doc: Document.Parsed;
  readonly lineCounter: LineCounter;
  /** Where the resource sits inside its document ([] for a whole document, ["items", 3] in a List). */
  readonly basePath: FieldPath;
}

export interface Resource {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** "" for cluster-scoped kinds; "default" when a namespaced resource names none, as kubectl does. */
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** The whole resource as plain data (apiVersion, kind, metadata, spec, ...). */
  readonly object: Readonly<Record<string, unknown>>;
  readonly origin: Origin;
}

export interface Position {
  readonly line: number;
  readonly col: number;
}

/**
 * The position of a field. With `key`, the position of the field's name (for unknown or misplaced fields);
 * when the path does not exist (a missing required field), the position of its nearest existing parent.
 */
export function locate(origin: Origin, path: FieldPath, opts: { key?: boolean } = {}): Position {
  const full = [...origin.basePath, ...path];
  let node: unknown = origin.doc.contents;
  let keyNode: unknown;
  let best: unknown = node;
  for (const part of full) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(part),
      );
      if (!pair) break;
      keyNode = pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof part === "number") {
      keyNode = undefined;
      node = node.items[part];
    } else {
      break;
    }
    if (!isNode(node)) break;
    best = node;
  }
  // A finding about a whole map or list reads best at its field name; one about a value, at the value.
  const reachedEnd = best === node;
  const atKey = reachedEnd && keyNode && isNode(keyNode) && (opts.key || isMap(node) || isSeq(node));
  const target = atKey ? keyNode : best;
  const offset = isNode(target) && (target as Node).range ? (target as Node).range![0] : 0;
  const lp = origin.lineCounter.linePos(offset);
  return { line: lp.line, col: lp.col };
}

/** A diagnostic about one field of one resource, positioned at that field. */
export function diagnosticAt(
  r: Resource,
  severity: Severity,
  path: FieldPath,
  message: string,
  opts: { code?: string; key?: boolean } = {},
): Diagnostic {
  const pos = locate(r.origin, path, { key: opts.key ?? false });
  return {
    severity,
    message,
    file: r.origin.file,
    line: pos.line,
    col: pos.col,
    kind: r.kind,
    namespace: r.namespace,
    name: r.name,
    ...(path.length > 0 ? { field: formatFieldPath(path) } : {}),
    ...(opts.code ? { code: opts.code } : {}),
  };
}

export function resourceRef(r: Resource): string {
  return `${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name}`;
}
