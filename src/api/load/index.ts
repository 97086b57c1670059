// Loading config: the files and directories a user names, parsed into positioned resources.
import type { Diagnostic } from "../diagnostic.ts";
import type { Resource } from "../resource.ts";
import { LIMITS } from "./limits.ts";
import { parseResources } from "./parse-documents.ts";
import { readSources } from "./read-sources.ts";

export interface LoadResult {
  readonly resources: Resource[];
  readonly diagnostics: Diagnostic[];
  readonly files: number;
}

export async function loadPaths(paths: readonly string[]): Promise<LoadResult> {
  const { files, diagnostics } = await readSources(paths);
  const resources: Resource[] = [];
  for (const f of files) {
    const room = LIMITS.maxResources - resources.length;
    if (room <= 0) {
      diagnostics.push({
        severity: "error",
        file: f.file,
        message: `more than ${LIMITS.maxResources} resources in this load; not loaded`,
      });
      continue;
    }
    const parsed = parseResources(f.file, f.text, room);
    resources.push(...parsed.resources);
    diagnostics.push(...parsed.diagnostics);
  }
  return { resources, diagnostics, files: files.length };
}
