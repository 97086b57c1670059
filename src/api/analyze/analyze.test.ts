// The cross-resource analyzers, one by one: each has fixtures that make it fire (asserting Istio's code, the
// severity, the field, the resource and the message) and fixtures of correct config on which it must stay
// quiet. Then the rules every analyzer shares: the effective set, short host names, and the gating on
// whether the load says which workloads and services exist. Tests marked `todo` document where isthmus
// still differs from Istio's `istioctl analyze`.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type Diagnostic, formatDiagnostic, type Severity } from "../diagnostic.ts";
import { loadPaths } from "../load/index.ts";
import { parseResources } from "../load/parse-documents.ts";
import type { Resource } from "../resource.ts";
import { ANALYZERS, analyzeResources } from "./index.ts";

const root = mkdtempSync(join(tmpdir(), "isthmus-analyze-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** Analyzers that some test has seen fire, and seen stay quiet on correct config. */
const firedIn = new Set<string>();
const quietIn = new Set<string>();

// ---------------------------------------------------------------------------------------------------------
// Harness

interface Run {
  /** The analyzer this run was restricted to, or undefined when all of them ran. */
  readonly analyzer: string | undefined;
  readonly diagnostics: Diagnostic[];
  readonly text: string;
}

const show = (ds: readonly Diagnostic[]): string =>
  ds.length === 0 ? "  (none)" : ds.map((d) => `  ${formatDiagnostic(d, { withSeverity: true })}`).join("\n");

/** Parses a fixture, checks that every resource in it is valid, and runs one analyzer (or all of them). */
async function analyze(analyzer: string | undefined, text: string): Promise<Run> {
  const parsed = parseResources("fixture.yaml", text);
  assert.deepEqual(parsed.diagnostics, [], `the fixture must parse cleanly:\n${show(parsed.diagnostics)}`);
  return { ...(await analyzeLoaded(analyzer, parsed.resources)), text };
}

async function analyzeLoaded(
  analyzer: string | undefined,
  resources: readonly Resource[],
): Promise<Omit<Run, "text">> {
  if (analyzer !== undefined)
    assert.ok(
      ANALYZERS.some((a) => a.name === analyzer),
      `no analyzer named ${analyzer}`,
    );
  const result = await analyzeResources(resources, analyzer ? new Set([analyzer]) : undefined);
  // A fixture with a schema error or warning would be tested for the wrong reason: the analyzers only see
  // valid resources, so a negative case on an invalid resource would pass whatever the analyzer does.
  const validation = result.diagnostics.filter((d) => d.code === "IST0106" || d.code === "IST0133");
  assert.deepEqual(validation, [], `the fixture must be valid:\n${show(validation)}`);
  assert.equal(result.analyzed, resources.length, "every resource of the fixture reaches the analyzers");
  return { analyzer, diagnostics: result.diagnostics };
}

interface Expected {
  readonly code: string;
  readonly severity: Severity;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly field: string;
  /** A part of the message that says what is wrong. */
  readonly message: string;
  /** The line the diagnostic points at: the first line of the fixture containing this text. */
  readonly lineOf?: string;
}

/** Exactly one diagnostic with this code on this resource and field, with this severity and message. */
function expectFinding(run: Run, e: Expected): Diagnostic {
  const hits = run.diagnostics.filter(
    (d) =>
      d.code === e.code &&
      d.kind === e.kind &&
      d.name === e.name &&
      d.field === e.field &&
      (e.namespace === undefined || d.namespace === e.namespace),
  );
  const where = `${e.code} on ${e.kind} ${e.namespace ?? "*"}/${e.name} at ${e.field}`;
  assert.equal(hits.length, 1, `expected one ${where}; got:\n${show(run.diagnostics)}`);
  const d = hits[0]!;
  assert.equal(d.severity, e.severity, `severity of ${where}`);
  assert.ok(
    d.message.includes(e.message),
    `${where}: message ${JSON.stringify(d.message)} should contain ${JSON.stringify(e.message)}`,
  );
  assert.equal(d.file, "fixture.yaml");
  if (e.lineOf !== undefined) assert.equal(d.line, lineOf(run.text, e.lineOf), `line of ${where}`);
  if (run.analyzer !== undefined) {
    const a = ANALYZERS.find((x) => x.name === run.analyzer)!;
    assert.ok(a.codes.includes(e.code), `${a.name} does not declare ${e.code}`);
    firedIn.add(a.name);
  }
  return d;
}

/** No diagnostic with this code (on this resource, if named). */
function expectNone(run: Run, code: string, name?: string): void {
  const hits = run.diagnostics.filter((d) => d.code === code && (name === undefined || d.name === name));
  assert.deepEqual(hits, [], `expected no ${code}${name ? ` on ${name}` : ""}; got:\n${show(hits)}`);
  if (run.analyzer !== undefined) quietIn.add(run.analyzer);
}

function expectCount(run: Run, code: string, n: number): void {
  const hits = run.diagnostics.filter((d) => d.code === code);
  assert.equal(hits.length, n, `expected ${n} ${code}; got:\n${show(run.diagnostics)}`);
}

function lineOf(text: string, needle: string): number {
  const i = text.split("\n").findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `the fixture has no line containing ${JSON.stringify(needle)}`);
  return i + 1;
}

const yaml = (...docs: string[]): string => docs.join("---\n");

const flow = (m: Readonly<Record<string, string>>): string =>
  `{${Object.entries(m)
    .map(([k, v]) => `${k}: ${v}`)
    .join(", ")}}`;

function service(
  name: string,
  o: { ns?: string; selector?: Record<string, string>; ports?: string; labels?: Record<string, string> } = {},
): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${o.ns ?? "default"}${o.labels ? `\n  labels: ${flow(o.labels)}` : ""}
spec:
  selector: ${flow(o.selector ?? { app: name })}
  ports: ${o.ports ?? "[{name: http, port: 9080}]"}
`;
}

function deployment(name: string, labels: Record<string, string>, o: { ns?: string; port?: number } = {}) {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}, namespace: ${o.ns ?? "default"}}
spec:
  selector:
    matchLabels: ${flow(labels)}
  template:
    metadata:
      labels: ${flow(labels)}
    spec:
      containers:
      - name: app
        image: example/${name}:1.0
        ports: [{containerPort: ${o.port ?? 9080}}]
`;
}

function namespace(name: string): string {
  return `apiVersion: v1
kind: Namespace
metadata: {name: ${name}}
`;
}

/** A mesh VirtualService sending everything to one destination. */
function routeTo(name: string, host: string, destination: string, ns = "default"): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: ${ns}}
spec:
  hosts: [${host}]
  http:
  - route:
    - destination: ${destination}
`;
}

function destinationRule(
  name: string,
  host: string,
  subsets: Record<string, string>,
  ns = "default",
): string {
  const list = Object.entries(subsets)
    .map(([s, version]) => `\n  - name: ${s}\n    labels: {version: ${version}}`)
    .join("");
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: ${ns}}
spec:
  host: ${host}
  subsets:${list || " []"}
`;
}

const INGRESS_WORKLOAD = yaml(
  deployment("istio-ingressgateway", { istio: "ingressgateway" }, { ns: "istio-system", port: 8080 }),
  service("istio-ingressgateway", {
    ns: "istio-system",
    selector: { istio: "ingressgateway" },
    labels: { istio: "ingressgateway" },
    ports: "[{name: http2, port: 80, targetPort: 8080}, {name: https, port: 443, targetPort: 8443}]",
  }),
);

function gateway(name: string, o: { ns?: string; selector?: string; servers?: string } = {}): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ${name}, namespace: ${o.ns ?? "default"}}
spec:
  selector: ${o.selector ?? "{istio: ingressgateway}"}
  servers: ${o.servers ?? `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["shop.example.com"]`}
`;
}

// ---------------------------------------------------------------------------------------------------------
// virtualservice.gateway (IST0101)

test("virtualservice.gateway: a gateway reference, in spec or in a match, to no Gateway is IST0101", async () => {
  const run = await analyze(
    "virtualservice.gateway",
    yaml(
      gateway("web"),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [missing-gw, web, default/web]
  http:
  - match:
    - uri: {prefix: /api}
      gateways: [edge/ingress]
    route:
    - destination: {host: api}
  - route:
    - destination: {host: frontend}
`,
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "shop",
    namespace: "default",
    field: "spec.gateways[0]",
    message: 'Referenced gateway not found: "missing-gw"',
    lineOf: "gateways: [missing-gw",
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "shop",
    field: "spec.http[0].match[0].gateways[0]",
    message: 'Referenced gateway not found: "edge/ingress"',
    lineOf: "gateways: [edge/ingress]",
  });
  expectCount(run, "IST0101", 2);
});

test("virtualservice.gateway: short, namespaced and mesh references to existing Gateways are quiet", async () => {
  const run = await analyze(
    "virtualservice.gateway",
    yaml(
      gateway("web"),
      gateway("ingress", { ns: "edge" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [web, default/web, edge/ingress, mesh]
  http:
  - match:
    - uri: {prefix: /api}
      gateways: [edge/ingress, mesh]
    route:
    - destination: {host: api}
`,
    ),
  );
  expectNone(run, "IST0101");
});

test("virtualservice.gateway: a short gateway name resolves in the VirtualService's namespace", async () => {
  const run = await analyze(
    "virtualservice.gateway",
    yaml(
      gateway("web", { ns: "edge" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [web]
  http:
  - route:
    - destination: {host: api}
`,
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "shop",
    field: "spec.gateways[0]",
    message: 'Referenced gateway not found: "web"',
  });
});

// ---------------------------------------------------------------------------------------------------------
// virtualservice.destinationhost (IST0101, IST0112)

const REVIEWS = yaml(
  service("reviews"),
  service("ratings", { ports: "[{name: http, port: 9080}, {name: grpc, port: 9090}]" }),
);

test("virtualservice.destinationhost: unknown route host, unknown port and unknown mirror host", async () => {
  const run = await analyze(
    "virtualservice.destinationhost",
    yaml(
      REVIEWS,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: details}
      weight: 50
    - destination:
        host: reviews
        port: {number: 9999}
      weight: 50
    mirror: {host: shadow}
`,
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].route[0].destination.host",
    message: 'Referenced host not found: "details"',
    lineOf: "host: details",
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].route[1].destination.port",
    message: 'Referenced host:port not found: "reviews:9999"',
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].mirror.host",
    message: 'Referenced mirror host not found: "shadow"',
  });
  expectCount(run, "IST0101", 3);
});

test("virtualservice.destinationhost: a multi-port Service needs the port in the destination (IST0112)", async () => {
  const run = await analyze(
    "virtualservice.destinationhost",
    yaml(REVIEWS, routeTo("ratings", "ratings", "{host: ratings}")),
  );
  expectFinding(run, {
    code: "IST0112",
    severity: "error",
    kind: "VirtualService",
    name: "ratings",
    field: "spec.http[0].route[0].destination",
    message: 'routes to a service "ratings" that exposes multiple ports [9080 9090]',
  });
});

test("virtualservice.destinationhost: known hosts, ports and ServiceEntry hosts are quiet", async () => {
  const run = await analyze(
    "virtualservice.destinationhost",
    yaml(
      REVIEWS,
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: default}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {prefix: /pay}
    route:
    - destination: {host: payments.example.com, port: {number: 443}}
  - route:
    - destination: {host: reviews.default.svc.cluster.local}
      weight: 50
    - destination:
        host: ratings
        port: {number: 9090}
      weight: 50
    mirror: {host: reviews, port: {number: 9080}}
`,
    ),
  );
  expectNone(run, "IST0101");
  expectNone(run, "IST0112");
});

test("virtualservice.destinationhost: a multi-port ServiceEntry also needs the port in the destination (IST0112)", async () => {
  const run = await analyze(
    "virtualservice.destinationhost",
    yaml(
      service("unrelated"),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: default}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 8080, name: http-alt, protocol: HTTP}
`,
      routeTo("payments", "payments.example.com", "{host: payments.example.com}"),
    ),
  );
  expectFinding(run, {
    code: "IST0112",
    severity: "error",
    kind: "VirtualService",
    name: "payments",
    field: "spec.http[0].route[0].destination",
    message: "exposes multiple ports [80 8080]",
  });
});

// ---------------------------------------------------------------------------------------------------------
// virtualservice.subset (IST0101)

test("virtualservice.subset: a subset no DestinationRule defines is IST0101", async () => {
  const run = await analyze(
    "virtualservice.subset",
    yaml(
      destinationRule("reviews", "reviews", { v1: "v1", v2: "v2" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination:
        host: reviews
        subset: v3
      weight: 10
    mirror: {host: reviews, subset: canary}
  - route:
    - destination: {host: ratings, subset: v1}
`,
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].route[1].destination.subset",
    message: 'Referenced host+subset in destinationrule not found: "reviews+v3"',
    lineOf: "subset: v3",
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].mirror.subset",
    message: 'Referenced mirror+subset in destinationrule not found: "reviews+canary"',
  });
  const noRule = expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[1].route[0].destination.subset",
    message: 'Referenced host+subset in destinationrule not found: "ratings+v1"',
  });
  assert.match(noRule.message, /no DestinationRule for this host/);
  expectCount(run, "IST0101", 3);
});

test("virtualservice.subset: subsets defined by a DestinationRule for the same FQDN are quiet", async () => {
  const run = await analyze(
    "virtualservice.subset",
    yaml(
      destinationRule("reviews", "reviews.default.svc.cluster.local", { v1: "v1", v2: "v2" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 10
    mirror: {host: reviews, subset: v2}
`,
    ),
  );
  expectNone(run, "IST0101");
});

test("virtualservice.subset: a DestinationRule in another namespace does not define subsets for a short host", async () => {
  const run = await analyze(
    "virtualservice.subset",
    yaml(
      destinationRule("reviews", "reviews", { v1: "v1" }, "prod"),
      routeTo("reviews", "reviews", "{host: reviews, subset: v1}"),
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].route[0].destination.subset",
    message: '"reviews+v1" (no DestinationRule for this host)',
  });
});

// ---------------------------------------------------------------------------------------------------------
// virtualservice.conflictingmeshgatewayhosts (IST0109)

test("virtualservice.conflictingmeshgatewayhosts: two mesh VirtualServices for one host (short and FQDN)", async () => {
  const run = await analyze(
    "virtualservice.conflictingmeshgatewayhosts",
    yaml(
      routeTo("reviews-a", "reviews", "{host: reviews}"),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-b, namespace: default}
spec:
  hosts: [other.example.com, reviews.default.svc.cluster.local]
  gateways: [mesh, web]
  http:
  - route:
    - destination: {host: reviews}
`,
    ),
  );
  const message =
    "define the same host reviews.default.svc.cluster.local which can lead to undefined behavior";
  const a = expectFinding(run, {
    code: "IST0109",
    severity: "error",
    kind: "VirtualService",
    name: "reviews-a",
    field: "spec.hosts[0]",
    message,
  });
  expectFinding(run, {
    code: "IST0109",
    severity: "error",
    kind: "VirtualService",
    name: "reviews-b",
    field: "spec.hosts[1]",
    message,
  });
  assert.match(a.message, /default\/reviews-a,default\/reviews-b/);
  expectCount(run, "IST0109", 2);
});

test("virtualservice.conflictingmeshgatewayhosts: gateway-only VirtualServices and other namespaces' short hosts are quiet", async () => {
  const run = await analyze(
    "virtualservice.conflictingmeshgatewayhosts",
    yaml(
      routeTo("reviews", "reviews", "{host: reviews}"),
      // The same short name in another namespace is another service.
      routeTo("reviews", "reviews", "{host: reviews}", "prod"),
      // Bound to a gateway only: not a mesh route.
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  gateways: [web]
  http:
  - route:
    - destination: {host: reviews}
`,
    ),
  );
  expectNone(run, "IST0109");
});

test("virtualservice.conflictingmeshgatewayhosts: VirtualServices exported only to their own namespaces do not conflict", async () => {
  const vs = (ns: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: ${ns}}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: api.example.com}
`;
  const run = await analyze("virtualservice.conflictingmeshgatewayhosts", yaml(vs("team-a"), vs("team-b")));
  expectNone(run, "IST0109");
});

test("virtualservice.conflictingmeshgatewayhosts: VirtualServices visible in one namespace conflict, whatever their exportTo", async () => {
  const vs = (ns: string, exportTo?: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: ${ns}}
spec:
  hosts: [api.example.com]${exportTo ? `\n  exportTo: ${exportTo}` : ""}
  http:
  - route:
    - destination: {host: api.example.com}
`;
  const run = await analyze(
    "virtualservice.conflictingmeshgatewayhosts",
    yaml(
      vs("team-a", '["."]'),
      // Exported to team-a: seen there with team-a's own.
      vs("team-b", '["team-a"]'),
      // Exported only to team-c, where no other is seen.
      vs("team-c", '["team-c"]'),
    ),
  );
  for (const namespace of ["team-a", "team-b"])
    expectFinding(run, {
      code: "IST0109",
      severity: "error",
      kind: "VirtualService",
      name: "api",
      namespace,
      field: "spec.hosts[0]",
      message: "The VirtualServices team-a/api,team-b/api associated with mesh gateway define the same host",
    });
  expectCount(run, "IST0109", 2);
  // Exported everywhere (exportTo unset), it is seen in every namespace and conflicts with each.
  const everywhere = await analyze(
    "virtualservice.conflictingmeshgatewayhosts",
    yaml(vs("team-a", '["."]'), vs("team-c", '["."]'), vs("shared")),
  );
  expectCount(everywhere, "IST0109", 3);
  const shared = everywhere.diagnostics.find((d) => d.namespace === "shared");
  assert.match(shared?.message ?? "", /team-a\/api,team-c\/api,shared\/api/);
});

// ---------------------------------------------------------------------------------------------------------
// virtualservice.unreachablerules (IST0130, IST0131)

test("virtualservice.unreachablerules: a repeated match is IST0131 and a rule with only repeats is IST0130", async () => {
  const run = await analyze(
    "virtualservice.unreachablerules",
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: first
    match:
    - name: api
      uri: {prefix: /api}
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews}
  - match:
    - uri: {prefix: /api}
      name: same-but-renamed
    route:
    - destination: {host: ratings}
  - match:
    - headers: {end-user: {exact: jason}}
    - uri: {prefix: /other}
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: reviews}
`,
  );
  expectFinding(run, {
    code: "IST0131",
    severity: "info",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[1].match[0]",
    message: "VirtualService rule #1 match #0 is not used (duplicate/overlapping match in rule #0).",
  });
  expectFinding(run, {
    code: "IST0130",
    severity: "warning",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[1]",
    message: "VirtualService rule #1 not used (all matches used by prior rules).",
  });
  expectFinding(run, {
    code: "IST0131",
    severity: "info",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[2].match[0]",
    message: "rule #2 match #0 is not used",
  });
  // Rule #2 still has one match of its own, and the catch-all is last: neither is unreachable.
  expectCount(run, "IST0130", 1);
  expectCount(run, "IST0131", 2);
});

test("virtualservice.unreachablerules: rules after a catch-all that is not last are IST0130", async () => {
  const run = await analyze(
    "virtualservice.unreachablerules",
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
  - match:
    - uri: {prefix: /api}
    route:
    - destination: {host: ratings}
`,
  );
  expectFinding(run, {
    code: "IST0130",
    severity: "warning",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[1]",
    message: "VirtualService rule #1 not used (route without matches defined before).",
  });
});

test("virtualservice.unreachablerules: distinct matches with a final catch-all are quiet", async () => {
  const run = await analyze(
    "virtualservice.unreachablerules",
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - uri: {prefix: /api}
    route:
    - destination: {host: reviews}
  - match:
    - uri: {prefix: /api}
      headers: {end-user: {exact: jason}}
    - uri: {exact: /api}
    route:
    - destination: {host: ratings}
  - route:
    - destination: {host: reviews}
  tcp:
  - match: [{port: 27017}]
    route:
    - destination: {host: mongo}
  - route:
    - destination: {host: mongo-fallback}
`,
  );
  expectNone(run, "IST0130");
  expectNone(run, "IST0131");
});

test("virtualservice.unreachablerules: TCP rules after a TCP catch-all are unreachable too", async () => {
  const run = await analyze(
    "virtualservice.unreachablerules",
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mongo, namespace: default}
spec:
  hosts: [mongo]
  tcp:
  - route:
    - destination: {host: mongo}
  - match: [{port: 27017}]
    route:
    - destination: {host: mongo-v2}
`,
  );
  expectFinding(run, {
    code: "IST0130",
    severity: "warning",
    kind: "VirtualService",
    name: "mongo",
    field: "spec.tcp[1]",
    message: "rule #1 not used",
  });
});

// ---------------------------------------------------------------------------------------------------------
// virtualservice.hostingateway (IST0132)

test("virtualservice.hostingateway: a VirtualService none of whose hosts the Gateway serves is IST0132", async () => {
  const run = await analyze(
    "virtualservice.hostingateway",
    yaml(
      gateway("web"),
      gateway("private", {
        ns: "edge",
        servers: `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["./*.example.com"]`,
      }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: blog, namespace: default}
spec:
  hosts: [blog.example.com, www.blog.example.com]
  gateways: [mesh, web, edge/private]
  http:
  - route:
    - destination: {host: blog}
`,
    ),
  );
  expectFinding(run, {
    code: "IST0132",
    severity: "warning",
    kind: "VirtualService",
    name: "blog",
    field: "spec.gateways[1]",
    message:
      "one or more host [blog.example.com www.blog.example.com] defined in VirtualService default/blog not found in Gateway default/web.",
  });
  // "./" makes the Gateway's hosts visible to VirtualServices of its own namespace only.
  expectFinding(run, {
    code: "IST0132",
    severity: "warning",
    kind: "VirtualService",
    name: "blog",
    field: "spec.gateways[2]",
    message: "not found in Gateway edge/private.",
  });
  expectCount(run, "IST0132", 2);
});

test("virtualservice.hostingateway: hosts served exactly, by wildcard or by namespace/host are quiet", async () => {
  const run = await analyze(
    "virtualservice.hostingateway",
    yaml(
      gateway("web", {
        servers: `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["shop.example.com", "default/*.blog.example.com"]`,
      }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com, unrelated.example.com]
  gateways: [web]
  http:
  - route:
    - destination: {host: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: blog, namespace: default}
spec:
  hosts: [www.blog.example.com]
  gateways: [default/web]
  http:
  - route:
    - destination: {host: blog}
`,
    ),
  );
  expectNone(run, "IST0132");
});

// ---------------------------------------------------------------------------------------------------------
// destinationrule.caCertificates (IST0128, IST0129)

test("destinationrule.caCertificates: SIMPLE/MUTUAL TLS without caCertificates, for the host and for a port", async () => {
  const run = await analyze(
    "destinationrule.caCertificates",
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: default}
spec:
  host: payments.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, sni: payments.example.com}
    portLevelSettings:
    - port: {number: 8443}
      tls:
        mode: MUTUAL
        clientCertificate: /etc/certs/client.pem
        privateKey: /etc/certs/key.pem
`,
  );
  expectFinding(run, {
    code: "IST0128",
    severity: "warning",
    kind: "DestinationRule",
    name: "payments",
    field: "spec.trafficPolicy.tls",
    message:
      "DestinationRule payments in namespace default has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: payments.example.com",
  });
  expectFinding(run, {
    code: "IST0129",
    severity: "warning",
    kind: "DestinationRule",
    name: "payments",
    field: "spec.trafficPolicy.portLevelSettings[0].tls",
    message:
      "has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: payments.example.com at port 8443",
  });
});

test("destinationrule.caCertificates: caCertificates, ISTIO_MUTUAL and insecureSkipVerify are quiet", async () => {
  const run = await analyze(
    "destinationrule.caCertificates",
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: default}
spec:
  host: payments.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: ISTIO_MUTUAL}
    - port: {number: 9443}
      tls: {mode: SIMPLE, insecureSkipVerify: true}
    - port: {number: 9444}
      tls: {mode: DISABLE}
`,
  );
  expectNone(run, "IST0128");
  expectNone(run, "IST0129");
});

// ---------------------------------------------------------------------------------------------------------
// destinationrule.subsetselectspods (IST0173)

test("destinationrule.subsetselectspods: a subset whose labels select none of the service's pods is IST0173", async () => {
  const run = await analyze(
    "destinationrule.subsetselectspods",
    yaml(
      service("reviews"),
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      // The only v3 pods run in another namespace, where the Service cannot select them.
      deployment("reviews-v3", { app: "reviews", version: "v3" }, { ns: "prod" }),
      // Nor does a v2 pod of another app count.
      deployment("ratings-v2", { app: "ratings", version: "v2" }),
      destinationRule("reviews", "reviews", { v1: "v1", v2: "v2", v3: "v3" }),
    ),
  );
  expectFinding(run, {
    code: "IST0173",
    severity: "error",
    kind: "DestinationRule",
    name: "reviews",
    field: "spec.subsets[1].labels",
    message:
      "The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    lineOf: "labels: {version: v2}",
  });
  expectFinding(run, {
    code: "IST0173",
    severity: "error",
    kind: "DestinationRule",
    name: "reviews",
    field: "spec.subsets[2].labels",
    message: "The Subset v3 defined in the DestinationRule",
  });
  expectCount(run, "IST0173", 2);
});

test("destinationrule.subsetselectspods: subsets matching the service's pods are quiet", async () => {
  const run = await analyze(
    "destinationrule.subsetselectspods",
    yaml(
      service("reviews"),
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      deployment("reviews-v2", { app: "reviews", version: "v2" }),
      destinationRule("reviews", "reviews.default.svc.cluster.local", { v1: "v1", v2: "v2" }),
    ),
  );
  expectNone(run, "IST0173");
});

// ---------------------------------------------------------------------------------------------------------
// destinationrule.unknownhost (IST0174)

test("destinationrule.unknownhost: a DestinationRule host that is no service is IST0174", async () => {
  const run = await analyze(
    "destinationrule.unknownhost",
    yaml(
      service("reviews"),
      destinationRule("ratings", "ratings", { v1: "v1" }),
      // A short name resolves in the rule's own namespace: reviews.prod.svc.cluster.local does not exist.
      destinationRule("reviews", "reviews", { v1: "v1" }, "prod"),
    ),
  );
  expectFinding(run, {
    code: "IST0174",
    severity: "warning",
    kind: "DestinationRule",
    name: "ratings",
    field: "spec.host",
    message: "The host ratings defined in the DestinationRule does not match any services in the mesh.",
    lineOf: "host: ratings",
  });
  expectFinding(run, {
    code: "IST0174",
    severity: "warning",
    kind: "DestinationRule",
    name: "reviews",
    namespace: "prod",
    field: "spec.host",
    message: "The host reviews defined",
  });
  expectCount(run, "IST0174", 2);
});

test("destinationrule.unknownhost: Service, FQDN, ServiceEntry and wildcard hosts are quiet", async () => {
  const run = await analyze(
    "destinationrule.unknownhost",
    yaml(
      service("reviews"),
      `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: default}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
`,
      destinationRule("reviews", "reviews", { v1: "v1" }),
      destinationRule("reviews-fqdn", "reviews.default.svc.cluster.local", { v1: "v1" }, "prod"),
      destinationRule("payments", "payments.example.com", {}),
      // A wildcard host stands for services that may come and go: not checked.
      destinationRule("everything", '"*.internal.example.org"', {}),
    ),
  );
  expectNone(run, "IST0174");
});

// ---------------------------------------------------------------------------------------------------------
// destinationrule.unusedsubset (ISM0001)

test("destinationrule.unusedsubset: a subset no route or mirror uses is ISM0001", async () => {
  const run = await analyze(
    "destinationrule.unusedsubset",
    yaml(
      destinationRule("reviews", "reviews", { v1: "v1", v2: "v2", v3: "v3" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
    mirror: {host: reviews, subset: v3}
`,
      // The same subset name for the same short host in another namespace is another service's.
      routeTo("reviews", "reviews", "{host: reviews, subset: v2}", "prod"),
    ),
  );
  expectFinding(run, {
    code: "ISM0001",
    severity: "info",
    kind: "DestinationRule",
    name: "reviews",
    field: "spec.subsets[1].name",
    message: "Subset v2 of reviews is not used by any VirtualService route.",
    lineOf: "- name: v2",
  });
  expectCount(run, "ISM0001", 1);
});

test("destinationrule.unusedsubset: subsets used by route, TCP route and mirrors are quiet", async () => {
  const run = await analyze(
    "destinationrule.unusedsubset",
    yaml(
      destinationRule("reviews", "reviews", { v1: "v1", v2: "v2", v3: "v3" }),
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    mirrors:
    - destination: {host: reviews, subset: v2}
  tcp:
  - route:
    - destination: {host: reviews, subset: v3}
`,
    ),
  );
  expectNone(run, "ISM0001");
});

test("destinationrule.unusedsubset: a wildcard DestinationRule's subset used through a matching host is used", async () => {
  const run = await analyze(
    "destinationrule.unusedsubset",
    yaml(
      destinationRule("shops", '"*.shop.example.com"', { v1: "v1" }),
      routeTo("eu", "eu.shop.example.com", "{host: eu.shop.example.com, subset: v1}"),
    ),
  );
  expectNone(run, "ISM0001");
});

// ---------------------------------------------------------------------------------------------------------
// gateway.selector (IST0101)

test("gateway.selector: a Gateway selector that matches no workload is IST0101", async () => {
  const run = await analyze(
    "gateway.selector",
    yaml(INGRESS_WORKLOAD, gateway("egress", { selector: "{istio: egressgateway, app: edge}" })),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "Gateway",
    name: "egress",
    field: "spec.selector",
    message: 'Referenced selector not found: "istio=egressgateway,app=edge"',
  });
});

test("gateway.selector: a selector matching a workload in any namespace is quiet", async () => {
  const run = await analyze("gateway.selector", yaml(INGRESS_WORKLOAD, gateway("web")));
  expectNone(run, "IST0101");
});

// ---------------------------------------------------------------------------------------------------------
// gateway.conflictinggateways (IST0145)

test("gateway.conflictinggateways: same workloads, same port, overlapping hosts is IST0145 on both", async () => {
  const run = await analyze(
    "gateway.conflictinggateways",
    yaml(
      gateway("shop", {
        servers: `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["shop.example.com"]`,
      }),
      gateway("wildcard", {
        ns: "edge",
        servers: `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["*.example.com"]`,
      }),
    ),
  );
  expectFinding(run, {
    code: "IST0145",
    severity: "error",
    kind: "Gateway",
    name: "shop",
    field: "spec.servers",
    message:
      "Conflict with gateways edge/wildcard (workload selector istio=ingressgateway, port 8080, hosts shop.example.com).",
  });
  expectFinding(run, {
    code: "IST0145",
    severity: "error",
    kind: "Gateway",
    name: "wildcard",
    field: "spec.servers",
    message: "Conflict with gateways default/shop (workload selector istio=ingressgateway, port 8080",
  });
  expectCount(run, "IST0145", 2);
});

test("gateway.conflictinggateways: other port, other hosts or other workloads are quiet", async () => {
  const run = await analyze(
    "gateway.conflictinggateways",
    yaml(
      INGRESS_WORKLOAD,
      deployment("egressgateway", { istio: "egressgateway" }, { ns: "istio-system", port: 8080 }),
      gateway("shop"),
      gateway("blog", {
        servers: `\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ["blog.example.com"]`,
      }),
      gateway("shop-tls", {
        servers: `\n  - port: {number: 8443, name: https, protocol: HTTPS}\n    hosts: ["shop.example.com"]\n    tls: {mode: SIMPLE, credentialName: shop-cert}`,
      }),
      gateway("shop-egress", { selector: "{istio: egressgateway}" }),
    ),
  );
  expectNone(run, "IST0145");
});

// ---------------------------------------------------------------------------------------------------------
// gateway.port (IST0162)

test("gateway.port: a Gateway port the gateway's Service does not expose is IST0162", async () => {
  const run = await analyze(
    "gateway.port",
    yaml(
      INGRESS_WORKLOAD,
      gateway("web", {
        servers: `
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
  - port: {number: 9000, name: http-admin, protocol: HTTP}
    hosts: ["admin.example.com"]`,
      }),
    ),
  );
  expectFinding(run, {
    code: "IST0162",
    severity: "warning",
    kind: "Gateway",
    name: "web",
    field: "spec.servers[1].port.number",
    message:
      "The gateway is listening on a target port (port 9000) that is not defined in the Service associated with its workload instances (Pod selector istio=ingressgateway).",
    lineOf: "number: 9000",
  });
  expectCount(run, "IST0162", 1);
});

test("gateway.port: ports that are the Service's target ports are quiet", async () => {
  const run = await analyze(
    "gateway.port",
    yaml(
      INGRESS_WORKLOAD,
      gateway("web", {
        servers: `
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["shop.example.com"]
    tls: {mode: SIMPLE, credentialName: shop-cert}`,
      }),
    ),
  );
  expectNone(run, "IST0162");
});

test("gateway.port: a Gateway port equal to the Service port but not its targetPort is IST0162", async () => {
  const run = await analyze(
    "gateway.port",
    yaml(
      INGRESS_WORKLOAD,
      gateway("web", {
        servers: `\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ["shop.example.com"]`,
      }),
    ),
  );
  expectFinding(run, {
    code: "IST0162",
    severity: "warning",
    kind: "Gateway",
    name: "web",
    field: "spec.servers[0].port.number",
    message: "(port 80)",
  });
});

test("gateway.port: a named targetPort is the container port of that name; one no pod names counts as the Service port", async () => {
  const run = await analyze(
    "gateway.port",
    yaml(
      `apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  template:
    metadata:
      labels: {istio: ingressgateway}
    spec:
      containers:
      - name: istio-proxy
        image: example/proxy:1.0
        ports: [{containerPort: 8080, name: http-envoy}]
`,
      service("istio-ingressgateway", {
        ns: "istio-system",
        selector: { istio: "ingressgateway" },
        ports:
          "[{name: http2, port: 80, targetPort: http-envoy}, {name: https, port: 443, targetPort: https-envoy}]",
      }),
      gateway("web", {
        servers: `
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["shop.example.com"]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: 80, name: http-plain, protocol: HTTP}
    hosts: ["plain.example.com"]`,
      }),
    ),
  );
  expectFinding(run, {
    code: "IST0162",
    severity: "warning",
    kind: "Gateway",
    name: "web",
    field: "spec.servers[2].port.number",
    message: "(port 80)",
  });
  expectCount(run, "IST0162", 1);
});

// ---------------------------------------------------------------------------------------------------------
// sidecar.selector (IST0101, IST0110, IST0111)

function sidecar(name: string, selector?: string, ns = "default"): string {
  return `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ${name}, namespace: ${ns}}
spec:${selector ? `\n  workloadSelector: {labels: ${selector}}` : ""}
  egress:
  - hosts: ["./*", "istio-system/*"]
`;
}

test("sidecar.selector: two Sidecars without selector in one namespace are IST0111", async () => {
  const run = await analyze(
    "sidecar.selector",
    yaml(sidecar("default"), sidecar("also-default"), sidecar("default", undefined, "prod")),
  );
  for (const name of ["default", "also-default"])
    expectFinding(run, {
      code: "IST0111",
      severity: "error",
      kind: "Sidecar",
      name,
      namespace: "default",
      field: "spec",
      message:
        'The Sidecars [default also-default] in namespace "default" have no workload selector, which can lead to undefined behavior.',
    });
  expectCount(run, "IST0111", 2);
});

test("sidecar.selector: a selector matching nothing is IST0101; two Sidecars for one workload are IST0110", async () => {
  const run = await analyze(
    "sidecar.selector",
    yaml(
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      // The matching workload is in another namespace: a Sidecar selects in its own only.
      deployment("ratings", { app: "ratings" }, { ns: "prod" }),
      sidecar("ratings", "{app: ratings}"),
      sidecar("reviews", "{app: reviews}"),
      sidecar("reviews-v1", "{version: v1}"),
    ),
  );
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "Sidecar",
    name: "ratings",
    field: "spec.workloadSelector",
    message: 'Referenced selector not found: "app=ratings"',
  });
  for (const name of ["reviews", "reviews-v1"])
    expectFinding(run, {
      code: "IST0110",
      severity: "error",
      kind: "Sidecar",
      name,
      field: "spec.workloadSelector",
      message:
        'The Sidecars [reviews reviews-v1] in namespace "default" select the same workload pod "reviews-v1"',
    });
  expectCount(run, "IST0101", 1);
});

test("sidecar.selector: one default Sidecar per namespace and selectors on distinct workloads are quiet", async () => {
  const run = await analyze(
    "sidecar.selector",
    yaml(
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      deployment("ratings", { app: "ratings" }),
      sidecar("default"),
      sidecar("default", undefined, "prod"),
      sidecar("reviews", "{app: reviews}"),
      sidecar("ratings", "{app: ratings}"),
    ),
  );
  expectNone(run, "IST0101");
  expectNone(run, "IST0110");
  expectNone(run, "IST0111");
});

// ---------------------------------------------------------------------------------------------------------
// auth.authorizationpolicies (IST0127, IST0101)

function authorizationPolicy(name: string, ns: string, body: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${ns}}
spec:
${body}`;
}

test("auth.authorizationpolicies: no matching workload is IST0127, an unknown source namespace is IST0101", async () => {
  const run = await analyze(
    "auth.authorizationpolicies",
    yaml(
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      authorizationPolicy(
        "ratings",
        "default",
        `  selector:
    matchLabels: {app: ratings}
  action: ALLOW
  rules:
  - from:
    - source: {namespaces: [default, "team-*"]}
    - source:
        notNamespaces: [staging]
`,
      ),
      authorizationPolicy("deny-all", "empty", "  {}\n"),
      authorizationPolicy(
        "global",
        "istio-system",
        `  selector:
    matchLabels: {app: nowhere}
`,
      ),
    ),
  );
  expectFinding(run, {
    code: "IST0127",
    severity: "warning",
    kind: "AuthorizationPolicy",
    name: "ratings",
    field: "spec.selector",
    message: "No matching workloads for this resource with the following labels: app=ratings",
  });
  expectFinding(run, {
    code: "IST0127",
    severity: "warning",
    kind: "AuthorizationPolicy",
    name: "deny-all",
    namespace: "empty",
    field: "spec",
    message: "No matching workloads for this resource with the following labels: ",
  });
  // In the root namespace a selector may match workloads of any namespace; this one matches none.
  expectFinding(run, {
    code: "IST0127",
    severity: "warning",
    kind: "AuthorizationPolicy",
    name: "global",
    namespace: "istio-system",
    field: "spec.selector",
    message: "app=nowhere",
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "AuthorizationPolicy",
    name: "ratings",
    field: "spec.rules[0].from[1].source.notNamespaces[0]",
    message: 'Referenced namespace not found: "staging"',
    lineOf: "notNamespaces: [staging]",
  });
  expectCount(run, "IST0101", 1);
});

test("auth.authorizationpolicies: matching workloads, known namespaces and mesh-wide policies are quiet", async () => {
  const run = await analyze(
    "auth.authorizationpolicies",
    yaml(
      namespace("staging"),
      deployment("reviews-v1", { app: "reviews", version: "v1" }),
      deployment("ratings", { app: "ratings" }, { ns: "prod" }),
      authorizationPolicy(
        "reviews",
        "default",
        `  selector:
    matchLabels: {app: reviews}
  rules:
  - from:
    - source: {namespaces: [default, prod, "team-*"], notNamespaces: [staging]}
`,
      ),
      authorizationPolicy(
        "namespace-wide",
        "prod",
        "  action: DENY\n  rules:\n  - from:\n    - source: {namespaces: [staging]}\n",
      ),
      authorizationPolicy("mesh-wide", "istio-system", "  {}\n"),
      authorizationPolicy("mesh-ratings", "istio-system", "  selector:\n    matchLabels: {app: ratings}\n"),
    ),
  );
  expectNone(run, "IST0127");
  expectNone(run, "IST0101");
});

// ---------------------------------------------------------------------------------------------------------
// service.portname (IST0118)

test("service.portname: a port whose name does not say its protocol is IST0118", async () => {
  const run = await analyze(
    "service.portname",
    service("reviews", {
      ports:
        "[{name: web, port: 8080, targetPort: 9080}, {name: http-metrics, port: 9090}, {name: foo-http, port: 9091}]",
    }),
  );
  expectFinding(run, {
    code: "IST0118",
    severity: "info",
    kind: "Service",
    name: "reviews",
    field: "spec.ports[0].name",
    message:
      "Port name web (port: 8080, targetPort: 9080) doesn't follow the naming convention of Istio port.",
  });
  expectFinding(run, {
    code: "IST0118",
    severity: "info",
    kind: "Service",
    name: "reviews",
    field: "spec.ports[2].name",
    message: "Port name foo-http (port: 9091, targetPort: 9091)",
  });
  expectCount(run, "IST0118", 2);
});

test("service.portname: protocol prefixes, appProtocol, UDP and ExternalName are quiet", async () => {
  const run = await analyze(
    "service.portname",
    yaml(
      service("reviews", {
        ports: `
  - {name: http, port: 9080}
  - {name: http2-internal, port: 9081}
  - {name: grpc-web-ui, port: 9082}
  - {name: tcp-db, port: 5432}
  - {name: tls, port: 9443}
  - {name: mongo-x, port: 27018}
  - {name: metrics, port: 9090, appProtocol: http}
  - {name: dns, port: 5353, protocol: UDP}
  - {name: mysql, port: 3306}`,
      }),
      `apiVersion: v1
kind: Service
metadata: {name: external, namespace: default}
spec:
  type: ExternalName
  externalName: db.example.com
  ports: [{name: postgres, port: 5432}]
`,
    ),
  );
  expectNone(run, "IST0118");
});

test("service.portname: Istio's well-known ports are 25, 53, 3306 and 27017, not 80, 443 or 6379", async () => {
  const run = await analyze(
    "service.portname",
    yaml(
      service("web", { ports: "[{name: web, port: 80, targetPort: 8080}, {name: secure, port: 443}]" }),
      service("dns", { ports: "[{name: dns, port: 53}]" }),
    ),
  );
  expectFinding(run, {
    code: "IST0118",
    severity: "info",
    kind: "Service",
    name: "web",
    field: "spec.ports[0].name",
    message: "Port name web (port: 80",
  });
  expectNone(run, "IST0118", "dns");
});

test("service.portname: an appProtocol Istio does not know is IST0118", async () => {
  const run = await analyze(
    "service.portname",
    service("reviews", { ports: "[{name: http, port: 9080, appProtocol: carrier-pigeon}]" }),
  );
  expectFinding(run, {
    code: "IST0118",
    severity: "info",
    kind: "Service",
    name: "reviews",
    field: "spec.ports[0].name",
    message: "doesn't follow the naming convention of Istio port",
  });
});

test("service.portname: Kubernetes' appProtocols, and names on well-known ports, are quiet", async () => {
  const run = await analyze(
    "service.portname",
    service("reviews", {
      ports: `
  - {name: web, port: 9080, appProtocol: kubernetes.io/h2c}
  - {name: socket, port: 9081, appProtocol: kubernetes.io/ws}
  - {name: secure-socket, port: 9443, appProtocol: kubernetes.io/wss}
  - {name: api, port: 9090, appProtocol: grpc-web}
  - {name: mail, port: 25}
  - {name: db, port: 27017, appProtocol: MONGO}`,
    }),
  );
  expectNone(run, "IST0118");
});

// ---------------------------------------------------------------------------------------------------------
// serviceentry.addresses (IST0134)

function serviceEntry(name: string, body: string, ns = "default"): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: ${ns}}
spec:
${body}`;
}

test("serviceentry.addresses: TCP (or unspecified) ports without addresses are IST0134", async () => {
  const run = await analyze(
    "serviceentry.addresses",
    serviceEntry(
      "postgres",
      `  hosts: [db.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 5432, name: tcp-postgres, protocol: TCP}
  - {number: 8080, name: http-admin, protocol: HTTP}
  - {number: 6432, name: pgbouncer}
`,
    ),
  );
  for (const i of [0, 2])
    expectFinding(run, {
      code: "IST0134",
      severity: "warning",
      kind: "ServiceEntry",
      name: "postgres",
      field: `spec.ports[${i}]`,
      message: "ServiceEntry addresses are required for this protocol.",
    });
  expectCount(run, "IST0134", 2);
});

test("serviceentry.addresses: addresses given, or HTTP/TLS ports, are quiet", async () => {
  const run = await analyze(
    "serviceentry.addresses",
    yaml(
      serviceEntry(
        "postgres",
        `  hosts: [db.example.com]
  addresses: [203.0.113.10]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 5432, name: tcp-postgres, protocol: TCP}]
`,
      ),
      serviceEntry(
        "api",
        `  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
`,
      ),
    ),
  );
  expectNone(run, "IST0134");
});

// ---------------------------------------------------------------------------------------------------------
// serviceentry.conflictingprotocol (IST0177)

const apiEntry = (name: string, protocol: string, ns = "default", exportTo = "") =>
  serviceEntry(
    name,
    `  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS${exportTo ? `\n  exportTo: ${exportTo}` : ""}
  ports: [{number: 443, name: api, protocol: ${protocol}}]
`,
    ns,
  );

test("serviceentry.conflictingprotocol: one host and port with two protocols is IST0177 on both", async () => {
  const run = await analyze(
    "serviceentry.conflictingprotocol",
    yaml(apiEntry("api-https", "HTTPS"), apiEntry("api-tls", "TLS", "edge")),
  );
  const message =
    'Multiple ServiceEntries (default/api-https, edge/api-tls) define the same host "api.example.com" and port 443 with conflicting protocols (HTTPS, TLS).';
  expectFinding(run, {
    code: "IST0177",
    severity: "warning",
    kind: "ServiceEntry",
    name: "api-https",
    field: "spec.ports",
    message,
  });
  expectFinding(run, {
    code: "IST0177",
    severity: "warning",
    kind: "ServiceEntry",
    name: "api-tls",
    namespace: "edge",
    field: "spec.ports",
    message,
  });
});

test("serviceentry.conflictingprotocol: the same protocol (in any case) is quiet", async () => {
  const run = await analyze(
    "serviceentry.conflictingprotocol",
    yaml(apiEntry("api-https", "HTTPS"), apiEntry("api-https-again", "https", "edge")),
  );
  expectNone(run, "IST0177");
});

test("serviceentry.conflictingprotocol: ServiceEntries exported only to their own namespaces do not conflict", async () => {
  const run = await analyze(
    "serviceentry.conflictingprotocol",
    yaml(apiEntry("api-https", "HTTPS", "team-a", '["."]'), apiEntry("api-tls", "TLS", "team-b", '["."]')),
  );
  expectNone(run, "IST0177");
});

test("serviceentry.conflictingprotocol: an entry exported everywhere conflicts with one exported to its own namespace", async () => {
  const run = await analyze(
    "serviceentry.conflictingprotocol",
    yaml(
      apiEntry("api-https", "HTTPS", "team-a", '["."]'),
      apiEntry("api-tls", "TLS", "team-b"),
      // Exported only to team-c, which sees api-tls (exported everywhere) but not api-https.
      apiEntry("api-https-c", "HTTPS", "team-c", '["."]'),
    ),
  );
  for (const [name, namespace] of [
    ["api-https", "team-a"],
    ["api-tls", "team-b"],
    ["api-https-c", "team-c"],
  ] as const)
    expectFinding(run, {
      code: "IST0177",
      severity: "warning",
      kind: "ServiceEntry",
      name,
      namespace,
      field: "spec.ports",
      message: 'define the same host "api.example.com" and port 443 with conflicting protocols (HTTPS, TLS)',
    });
  expectCount(run, "IST0177", 3);
});

// ---------------------------------------------------------------------------------------------------------
// annotations (IST0108)

test("annotations: an annotation under Istio's prefixes that Istio does not define is IST0108", async () => {
  const run = await analyze(
    "annotations",
    `apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
  namespace: default
  annotations:
    sidecar.istio.io/injet: "false"
    example.com/istio.io: "not Istio's prefix"
spec:
  selector:
    matchLabels: {app: reviews}
  template:
    metadata:
      labels: {app: reviews}
    spec:
      containers:
      - {name: app, image: example/reviews:1.0}
`,
  );
  expectFinding(run, {
    code: "IST0108",
    severity: "warning",
    kind: "Deployment",
    name: "reviews",
    field: 'metadata.annotations["sidecar.istio.io/injet"]',
    message: "Unknown annotation: sidecar.istio.io/injet",
    lineOf: "sidecar.istio.io/injet",
  });
  expectCount(run, "IST0108", 1);
});

test("annotations: Istio's own annotations and other prefixes are quiet", async () => {
  const run = await analyze(
    "annotations",
    `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations:
    istio.io/rev: canary
    topology.istio.io/network: network-1
    example.com/owner: team-shop
    kubectl.kubernetes.io/last-applied-configuration: "{}"
`,
  );
  expectNone(run, "IST0108");
});

test("annotations: every annotation Istio defines is known (traffic.istio.io/nodeSelector on a Service)", async () => {
  const run = await analyze(
    "annotations",
    `apiVersion: v1
kind: Service
metadata:
  name: eastwest
  namespace: default
  annotations:
    traffic.istio.io/nodeSelector: "topology.kubernetes.io/zone=eu-1a"
spec:
  type: NodePort
  selector: {istio: eastwestgateway}
  ports: [{name: tls, port: 15443}]
`,
  );
  expectNone(run, "IST0108");
});

// ---------------------------------------------------------------------------------------------------------
// resources.duplicate (ISM0002) and the effective set

test("resources.duplicate: a resource defined twice across files: the later replaces the earlier", async () => {
  const first = join(root, "1-reviews.yaml");
  const second = join(root, "2-reviews.yaml");
  // The first definition routes to a subset no rule defines; if the analyzers still saw it, IST0101 would
  // be reported. Two definitions of one VirtualService are not two VirtualServices for one host (IST0109).
  writeFileSync(
    first,
    yaml(
      service("reviews"),
      destinationRule("reviews", "reviews", { v1: "v1" }),
      routeTo("reviews", "reviews", "{host: reviews, subset: v9}"),
    ),
  );
  writeFileSync(
    second,
    `# the fixed version\n${routeTo("reviews", "reviews", "{host: reviews, subset: v1}")}`,
  );
  const loaded = await loadPaths([first, second]);
  assert.deepEqual(loaded.diagnostics, []);
  const run: Run = { ...(await analyzeLoaded(undefined, loaded.resources)), text: "" };
  const dupes = run.diagnostics.filter((d) => d.code === "ISM0002");
  assert.equal(dupes.length, 1, show(run.diagnostics));
  const d = dupes[0]!;
  assert.equal(d.severity, "warning");
  assert.equal(d.kind, "VirtualService");
  assert.equal(d.namespace, "default");
  assert.equal(d.name, "reviews");
  assert.equal(d.field, "metadata.name");
  assert.equal(d.file, second);
  assert.equal(d.line, 4, "the later definition's metadata line");
  const firstLine = lineOf(readText(first), "kind: VirtualService") - 1;
  assert.equal(
    d.message,
    `VirtualService default/reviews is also defined at ${first}:${firstLine}; this later definition replaces it`,
  );
  firedIn.add("resources.duplicate");
  expectNone(run, "IST0109");
  expectNone(run, "IST0101");
  // Every other finding is about the one effective VirtualService, and there are none.
  assert.deepEqual(
    run.diagnostics.filter((x) => x.code !== "ISM0002"),
    [],
    show(run.diagnostics),
  );
});

test("resources.duplicate: same name in another namespace or of another kind is not a duplicate", async () => {
  const run = await analyze(
    "resources.duplicate",
    yaml(
      routeTo("reviews", "reviews", "{host: reviews}"),
      routeTo("reviews", "reviews", "{host: reviews}", "prod"),
      destinationRule("reviews", "reviews", { v1: "v1" }),
      service("reviews"),
    ),
  );
  expectNone(run, "ISM0002");
});

test("resources.duplicate: a duplicate in one file is reported at the later document", async () => {
  const run = await analyze(
    "resources.duplicate",
    yaml(service("reviews"), service("reviews", { ports: "[{name: http, port: 8080}]" })),
  );
  expectFinding(run, {
    code: "ISM0002",
    severity: "warning",
    kind: "Service",
    name: "reviews",
    field: "metadata.name",
    message: "Service default/reviews is also defined at fixture.yaml:1; this later definition replaces it",
  });
  const d = run.diagnostics.find((x) => x.code === "ISM0002")!;
  assert.ok(d.line! > 10, "points at the second document");
});

function readText(path: string): string {
  return readFileSync(path, "utf8");
}

// ---------------------------------------------------------------------------------------------------------
// Gating: selector and host analyzers stay quiet when the load does not say which workloads/services exist

const SELECTING = yaml(
  gateway("web", { selector: "{istio: ingressgateway}" }),
  sidecar("reviews", "{app: reviews}"),
  authorizationPolicy("reviews", "default", "  selector:\n    matchLabels: {app: reviews}\n"),
  service("reviews"),
  destinationRule("reviews", "reviews", { v1: "v1" }),
  routeTo("reviews", "reviews", "{host: reviews, subset: v1}"),
);

test("workloads known: without any Deployment or WorkloadEntry, selector analyzers are quiet", async () => {
  const run = await analyze(undefined, SELECTING);
  for (const code of ["IST0101", "IST0127", "IST0162", "IST0173"]) expectNone(run, code);
  // Once one workload is loaded, the load is taken to list them all, and nothing selects it.
  const known = await analyze(undefined, yaml(SELECTING, deployment("ratings", { app: "ratings" })));
  expectFinding(known, {
    code: "IST0101",
    severity: "error",
    kind: "Gateway",
    name: "web",
    field: "spec.selector",
    message: 'Referenced selector not found: "istio=ingressgateway"',
  });
  expectFinding(known, {
    code: "IST0101",
    severity: "error",
    kind: "Sidecar",
    name: "reviews",
    field: "spec.workloadSelector",
    message: 'Referenced selector not found: "app=reviews"',
  });
  expectFinding(known, {
    code: "IST0127",
    severity: "warning",
    kind: "AuthorizationPolicy",
    name: "reviews",
    field: "spec.selector",
    message: "app=reviews",
  });
  expectFinding(known, {
    code: "IST0173",
    severity: "error",
    kind: "DestinationRule",
    name: "reviews",
    field: "spec.subsets[0].labels",
    message: "The Subset v1",
  });
});

test("workloads known: a WorkloadEntry counts as a workload", async () => {
  const run = await analyze(
    undefined,
    yaml(
      `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec:
  address: 10.0.0.5
  labels: {app: reviews, version: v1}
`,
      SELECTING,
    ),
  );
  expectNone(run, "IST0127");
  expectNone(run, "IST0173");
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "Gateway",
    name: "web",
    field: "spec.selector",
    message: "istio=ingressgateway",
  });
});

test("services known: without any Service or ServiceEntry, host analyzers are quiet", async () => {
  const text = yaml(
    routeTo("reviews", "reviews", "{host: reviews, port: {number: 9080}}"),
    destinationRule("reviews", "reviews", {}),
  );
  const run = await analyze(undefined, text);
  expectNone(run, "IST0101");
  expectNone(run, "IST0174");
  const known = await analyze(undefined, yaml(text, service("ratings")));
  expectFinding(known, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    field: "spec.http[0].route[0].destination.host",
    message: 'Referenced host not found: "reviews"',
  });
  expectFinding(known, {
    code: "IST0174",
    severity: "warning",
    kind: "DestinationRule",
    name: "reviews",
    field: "spec.host",
    message: "The host reviews defined in the DestinationRule does not match any services in the mesh.",
  });
});

// ---------------------------------------------------------------------------------------------------------
// Short host names

test("short host names: `reviews` in namespace default is reviews.default, not reviews of another namespace", async () => {
  const services = yaml(service("reviews", { ns: "default" }), service("details", { ns: "prod" }));
  const run = await analyze(
    "virtualservice.destinationhost",
    yaml(
      services,
      routeTo("reviews", "reviews", "{host: reviews}"),
      routeTo(
        "reviews-fqdn",
        "reviews.default.svc.cluster.local",
        "{host: reviews.default.svc.cluster.local}",
      ),
      // Seen from prod, "reviews" is reviews.prod.svc.cluster.local, which does not exist.
      routeTo("reviews", "reviews", "{host: reviews}", "prod"),
      // Across namespaces the FQDN works.
      routeTo("reviews-remote", "reviews", "{host: reviews.default.svc.cluster.local}", "prod"),
      // "details" exists in prod only.
      routeTo("details", "details", "{host: details}"),
    ),
  );
  expectNone(run, "IST0101", "reviews-fqdn");
  expectNone(run, "IST0101", "reviews-remote");
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "reviews",
    namespace: "prod",
    field: "spec.http[0].route[0].destination.host",
    message: 'Referenced host not found: "reviews"',
  });
  expectFinding(run, {
    code: "IST0101",
    severity: "error",
    kind: "VirtualService",
    name: "details",
    namespace: "default",
    field: "spec.http[0].route[0].destination.host",
    message: 'Referenced host not found: "details"',
  });
  const inDefault = run.diagnostics.filter((d) => d.name === "reviews" && d.namespace === "default");
  assert.deepEqual(inDefault, [], show(inDefault));
  expectCount(run, "IST0101", 2);
});

// ---------------------------------------------------------------------------------------------------------
// A complete, consistent config

const BOOKINFO = yaml(
  namespace("bookinfo"),
  INGRESS_WORKLOAD,
  `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: bookinfo}
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["bookinfo.example.com"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["bookinfo.example.com"]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
`,
  service("productpage", { ns: "bookinfo" }),
  service("reviews", { ns: "bookinfo" }),
  service("ratings", { ns: "bookinfo", ports: "[{name: http, port: 9080}, {name: grpc-api, port: 9090}]" }),
  `apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage-v1
  namespace: bookinfo
  annotations:
    sidecar.istio.io/inject: "true"
spec:
  replicas: 2
  selector:
    matchLabels: {app: productpage, version: v1}
  template:
    metadata:
      labels: {app: productpage, version: v1}
      annotations:
        proxy.istio.io/config: "holdApplicationUntilProxyStarts: true"
    spec:
      containers:
      - name: productpage
        image: example/productpage:1.0
        ports: [{containerPort: 9080}]
`,
  deployment("reviews-v1", { app: "reviews", version: "v1" }, { ns: "bookinfo" }),
  deployment("reviews-v2", { app: "reviews", version: "v2" }, { ns: "bookinfo" }),
  deployment("ratings-v1", { app: "ratings", version: "v1" }, { ns: "bookinfo" }),
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: bookinfo}
spec:
  hosts: ["bookinfo.example.com"]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    route:
    - destination: {host: productpage, port: {number: 9080}}
  - match:
    - uri: {prefix: /api/v1/reviews}
    route:
    - destination: {host: reviews.bookinfo.svc.cluster.local}
    timeout: 5s
  - route:
    - destination: {host: productpage}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v1, port: {number: 9080}}
    fault:
      delay: {percentage: {value: 10}, fixedDelay: 2s}
`,
  `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
    connectionPool:
      http: {http1MaxPendingRequests: 100}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings.bookinfo.svc.cluster.local
  subsets:
  - name: v1
    labels: {version: v1}
`,
  serviceEntry(
    "payments",
    `  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
`,
    "bookinfo",
  ),
  `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: bookinfo}
spec:
  host: payments.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/certs/payments-ca.pem, sni: payments.example.com}
`,
  sidecar("default", undefined, "bookinfo"),
  authorizationPolicy(
    "reviews-viewer",
    "bookinfo",
    `  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/bookinfo/sa/productpage"]
        namespaces: [bookinfo]
    to:
    - operation: {methods: [GET]}
`,
  ),
  `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec:
  mtls: {mode: STRICT}
`,
);

test("a complete, consistent config yields no diagnostics at all", async () => {
  const run = await analyze(undefined, BOOKINFO);
  assert.deepEqual(run.diagnostics, [], `expected none; got:\n${show(run.diagnostics)}`);
});

test("the complete config, broken in one place, yields exactly that finding", async () => {
  // Guards the test above: the fixture is rich enough for the analyzers to look at.
  const run = await analyze(
    undefined,
    BOOKINFO.replace("subset: v2}\n    retries", "subset: v3}\n    retries"),
  );
  assert.deepEqual(
    run.diagnostics.map((d) => `${d.code} ${d.kind} ${d.name} ${d.field}`),
    ["IST0101 VirtualService reviews spec.http[0].route[0].destination.subset"],
    show(run.diagnostics),
  );
});

// ---------------------------------------------------------------------------------------------------------
// envoyfilter.translation (ISM0003, ISM0004): what isthmus does not apply of an EnvoyFilter

const LOCAL_RATELIMIT = (o: {
  context: string;
  enforced?: number;
  extra?: string;
}) => `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: local-rl, namespace: default }
spec:
  workloadSelector: { labels: { app: productpage } }
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: ${o.context}
        listener: { filterChain: { filter: { name: envoy.filters.network.http_connection_manager } } }
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket: { max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { default_value: { numerator: ${o.enforced ?? 100}, denominator: HUNDRED } }
${o.extra ?? ""}`;

test("envoyfilter.translation: a local rate limit isthmus applies as written is not reported", async () => {
  const run = await analyze("envoyfilter.translation", LOCAL_RATELIMIT({ context: "SIDECAR_OUTBOUND" }));
  expectNone(run, "ISM0003");
  expectNone(run, "ISM0004");
});

test("envoyfilter.translation: SIDECAR_INBOUND and partial enforcement are not applied (ISM0003)", async () => {
  const inbound = await analyze("envoyfilter.translation", LOCAL_RATELIMIT({ context: "SIDECAR_INBOUND" }));
  expectFinding(inbound, {
    code: "ISM0003",
    severity: "warning",
    kind: "EnvoyFilter",
    name: "local-rl",
    field: "spec.configPatches[0].match.context",
    message: "no inbound listener yet",
    lineOf: "context: SIDECAR_INBOUND",
  });
  const half = await analyze(
    "envoyfilter.translation",
    LOCAL_RATELIMIT({ context: "GATEWAY", enforced: 50 }),
  );
  expectFinding(half, {
    code: "ISM0003",
    severity: "warning",
    kind: "EnvoyFilter",
    name: "local-rl",
    field: "spec.configPatches[0].patch.value.typed_config.value.filter_enforced",
    message: "enforces the limit for 50% of requests; isthmus enforces it on every request",
    lineOf: "filter_enforced:",
  });
});

test("envoyfilter.translation: other patches are named (ISM0003); response headers are not added (ISM0004)", async () => {
  const run = await analyze(
    "envoyfilter.translation",
    LOCAL_RATELIMIT({
      context: "GATEWAY",
      extra: `              response_headers_to_add: [{ header: { key: x-local-rate-limit, value: "true" } }]
    - applyTo: CLUSTER
      match: { cluster: { service: ratelimit.default.svc.cluster.local } }
      patch: { operation: ADD, value: { name: rate_limit_cluster } }
    - applyTo: HTTP_FILTER
      match: { context: GATEWAY }
      patch:
        operation: INSERT_BEFORE
        value: { name: envoy.filters.http.ratelimit }
`,
    }),
  );
  expectFinding(run, {
    code: "ISM0004",
    severity: "warning",
    kind: "EnvoyFilter",
    name: "local-rl",
    field: "spec.configPatches[0].patch.value.typed_config.value.response_headers_to_add",
    message: "not added to the 429 response",
    lineOf: "response_headers_to_add",
  });
  expectFinding(run, {
    code: "ISM0003",
    severity: "warning",
    kind: "EnvoyFilter",
    name: "local-rl",
    field: "spec.configPatches[1].applyTo",
    message: "applyTo CLUSTER is not translated",
    lineOf: "applyTo: CLUSTER",
  });
  expectFinding(run, {
    code: "ISM0003",
    severity: "warning",
    kind: "EnvoyFilter",
    name: "local-rl",
    field: "spec.configPatches[2].patch.value.name",
    message: "HTTP filter envoy.filters.http.ratelimit is not translated",
    lineOf: "name: envoy.filters.http.ratelimit",
  });
});

// ---------------------------------------------------------------------------------------------------------

test("every analyzer has a test where it fires and one where it stays quiet", () => {
  const names = ANALYZERS.map((a) => a.name);
  assert.deepEqual(
    names.filter((n) => !firedIn.has(n)),
    [],
    "analyzers never seen firing",
  );
  assert.deepEqual(
    names.filter((n) => !quietIn.has(n)),
    [],
    "analyzers never seen quiet",
  );
});
