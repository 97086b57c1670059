// Parses one config file's text (YAML, multi-document, or JSON) into resources that remember their positions.
import {
  type Document,
  isAlias,
  isCollection,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
} from "yaml";
import { type Diagnostic, type FieldPath, formatFieldPath } from "../diagnostic.ts";
import { diagnosticAt, locate, type Origin, type Resource } from "../resource.ts";
import { nonJsonValues } from "../schema/json-data.ts";
import { CLUSTER_SCOPED_KINDS } from "../schema/kinds.ts";
import { LIMITS } from "./limits.ts";

export interface ParseResult {
  readonly resources: Resource[];
  readonly diagnostics: Diagnostic[];
}

export function parseResources(
  file: string,
  text: string,
  maxResources: number = LIMITS.maxResources,
): ParseResult {
  const resources: Resource[] = [];
  const diagnostics: Diagnostic[] = [];
  const lineCounter = new LineCounter();
  const fileError = (message: string, offset?: number): void => {
    const pos = offset === undefined ? undefined : lineCounter.linePos(offset);
    diagnostics.push({ severity: "error", file, message, ...(pos ? { line: pos.line, col: pos.col } : {}) });
  };

  let docs: Document.Parsed[];
  try {
    // logLevel "error": yaml's warnings (such as a map used as a key) would otherwise go to stderr; its errors
    // are in doc.errors either way and become diagnostics below.
    const parsed = parseAllDocuments(text, {
      lineCounter,
      uniqueKeys: true,
      prettyErrors: false,
      logLevel: "error",
    });
    docs = Array.isArray(parsed) ? parsed : [];
  } catch (e) {
    fileError(`cannot parse: ${(e as Error).message}`);
    return { resources, diagnostics };
  }

  let contentful = 0;
  for (const [index, doc] of docs.entries()) {
    if (index >= LIMITS.maxDocumentsPerFile) {
      fileError(`more than ${LIMITS.maxDocumentsPerFile} documents in one file; the rest are not loaded`);
      break;
    }
    if (doc.errors.length > 0) {
      for (const err of doc.errors) fileError(yamlMessage(err.message), err.pos[0]);
      contentful++;
      continue;
    }
    if (doc.contents === null) continue;
    contentful++;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: LIMITS.maxAliasCount });
    } catch (e) {
      fileError(`cannot load document: ${(e as Error).message}`, doc.contents.range?.[0]);
      continue;
    }
    if (value === null || value === undefined) {
      contentful--; // a document of only comments, or an explicit null: nothing to load
      continue;
    }
    const origin: Origin = { file, doc, lineCounter, basePath: [] };
    const depthAt = nestingDepthExceeded(value, LIMITS.maxNestingDepth);
    if (depthAt) {
      const pos = locate(origin, depthAt);
      diagnostics.push({
        severity: "error",
        file,
        line: pos.line,
        col: pos.col,
        message: `nesting deeper than ${LIMITS.maxNestingDepth} levels; document not loaded`,
      });
      continue;
    }
    if (isPlainObject(value) && value.kind === "List" && Array.isArray(value.items)) {
      value.items.forEach((item, i) => {
        collect(item, { ...origin, basePath: ["items", i] });
      });
    } else {
      collect(value, origin);
    }
    if (resources.length >= maxResources) {
      fileError(`more than ${maxResources} resources; the rest are not loaded`);
      break;
    }
  }
  if (contentful === 0) fileError("empty file: no resources found");
  return { resources, diagnostics };

  function collect(value: unknown, origin: Origin): void {
    const here = locate(origin, []);
    const at = (message: string, path: (string | number)[] = []): void => {
      const pos = path.length > 0 ? locate(origin, path, { key: true }) : here;
      diagnostics.push({ severity: "error", file, line: pos.line, col: pos.col, message });
    };
    const notJson = nonJsonData(value, origin);
    if (notJson.length > 0) {
      const id = identity(value);
      for (const { path, message, offset } of notJson) {
        const pos = offset === undefined ? locate(origin, path) : lineCounter.linePos(offset);
        diagnostics.push({
          severity: "error",
          file,
          line: pos.line,
          col: pos.col,
          ...id,
          ...(path.length > 0 ? { field: formatFieldPath(path) } : {}),
          message,
        });
      }
      return;
    }
    if (!isPlainObject(value)) {
      at(`a resource must be a mapping with apiVersion, kind and metadata; found ${describe(value)}`);
      return;
    }
    const { apiVersion, kind } = value;
    const metadata = value.metadata;
    if (typeof apiVersion !== "string" || apiVersion === "") {
      at("resource has no apiVersion", "apiVersion" in value ? ["apiVersion"] : []);
      return;
    }
    if (typeof kind !== "string" || kind === "") {
      at("resource has no kind", "kind" in value ? ["kind"] : []);
      return;
    }
    if (!isPlainObject(metadata)) {
      at(`${kind} has no metadata`, "metadata" in value ? ["metadata"] : []);
      return;
    }
    if (typeof metadata.name !== "string" || metadata.name === "") {
      at(`${kind} has no metadata.name`, "name" in metadata ? ["metadata", "name"] : ["metadata"]);
      return;
    }
    const namespace =
      typeof metadata.namespace === "string" && metadata.namespace !== ""
        ? metadata.namespace
        : CLUSTER_SCOPED_KINDS.has(kind)
          ? ""
          : "default";
    const resource: Resource = {
      apiVersion,
      kind,
      name: metadata.name,
      namespace,
      labels: stringMap(metadata.labels),
      annotations: stringMap(metadata.annotations),
      object: value,
      origin,
    };
    if (
      CLUSTER_SCOPED_KINDS.has(kind) &&
      typeof metadata.namespace === "string" &&
      metadata.namespace !== ""
    ) {
      diagnostics.push(
        diagnosticAt(
          resource,
          "warning",
          ["metadata", "namespace"],
          `${kind} is cluster-scoped; namespace ignored`,
        ),
      );
    }
    resources.push(resource);
  }
}

/** YAML tags whose values JSON does not have; yaml loads them as a Buffer, Date, Set, Map, or list of pairs. */
const NON_JSON_TAGS: ReadonlyMap<string, string> = new Map(
  ["binary", "timestamp", "set", "omap", "pairs"].map((t) => [`tag:yaml.org,2002:${t}`, `!!${t}`]),
);
const NOT_JSON = "Kubernetes resources are JSON data";

interface NotJson {
  readonly path: FieldPath;
  readonly message: string;
  /** Where to point, when it is not the value at `path` (a key). */
  readonly offset?: number;
}

/**
 * What in one resource is not JSON data, so that the resource is refused rather than loaded with values
 * Kubernetes would never see: nodes of the resource's YAML tagged !!binary, !!timestamp, !!set, !!omap or
 * !!pairs (the tag, not the loaded value, gives !!pairs away: it loads as a plain-looking list), maps or lists
 * used as keys (yaml would turn them into strings), and then any value that loaded as something other than
 * JSON data (such values reached through aliases, or from tags yaml may add).
 */
function nonJsonData(value: unknown, origin: Origin): NotJson[] {
  const out: NotJson[] = [];
  const seen = new Set<string>();
  const add = (p: NotJson): void => {
    const key = JSON.stringify(p.path);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(p);
  };
  const walk = (at: unknown, path: (string | number)[]): void => {
    // An alias is checked for its anchor's own tag, not walked into (its contents are checked where the
    // anchor is, and by the walk over the loaded value).
    const aliased = isAlias(at);
    const node = aliased ? at.resolve(origin.doc) : at;
    if (!(isScalar(node) || isCollection(node))) return;
    const tag = node.tag ? NON_JSON_TAGS.get(node.tag) : undefined;
    if (tag) {
      add({ path, message: `YAML tag ${tag} is not allowed: ${NOT_JSON}` });
      return;
    }
    if (aliased) return;
    if (isSeq(node)) for (const [i, item] of node.items.entries()) walk(item, [...path, i]);
    else if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const keyTag = isScalar(pair.key) && pair.key.tag ? NON_JSON_TAGS.get(pair.key.tag) : undefined;
        if (isCollection(pair.key) || keyTag) {
          const offset = isNode(pair.key) ? pair.key.range?.[0] : undefined;
          const what = keyTag ? `YAML tag ${keyTag}` : "a map or list";
          add({
            path,
            message: `${what} as a key is not allowed: ${NOT_JSON}`,
            ...(offset === undefined ? {} : { offset }),
          });
          continue;
        }
        if (isScalar(pair.key)) walk(pair.value, [...path, String(pair.key.value)]);
      }
    }
  };
  walk(nodeAt(origin), []);
  for (const v of nonJsonValues(value, LIMITS.maxNestingDepth)) add(v);
  return out;
}

/** The YAML node of a resource: the document's root, or an item of a List. */
function nodeAt(origin: Origin): unknown {
  let node: unknown = origin.doc.contents;
  for (const part of origin.basePath) {
    if (isMap(node)) node = node.get(part, true);
    else if (isSeq(node) && typeof part === "number") node = node.items[part];
    else return undefined;
  }
  return node;
}

/** Kind, name and namespace of a resource that is refused, when it says them, for the diagnostic. */
function identity(value: unknown): { kind?: string; name?: string; namespace?: string } {
  if (!isPlainObject(value) || typeof value.kind !== "string" || value.kind === "") return {};
  const metadata = isPlainObject(value.metadata) ? value.metadata : {};
  const name = typeof metadata.name === "string" && metadata.name !== "" ? metadata.name : undefined;
  if (!name) return { kind: value.kind };
  const ns = metadata.namespace;
  const namespace =
    typeof ns === "string" && ns !== "" ? ns : CLUSTER_SCOPED_KINDS.has(value.kind) ? "" : "default";
  return { kind: value.kind, name, namespace };
}

function yamlMessage(message: string): string {
  // yaml appends a code frame after the first line; our output already names the line and column.
  const first = message.split("\n")[0] ?? message;
  return `invalid YAML: ${first.replace(/ at line \d+, column \d+:?$/, "")}`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isPlainObject(v)) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === "string") out[k] = val;
  return out;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v === null) return "null";
  return `a ${typeof v} (${JSON.stringify(v)?.slice(0, 40)})`;
}

/** The path to the first value nested deeper than `max`, or undefined. Iterative: depth is the problem. */
function nestingDepthExceeded(root: unknown, max: number): (string | number)[] | undefined {
  const stack: Array<{ v: unknown; path: (string | number)[] }> = [{ v: root, path: [] }];
  while (stack.length > 0) {
    const { v, path } = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (path.length >= max) return path;
    if (Array.isArray(v)) {
      for (const [i, item] of v.entries()) stack.push({ v: item, path: [...path, i] });
    } else for (const [k, item] of Object.entries(v)) stack.push({ v: item, path: [...path, k] });
  }
  return undefined;
}
