// Printing findings for people: errors and warnings one per line, in file order.
import { type Diagnostic, formatDiagnostic } from "../api/diagnostic.ts";
import type { CommandIO } from "./main.ts";

export function printDiagnostics(
  io: CommandIO,
  diagnostics: readonly Diagnostic[],
  opts: { quiet: boolean; withSeverity: boolean },
): void {
  for (const d of diagnostics) {
    if (opts.quiet && d.severity !== "error") continue;
    const line = formatDiagnostic(d, { withSeverity: opts.withSeverity });
    if (opts.withSeverity) io.out(`${line}\n`);
    else io.out(`${d.severity === "error" ? "" : `${d.severity}: `}${line}\n`);
  }
}
