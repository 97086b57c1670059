// Trust domain aliases (Istio's trustDomainAliases), as in a migration or two meshes merged: one root, two
// intermediates, two control planes with different trust domains. A server whose certificate names
// spiffe://old.example/... is reachable with mutual TLS from a client of the cluster.local mesh only because
// old.example is an alias there, and an AuthorizationPolicy principal written in the old trust domain matches
// the caller's cluster.local identity.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, onClose, spawnProxy } from "../proxy/test-support.ts";
import {
  applyYaml,
  eventually,
  mintTokenFile,
  registerWorkload,
  runIsthmus,
  SidecarClient,
  startControlPlane,
  waitSynced,
} from "./e2e-support.ts";

after(closeAll);

const TOKEN = "trust-domain-alias-admin-token";
const SERVER_IP = "127.0.0.66";
const CLIENT_IP = "127.0.0.67";
const ECHO = "echo.default.svc.cluster.local";

test("a server certified in an aliased trust domain is trusted, and policies match across domains", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-td-alias-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const ca = async (...args: string[]) => {
    const r = await runIsthmus(["ca", ...args], TOKEN);
    assert.equal(r.status, 0, r.stderr);
  };
  await ca("root", "--out", join(dir, "root"));
  await ca("intermediate", "--root", join(dir, "root"), "--cluster", "new", "--out", join(dir, "new"));
  await ca("intermediate", "--root", join(dir, "root"), "--cluster", "old", "--out", join(dir, "old"));
  writeFileSync(
    join(dir, "services.yaml"),
    `apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: 8080}]
`,
  );
  // The mesh the proxies get their config from: cluster.local, with old.example as an alias.
  const mesh = await startControlPlane([join(dir, "services.yaml")], TOKEN, "127.0.0.1:0", [
    ...["--ca-dir", join(dir, "new"), "--trust-domain-alias", "old.example"],
  ]);
  // The old mesh's CA, which still certifies the server.
  const old = await startControlPlane([], TOKEN, "127.0.0.1:0", [
    ...["--ca-dir", join(dir, "old"), "--trust-domain", "old.example"],
  ]);

  const app = http.createServer((req, res) => {
    res.end(String(req.headers["x-forwarded-client-cert"] ?? ""));
  });
  await new Promise<void>((r) => app.listen(8080, SERVER_IP, () => r()));
  onClose(() => new Promise<void>((r) => app.close(() => r())));
  await registerWorkload(mesh.server, TOKEN, "default", "echo-1", {
    address: SERVER_IP,
    labels: { app: "echo", "security.istio.io/tlsMode": "istio" },
    serviceAccount: "echo-sa",
  });

  const serverToken = await mintTokenFile(old.server, TOKEN, dir, "default", "echo-sa");
  const server = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${mesh.pushPort}`, "--ca", `127.0.0.1:${old.pushPort}`],
      ...["--node-id", "echo-1", "--namespace", "default", "--service-account", "echo-sa"],
      ...["--trust-domain", "old.example", "--label", "app=echo", "--ip", SERVER_IP],
      ...["--identity-token", serverToken, "--admin-port", "0"],
    ],
    [],
  );
  await server.waitForStderr(/identity spiffe:\/\/old\.example\/ns\/default\/sa\/echo-sa until/);
  const clientToken = await mintTokenFile(mesh.server, TOKEN, dir, "default", "client-sa");
  const client = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${mesh.pushPort}`, "--node-id", "client-1"],
      ...["--namespace", "default", "--service-account", "client-sa", "--label", "app=client"],
      ...["--ip", CLIENT_IP, "--identity-token", clientToken, "--admin-port", "0"],
    ],
    [],
  );
  await client.waitForStderr(/identity spiffe:\/\/cluster\.local\/ns\/default\/sa\/client-sa until/);
  await waitSynced(mesh.server, TOKEN, ["echo-1", "client-1"]);

  const caller = new SidecarClient(CLIENT_IP);
  onClose(() => caller.close());
  const ok = await eventually(
    () => caller.get(ECHO),
    (r) => r.status === 200,
    "the client trusts the server's old.example identity",
  );
  assert.match(ok.body.toString(), /By=spiffe:\/\/old\.example\/ns\/default\/sa\/echo-sa;/);
  assert.match(ok.body.toString(), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client-sa$/);

  const policy = (principal: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules: [{from: [{source: {principals: ["${principal}"]}}]}]
`;
  // Another service account, in either domain, is not the caller...
  await applyYaml(mesh.server, TOKEN, dir, "authz.yaml", policy("old.example/ns/default/sa/other"));
  await eventually(
    () => caller.get(ECHO),
    (r) => r.status === 403,
    "another principal is denied",
  );
  // ...while the caller's, written in the old trust domain, names it in the new one too.
  await applyYaml(mesh.server, TOKEN, dir, "authz.yaml", policy("old.example/ns/default/sa/client-sa"));
  await eventually(
    () => caller.get(ECHO),
    (r) => r.status === 200,
    "the aliased principal is allowed",
  );
});
