// `isthmus up DIR --detach` end to end: a one-cluster mesh from a mesh file and plain manifests, run as real
// processes (control plane with its CA, sidecars with SPIFFE certificates, apps from their commands), real
// traffic between pods with mutual TLS, a crashed app restarted, a dead sidecar taking its pod out of the
// endpoints until it is back, a second `up` refused, `down` leaving no process behind; and a mesh with
// mistakes refused with file and line before anything starts.
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { closeAll, onClose } from "../proxy/test-support.ts";
import { eventually, exclusiveMesh, freePort, isthmus } from "./runtime-test-support.ts";

// One whole mesh at a time; the lock is released last (closers run in reverse).
before(async () => {
  onClose(await exclusiveMesh());
});
after(closeAll);

const MESH = (cluster: string, ingressPort?: number) => `apiVersion: isthmus.io/v1alpha1
kind: Mesh
metadata: {name: hello}
spec:
  clusters:
  - name: ${cluster}
    locality: us-east/zone1
    manifests: [app]
${ingressPort !== undefined ? `    ingress: {port: ${ingressPort}}\n` : ""}`;

const INGRESS = `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: demo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: demo}
spec:
  hosts: ["*"]
  gateways: [web]
  http: [{route: [{destination: {host: echo.demo.svc.cluster.local, port: {number: 80}}}]}]
`;

const ECHO = `import http from "node:http";
http.createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ pod: process.env.POD_NAME, caller: req.headers["x-forwarded-client-cert"] ?? null }));
}).listen(8080, process.env.HOST);
`;

// Calls echo through its sidecar, as any HTTP_PROXY-aware client would.
const CLIENT = `import http from "node:http";
const proxy = new URL(process.env.HTTP_PROXY);
http.createServer((req, res) => {
  const up = http.request({ host: proxy.hostname, port: Number(proxy.port), path: "http://echo.demo.svc.cluster.local/",
    headers: { host: "echo.demo.svc.cluster.local" } }, (r) => {
    let body = "";
    r.on("data", (d) => (body += d));
    r.on("end", () => { res.statusCode = r.statusCode; res.end(body); });
  });
  up.on("error", (e) => { res.statusCode = 502; res.end(String(e)); });
  up.end();
}).listen(8080, process.env.HOST);
`;

const TCP_ECHO = `import net from "node:net";
net.createServer((s) => s.pipe(s)).listen(9000, process.env.HOST);
`;

const TCP_DEPLOYMENT = `---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: demo}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000, targetPort: 9000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo, namespace: demo}
spec:
  selector: {matchLabels: {app: tcp-echo}}
  template:
    metadata: {labels: {app: tcp-echo}}
    spec:
      containers:
      - name: tcp-echo
        command: [node, apps/tcp-echo.mjs]
        ports: [{containerPort: 9000}]
`;

const deployment = (name: string, replicas: number, extra = "") => `---
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: demo}
spec:
  selector: {app: ${name}}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}, namespace: demo}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec:
      serviceAccountName: ${name}
      containers:
      - name: ${name}
        image: ${name}:v1
        command: [node, apps/${name}.mjs]
        ports: [{containerPort: 8080}]${extra}
`;

function meshDir(cluster: string, manifests: string, ingressPort?: number): string {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-up-"));
  mkdirSync(join(dir, "apps"));
  mkdirSync(join(dir, "app"));
  writeFileSync(join(dir, "mesh.yaml"), MESH(cluster, ingressPort));
  writeFileSync(join(dir, "apps", "echo.mjs"), ECHO);
  writeFileSync(join(dir, "apps", "client.mjs"), CLIENT);
  writeFileSync(join(dir, "apps", "tcp-echo.mjs"), TCP_ECHO);
  writeFileSync(join(dir, "app", "app.yaml"), manifests);
  onClose(async () => {
    await isthmus(["down", dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Processes whose working directory is `dir` (every app of the mesh) or whose arguments name it. */
function processesOf(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cwd = readlinkSync(`/proc/${p}/cwd`);
      if (cwd === dir) out.push(Number(p));
    } catch {
      // Gone, or not ours to look at.
    }
  }
  return out;
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
}

test("isthmus up --detach: pods with sidecars and mTLS, restarts, a dead sidecar, down", async () => {
  const ingressPort = await freePort();
  const dir = meshDir(
    "one",
    `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n${deployment("echo", 2)}${deployment("client", 1)}${INGRESS}${TCP_DEPLOYMENT}`,
    ingressPort,
  );
  const up = await isthmus(["up", dir, "--detach", "-o", "json"]);
  assert.equal(up.code, 0, up.err);
  const ready = JSON.parse(up.out) as {
    clusters: Record<string, { controlPlane: string; ingress?: string }>;
    pods: Array<{ name: string; address: string; identity: string; ready: boolean }>;
  };
  assert.deepEqual(Object.keys(ready.clusters), ["one"]);
  // The mesh's own block of loopback addresses: 127.B.1.N for its pods, in order.
  const block = /^127\.(\d+)\.1\.1$/.exec(ready.pods[0]!.address)?.[1];
  assert.ok(block !== undefined, ready.pods[0]!.address);
  const at = (n: number) => `127.${block}.1.${n}`;
  assert.deepEqual(
    ready.pods.map((p) => [p.name, p.address, p.identity, p.ready]),
    [
      ["echo-0", at(1), "spiffe://cluster.local/ns/demo/sa/echo", true],
      ["echo-1", at(2), "spiffe://cluster.local/ns/demo/sa/echo", true],
      ["client-0", at(3), "spiffe://cluster.local/ns/demo/sa/client", true],
      ["tcp-echo-0", at(4), "spiffe://cluster.local/ns/demo/sa/default", true],
    ],
  );
  const client = `http://${at(3)}:8080/`;
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const r = await get(client);
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { pod: string; caller: string };
    seen.add(body.pod);
    assert.match(
      body.caller,
      /URI=spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client$/,
      "mTLS with the caller's identity",
    );
  }
  assert.deepEqual([...seen].sort(), ["echo-0", "echo-1"]);

  // A TCP service: Kubernetes' service env vars name a local port on the pod's address, tunnelled through the
  // pod's sidecar (CONNECT) with mutual TLS to the server's.
  const clientPid = processesOf(dir).find((p) =>
    readFileSyncSafe(`/proc/${p}/environ`).includes("POD_NAME=client-0"),
  );
  assert.ok(clientPid !== undefined);
  const env = readFileSyncSafe(`/proc/${clientPid}/environ`).split("\0");
  assert.ok(env.includes(`TCP_ECHO_SERVICE_HOST=${at(3)}`), env.join(" "));
  assert.ok(env.includes("TCP_ECHO_SERVICE_PORT=20000"), env.join(" "));
  assert.ok(env.includes("ECHO_SERVICE_HOST=echo.demo.svc.cluster.local"), "an HTTP service: its name");
  const echoed = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: at(3), port: 20000 }, () => s.write("ping over the mesh"));
    let got = "";
    s.on("data", (d) => {
      got += d;
      if (got.length >= 18) {
        s.destroy();
        resolve(got);
      }
    });
    s.on("error", reject);
    setTimeout(() => reject(new Error(`no echo: ${got}`)), 5000).unref();
  });
  assert.equal(echoed, "ping over the mesh");

  // Through the ingress gateway on the host port: Gateway + VirtualService, mTLS from the gateway to the pods.
  assert.equal(ready.clusters.one!.ingress, `http://127.0.0.1:${ingressPort}`);
  const viaIngress = await eventually(
    () => get(`http://127.0.0.1:${ingressPort}/`),
    (r) => r.status === 200,
    "ingress",
  );
  assert.match(
    (JSON.parse(viaIngress.body) as { caller: string }).caller,
    /URI=spiffe:\/\/cluster\.local\/ns\/istio-system\/sa\/istio-ingressgateway-service-account$/,
  );

  // Twice on one directory: refused.
  const again = await isthmus(["up", dir, "--detach"]);
  assert.equal(again.code, 1);
  assert.match(again.err, /is already up \(pid \d+\); 'isthmus down .*' stops it/);

  // A crashed app comes back (CrashLoopBackOff-like), counted in its restarts.
  const echoPids = processesOf(dir);
  assert.ok(echoPids.length >= 3, "the apps run in the mesh's directory");
  const echo0 = echoPids.find((p) => {
    try {
      return readFileSyncSafe(`/proc/${p}/environ`).includes("POD_NAME=echo-0");
    } catch {
      return false;
    }
  });
  assert.ok(echo0 !== undefined);
  process.kill(echo0, "SIGKILL");
  const status = await eventually(
    async () =>
      JSON.parse((await isthmus(["status", dir, "-o", "json"])).out) as {
        pods: Array<{ name: string; ready: boolean; restarts: number }>;
      },
    (s) => s.pods.find((p) => p.name === "echo-0")?.restarts === 1 && s.pods.every((p) => p.ready),
    "the app restarted",
  );
  assert.equal(status.pods.find((p) => p.name === "echo-0")!.restarts, 1);
  await eventually(
    () => get(client),
    (r) => r.status === 200 && r.body.includes("echo-0"),
    "echo-0 serves again",
  );

  // A dead sidecar: its pod leaves the endpoints until the sidecar is ready again.
  const logs = await isthmus(["logs", dir, "echo-1", "--sidecar"]);
  assert.equal(logs.code, 0, logs.err);
  assert.match(logs.out, /identity spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo until/);
  const sidecar = sidecarPid(dir, "echo-1");
  process.kill(sidecar, "SIGKILL");
  await eventually(
    async () => {
      const bodies: string[] = [];
      for (let i = 0; i < 6; i++) {
        bodies.push((await get(client)).body);
      }
      return bodies;
    },
    (bodies) => bodies.every((b) => b.includes("echo-0")),
    "only echo-0 while echo-1's sidecar is down",
  );
  await eventually(
    async () => (await get(client)).body,
    (b) => b.includes("echo-1"),
    "echo-1 back with its sidecar",
  );

  // The control plane killed: restarted by the runtime, it gets every pod's registration back.
  const cp = controlPlanePid(dir);
  process.kill(cp, "SIGKILL");
  await eventually(
    async () => controlPlanePid(dir),
    (p) => p !== 0 && p !== cp,
    "the control plane restarted",
  );
  const after: string[] = [];
  await eventually(
    async () => {
      const r = await get(client);
      if (r.status === 200) after.push((JSON.parse(r.body) as { pod: string }).pod);
      return [...new Set(after.slice(-6))];
    },
    (pods) => pods.includes("echo-0") && pods.includes("echo-1"),
    "both echo pods served after the control plane's restart",
  );

  const down = await isthmus(["down", dir]);
  assert.equal(down.code, 0, down.err);
  assert.match(down.out, /stopped/);
  await eventually(
    async () => processesOf(dir),
    (p) => p.length === 0,
    "no process left",
  );
  assert.equal(sidecarPids(dir).length, 0, "no sidecar left");
  assert.equal((await isthmus(["status", dir])).code, 3);

  // Up again on the same directory (the root CA kept, tokens minted afresh): ready again.
  const upAgain = await isthmus(["up", dir, "--detach"]);
  assert.equal(upAgain.code, 0, upAgain.err);
  assert.equal((await isthmus(["down", dir])).code, 0);
});

test("isthmus up refuses a mesh with mistakes, with file and line, and starts nothing", async () => {
  const dir = meshDir(
    "Bad_Name",
    `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n${deployment("echo", 1)}`.replace(
      "        command: [node, apps/echo.mjs]\n",
      "",
    ),
  );
  writeFileSync(join(dir, "mesh.yaml"), `${MESH("Bad_Name")}  trustDomian: x\n`);
  const up = await isthmus(["up", dir, "--detach"]);
  assert.equal(up.code, 1);
  assert.match(up.out + up.err, /mesh\.yaml:6:\d+ .*name: must be a DNS label/);
  assert.match(
    up.out + up.err,
    /mesh\.yaml:9:\d+ .*trustDomian: unknown field \(did you mean "trustDomain"\?\)/,
  );
  assert.match(up.err, /nothing started/);
  // The mesh file right, the manifest still wrong: the container without a command is named with its line.
  writeFileSync(join(dir, "mesh.yaml"), MESH("one"));
  const again = await isthmus(["up", dir, "--detach"]);
  assert.equal(again.code, 1);
  assert.match(
    again.out + again.err,
    /app\.yaml:\d+:\d+ .*containers\[0\]\.image: container "echo" has no command/,
  );
  assert.equal(existsSync(join(dir, ".isthmus", "runtime.json")), false);
  assert.deepEqual(processesOf(dir), []);
});

function readFileSyncSafe(path: string): string {
  return readFileSync(path, "latin1");
}

function sidecarPids(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSyncSafe(`/proc/${p}/cmdline`);
      if (cmd.includes("\0proxy\0") && cmd.includes(join(dir, ".isthmus"))) out.push(Number(p));
    } catch {
      // Gone.
    }
  }
  return out;
}

function controlPlanePid(dir: string): number {
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSyncSafe(`/proc/${p}/cmdline`);
      if (cmd.includes("\0control-plane\0") && cmd.includes(join(dir, ".isthmus"))) return Number(p);
    } catch {
      // Gone.
    }
  }
  return 0;
}

function sidecarPid(dir: string, pod: string): number {
  for (const p of sidecarPids(dir)) {
    const cmd = readFileSyncSafe(`/proc/${p}/cmdline`);
    if (cmd.includes(`\0--node-id\0${pod}\0`)) return p;
  }
  throw new Error(`no sidecar for ${pod}`);
}

test("a runtime killed outright: isthmus down finds and stops what it left", async () => {
  const dir = meshDir(
    "one",
    `apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n${deployment("echo", 1)}${WANDERER}`,
  );
  const up = await isthmus(["up", dir, "--detach", "-o", "json"]);
  assert.equal(up.code, 0, up.err);
  const { pid } = JSON.parse(up.out) as { pid: number };
  process.kill(pid, "SIGKILL");
  await eventually(
    async () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    },
    (alive) => !alive,
    "the runtime is gone",
  );
  assert.ok(processesOf(dir).length > 0 && sidecarPids(dir).length > 0, "its processes outlive it");
  // An app that left the mesh's directory (as redis-server does): found through the runtime's ledger.
  assert.equal(wanderers().length, 1);
  const down = await isthmus(["down", dir]);
  assert.equal(down.code, 0, down.err);
  assert.match(down.out, /the runtime was gone; stopped \d+ processes it left/);
  await eventually(
    async () => [...processesOf(dir), ...sidecarPids(dir), ...wanderers()],
    (p) => p.length === 0,
    "nothing left",
  );
});

const WANDER = "process.chdir('/'); setInterval(() => {}, 1 << 30) // isthmus-up-e2e-wanderer";
const WANDERER = `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: wanderer, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: wanderer}}
  template:
    metadata: {labels: {app: wanderer}}
    spec:
      containers:
      - name: wanderer
        image: wanderer:v1
        command: [node, -e, "${WANDER}"]
`;

/** The wandering app's processes (its command line names it). */
function wanderers(): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "latin1").includes("isthmus-up-e2e-wanderer"))
        out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}
