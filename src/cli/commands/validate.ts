// isthmus validate PATH... — schema and semantic validation, one line per finding.
import { parseArgs } from "node:util";
import { countBySeverity, sortDiagnostics } from "../../api/diagnostic.ts";
import { loadPaths } from "../../api/load/index.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { CommandIO } from "../main.ts";
import { printDiagnostics } from "../output.ts";
import { UsageError } from "../usage-error.ts";

const HELP = `Usage: isthmus validate [options] PATH...

Validates Istio resources (networking.istio.io, security.istio.io) and the Kubernetes kinds isthmus runs
(Namespace, Service, ServiceAccount, Deployment, ConfigMap, Secret) in YAML or JSON files and directories
(.yaml, .yml, .json, recursively). Each finding is printed as
  FILE:LINE:COL Kind namespace/name field.path: message

Options:
  -o, --output FORMAT   text (default) or json
  -q, --quiet           print errors only, no warnings or summary
  -h, --help            show this help

Exit status: 0 valid, 1 at least one error, 2 usage error.
`;

export async function runValidate(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(args);
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("no PATH given");
  const format = outputFormat(values.output);
  const loaded = await loadPaths(positionals);
  const validated = await validateResources(loaded.resources);
  const diagnostics = sortDiagnostics([...loaded.diagnostics, ...validated.diagnostics]);
  const counts = countBySeverity(diagnostics);
  if (format === "json") {
    io.out(
      `${JSON.stringify(
        {
          files: loaded.files,
          resources: loaded.resources.length,
          valid: validated.valid.length,
          errors: counts.error,
          warnings: counts.warning,
          diagnostics,
        },
        null,
        2,
      )}\n`,
    );
  } else {
    printDiagnostics(io, diagnostics, { quiet: values.quiet ?? false, withSeverity: false });
    if (!values.quiet) {
      io.err(
        `${loaded.files} file(s), ${loaded.resources.length} resource(s): ${counts.error} error(s), ${counts.warning} warning(s)\n`,
      );
    }
  }
  return counts.error > 0 ? 1 : 0;
}

function parseCommandArgs(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        output: { type: "string", short: "o" },
        quiet: { type: "boolean", short: "q" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export function outputFormat(v: string | undefined): "text" | "json" {
  if (v === undefined || v === "text") return "text";
  if (v === "json") return "json";
  throw new UsageError(`unknown output format "${v}"; use text or json`);
}
