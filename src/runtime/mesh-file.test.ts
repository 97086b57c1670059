// The mesh file and the plan made from it: every mistake named with file, line and field; the environment
// and addresses the runtime promises apps; Kubernetes' $(VAR) expansion; and random mutations of a good file
// never throwing.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { formatDiagnostic } from "../api/diagnostic.ts";
import { readMeshFile } from "./mesh-file.ts";
import { expand, planMesh } from "./plan.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function meshDir(mesh: string, manifests: Record<string, string> = { "app/app.yaml": APP }): string {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-mesh-file-"));
  dirs.push(dir);
  writeFileSync(join(dir, "mesh.yaml"), mesh);
  for (const [path, text] of Object.entries(manifests)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const APP = `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {greeting: hello}
---
apiVersion: v1
kind: Service
metadata: {name: redis-master, namespace: shop}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379, targetPort: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: [node, web.mjs]
        args: ["--listen", "$(HOST):8080", "$$(HOST)", "$(UNDEFINED)"]
        env:
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: settings, key: greeting}}}
        - {name: WHO, value: "$(POD_NAME) in $(POD_NAMESPACE)"}
        ports: [{containerPort: 8080}]
`;

const MESH = `apiVersion: isthmus.io/v1alpha1
kind: Mesh
metadata: {name: shop}
spec:
  clusters:
  - name: east
    locality: us-east/zone1
    manifests: [app]
    ingress: {port: 18080}
`;

const messages = (dir: string) => {
  const r = readMeshFile(dir);
  assert.equal(r.ok, false);
  return r.ok ? [] : r.diagnostics.map((d) => formatDiagnostic(d));
};

test("a good mesh file: clusters with defaults, manifests resolved", () => {
  const dir = meshDir(MESH);
  const r = readMeshFile(dir);
  assert.ok(r.ok);
  assert.equal(r.mesh.trustDomain, "cluster.local");
  assert.deepEqual(
    r.mesh.clusters.map((c) => [c.name, c.network, c.locality, c.ingressPort, c.private, c.manifests]),
    [["east", "east", "us-east/zone1", 18080, false, [join(dir, "app")]]],
  );
});

const BAD: Array<[string, string, RegExp]> = [
  [
    "unknown field with a hint",
    MESH.replace("locality:", "localty:"),
    /mesh\.yaml:7:\d+ Mesh shop spec\.clusters\[0\]\.localty: unknown field \(did you mean "locality"\?\)/,
  ],
  ["wrong kind", MESH.replace("kind: Mesh", "kind: Mash"), /mesh\.yaml:2:7 Mash shop kind: must be Mesh/],
  [
    "wrong apiVersion",
    MESH.replace("v1alpha1", "v1"),
    /mesh\.yaml:1:\d+ Mesh shop apiVersion: must be isthmus\.io\/v1alpha1/,
  ],
  [
    "a cluster name that is not a DNS label",
    MESH.replace("name: east", "name: East_1"),
    /mesh\.yaml:6:\d+ Mesh shop spec\.clusters\[0\]\.name: must be a DNS label/,
  ],
  [
    "a bad locality",
    MESH.replace("us-east/zone1", "us-east"),
    /mesh\.yaml:7:\d+ Mesh shop spec\.clusters\[0\]\.locality: must be region\/zone/,
  ],
  [
    "a missing manifest",
    MESH.replace("[app]", "[app, nope]"),
    /mesh\.yaml:8:\d+ Mesh shop spec\.clusters\[0\]\.manifests\[1\]: nope does not exist/,
  ],
  [
    "a manifest outside DIR",
    MESH.replace("[app]", "[../etc]"),
    /manifests\[0\]: \.\.\/etc is outside the mesh's directory/,
  ],
  [
    "a bad port",
    MESH.replace("18080", "70000"),
    /mesh\.yaml:9:\d+ Mesh shop spec\.clusters\[0\]\.ingress\.port: must be a port number/,
  ],
  [
    "no clusters",
    MESH.replace(/ {2}clusters:[\s\S]*/, "  clusters: []\n"),
    /spec\.clusters: must list at least one cluster/,
  ],
  [
    "two clusters, one name, one port",
    `${MESH}  - name: east\n    manifests: [app]\n    ingress: {port: 18080}\n`,
    /cluster "east" is defined twice[\s\S]*port 18080 is also cluster east's/,
  ],
  ["two documents", `${MESH}---\n${MESH}`, /must hold exactly one document/],
  ["not YAML", "a: [b\n", /mesh\.yaml:\d+:\d+/],
];

for (const [name, text, want] of BAD)
  test(`refused: ${name}`, () => {
    assert.match(messages(meshDir(text)).join("\n"), want);
  });

test("no mesh file", () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-mesh-file-"));
  dirs.push(dir);
  assert.match(messages(dir).join("\n"), /no mesh\.yaml in .* \(the local runtime's mesh file: kind Mesh\)/);
});

test("the plan: addresses, identities, the app environment, $(VAR) expansion, service variables", async () => {
  const r = readMeshFile(meshDir(MESH));
  assert.ok(r.ok);
  const planned = await planMesh(r.mesh);
  assert.ok(planned.ok, planned.ok ? "" : planned.diagnostics.map((d) => formatDiagnostic(d)).join("\n"));
  const [cluster] = planned.plan.clusters;
  assert.equal(cluster!.controlPlaneAddress, "127.20.0.1");
  assert.deepEqual(
    cluster!.pods.map((p) => [p.name, p.address, p.serviceAccount, p.labels]),
    [
      ["web-0", "127.20.1.1", "web", { app: "web", version: "v1" }],
      ["web-1", "127.20.1.2", "web", { app: "web", version: "v1" }],
    ],
  );
  const c = cluster!.pods[1]!.containers[0]!;
  assert.deepEqual(c.argv, ["node", "web.mjs", "--listen", "127.20.1.2:8080", "$(HOST)", "$(UNDEFINED)"]);
  assert.equal(c.env.HOST, "127.20.1.2");
  assert.equal(c.env.HTTP_PROXY, "http://127.20.1.2:15001");
  assert.equal(c.env.GREETING, "hello");
  assert.equal(c.env.WHO, "web-1 in shop");
  assert.equal(c.env.WEB_SERVICE_HOST, "web.shop.svc.cluster.local");
  assert.equal(c.env.WEB_SERVICE_PORT, "80");
  // A TCP service: a local port on the pod's own address, tunnelled through its sidecar.
  assert.equal(c.env.REDIS_MASTER_SERVICE_HOST, "127.20.1.2");
  assert.equal(c.env.REDIS_MASTER_SERVICE_PORT, "20000");
  assert.equal(c.env.REDIS_MASTER_SERVICE_PORT_REDIS, "20000");
  assert.deepEqual(cluster!.pods[1]!.tcpOutbound, [
    { host: "redis-master.shop.svc.cluster.local", port: 6379, localPort: 20000 },
  ]);
});

test("manifest mistakes stop the plan with file and line", async () => {
  const broken = APP.replace("        command: [node, web.mjs]\n", "        image: web:v1\n")
    .replace("key: greeting", "key: missing")
    .replace("containerPort: 8080", "containerPort: 15006");
  const r = readMeshFile(meshDir(MESH, { "app/app.yaml": broken }));
  assert.ok(r.ok);
  const planned = await planMesh(r.mesh);
  assert.equal(planned.ok, false);
  const text = planned.ok ? "" : planned.diagnostics.map((d) => formatDiagnostic(d)).join("\n");
  assert.match(
    text,
    /app\.yaml:\d+:\d+ Deployment shop\/web spec\.template\.spec\.containers\[0\]\.image: container "web" has no command/,
  );
  assert.match(text, /containerPort: port 15006 is the sidecar's on the pod's address/);
});

test("$(VAR) expansion follows Kubernetes", () => {
  const env = { A: "1", B: "two" };
  assert.equal(expand("$(A)-$(B)", env), "1-two");
  assert.equal(expand("$$(A)", env), "$(A)");
  assert.equal(expand("$(C)", env), "$(C)");
  assert.equal(expand("$A $(A", env), "$A $(A");
});

test("fuzz: random mutations of a good mesh file are reported, never thrown", () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const alphabet = [
    "{",
    "}",
    "[",
    "]",
    ":",
    " ",
    "\n",
    "-",
    "a",
    "1",
    '"',
    "'",
    "&x",
    "*x",
    "!!binary",
    "\t",
  ];
  for (let i = 0; i < 300; i++) {
    const chars = [...MESH];
    for (let k = 0; k < 1 + rnd(4); k++)
      chars.splice(rnd(chars.length), rnd(3), alphabet[rnd(alphabet.length)]!);
    const dir = meshDir(chars.join(""));
    const r = readMeshFile(dir);
    if (!r.ok)
      assert.ok(r.diagnostics.length > 0 && r.diagnostics.every((d) => d.file.endsWith("mesh.yaml")));
  }
});

test("pods Istio would not inject: no sidecar, no proxy variables; hostNetwork takes the host's address", async () => {
  const outside = `${APP}---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: shop}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy}, annotations: {sidecar.istio.io/inject: "false"}}
    spec:
      containers: [{name: legacy, command: [node, legacy.mjs], ports: [{containerPort: 9000}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tone-api, namespace: shop}
spec:
  selector: {matchLabels: {app: tone-api}}
  template:
    metadata: {labels: {app: tone-api}}
    spec:
      hostNetwork: true
      containers: [{name: tone, command: [node, tone.mjs], ports: [{containerPort: 18090}]}]
`;
  const r = readMeshFile(meshDir(MESH, { "app/app.yaml": outside }));
  assert.ok(r.ok);
  const planned = await planMesh(r.mesh);
  assert.ok(planned.ok);
  const pods = planned.plan.clusters[0]!.pods;
  const legacy = pods.find((p) => p.name === "legacy-0")!;
  const tone = pods.find((p) => p.name === "tone-api-0")!;
  assert.equal(legacy.sidecar, false);
  assert.equal(legacy.address, "127.20.1.3");
  assert.equal(legacy.containers[0]!.env.HTTP_PROXY, undefined);
  assert.deepEqual(legacy.tcpOutbound, []);
  assert.equal(tone.sidecar, false);
  assert.equal(tone.address, "127.0.0.1");
  assert.equal(tone.containers[0]!.env.HOST, "127.0.0.1");
  assert.equal(pods.find((p) => p.name === "web-0")!.sidecar, true);
});
