// Istio's own samples (../shared/istio-samples, copied unchanged from istio/istio) must load and validate
// with no errors: they are configuration that real Istio accepts.
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { formatDiagnostic } from "../diagnostic.ts";
import { loadPaths } from "../load/index.ts";
import { validateResources } from "./index.ts";

const samples = join(import.meta.dirname, "..", "..", "..", "..", "shared", "istio-samples");

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

test("the Istio samples corpus is present", () => {
  assert.ok(existsSync(samples), `${samples} is missing: CI must run with shared/ beside the clone`);
});

for (const file of existsSync(samples) ? yamlFiles(samples) : []) {
  test(`istio sample validates clean: ${relative(samples, file)}`, async () => {
    const loaded = await loadPaths([file]);
    const { diagnostics, valid, ignored } = await validateResources(loaded.resources);
    const errors = [...loaded.diagnostics, ...diagnostics].filter((d) => d.severity === "error");
    assert.deepEqual(
      errors.map((d) => formatDiagnostic(d)),
      [],
    );
    assert.ok(loaded.resources.length > 0, "no resources loaded");
    assert.equal(valid.length + ignored.length, loaded.resources.length);
  });
}
