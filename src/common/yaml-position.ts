// Line and column of a field inside a parsed YAML document, for error messages that point at the right place.
// Shared by the Istio config API and the proxy's bootstrap loader.
import type { Document, LineCounter, Node } from "yaml";
import { isMap, isNode, isPair, isScalar, isSeq } from "yaml";

export type YamlPath = ReadonlyArray<string | number>;

export interface Position {
  readonly line: number;
  readonly col: number;
}

/**
 * The position of the value at `path`. A finding about a whole map or list (or, with `key`, any field) reads
 * best at the field's name; when the path does not exist, the nearest existing parent is used.
 */
export function positionOf(
  doc: Document,
  lineCounter: LineCounter,
  path: YamlPath,
  opts: { key?: boolean } = {},
): Position {
  let node: unknown = doc.contents;
  let keyNode: unknown;
  let best: unknown = node;
  for (const part of path) {
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
  const reachedEnd = best === node;
  const atKey = reachedEnd && keyNode && isNode(keyNode) && (opts.key || isMap(node) || isSeq(node));
  const target = atKey ? keyNode : best;
  const offset = isNode(target) && (target as Node).range ? (target as Node).range![0] : 0;
  const lp = lineCounter.linePos(offset);
  return { line: lp.line, col: lp.col };
}
