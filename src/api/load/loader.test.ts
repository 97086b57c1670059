// Bad input to the loader: every case ends in a clear diagnostic naming the file (and line where there is
// one), never an exception, and never a hang.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { loadPaths } from "./index.ts";
import { LIMITS } from "./limits.ts";
import { parseResources } from "./parse-documents.ts";

const root = mkdtempSync(join(tmpdir(), "isthmus-loader-"));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function file(content: string | Buffer, name = `f${n++}.yaml`): string {
  const p = join(root, name);
  writeFileSync(p, content);
  return p;
}

const VS = (name: string, ns = "default") => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  hosts: [${name}]
  http:
  - route:
    - destination: {host: ${name}}
`;

test("multi-document YAML keeps each resource's file, line and namespace", async () => {
  const p = file(`# leading comment\n${VS("a")}---\n${VS("b", "prod")}---\n# only a comment\n---\n`);
  const { resources, diagnostics } = await loadPaths([p]);
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(
    resources.map((r) => [r.kind, r.namespace, r.name]),
    [
      ["VirtualService", "default", "a"],
      ["VirtualService", "prod", "b"],
    ],
  );
  assert.equal(resources[0]!.origin.file, p);
});

test("JSON files load, with positions", async () => {
  const p = file(
    JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "prod" } }, null, 2),
    "ns.json",
  );
  const { resources, diagnostics } = await loadPaths([p]);
  assert.deepEqual(diagnostics, []);
  assert.equal(resources[0]!.name, "prod");
  assert.equal(resources[0]!.namespace, "", "Namespace is cluster-scoped");
});

test("a v1 List is expanded into its items", async () => {
  const p = file(
    `apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: b}\n`,
  );
  const { resources } = await loadPaths([p]);
  assert.deepEqual(
    resources.map((r) => r.name),
    ["a", "b"],
  );
});

test("not YAML: error with file and line", async () => {
  const p = file("apiVersion: v1\nkind: [unclosed\nmetadata: {name: x}\n");
  const { resources, diagnostics } = await loadPaths([p]);
  assert.equal(resources.length, 0);
  assert.ok(diagnostics.length > 0);
  for (const d of diagnostics) {
    assert.equal(d.file, p);
    assert.equal(d.severity, "error");
    assert.ok(d.line !== undefined && d.line >= 1);
    assert.match(d.message, /invalid YAML/);
  }
});

test("duplicate keys are an error at the second key", async () => {
  const p = file("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n");
  const { resources, diagnostics } = await loadPaths([p]);
  assert.equal(resources.length, 0);
  const d = diagnostics.find((x) => /unique/i.test(x.message));
  assert.ok(d, JSON.stringify(diagnostics));
  assert.equal(d.line, 5);
});

test("binary file", async () => {
  const p = file(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00]), "a.out.yaml");
  const { diagnostics } = await loadPaths([p]);
  assert.equal(diagnostics.length, 1);
  assert.equal(diagnostics[0]!.file, p);
  assert.match(diagnostics[0]!.message, /binary file/);
});

test("text that is not UTF-8", async () => {
  const p = file(Buffer.from("kind: caf\xe9\n", "latin1"));
  const { diagnostics } = await loadPaths([p]);
  assert.match(diagnostics[0]!.message, /not UTF-8/);
});

test("empty file and a file of only comments", async () => {
  for (const content of ["", "# nothing here\n", "---\n---\n"]) {
    const p = file(content);
    const { resources, diagnostics } = await loadPaths([p]);
    assert.equal(resources.length, 0);
    assert.equal(diagnostics.length, 1, content);
    assert.equal(diagnostics[0]!.file, p);
    assert.match(diagnostics[0]!.message, /empty file/);
  }
});

test("a 50 MB file is refused without being read", async () => {
  const p = file("", "huge.yaml");
  truncateSync(p, 50 * 1024 * 1024); // sparse: costs no disk
  const before = process.memoryUsage().rss;
  const { diagnostics } = await loadPaths([p]);
  assert.equal(diagnostics.length, 1);
  assert.match(diagnostics[0]!.message, /50\.0 MiB, larger than the 16\.0 MiB limit/);
  assert.ok(process.memoryUsage().rss - before < 40 * 1024 * 1024, "the file must not be read into memory");
});

test("10,000 resources in one file all load, each with its own line", async () => {
  const docs: string[] = [];
  for (let i = 0; i < 10_000; i++)
    docs.push(`apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa-${i}\n`);
  const p = file(docs.join("---\n"));
  const { resources, diagnostics } = await loadPaths([p]);
  assert.deepEqual(diagnostics, []);
  assert.equal(resources.length, 10_000);
  const last = resources[9_999]!;
  assert.equal(last.name, "sa-9999");
});

test("more documents than the limit: the rest are refused with a message", () => {
  const doc = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n";
  const text = Array.from({ length: LIMITS.maxDocumentsPerFile + 2 }, () => doc).join("---\n");
  const { resources, diagnostics } = parseResources("many.yaml", text);
  assert.equal(resources.length, LIMITS.maxDocumentsPerFile);
  assert.ok(diagnostics.some((d) => /more than 50000 documents/.test(d.message)));
});

test("deep nesting is refused, not a stack overflow", () => {
  const depth = 100_000;
  const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: ${"[".repeat(depth)}${"]".repeat(depth)}\n`;
  const { resources, diagnostics } = parseResources("deep.yaml", text);
  assert.equal(resources.length, 0);
  assert.ok(
    diagnostics.some((d) => /nesting deeper than 64 levels|invalid YAML/.test(d.message)),
    JSON.stringify(diagnostics.slice(0, 2)),
  );
  const moderate = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: ${"[".repeat(80)}${"]".repeat(80)}\n`;
  const r2 = parseResources("deep2.yaml", moderate);
  assert.equal(r2.resources.length, 0);
  assert.match(r2.diagnostics[0]!.message, /nesting deeper than 64 levels/);
  assert.equal(r2.diagnostics[0]!.line, 5);
});

test("alias expansion bombs are refused", () => {
  const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
  for (let i = 0; i < 8; i++) {
    const prev = String.fromCharCode(97 + i);
    const cur = String.fromCharCode(98 + i);
    lines.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(", ")}]`);
  }
  const text = `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n${lines.map((l) => `  ${l}`).join("\n")}\n`;
  const { resources, diagnostics } = parseResources("bomb.yaml", text);
  assert.equal(resources.length, 0);
  assert.match(diagnostics[0]!.message, /cannot load document|alias/i);
});

test("values that are not JSON data are refused with file, line and field; yaml writes no warnings", async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  process.on("warning", onWarning);
  try {
    const text = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    timeout: !!timestamp 2001-12-14t21:59:43.10-05:00
    headers:
      request:
        set: {[x-a, x-b]: v, x-c: !unknown v}
`;
    const { resources, diagnostics } = parseResources("tagged.yaml", text);
    assert.equal(resources.length, 0);
    assert.deepEqual(
      diagnostics.map((d) => [d.file, d.line, d.kind, d.namespace, d.name, d.field, d.message]),
      [
        [
          "tagged.yaml",
          9,
          "VirtualService",
          "prod",
          "reviews",
          "spec.http[0].timeout",
          "YAML tag !!timestamp is not allowed: Kubernetes resources are JSON data",
        ],
        [
          "tagged.yaml",
          12,
          "VirtualService",
          "prod",
          "reviews",
          "spec.http[0].headers.request.set",
          "a map or list as a key is not allowed: Kubernetes resources are JSON data",
        ],
      ],
    );
    // yaml warns through process.emitWarning, on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off("warning", onWarning);
  }
  assert.deepEqual(
    warnings.map((w) => w.message),
    [],
  );
});

test("resources without kind, apiVersion, metadata or name", () => {
  const cases: Array<[string, RegExp, number]> = [
    ["apiVersion: v1\nmetadata: {name: x}\n", /no kind/, 1],
    ["kind: Namespace\nmetadata: {name: x}\n", /no apiVersion/, 1],
    ["apiVersion: v1\nkind: Namespace\n", /Namespace has no metadata/, 1],
    ["apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n", /Namespace has no metadata.name/, 3],
    ["apiVersion: v1\nkind: Namespace\nmetadata:\n  name: 42\n", /has no metadata.name/, 4],
    ["- a\n- b\n", /must be a mapping/, 1],
    ["just a string\n", /must be a mapping/, 1],
  ];
  for (const [text, re, line] of cases) {
    const { resources, diagnostics } = parseResources("x.yaml", text);
    assert.equal(resources.length, 0, text);
    assert.equal(diagnostics.length, 1, text);
    assert.match(diagnostics[0]!.message, re);
    assert.equal(diagnostics[0]!.line, line, text);
  }
});

test("directories: recursive, config extensions only, unreadable entries reported, symlink loops survived", async () => {
  const dir = join(root, "tree");
  mkdirSync(join(dir, "sub", "deeper"), { recursive: true });
  writeFileSync(join(dir, "a.yaml"), VS("a"));
  writeFileSync(join(dir, "sub", "b.yml"), VS("b"));
  writeFileSync(
    join(dir, "sub", "deeper", "c.json"),
    JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "c" } }),
  );
  writeFileSync(join(dir, "README.md"), "# not config\n");
  writeFileSync(join(dir, ".hidden.yaml"), "not: [valid\n");
  symlinkSync(join(dir, "missing.yaml"), join(dir, "dangling.yaml"));
  symlinkSync(dir, join(dir, "sub", "loop"));
  execFileSync("mkfifo", [join(dir, "pipe.yaml")]);
  const { resources, diagnostics } = await loadPaths([dir]);
  assert.deepEqual(resources.map((r) => r.name).sort(), ["a", "b", "c"]);
  const byFile = new Map(diagnostics.map((d) => [d.file, d.message]));
  assert.match(byFile.get(join(dir, "dangling.yaml")) ?? "", /no such file/);
  assert.match(byFile.get(join(dir, "pipe.yaml")) ?? "", /not a regular file/);
  assert.equal(diagnostics.length, 2, JSON.stringify(diagnostics));
});

test("a path that does not exist", async () => {
  const { diagnostics } = await loadPaths([join(root, "nope")]);
  assert.equal(diagnostics.length, 1);
  assert.match(diagnostics[0]!.message, /no such file or directory/);
});
