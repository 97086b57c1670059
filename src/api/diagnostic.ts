// A finding about the user's config: where it is (file, line, column, resource, field) and what is wrong.
// Every layer reports through this one shape so that the CLI, the control plane and tests print the same text.

export type Severity = "error" | "warning" | "info";

/** A path into a resource: object keys and array indexes, from the document root. */
export type FieldPath = ReadonlyArray<string | number>;

export interface Diagnostic {
  readonly severity: Severity;
  /** Istio analyzer code (IST0101, ...) or isthmus' own (ISM...); absent for plain validation errors. */
  readonly code?: string;
  readonly message: string;
  readonly file: string;
  readonly line?: number;
  readonly col?: number;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
  /** Dotted field path as users write it: spec.http[0].route[1].weight */
  readonly field?: string;
}

/** spec.http[0].route — the notation of kubectl explain and Istio's messages. */
export function formatFieldPath(path: FieldPath): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(part)) out += out === "" ? part : `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** FILE:LINE:COL Kind namespace/name field.path: message (the position parts that are unknown are left out). */
export function formatDiagnostic(d: Diagnostic, opts: { withSeverity?: boolean } = {}): string {
  let where = d.file;
  if (d.line !== undefined) where += `:${d.line}${d.col !== undefined ? `:${d.col}` : ""}`;
  const parts = [where];
  if (opts.withSeverity) parts.push(severityLabel(d.severity) + (d.code ? ` ${d.code}` : ""));
  if (d.kind) parts.push(d.name ? `${d.kind} ${d.namespace ? `${d.namespace}/` : ""}${d.name}` : d.kind);
  const subject = d.field ? `${d.field}: ` : "";
  return `${parts.join(" ")} ${subject}${d.message}`;
}

function severityLabel(s: Severity): string {
  return s === "error" ? "Error" : s === "warning" ? "Warning" : "Info";
}

export function countBySeverity(ds: readonly Diagnostic[]): Record<Severity, number> {
  const out: Record<Severity, number> = { error: 0, warning: 0, info: 0 };
  for (const d of ds) out[d.severity]++;
  return out;
}

/** Stable order for output: file, then line, then column. */
export function sortDiagnostics(ds: Diagnostic[]): Diagnostic[] {
  return ds.sort(
    (a, b) =>
      a.file.localeCompare(b.file) ||
      (a.line ?? 0) - (b.line ?? 0) ||
      (a.col ?? 0) - (b.col ?? 0) ||
      a.message.localeCompare(b.message),
  );
}
