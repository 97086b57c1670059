// Sidecar to sidecar with the mesh's identities, end to end: a real control plane (its CA, tokens and
// registrations), two real `isthmus proxy` processes that get SPIFFE certificates, an app behind each, live
// traffic. Auto mTLS (the server's workload is labelled security.istio.io/tlsMode=istio), the server's inbound
// listener on POD:15006 chosen by SNI, the caller's identity handed to the app as x-forwarded-client-cert,
// AuthorizationPolicy on principals at the server's sidecar, PeerAuthentication DISABLE turning a port back to
// plain text, TCP through a CONNECT tunnel over mTLS, and Istio's metrics with principals and
// connection_security_policy.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, onClose, RawClient, spawnProxy } from "../proxy/test-support.ts";
import {
  applyYaml,
  eventually,
  isthmus,
  mintTokenFile,
  OUTBOUND_PORT,
  registerWorkload,
  SidecarClient,
  startControlPlane,
  waitSynced,
} from "./e2e-support.ts";

after(closeAll);

const TOKEN = "mesh-mtls-e2e-admin-token";
const SERVER_IP = "127.0.0.61";
const CLIENT_IP = "127.0.0.62";
const METRICS_PORT = 15090;
const ECHO = "echo.default.svc.cluster.local";
const CLIENT_ID = "spiffe://cluster.local/ns/default/sa/client-sa";
const SERVER_ID = "spiffe://cluster.local/ns/default/sa/echo-sa";

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: tcp-echo, port: 9000, targetPort: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: client, namespace: default}
spec:
  selector: {app: client}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;

async function listen(server: net.Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  onClose(() => new Promise<void>((r) => server.close(() => r())));
}

test("sidecars speak ISTIO_MUTUAL: identities, authorization, PeerAuthentication, TCP and metrics", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-mtls-e2e-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "services.yaml"), SERVICES);
  const cp = await startControlPlane([join(dir, "services.yaml")], TOKEN, "127.0.0.1:0", [
    "--proxy-metrics-port",
    String(METRICS_PORT),
  ]);
  const xds = `127.0.0.1:${cp.pushPort}`;

  // The server's app: answers with the caller identity its sidecar handed it.
  const seen: Array<{ xfcc: string | undefined }> = [];
  const app = http.createServer((req, res) => {
    seen.push({ xfcc: req.headers["x-forwarded-client-cert"] as string | undefined });
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ xfcc: req.headers["x-forwarded-client-cert"] ?? null }));
  });
  await listen(app, SERVER_IP, 8080);
  const tcpEcho = net.createServer((s) => s.pipe(s));
  await listen(tcpEcho, SERVER_IP, 9000);

  await registerWorkload(cp.server, TOKEN, "default", "echo-1", {
    address: SERVER_IP,
    labels: { app: "echo", "security.istio.io/tlsMode": "istio" },
    serviceAccount: "echo-sa",
  });
  await registerWorkload(cp.server, TOKEN, "default", "client-1", {
    address: CLIENT_IP,
    labels: { app: "client", "security.istio.io/tlsMode": "istio" },
    serviceAccount: "client-sa",
  });
  const sidecar = async (id: string, sa: string, app: string, ip: string) => {
    const token = await mintTokenFile(cp.server, TOKEN, dir, "default", sa);
    const p = await spawnProxy(
      [
        ...["--control-plane", xds, "--node-id", id, "--namespace", "default"],
        ...["--service-account", sa, "--label", `app=${app}`, "--ip", ip, "--identity-token", token],
        ...["--admin-port", "0"],
      ],
      [],
    );
    await p.waitForStderr(/identity spiffe:\/\/\S+ until/);
    return p;
  };
  const server = await sidecar("echo-1", "echo-sa", "echo", SERVER_IP);
  await sidecar("client-1", "client-sa", "client", CLIENT_IP);
  await waitSynced(cp.server, TOKEN, ["echo-1", "client-1"]);

  // 1. Auto mTLS: the client's sidecar dials the server's sidecar, which hands the app who called.
  const client = new SidecarClient(CLIENT_IP);
  onClose(() => client.close());
  const first = await eventually(
    () => client.get(ECHO),
    (r) => r.status === 200,
    "a call through both sidecars",
  );
  const xfcc = String((JSON.parse(first.body.toString()) as { xfcc: string | null }).xfcc);
  assert.match(xfcc, new RegExp(`By=${SERVER_ID};`), "By: the server's own identity");
  assert.match(xfcc, new RegExp(`;URI=${CLIENT_ID}$`), "URI: the caller's verified identity");
  assert.match(xfcc, /Hash=[0-9a-f]{64};/);
  // A caller cannot pass its own x-forwarded-client-cert off as the mesh's.
  const forged = await client.get(ECHO, "/", { "x-forwarded-client-cert": "URI=spiffe://evil/ns/x/sa/y" });
  assert.doesNotMatch(String(JSON.parse(forged.body.toString()).xfcc), /evil/);

  // tls-check agrees: the server's sidecar takes mTLS (PERMISSIVE, the mesh default), the client goes AUTO.
  const check = await isthmus(cp.server, TOKEN, "tls-check", "client-1", "echo", "-o", "json");
  assert.equal(check.status, 0, check.stderr);
  assert.deepEqual(
    (JSON.parse(check.stdout) as Array<Record<string, string>>).map((r) => [
      r.host,
      r.status,
      r.server,
      r.client,
    ]),
    [
      [`${ECHO}:80`, "OK", "PERMISSIVE", "AUTO"],
      [`${ECHO}:9000`, "OK", "PERMISSIVE", "AUTO"],
    ],
  );

  // 2. AuthorizationPolicy on principals, enforced by the server's sidecar.
  const policy = (principal: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["${principal}"]}}]
`;
  await applyYaml(cp.server, TOKEN, dir, "authz.yaml", policy("cluster.local/ns/default/sa/admin"));
  const denied = await eventually(
    () => client.get(ECHO),
    (r) => r.status === 403,
    "a caller the policy does not name is denied",
  );
  assert.equal(denied.body.toString(), "RBAC: access denied");
  await applyYaml(cp.server, TOKEN, dir, "authz.yaml", policy("cluster.local/ns/default/sa/client-sa"));
  await eventually(
    () => client.get(ECHO),
    (r) => r.status === 200,
    "the named caller is allowed",
  );
  // The policy as the server's sidecar holds it: on its inbound chains, one per app port.
  const authz = await isthmus(cp.server, TOKEN, "x", "authz", "check", "echo-1", "-o", "json");
  assert.equal(authz.status, 0, authz.stderr);
  assert.deepEqual(
    (JSON.parse(authz.stdout) as Array<Record<string, unknown>>).map((r) => [
      r.listener,
      r.chain,
      r.action,
      r.policy,
    ]),
    [
      ["virtualInbound", "inbound_8080", "ALLOW", "echo-callers.default"],
      ["virtualInbound", "inbound_9000", "ALLOW", "echo-callers.default"],
    ],
  );

  // 3. TCP over mTLS: a CONNECT tunnel through the client's sidecar to the server's inbound TCP chain.
  const tunnel = await RawClient.connect(OUTBOUND_PORT, CLIENT_IP);
  onClose(() => tunnel.destroy());
  tunnel.write(`CONNECT ${ECHO}:9000 HTTP/1.1\r\nhost: ${ECHO}:9000\r\n\r\n`);
  const established = await tunnel.read("CONNECT", 5000);
  assert.equal(established.status, 200);
  tunnel.write("ping over mutual TLS");
  assert.equal((await tunnel.readBytes(20)).toString(), "ping over mutual TLS");
  tunnel.destroy();

  // 4. Metrics at the server's sidecar: who called, proven by the certificate.
  const scrape = await (await fetch(`http://${SERVER_IP}:${METRICS_PORT}/stats/prometheus`)).text();
  const line = scrape
    .split("\n")
    .find((l) => l.startsWith("istio_requests_total{") && l.includes('reporter="destination"'));
  assert.ok(line, scrape.slice(0, 2000));
  assert.match(line, /connection_security_policy="mutual_tls"/);
  assert.match(line, new RegExp(`source_principal="${CLIENT_ID}"`));
  assert.match(line, new RegExp(`destination_principal="${SERVER_ID}"`));
  assert.match(line, /source_workload_namespace="default"/);
  assert.match(line, /source_workload="client-1"/);
  assert.match(line, /source_canonical_service="client"/);
  assert.match(line, /destination_workload="echo-1"/);
  assert.match(line, /destination_canonical_service="echo"/);

  // 5. PeerAuthentication DISABLE: clients go to the app's port in plain text; the sidecar has no chain for it.
  await applyYaml(
    cp.server,
    TOKEN,
    dir,
    "pa.yaml",
    `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: echo-plain, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  mtls: {mode: DISABLE}
`,
  );
  const before = seen.length;
  await eventually(
    async () => {
      const r = await client.get(ECHO);
      return { status: r.status, xfcc: seen.at(-1)?.xfcc, n: seen.length };
    },
    (r) => r.status === 200 && r.n > before && r.xfcc === undefined,
    "plain text straight from the client's sidecar to the app",
  );
  assert.doesNotMatch(server.stderr(), /uncaught|TypeError/i);
  const table = await isthmus(cp.server, TOKEN, "tls-check", "client-1", `${ECHO}:80`);
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${ECHO}:80\\s+OK\\s+DISABLE\\s+AUTO\\s+default/echo-plain\\s+-`));
  // A client that insists on ISTIO_MUTUAL against a DISABLEd server: a conflict, exit 3.
  await applyYaml(
    cp.server,
    TOKEN,
    dir,
    "dr.yaml",
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo-mtls, namespace: default}
spec:
  host: echo
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
`,
  );
  const conflict = await isthmus(cp.server, TOKEN, "tls-check", "client-1", "echo");
  assert.equal(conflict.status, 3, conflict.stdout + conflict.stderr);
  assert.match(
    conflict.stdout,
    /CONFLICT\s+DISABLE\s+ISTIO_MUTUAL\s+default\/echo-plain\s+echo-mtls\.default/,
  );
});
