// The CSR service over real gRPC, on the control plane's DiscoveryServer, with tokens from the config API:
// a WorkloadIdentity obtains a certificate that works for mutual TLS, rotates a 2 s certificate several
// times (each chain valid, a new key each time, a rotated token file picked up), and is refused a CSR for an
// identity its token does not grant; bad tokens answer UNAUTHENTICATED. Counted in citadel_* metrics.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import tls from "node:tls";
import { certificateService, grpc } from "../../proxy/identity/ca-proto.ts";
import { type IdentityMaterial, WorkloadIdentity } from "../../proxy/identity/workload-identity.ts";
import { ControlPlaneMetrics } from "../monitoring/control-plane-metrics.ts";
import { DiscoveryServer } from "../push/discovery-server.ts";
import { ConfigApi } from "../store/config-api.ts";
import { ConfigStore } from "../store/config-store.ts";
import { CertificateAuthority } from "./authority.ts";
import { registerCertificateService } from "./certificate-service.ts";
import { WorkloadTokens } from "./tokens.ts";

const ADMIN = "admin-token-0123456789";
const dir = mkdtempSync(join(tmpdir(), "isthmus-csr-"));
const cleanups: (() => unknown)[] = [];
let address = "";
let apiPort = 0;
let metrics: ControlPlaneMetrics;
let tokens: WorkloadTokens;
const logs: string[] = [];

before(async () => {
  metrics = new ControlPlaneMetrics();
  tokens = await WorkloadTokens.generate();
  const ca = await CertificateAuthority.selfSigned();
  const server = new DiscoveryServer({
    render: () => {
      throw new Error("no config in this test");
    },
  });
  cleanups.push(() => server.stop());
  registerCertificateService(server, { ca, tokens, observer: metrics, log: (l) => logs.push(l) });
  address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
  const api = new ConfigApi(new ConfigStore(), ADMIN, undefined, undefined, tokens);
  cleanups.push(() => api.close());
  apiPort = await api.listen("127.0.0.1", 0);
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

/** A token from POST /apis/tokens, written to a file. */
async function tokenFile(name: string, namespace: string, serviceAccount: string, ttlSeconds = 600) {
  const res = await fetch(`http://127.0.0.1:${apiPort}/apis/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ namespace, serviceAccount, ttlSeconds }),
  });
  assert.equal(res.status, 200);
  const { token } = (await res.json()) as { token: string };
  const file = join(dir, name);
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return file;
}

function identity(
  spiffeId: string,
  file: string,
  extra: Partial<ConstructorParameters<typeof WorkloadIdentity>[0]> = {},
) {
  const id = new WorkloadIdentity({
    spiffeId,
    caAddress: address,
    tokenFile: file,
    initialRetryMs: 100,
    ...extra,
  });
  cleanups.push(() => id.close());
  return id;
}

/** The leaf's SPIFFE ID after checking the chain (leaf + intermediates) up to a bundle root. */
function verifiedId(m: IdentityMaterial): string {
  const chain = m.certificateChain.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)!;
  const roots = m.trustBundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)!;
  const certs = [...chain, ...roots].map((p) => new X509Certificate(p));
  let i = 0;
  for (; i < chain.length; i++) {
    const issuer = certs.slice(i + 1).find((c) => certs[i]!.checkIssued(c) && certs[i]!.verify(c.publicKey));
    assert.ok(issuer, `certificate ${i} has a verified issuer`);
  }
  const leaf = certs[0]!;
  assert.ok(new Date(leaf.validTo).getTime() > Date.now(), "not expired");
  return leaf.subjectAltName!.replace(/^URI:/, "");
}

test("the config API refuses token requests without the admin token or with a bad body", async () => {
  const post = (auth: string, body: string) =>
    fetch(`http://127.0.0.1:${apiPort}/apis/tokens`, {
      method: "POST",
      headers: { authorization: auth },
      body,
    });
  assert.equal((await post("Bearer wrong-token-000000", "{}")).status, 401);
  const bad = await post(`Bearer ${ADMIN}`, JSON.stringify({ namespace: "shop" }));
  assert.equal(bad.status, 400);
  assert.match(JSON.stringify(await bad.json()), /serviceAccount/);
  assert.equal((await post(`Bearer ${ADMIN}`, "{")).status, 400);
});

test("a WorkloadIdentity obtains a certificate over gRPC; two identities talk mutual TLS", async () => {
  const cart = identity("spiffe://cluster.local/ns/shop/sa/cart", await tokenFile("cart", "shop", "cart"));
  const web = identity("spiffe://cluster.local/ns/shop/sa/web", await tokenFile("web", "shop", "web"));
  const [c, w] = await Promise.all([cart.start(), web.start()]);
  assert.equal(cart.current(), c);
  assert.equal(verifiedId(c), "spiffe://cluster.local/ns/shop/sa/cart");
  assert.equal(verifiedId(w), "spiffe://cluster.local/ns/shop/sa/web");
  assert.match(c.privateKey, /BEGIN PRIVATE KEY/);
  const server = tls.createServer({
    key: c.privateKey,
    cert: c.certificateChain,
    ca: c.trustBundle,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3",
  });
  let seenClient = "";
  server.on("secureConnection", (s) => {
    seenClient = s.getPeerCertificate().subjectaltname ?? "";
    s.end("hi");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const seenServer = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      key: w.privateKey,
      cert: w.certificateChain,
      ca: w.trustBundle,
      // SPIFFE: the identity is the URI SAN, not a host name.
      checkServerIdentity: () => undefined,
    });
    s.on("secureConnect", () => resolve(s.getPeerCertificate().subjectaltname ?? ""));
    s.on("error", reject);
    s.on("data", () => s.end());
  });
  assert.equal(seenServer, "URI:spiffe://cluster.local/ns/shop/sa/cart");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(seenClient, "URI:spiffe://cluster.local/ns/shop/sa/web");
  const text = await metrics.exposition();
  assert.match(text, /citadel_server_success_cert_issuance_count \d+/);
  assert.match(text, /citadel_server_root_cert_expiry_timestamp \d+/);
});

test("a 2 s certificate is rotated several times, each chain valid, a new key each time", async () => {
  const file = await tokenFile("rotating", "shop", "rot");
  const id = identity("spiffe://cluster.local/ns/shop/sa/rot", file, { ttlSeconds: 2 });
  const seen: IdentityMaterial[] = [];
  id.onRotate((m) => {
    assert.equal(verifiedId(m), "spiffe://cluster.local/ns/shop/sa/rot");
    seen.push(m);
  });
  const first = await id.start();
  assert.ok(first.notAfter.getTime() - Date.now() <= 2000);
  // A new token in the file mid-way: the next request reads it.
  setTimeout(() => void tokenFile("rotating", "shop", "rot", 30), 1500);
  await new Promise((r) => setTimeout(r, 4500));
  assert.ok(seen.length >= 4, `${seen.length} certificates in 4.5 s`);
  assert.equal(new Set(seen.map((m) => m.privateKey)).size, seen.length);
  // X.509 times have whole seconds: two certificates issued within one second may share notAfter.
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.notAfter >= seen[i - 1]!.notAfter);
  assert.equal(new Set(seen.map((m) => m.certificateChain)).size, seen.length, "a new certificate each time");
  assert.equal(id.failures, 0, id.lastError);
  assert.equal(id.current(), seen[seen.length - 1]);
});

test("a CSR for an identity the token does not grant is refused; bad tokens are UNAUTHENTICATED", async () => {
  const file = await tokenFile("cart-only", "shop", "cart");
  const id = identity("spiffe://cluster.local/ns/shop/sa/admin", file);
  let obtained = false;
  id.start().then(
    () => {
      obtained = true;
    },
    () => {},
  );
  const deadline = Date.now() + 3000;
  while (id.failures < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(id.failures >= 2);
  assert.equal(obtained, false);
  assert.equal(id.current(), undefined);
  assert.match(id.lastError, /grants exactly one URI SAN, spiffe:\/\/cluster.local\/ns\/shop\/sa\/cart/);
  assert.match(logs.join(""), /identity-mismatch/);
  assert.match(await metrics.exposition(), /isthmus_ca_csr_refused_total\{reason="identity-mismatch"\} \d+/);
  assert.match(await metrics.exposition(), /citadel_server_id_extraction_err_count [1-9]/);

  // Raw calls with bad credentials.
  const Client = certificateService();
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    CreateCertificate: (req: object, md: grpc.Metadata, cb: (e: grpc.ServiceError | null) => void) => void;
  };
  cleanups.push(() => client.close());
  const call = (auth: string | undefined) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const md = new grpc.Metadata();
      if (auth !== undefined) md.set("authorization", auth);
      client.CreateCertificate({ csr: "x", validityDuration: 0 }, md, resolve);
    });
  const other = await WorkloadTokens.generate();
  const foreign = (await other.issue({ namespace: "shop", serviceAccount: "cart" })).token;
  for (const [auth, pattern] of [
    [undefined, /no token/],
    ["Basic abc", /not "Bearer TOKEN"/],
    [`Bearer ${foreign}`, /signature does not verify/],
    [`Bearer ${"a".repeat(5000)}`, /at most/],
  ] as const) {
    const err = await call(auth);
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED, String(auth).slice(0, 20));
    assert.match(err.details, pattern);
  }
  // A valid token with a bad CSR: INVALID_ARGUMENT.
  const good = (await tokens.issue({ namespace: "shop", serviceAccount: "cart" })).token;
  const err = await call(`Bearer ${good}`);
  assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
  assert.match(await metrics.exposition(), /citadel_server_authentication_failure_count [4-9]/);
  assert.ok(!logs.join("").includes(good) && !logs.join("").includes(foreign), "tokens are never logged");
});
