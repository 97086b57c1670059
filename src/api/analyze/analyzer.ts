// The analyzer interface: each analyzer looks across resources for one kind of problem and reports it with
// Istio's message code where Istio has one (IST...), or isthmus' own (ISM...).
import type { Diagnostic, FieldPath, Severity } from "../diagnostic.ts";
import { diagnosticAt, type Resource } from "../resource.ts";
import type { AnalysisContext } from "./context.ts";

export type Report = (
  r: Resource,
  code: string,
  severity: Severity,
  path: FieldPath,
  message: string,
) => void;

export interface Analyzer {
  /** Short name shown by `isthmus analyze --list-analyzers`. */
  readonly name: string;
  /** The codes it may report. */
  readonly codes: readonly string[];
  readonly description: string;
  readonly run: (ctx: AnalysisContext, report: Report) => void;
}

export function collector(): { report: Report; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const report: Report = (r, code, severity, path, message) => {
    diagnostics.push(diagnosticAt(r, severity, path, message, { code }));
  };
  return { report, diagnostics };
}
