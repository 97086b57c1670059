// Generates src/api/schema/known-fields.gen.json: for every resource kind isthmus loads, the tree of field
// names its schema allows. The compiled validators of @kubernetes-models/* check types, enums and required
// fields but (like Kubernetes' structural schemas, which prune) accept unknown fields silently; a typo such as
// `htpp:` would then be dropped without a word. The field names come from the same generated models, read
// through their TypeScript declarations, so both checks describe one schema version.
//
// Run: npm run gen:schemas   (a test fails when the committed file is stale)
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { KIND_MODULES } from "../src/api/schema/kind-modules.ts";

const require = createRequire(import.meta.url);
const ts = require("typescript") as typeof import("typescript");

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const KNOWN_FIELDS_PATH = join(root, "src/api/schema/known-fields.gen.json");

/** A node: 0 = leaf (scalar), 1 = anything, {p: fields} object, {m: value} map, {i: item} array. */
type FieldNode = 0 | 1 | { p?: Record<string, number>; m?: number; i?: number };

export function generateKnownFields(): string {
  const entry = join(root, "scripts/.known-fields-entry.ts");
  const lines = KIND_MODULES.map(
    (k, i) => `import type { I${k.kind} as T${i} } from "${k.module}";\nexport type K${i} = T${i};`,
  );
  const source = lines.join("\n");
  const host = ts.createCompilerHost({});
  const readFile = host.readFile.bind(host);
  host.readFile = (f) => (f === entry ? source : readFile(f));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (f) => f === entry || fileExists(f);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (f, lang) =>
    f === entry ? ts.createSourceFile(f, source, lang) : getSourceFile(f, lang);
  const program = ts.createProgram(
    [entry],
    {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      types: [],
    },
    host,
  );
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(entry);
  if (!sf) throw new Error("entry file not compiled");
  const moduleSymbol = checker.getSymbolAtLocation(sf);
  if (!moduleSymbol) throw new Error("entry has no module symbol");
  const exports = checker.getExportsOfModule(moduleSymbol);

  const nodes: FieldNode[] = [];
  const interned = new Map<string, number>();
  const intern = (n: FieldNode): number => {
    const key = JSON.stringify(n);
    let id = interned.get(key);
    if (id === undefined) {
      id = nodes.length;
      nodes.push(n);
      interned.set(key, id);
    }
    return id;
  };
  const LEAF = intern(0);
  const ANY = intern(1);

  // Walk the declarations' syntax, not the checker's types: Istio's oneOf fields are written as
  // `Base & (A | B) & (C | D)`, which the checker distributes into a product that does not fit in memory.
  type TypeNode = import("typescript").TypeNode;
  type Member = import("typescript").TypeElement;
  const memo = new Map<import("typescript").Node, number>();
  const visiting = new Set<import("typescript").Node>();
  const once = (key: import("typescript").Node, build: () => number): number => {
    let id = memo.get(key);
    if (id !== undefined) return id;
    if (visiting.has(key)) return ANY;
    visiting.add(key);
    try {
      id = build();
    } finally {
      visiting.delete(key);
    }
    memo.set(key, id);
    return id;
  };
  const members = (list: readonly Member[]): number => {
    const p: Record<string, number> = {};
    let m: number | undefined;
    for (const mem of list) {
      if (ts.isPropertySignature(mem) && mem.type) {
        const name = ts.isStringLiteral(mem.name) || ts.isIdentifier(mem.name) ? mem.name.text : undefined;
        if (name !== undefined) p[name] = walk(mem.type);
      } else if (ts.isIndexSignatureDeclaration(mem)) {
        m = walk(mem.type);
      }
    }
    const sorted: Record<string, number> = {};
    for (const k of Object.keys(p).sort()) sorted[k] = p[k]!;
    if (Object.keys(sorted).length === 0) return m === undefined ? ANY : intern({ m });
    return intern(m === undefined ? { p: sorted } : { p: sorted, m });
  };
  const walk = (node: TypeNode): number =>
    once(node, () => {
      if (ts.isParenthesizedTypeNode(node)) return walk(node.type);
      if (ts.isTypeLiteralNode(node)) return members(node.members);
      if (ts.isArrayTypeNode(node)) return intern({ i: walk(node.elementType) });
      if (ts.isUnionTypeNode(node) || ts.isIntersectionTypeNode(node)) {
        const parts = node.types.map(walk).filter((id) => id !== LEAF);
        if (parts.length === 0) return LEAF;
        return parts.length === 1 ? parts[0]! : merge(parts);
      }
      if (node.kind === ts.SyntaxKind.AnyKeyword || node.kind === ts.SyntaxKind.UnknownKeyword) return ANY;
      if (node.kind === ts.SyntaxKind.ObjectKeyword) return ANY;
      if (ts.isTypeReferenceNode(node)) {
        const name = node.typeName.getText();
        if (name === "Array" && node.typeArguments?.[0]) return intern({ i: walk(node.typeArguments[0]) });
        if (name === "Record" && node.typeArguments?.[1]) return intern({ m: walk(node.typeArguments[1]) });
        let sym = checker.getSymbolAtLocation(node.typeName);
        if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
        const decl = sym?.declarations?.[0];
        if (!decl) return ANY;
        if (ts.isInterfaceDeclaration(decl)) {
          return once(decl, () => {
            const own = members(decl.members);
            const bases = (decl.heritageClauses ?? []).flatMap((h) => h.types.map((t) => walkExpr(t)));
            return bases.length === 0 ? own : merge([own, ...bases]);
          });
        }
        if (ts.isTypeAliasDeclaration(decl)) return walk(decl.type);
        return LEAF; // enums and the like are scalars
      }
      return LEAF;
    });
  const walkExpr = (t: import("typescript").ExpressionWithTypeArguments): number => {
    let sym = checker.getSymbolAtLocation(t.expression);
    if (sym && sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
    const decl = sym?.declarations?.[0];
    return decl && ts.isInterfaceDeclaration(decl) ? once(decl, () => members(decl.members)) : ANY;
  };

  // A union of object shapes (Istio's oneOf expansions) allows the fields of every member; which combination
  // is legal is the structural validator's job.
  const merge = (ids: number[]): number => {
    const fields: Record<string, number[]> = {};
    let map: number[] = [];
    for (const id of ids) {
      const n = nodes[id];
      if (n === 1) return ANY;
      if (n === 0 || n === undefined) continue;
      for (const [k, v] of Object.entries(n.p ?? {})) {
        fields[k] = [...(fields[k] ?? []), v];
      }
      if (n.m !== undefined) map.push(n.m);
      if (n.i !== undefined) return id;
    }
    const p: Record<string, number> = {};
    for (const k of Object.keys(fields).sort()) {
      const vs = [...new Set(fields[k])];
      p[k] = vs.length === 1 ? vs[0]! : merge(vs);
    }
    map = [...new Set(map)];
    const out: FieldNode = { p };
    if (map.length > 0) out.m = map.length === 1 ? map[0]! : merge(map);
    return intern(out);
  };

  const kinds: Record<string, number> = {};
  KIND_MODULES.forEach((k, i) => {
    const sym = exports.find((s) => s.name === `K${i}`);
    const decl = sym?.declarations?.[0];
    if (!decl || !ts.isTypeAliasDeclaration(decl))
      throw new Error(`type for ${k.apiVersion} ${k.kind} not found`);
    kinds[`${k.apiVersion}/${k.kind}`] = walk(decl.type);
  });
  return `${JSON.stringify({ kinds, nodes })}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(KNOWN_FIELDS_PATH, generateKnownFields());
  console.log(`wrote ${KNOWN_FIELDS_PATH}`);
}
