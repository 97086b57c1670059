// The invalid-resource corpus: each file in testdata/invalid holds one resource that Istio (or Kubernetes)
// refuses. The validator must report the expected field, on the line marked "# @error", with the expected
// message — so a rule that stops firing, or fires at the wrong place, fails here.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { formatDiagnostic } from "../diagnostic.ts";
import { loadPaths } from "../load/index.ts";
import { validateResources } from "./index.ts";

const dir = join(import.meta.dirname, "testdata", "invalid");
const expectations = JSON.parse(readFileSync(join(dir, "expectations.json"), "utf8")) as Record<
  string,
  { field: string; message: string }
>;
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));

test("the corpus has at least 40 invalid resources, each with an expectation", () => {
  assert.ok(files.length >= 40, `only ${files.length} cases`);
  for (const f of files) assert.ok(expectations[f.replace(/\.yaml$/, "")], `${f} has no expectation`);
});

for (const f of files) {
  const name = f.replace(/\.yaml$/, "");
  test(`invalid: ${name}`, async () => {
    const file = join(dir, f);
    const text = readFileSync(file, "utf8");
    const markedLine = text.split("\n").findIndex((l) => l.includes("# @error")) + 1;
    assert.ok(markedLine > 0, `${f} has no "# @error" marker`);
    const loaded = await loadPaths([file]);
    const { diagnostics } = await validateResources(loaded.resources);
    const all = [...loaded.diagnostics, ...diagnostics];
    const errors = all.filter((d) => d.severity === "error");
    const expected = expectations[name]!;
    const hit = errors.find((d) => d.field === expected.field && d.message.includes(expected.message));
    const shown = all.map((d) => formatDiagnostic(d)).join("\n");
    assert.ok(hit, `expected an error at ${expected.field} containing "${expected.message}"; got:\n${shown}`);
    assert.equal(hit.line, markedLine, `wrong line for ${expected.field}; got:\n${shown}`);
    assert.equal(hit.file, file);
  });
}
