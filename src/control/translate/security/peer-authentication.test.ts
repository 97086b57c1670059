// PeerAuthentication precedence as Istio documents it, table-driven on validated resources.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseResources } from "../../../api/load/parse-documents.ts";
import { validateResources } from "../../../api/validate/index.ts";
import { type MtlsMode, peerAuthenticationMode } from "./peer-authentication.ts";

const pa = (ns: string, name: string, spec: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;

async function policies(...docs: string[]) {
  const { valid, diagnostics } = await validateResources(
    parseResources("pa.yaml", docs.join("---\n")).resources,
  );
  assert.deepEqual(
    diagnostics.filter((d) => d.severity === "error"),
    [],
  );
  return valid;
}

const reviews = { namespace: "shop", labels: { app: "reviews", version: "v1" } };

const CASES: Array<[string, string[], MtlsMode, number?]> = [
  ["no policy: PERMISSIVE", [], "PERMISSIVE"],
  ["mesh STRICT", [pa("istio-system", "default", "{mtls: {mode: STRICT}}")], "STRICT"],
  [
    "namespace over mesh",
    [pa("istio-system", "default", "{mtls: {mode: STRICT}}"), pa("shop", "ns", "{mtls: {mode: DISABLE}}")],
    "DISABLE",
  ],
  [
    "workload over namespace",
    [
      pa("shop", "ns", "{mtls: {mode: STRICT}}"),
      pa("shop", "wl", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}"),
    ],
    "PERMISSIVE",
  ],
  [
    "UNSET inherits the namespace's",
    [
      pa("shop", "ns", "{mtls: {mode: STRICT}}"),
      pa("shop", "wl", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}}"),
    ],
    "STRICT",
  ],
  [
    "port level over the workload's mode, for that port",
    [
      pa(
        "shop",
        "wl",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'9080': {mode: DISABLE}}}",
      ),
    ],
    "DISABLE",
    9080,
  ],
  [
    "port level does not touch other ports",
    [
      pa(
        "shop",
        "wl",
        "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {'9080': {mode: DISABLE}}}",
      ),
    ],
    "STRICT",
    8080,
  ],
  [
    "a selector that does not match is not the workload's",
    [
      pa("shop", "ns", "{mtls: {mode: STRICT}}"),
      pa("shop", "wl", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}"),
    ],
    "STRICT",
  ],
  ["another namespace's policies do not apply", [pa("other", "ns", "{mtls: {mode: DISABLE}}")], "PERMISSIVE"],
  [
    "a root-namespace policy with a selector is not mesh-wide",
    [pa("istio-system", "wl", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}")],
    "PERMISSIVE",
  ],
  [
    "two namespace-wide policies: the first decides",
    [pa("shop", "a", "{mtls: {mode: DISABLE}}"), pa("shop", "b", "{mtls: {mode: STRICT}}")],
    "DISABLE",
  ],
];

for (const [name, docs, want, port] of CASES)
  test(`PeerAuthentication: ${name}`, async () => {
    assert.equal(peerAuthenticationMode(await policies(...docs), reviews, port ?? 9080), want);
  });
