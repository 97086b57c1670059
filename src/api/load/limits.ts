// Bounds on what the loader accepts, so that no input can make it run out of time or memory.
// Each one is reported by name when exceeded.

export const LIMITS = {
  /** Largest config file read (a 50 MB file is refused before it is read). */
  maxFileBytes: 16 * 1024 * 1024,
  /** Documents in one file (`---` separated). */
  maxDocumentsPerFile: 50_000,
  /** Resources over all the files of one load. */
  maxResources: 200_000,
  /** Files found below the directories of one load. */
  maxFiles: 20_000,
  /** Directory levels walked below a directory given on the command line. */
  maxDirectoryDepth: 32,
  /** Nesting of maps and lists inside one resource; Istio's deepest schema path is far below this. */
  maxNestingDepth: 64,
  /** YAML alias expansions per document (defuses "billion laughs"). */
  maxAliasCount: 100,
} as const;
