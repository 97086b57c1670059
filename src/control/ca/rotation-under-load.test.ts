// Issue 6's rotation test: two real proxies talk mutual TLS with certificates of a 10 s TTL from the mesh CA,
// each rotated by its own WorkloadIdentity (a new key each time, at half-life), under continuous load for a
// minute (ROTATION_TEST_SECONDS): no request may fail. Upstream connections are recycled every 50 requests so
// that new handshakes keep happening with whatever certificate is current on both sides.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { WorkloadIdentity } from "../../proxy/identity/workload-identity.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import { closeAll, get, httpBackend, onClose } from "../../proxy/test-support.ts";
import { DiscoveryServer } from "../push/discovery-server.ts";
import { CertificateAuthority } from "./authority.ts";
import { registerCertificateService } from "./certificate-service.ts";
import { WorkloadTokens } from "./tokens.ts";

after(closeAll);

const SECONDS = Number(process.env.ROTATION_TEST_SECONDS ?? 60);
const SERVER_ID = "spiffe://cluster.local/ns/shop/sa/reviews";
const CLIENT_ID = "spiffe://cluster.local/ns/shop/sa/productpage";

async function meshIdentity(
  proxy: ProxyServer,
  spiffeId: string,
  caAddress: string,
  tokens: WorkloadTokens,
  dir: string,
) {
  const [, namespace, , serviceAccount] = spiffeId.replace("spiffe://cluster.local/", "").split("/");
  const { token } = await tokens.issue({ namespace: namespace!, serviceAccount: serviceAccount! }, 3600);
  const file = join(dir, `${serviceAccount}.token`);
  writeFileSync(file, token, { mode: 0o600 });
  const id = new WorkloadIdentity({
    spiffeId,
    caAddress,
    tokenFile: file,
    ttlSeconds: 10,
    initialRetryMs: 100,
  });
  onClose(() => id.close());
  id.onRotate((m) => {
    proxy.secrets.setCertificate("default", {
      certificateChain: m.certificateChain,
      privateKey: m.privateKey,
    });
    proxy.secrets.setValidation("ROOTCA", { trustedCa: m.trustBundle });
  });
  await id.start();
  return id;
}

test(`10 s certificates rotated under continuous load for ${SECONDS} s: no failed request`, {
  timeout: (SECONDS + 60) * 1000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-rotation-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await CertificateAuthority.selfSigned();
  const tokens = await WorkloadTokens.generate();
  const cp = new DiscoveryServer({
    render: () => {
      throw new Error("no config in this test");
    },
  });
  onClose(() => cp.stop());
  registerCertificateService(cp, { ca, tokens });
  const caAddress = `127.0.0.1:${await cp.listen("127.0.0.1:0")}`;

  const backend = await httpBackend((_req, res) => res.end("reviews"));
  const server = new ProxyServer();
  onClose(() => server.shutdown(0));
  const client = new ProxyServer();
  onClose(() => client.shutdown(0));
  const serverId = await meshIdentity(server, SERVER_ID, caAddress, tokens, dir);
  const clientId = await meshIdentity(client, CLIENT_ID, caAddress, tokens, dir);

  const route = (cluster: string) => ({
    name: "r",
    virtualHosts: [{ name: "all", domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster } }] }],
  });
  const serverConfig: ProxyConfig = {
    listeners: [
      {
        name: "inbound",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            tls: {
              certificateSecret: "default",
              validationSecret: "ROOTCA",
              requireClientCertificate: true,
              matchSubjectAltNames: [CLIENT_ID],
              alpnProtocols: ["http/1.1"],
            },
            filter: { type: "http", routeConfig: route("app") },
          },
        ],
      },
    ],
    clusters: [{ name: "app", endpoints: [{ address: "127.0.0.1", port: backend.port }] }],
  };
  assert.deepEqual((await server.apply(serverConfig)).errors, []);
  const clientConfig: ProxyConfig = {
    listeners: [
      {
        name: "outbound",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "http", routeConfig: route("reviews") } }],
      },
    ],
    clusters: [
      {
        name: "reviews",
        endpoints: [{ address: "127.0.0.1", port: server.listener("inbound")!.boundPort }],
        circuitBreakers: { maxRequestsPerConnection: 50 },
        tls: {
          sni: "outbound_.9080_._.reviews.shop.svc.cluster.local",
          certificateSecret: "default",
          validationSecret: "ROOTCA",
          matchSubjectAltNames: [SERVER_ID],
        },
      },
    ],
  };
  assert.deepEqual((await client.apply(clientConfig)).errors, []);
  const port = client.listener("outbound")!.boundPort;

  let ok = 0;
  const failures: string[] = [];
  const end = Date.now() + SECONDS * 1000;
  const worker = async () => {
    while (Date.now() < end) {
      try {
        const r = await get(port, "/");
        if (r.status === 200) ok++;
        else failures.push(`${r.status} ${r.body.toString().slice(0, 100)}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const rotations = serverId.rotations + clientId.rotations;
  console.log(`rotation under load: ${ok} requests, ${failures.length} failed, ${rotations} rotations`);
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${ok + failures.length} failed`);
  // At half of a 10 s lifetime: about SECONDS/5 rotations per side.
  assert.ok(rotations >= Math.floor(SECONDS / 5), `${rotations} rotations in ${SECONDS} s`);
  assert.ok(ok > SECONDS * 50, `${ok} requests`);
});
