// Property-based fuzzing of the loader and the validator: whatever text or data a user feeds them, they answer
// with diagnostics (well-formed, positioned inside the input, free of stack traces) and never throw.
// Each property is bounded in runs, input size and time, so the file runs in a few seconds.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { analyzeResources } from "../analyze/index.ts";
import type { Diagnostic } from "../diagnostic.ts";
import { KIND_MODULES } from "../schema/kind-modules.ts";
import { validateResources } from "../validate/index.ts";
import { parseResources } from "./parse-documents.ts";

/** Runs per property, and a time bound per property so that a slow machine stays well inside its budget. */
const RUNS = { numRuns: 250, interruptAfterTimeLimit: 5_000 };
const SEVERITIES = new Set(["error", "warning", "info"]);

/** Every diagnostic is well-formed: the file it was given, a known severity, a line inside the input. */
function checkDiagnostics(ds: readonly Diagnostic[], file: string, text: string): void {
  const lines = text.split("\n").length;
  for (const d of ds) {
    const shown = JSON.stringify(d);
    assert.equal(d.file, file, shown);
    assert.ok(SEVERITIES.has(d.severity), `bad severity: ${shown}`);
    assert.equal(typeof d.message, "string", shown);
    assert.ok(d.message.trim().length > 0, `empty message: ${shown}`);
    // A message is for a user: an exception's stack trace leaking into it means something threw.
    assert.ok(!d.message.includes("at Object.") && !d.message.includes("    at "), `stack trace: ${shown}`);
    if (d.line !== undefined) {
      assert.ok(
        Number.isInteger(d.line) && d.line >= 1 && d.line <= lines + 1,
        `line out of range: ${shown}`,
      );
      assert.ok(d.col === undefined || (Number.isInteger(d.col) && d.col >= 1), `bad column: ${shown}`);
    }
  }
}

/**
 * The loader and the validator together, as `isthmus validate` runs them; then the analyzers, as
 * `isthmus analyze` does, over whatever part of the input is valid.
 */
async function loadAndValidate(file: string, text: string): Promise<void> {
  const parsed = parseResources(file, text);
  checkDiagnostics(parsed.diagnostics, file, text);
  const validated = await validateResources(parsed.resources);
  checkDiagnostics(validated.diagnostics, file, text);
  for (const r of [...validated.valid, ...validated.ignored]) assert.ok(parsed.resources.includes(r));
  const analyzed = await analyzeResources(parsed.resources);
  checkDiagnostics(analyzed.diagnostics, file, text);
  assert.equal(analyzed.analyzed, validated.valid.length);
}

// ---------------------------------------------------------------------------------------------------------
// a. Arbitrary text

/** Pieces of YAML's syntax, so that random text is often almost YAML and reaches deep into the parser. */
const YAML_TOKENS = [
  ": ",
  "- ",
  "? ",
  "{",
  "}",
  "[",
  "]",
  ",",
  "&a ",
  "*a",
  "!!binary ",
  "!!timestamp ",
  "!!set ",
  "!!omap ",
  "!!pairs ",
  "!!str ",
  "!!map ",
  "!tag ",
  "<<: *a",
  "#",
  "|",
  ">-",
  '"',
  "'",
  "\\",
  "\t",
  "\n",
  "\r\n",
  "  ",
  "---\n",
  "...\n",
  "%YAML 1.2\n",
  "%TAG ! tag:x,2000:\n",
  "~",
  ".nan",
  "1e999",
  "0x1F",
  "apiVersion: v1\n",
  "kind: Service\n",
  "metadata:\n  name: a\n",
  "spec:\n",
  "\u00a0",
  "\ufeff",
  "\u0000",
  "a",
  "1",
];

const arbitraryText = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 200 }),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.string({ unit: fc.constantFrom(...YAML_TOKENS), maxLength: 40 }),
);

test("parseResources never throws on arbitrary text, and its diagnostics are well-formed", () => {
  fc.assert(
    fc.property(arbitraryText, (text) => {
      const { resources, diagnostics } = parseResources("fuzz.yaml", text);
      checkDiagnostics(diagnostics, "fuzz.yaml", text);
      for (const r of resources) {
        assert.equal(typeof r.kind, "string");
        assert.ok(r.kind.length > 0 && r.name.length > 0 && r.apiVersion.length > 0);
        assert.equal(r.origin.file, "fuzz.yaml");
      }
      // Input that yields nothing always says why.
      if (resources.length === 0) assert.ok(diagnostics.length > 0, "no resources and no diagnostic");
    }),
    RUNS,
  );
});

// ---------------------------------------------------------------------------------------------------------
// b. Mutations of valid Istio YAML

const VIRTUAL_SERVICE = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews}
spec:
  hosts:
  - reviews
  - reviews.example.com
  gateways: [mesh, bookinfo/bookinfo-gateway]
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
      uri:
        prefix: /api/v1
    - queryParams:
        debug: {regex: "^(true|1)$"}
    route:
    - destination:
        host: reviews
        subset: v2
        port: {number: 9080}
      weight: 80
    - destination: {host: reviews, subset: v3}
      weight: 20
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
    fault:
      delay:
        percentage: {value: 0.1}
        fixedDelay: 5s
      abort:
        percentage: {value: 5}
        httpStatus: 503
    timeout: 10s
    headers:
      request:
        set: {x-canary: "true"}
  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews-shadow}
    mirrorPercentage: {value: 10.0}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET, POST]
      maxAge: 24h
`;

const DESTINATION_RULE = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews.bookinfo.svc.cluster.local
  exportTo: [".", istio-system]
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10}
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9443}
      tls:
        mode: SIMPLE
        caCertificates: /etc/certs/ca.pem
        sni: reviews.example.com
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: LEAST_REQUEST}
`;

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
  namespace: bookinfo
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["bookinfo/*.example.com"]
    tls: {httpsRedirect: true}
  - port:
      number: 8443
      name: https
      protocol: HTTPS
    hosts:
    - "*.example.com"
    tls:
      mode: SIMPLE
      credentialName: example-cert
      minProtocolVersion: TLSV1_2
`;

const AUTHORIZATION_POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/bookinfo/sa/productpage"]
        namespaces: [bookinfo]
        ipBlocks: ["10.0.0.0/8"]
    to:
    - operation:
        methods: [GET, HEAD]
        paths: ["/reviews/*"]
        ports: ["9080"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.example.com"]
`;

const SEEDS = [VIRTUAL_SERVICE, DESTINATION_RULE, GATEWAY, AUTHORIZATION_POLICY];

test("the seed resources are valid (so mutations start from correct config)", async () => {
  const text = SEEDS.join("---\n");
  const parsed = parseResources("seeds.yaml", text);
  assert.deepEqual(parsed.diagnostics, []);
  assert.equal(parsed.resources.length, SEEDS.length);
  const { diagnostics, valid } = await validateResources(parsed.resources);
  assert.deepEqual(diagnostics, []);
  assert.equal(valid.length, SEEDS.length);
});

type Mutation =
  | { readonly op: "delete"; readonly at: number; readonly length: number }
  | { readonly op: "insert"; readonly at: number; readonly text: string }
  | { readonly op: "duplicate-line"; readonly line: number }
  | { readonly op: "swap-lines"; readonly a: number; readonly b: number }
  | { readonly op: "replace-value"; readonly line: number; readonly value: string };

const position = fc.nat({ max: 10_000 });

/** Scalars and small collections as YAML text: wrong types, boundaries, near-miss formats. */
const VALUE_TEXT = fc.oneof(
  fc.constantFrom(
    "-1",
    "0",
    "65536",
    "4294967296",
    "1.5",
    "true",
    "null",
    "~",
    "[]",
    "{}",
    '""',
    "*",
    '"*"',
    "0s",
    "-5s",
    "1e400",
    ".nan",
    "[1, [2, [3]]]",
    "{a: {b: c}}",
    "&x [*x]",
    '"(unclosed"',
    "ISTIO_MUTUAL",
    "reviews.default.svc.cluster.local",
    "10.0.0.0/33",
    // Values JSON does not have: the loader refuses the resource.
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!!pairs [{a: 1}]",
    "{[a]: b}",
  ),
  fc.string({ unit: "grapheme-ascii", maxLength: 8 }),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("delete" as const), at: position, length: fc.integer({ min: 1, max: 24 }) }),
  fc.record({
    op: fc.constant("insert" as const),
    at: position,
    text: fc.oneof(
      fc.constantFrom(...YAML_TOKENS),
      fc.string({ unit: "grapheme", maxLength: 6 }),
      fc.constantFrom("-1", "65536", "1.5", "true", "null", "[]", "{}", '""', "*", "0s", "-5s", "1e400"),
    ),
  }),
  fc.record({ op: fc.constant("duplicate-line" as const), line: position }),
  fc.record({ op: fc.constant("swap-lines" as const), a: position, b: position }),
  // Keeps the YAML well-formed more often than not, so that the validators see the result.
  fc.record({ op: fc.constant("replace-value" as const), line: position, value: VALUE_TEXT }),
);

function applyMutation(text: string, m: Mutation): string {
  switch (m.op) {
    case "delete": {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + text.slice(at + m.length);
    }
    case "insert": {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + m.text + text.slice(at);
    }
    case "duplicate-line": {
      const lines = text.split("\n");
      const i = m.line % lines.length;
      lines.splice(i, 0, lines[i]!);
      return lines.join("\n");
    }
    case "swap-lines": {
      const lines = text.split("\n");
      const a = m.a % lines.length;
      const b = m.b % lines.length;
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join("\n");
    }
    case "replace-value": {
      const lines = text.split("\n");
      const withValue = lines.flatMap((l, i) => (/: \S/.test(l) ? [i] : []));
      if (withValue.length === 0) return text;
      const i = withValue[m.line % withValue.length]!;
      const line = lines[i]!;
      lines[i] = `${line.slice(0, line.indexOf(": ") + 2)}${m.value}`;
      return lines.join("\n");
    }
  }
}

const mutatedSeed = fc
  .tuple(
    fc.oneof(fc.constantFrom(...SEEDS), fc.constant(SEEDS.join("---\n"))),
    fc.array(mutation, { minLength: 1, maxLength: 5 }),
  )
  .map(([seed, ms]) => ms.reduce(applyMutation, seed));

test("mutated Istio YAML: loading, validating and analysing never throw, and every message is for a user", async () => {
  await fc.assert(
    fc.asyncProperty(mutatedSeed, async (text) => {
      await loadAndValidate("mutated.yaml", text);
    }),
    RUNS,
  );
});

// ---------------------------------------------------------------------------------------------------------
// c. Structured fuzzing: arbitrary data under `spec:` of every supported kind

/** Field names Istio and Kubernetes use, so that random specs reach the semantic rules, not just "unknown field". */
const FIELD_NAMES = [
  "hosts",
  "host",
  "gateways",
  "http",
  "tcp",
  "tls",
  "match",
  "route",
  "destination",
  "subset",
  "subsets",
  "port",
  "number",
  "name",
  "protocol",
  "targetPort",
  "weight",
  "uri",
  "prefix",
  "exact",
  "regex",
  "headers",
  "mirror",
  "mirrors",
  "mirrorPercentage",
  "value",
  "retries",
  "attempts",
  "perTryTimeout",
  "timeout",
  "fault",
  "delay",
  "abort",
  "fixedDelay",
  "httpStatus",
  "percentage",
  "trafficPolicy",
  "portLevelSettings",
  "loadBalancer",
  "simple",
  "consistentHash",
  "connectionPool",
  "outlierDetection",
  "mode",
  "credentialName",
  "caCertificates",
  "insecureSkipVerify",
  "labels",
  "selector",
  "matchLabels",
  "workloadSelector",
  "servers",
  "bind",
  "exportTo",
  "rules",
  "from",
  "to",
  "when",
  "source",
  "operation",
  "principals",
  "namespaces",
  "ipBlocks",
  "methods",
  "paths",
  "ports",
  "key",
  "values",
  "action",
  "mtls",
  "jwtRules",
  "issuer",
  "jwks",
  "egress",
  "ingress",
  "addresses",
  "endpoints",
  "address",
  "resolution",
  "location",
  "template",
  "containers",
  "containerPort",
  "image",
  "env",
  "replicas",
  "type",
  "clusterIP",
  "appProtocol",
];

/** Leaf values that are nearly right: the boundaries and formats the rules check. */
const NEAR_VALUES = fc.constantFrom(
  "",
  "*",
  "*.example.com",
  "reviews",
  "reviews.default.svc.cluster.local",
  "ns/name",
  "./*",
  "10.0.0.0/8",
  "300.1.1.1",
  "SIMPLE",
  "MUTUAL",
  "ISTIO_MUTUAL",
  "HTTP",
  "TCP",
  "STATIC",
  "DNS",
  "ALLOW",
  "DENY",
  "1s",
  "-1s",
  "1.5ms",
  "10x",
  "(unclosed",
  "^a+$",
  0,
  -1,
  1,
  80,
  65535,
  65536,
  2 ** 31,
  0.5,
  true,
  false,
  null,
);

const anythingSpec = fc.anything({ maxDepth: 4, maxKeys: 5, stringUnit: "grapheme" });

const fieldSpec = fc.object({
  key: fc.constantFrom(...FIELD_NAMES),
  maxDepth: 4,
  maxKeys: 4,
  values: [NEAR_VALUES, fc.string({ maxLength: 8 }), fc.integer()],
});

const resourceOf = (apiVersion: string, kind: string, spec: unknown): Record<string, unknown> => ({
  apiVersion,
  kind,
  metadata: { name: "fuzzed", namespace: kind === "Namespace" ? undefined : "default" },
  spec,
});

for (const [label, specs] of [
  ["fc.anything()", anythingSpec],
  ["objects of Istio's field names", fieldSpec],
] as const) {
  test(`structured: ${label} under spec of every supported kind is validated without throwing`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...KIND_MODULES), specs, async (k, spec) => {
        const text = stringify(resourceOf(k.apiVersion, k.kind, spec));
        const parsed = parseResources("structured.yaml", text);
        // What yaml writes, yaml reads: the loader sees exactly one resource.
        assert.deepEqual(parsed.diagnostics, [], text);
        assert.equal(parsed.resources.length, 1, text);
        const { diagnostics } = await validateResources(parsed.resources);
        checkDiagnostics(diagnostics, "structured.yaml", text);
      }),
      RUNS,
    );
  });
}

test("structured: several fuzzed resources of mixed kinds in one load are validated and analysed without throwing", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.constantFrom(...KIND_MODULES), fc.oneof(anythingSpec, fieldSpec)), {
        minLength: 2,
        maxLength: 6,
      }),
      async (items) => {
        const text = items
          .map(([k, spec]) => stringify(resourceOf(k.apiVersion, k.kind, spec)))
          .join("---\n");
        await loadAndValidate("mixed.yaml", text);
      },
    ),
    { numRuns: 100, interruptAfterTimeLimit: 5_000 },
  );
});

// ---------------------------------------------------------------------------------------------------------
// What the fuzzing found. YAML's tags give values JSON (and so Kubernetes) does not have: a !!binary scalar
// loads as a Buffer, !!timestamp as a Date, !!set as a Set, !!omap as a Map, !!pairs as a list of pairs.
// The validators took them for maps (and threw on a Buffer). The loader now refuses such a resource, naming
// the field, and validateResources refuses one built in code.

const withHeaderSet = (value: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    headers:
      request:
        set: ${value}
`;

test("a !!binary value where a map of strings is expected is reported, not thrown", async () => {
  const text = withHeaderSet("!!binary aGVsbG8=");
  const parsed = parseResources("binary.yaml", text);
  const validated = await validateResources(parsed.resources);
  const diagnostics = [...parsed.diagnostics, ...validated.diagnostics];
  checkDiagnostics(diagnostics, "binary.yaml", text);
  assert.ok(
    diagnostics.some((d) => d.severity === "error" && d.field === "spec.http[0].headers.request.set"),
    JSON.stringify(diagnostics),
  );
});

test("a !!timestamp value where a map of strings is expected is an error", async () => {
  const text = withHeaderSet("!!timestamp 2001-12-14");
  const parsed = parseResources("timestamp.yaml", text);
  const validated = await validateResources(parsed.resources);
  const { valid } = validated;
  const diagnostics = [...parsed.diagnostics, ...validated.diagnostics];
  assert.equal(valid.length, 0, "the resource is invalid");
  assert.ok(
    diagnostics.some((d) => d.severity === "error" && d.field === "spec.http[0].headers.request.set"),
    JSON.stringify(diagnostics),
  );
});

for (const [tag, value] of [
  ["!!binary", "!!binary aGVsbG8="],
  ["!!timestamp", "!!timestamp 2001-12-14"],
  ["!!set", "!!set {x-canary}"],
  ["!!omap", "!!omap [{x-canary: a}]"],
  ["!!pairs", "!!pairs [{x-canary: a}]"],
] as const) {
  test(`a ${tag} value where a map of strings is expected is refused by the loader, naming the field`, async () => {
    const text = withHeaderSet(value);
    const parsed = parseResources("tagged.yaml", text);
    checkDiagnostics(parsed.diagnostics, "tagged.yaml", text);
    assert.equal(parsed.resources.length, 0, "the resource is not loaded");
    assert.deepEqual(
      parsed.diagnostics.map((d) => [d.severity, d.line, d.kind, d.name, d.field, d.message]),
      [
        [
          "error",
          text.split("\n").findIndex((l) => l.includes(tag)) + 1,
          "VirtualService",
          "reviews",
          "spec.http[0].headers.request.set",
          `YAML tag ${tag} is not allowed: Kubernetes resources are JSON data`,
        ],
      ],
    );
    // As `isthmus validate` runs them: nothing left to validate, and nothing thrown.
    const { diagnostics, valid } = await validateResources(parsed.resources);
    assert.deepEqual([diagnostics, valid], [[], []]);
  });
}

test("tagged values reached through an alias, and maps used as keys, are refused too", () => {
  const text = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a, namespace: default}
  data: {created: &when !!timestamp 2001-12-14}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b, namespace: default}
  data: {created: *when}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: c, namespace: default}
  data: {[x, y]: z}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: d, namespace: default}
  data: {plain: !!str 2001-12-14}
`;
  const parsed = parseResources("list.yaml", text);
  checkDiagnostics(parsed.diagnostics, "list.yaml", text);
  assert.deepEqual(
    parsed.resources.map((r) => r.name),
    ["d"],
  );
  assert.deepEqual(
    parsed.diagnostics.map((d) => [d.line, d.name, d.field, d.message.replace(/:.*/, "")]),
    [
      [7, "a", "data.created", "YAML tag !!timestamp is not allowed"],
      [11, "b", "data.created", "YAML tag !!timestamp is not allowed"],
      [15, "c", "data", "a map or list as a key is not allowed"],
    ],
  );
});

test("validateResources refuses values that are not JSON data in resources built in code, and never throws", async () => {
  const parsed = parseResources("built.yaml", withHeaderSet("{x-canary: a}"));
  const [base] = parsed.resources;
  assert.ok(base);
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const odd: Array<[unknown, string]> = [
    [Buffer.from("hello"), "YAML tag !!binary is not allowed"],
    [new Date(0), "YAML tag !!timestamp is not allowed"],
    [new Set(["a"]), "YAML tag !!set is not allowed"],
    [new Map([["a", "b"]]), "YAML tag !!omap is not allowed"],
    [10n, "a value of type bigint is not allowed"],
    [() => "x", "a value of type function is not allowed"],
    [new (class Header {})(), "a value of type Header is not allowed"],
    [cyclic, "a value that contains itself is not allowed"],
  ];
  for (const [value, message] of odd) {
    const spec = base.object.spec as { http: Array<{ headers: { request: Record<string, unknown> } }> };
    const object = {
      ...base.object,
      spec: { ...spec, http: [{ ...spec.http[0], headers: { request: { set: value } } }] },
    };
    const { diagnostics, valid } = await validateResources([{ ...base, object }]);
    assert.equal(valid.length, 0, message);
    const field =
      value === cyclic ? "spec.http[0].headers.request.set.self" : "spec.http[0].headers.request.set";
    assert.deepEqual(
      diagnostics.map((d) => [d.severity, d.field, d.message.replace(/: Kubernetes.*/, "")]),
      [["error", field, message]],
    );
  }
});
