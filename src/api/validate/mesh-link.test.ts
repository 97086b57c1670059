import assert from "node:assert/strict";
import { test } from "node:test";
import { parseResources } from "../load/parse-documents.ts";
import { validateResources } from "./index.ts";
import { meshLinkSpec } from "./mesh-link.ts";

const validate = async (text: string) => validateResources(parseResources("links.yaml", text).resources);

test("a MeshLink with a cluster and an address is valid; one without an address waits to be dialled", async () => {
  const r = await validate(`apiVersion: isthmus.io/v1alpha1
kind: MeshLink
metadata: { name: icp, namespace: istio-system }
spec: { cluster: icp, address: "10.0.0.5:15012" }
---
apiVersion: isthmus.io/v1alpha1
kind: MeshLink
metadata: { name: iks, namespace: istio-system }
spec: { cluster: iks }
`);
  assert.deepEqual(r.diagnostics, []);
  assert.deepEqual(r.valid.map(meshLinkSpec), [
    { name: "icp", cluster: "icp", address: "10.0.0.5:15012" },
    { name: "iks", cluster: "iks" },
  ]);
});

test("bad MeshLinks are refused with the file, line and field", async () => {
  const r = await validate(`apiVersion: isthmus.io/v1alpha1
kind: MeshLink
metadata: { name: icp, namespace: istio-system }
spec:
  clustr: icp
  address: "no-port"
`);
  assert.equal(r.valid.length, 0);
  const lines = r.diagnostics.map((d) => `${d.file}:${d.line} ${d.field} ${d.message}`);
  assert.ok(
    lines.some((l) => /links\.yaml:5 spec\.clustr unknown field \(did you mean "cluster"\?\)/.test(l)),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((l) => /links\.yaml:\d+ spec\.cluster must be the peer's cluster name/.test(l)),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((l) => /links\.yaml:6 spec\.address must be HOST:PORT/.test(l)),
    lines.join("\n"),
  );
});
