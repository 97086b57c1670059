// npm run bench:validate — load and validate 10,000 resources (a realistic mix of Istio and Kubernetes
// kinds in 20 files), and report resources per second and peak memory. Ends with one JSON line.
// No peer is run: istioctl is not installable here. The parse-only row shows the floor set by YAML parsing.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { loadPaths } from "../src/api/load/index.ts";
import { validateResources } from "../src/api/validate/index.ts";

const TOTAL = 10_000;
const FILES = 20;

function resource(i: number): string {
  const ns = `team-${i % 50}`;
  switch (i % 7) {
    case 0:
      return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  hosts: [svc-${i}]
  http:
  - match:
    - uri: {prefix: /api/v1}
      headers:
        x-canary: {exact: "true"}
    route:
    - destination: {host: svc-${i}, subset: v2}
  - route:
    - destination: {host: svc-${i}, subset: v1}
      weight: 90
    - destination: {host: svc-${i}, subset: v2}
      weight: 10
    timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,reset,connect-failure"}
`;
    case 1:
      return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  host: svc-${i}
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 500ms}
      http: {http1MaxPendingRequests: 50}
    outlierDetection: {consecutive5xxErrors: 5, interval: 5s, baseEjectionTime: 30s}
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`;
    case 2:
      return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-${i}, namespace: ${ns}}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["app-${i}.example.com"]
`;
    case 3:
      return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-${i}, namespace: ${ns}}
spec:
  hosts: [api-${i}.example.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
`;
    case 4:
      return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap-${i}, namespace: ${ns}}
spec:
  selector: {matchLabels: {app: svc-${i}}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/${ns}/sa/frontend"]}
    to:
    - operation: {methods: [GET, POST], paths: ["/api/*"]}
    when:
    - key: request.headers[x-tenant]
      values: [acme]
`;
    case 5:
      return `apiVersion: v1
kind: Service
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  selector: {app: svc-${i}}
  ports:
  - {name: http, port: 80, targetPort: 8080}
`;
    default:
      return `apiVersion: apps/v1
kind: Deployment
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  replicas: 2
  selector: {matchLabels: {app: svc-${i}, version: v1}}
  template:
    metadata: {labels: {app: svc-${i}, version: v1}}
    spec:
      containers:
      - name: app
        image: example/app:1
        ports: [{containerPort: 8080}]
        env: [{name: MODE, value: prod}]
`;
  }
}

const dir = mkdtempSync(join(tmpdir(), "isthmus-bench-validate-"));
try {
  const perFile = TOTAL / FILES;
  for (let f = 0; f < FILES; f++) {
    const docs: string[] = [];
    for (let i = f * perFile; i < (f + 1) * perFile; i++) docs.push(resource(i));
    writeFileSync(join(dir, `part-${f}.yaml`), docs.join("---\n"));
  }

  // Warm-up on a small copy so that module loading and JIT are not billed to the measured run.
  const warm = join(dir, "warm");
  mkdirSync(warm);
  writeFileSync(join(warm, "w.yaml"), Array.from({ length: 70 }, (_, i) => resource(i)).join("---\n"));
  await validateResources((await loadPaths([warm])).resources);
  rmSync(warm, { recursive: true });

  const t0 = performance.now();
  const loaded = await loadPaths([dir]);
  const t1 = performance.now();
  const validated = await validateResources(loaded.resources);
  const t2 = performance.now();

  const errors = [...loaded.diagnostics, ...validated.diagnostics].filter((d) => d.severity === "error");
  if (loaded.resources.length !== TOTAL || errors.length > 0) {
    console.error(
      `bench setup broken: ${loaded.resources.length} resources, ${errors.length} errors`,
      errors.slice(0, 3),
    );
    process.exit(1);
  }
  const seconds = (t2 - t0) / 1000;
  const rssMb = process.resourceUsage().maxRSS / 1024;
  const rows = [
    ["read + parse YAML", `${(t1 - t0).toFixed(0)} ms`, `${Math.round(TOTAL / ((t1 - t0) / 1000))}/s`],
    [
      "validate (schema + Istio rules)",
      `${(t2 - t1).toFixed(0)} ms`,
      `${Math.round(TOTAL / ((t2 - t1) / 1000))}/s`,
    ],
    ["total", `${(t2 - t0).toFixed(0)} ms`, `${Math.round(TOTAL / seconds)}/s`],
  ];
  console.log(`isthmus validate: ${TOTAL} resources in ${FILES} files (node ${process.version})\n`);
  console.log(`${"stage".padEnd(34)}${"time".padStart(10)}${"resources/s".padStart(14)}`);
  for (const [a, b, c] of rows) console.log(`${a!.padEnd(34)}${b!.padStart(10)}${c!.padStart(14)}`);
  console.log(`\npeak RSS: ${rssMb.toFixed(0)} MB`);
  const result = { resources_per_s: Math.round(TOTAL / seconds), rss_mb: Math.round(rssMb) };
  const out = join(import.meta.dirname, "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, "validate.json"),
    `${JSON.stringify({ ...result, at: new Date().toISOString() })}\n`,
  );
  console.log(JSON.stringify(result));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
