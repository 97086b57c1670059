// isthmus analyze PATH... — validation plus cross-resource analysis with Istio's message codes.
import { parseArgs } from "node:util";
import { ANALYZERS, analyzeResources } from "../../api/analyze/index.ts";
import { countBySeverity, type Severity, sortDiagnostics } from "../../api/diagnostic.ts";
import { loadPaths } from "../../api/load/index.ts";
import type { CommandIO } from "../main.ts";
import { printDiagnostics } from "../output.ts";
import { UsageError } from "../usage-error.ts";
import { outputFormat } from "./validate.ts";

const HELP = `Usage: isthmus analyze [options] PATH...

Loads every resource under PATH (files and directories), validates each one, then runs the analyzers
across them, as 'istioctl analyze' does. Findings carry Istio's codes (IST0101 ReferencedResourceNotFound,
IST0109 ConflictingMeshGatewayVirtualServiceHosts, ...) or isthmus' own (ISM...), one per line:
  FILE:LINE:COL Severity CODE Kind namespace/name field.path: message

Options:
  -o, --output FORMAT      text (default) or json
      --fail-on LEVEL      exit 1 on findings of this level or worse: error (default), warning, info
      --analyzer NAME      run only this analyzer (repeatable); see --list-analyzers
      --list-analyzers     list the analyzers and the codes they report
  -h, --help               show this help

Analyzers that need to know the workloads (selectors, subsets) run only when the PATHs include
Deployments or WorkloadEntries; those that need the services, only when they include Services or
ServiceEntries.

Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage error.
`;

const RANK: Record<Severity, number> = { info: 0, warning: 1, error: 2 };

export async function runAnalyze(args: string[], io: CommandIO): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  if (values["list-analyzers"]) {
    for (const a of ANALYZERS)
      io.out(`${a.name.padEnd(44)} ${a.codes.join(",").padEnd(24)} ${a.description}\n`);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("no PATH given");
  const format = outputFormat(values.output);
  const failOn = values["fail-on"] ?? "error";
  if (!(failOn in RANK)) throw new UsageError(`--fail-on must be error, warning or info, not "${failOn}"`);
  const only = values.analyzer ? new Set(values.analyzer) : undefined;
  for (const name of only ?? []) {
    if (!ANALYZERS.some((a) => a.name === name))
      throw new UsageError(`unknown analyzer "${name}"; see --list-analyzers`);
  }
  const loaded = await loadPaths(positionals);
  const result = await analyzeResources(loaded.resources, only);
  const diagnostics = sortDiagnostics([
    ...loaded.diagnostics.map((d) => ({
      ...d,
      code: d.code ?? (d.severity === "error" ? "IST0106" : "IST0133"),
    })),
    ...result.diagnostics,
  ]);
  const counts = countBySeverity(diagnostics);
  if (format === "json") {
    io.out(
      `${JSON.stringify({ files: loaded.files, resources: loaded.resources.length, ...counts, diagnostics }, null, 2)}\n`,
    );
  } else {
    printDiagnostics(io, diagnostics, { quiet: false, withSeverity: true });
    if (diagnostics.length === 0)
      io.err(`✔ No validation issues found when analyzing ${positionals.join(", ")}.\n`);
    io.err(
      `${loaded.files} file(s), ${loaded.resources.length} resource(s): ${counts.error} error(s), ${counts.warning} warning(s), ${counts.info} info\n`,
    );
  }
  const threshold = RANK[failOn as Severity];
  return diagnostics.some((d) => RANK[d.severity] >= threshold) ? 1 : 0;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      "fail-on": { type: "string" },
      analyzer: { type: "string", multiple: true },
      "list-analyzers": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}
