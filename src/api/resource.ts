// A loaded resource: its identity, its content as plain data, and where it came from so that any field of it
// can be traced back to a line and column.
import type { Document, LineCounter } from "yaml";
import { type Position, positionOf } from "../common/yaml-position.ts";
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

export type { Position } from "../common/yaml-position.ts";

/** The position of a field of a resource (see positionOf). */
export function locate(origin: Origin, path: FieldPath, opts: { key?: boolean } = {}): Position {
  return positionOf(origin.doc, origin.lineCounter, [...origin.basePath, ...path], opts);
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
