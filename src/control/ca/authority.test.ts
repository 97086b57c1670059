// The CA: signing a workload CSR (SPIFFE URI SAN, chain up to the root), every CSR it must refuse, and plug-in
// CAs from `isthmus ca root` / `isthmus ca intermediate` output (two clusters chaining to one root) and from
// an RSA cacerts set like Istio's tools/certs makes.
import assert from "node:assert/strict";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { main } from "../../cli/main.ts";
import {
  type CryptoKeyPair,
  EC_P256,
  generateEcKeyPair,
  type SigningAlgorithm,
  x509,
} from "../../proxy/identity/x509.ts";
import { CertificateAuthority, type Grant, MAX_CSR_BYTES } from "./authority.ts";
import { CacertsError, randomSerial } from "./cacerts.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "isthmus-ca-"));
  dirs.push(d);
  return d;
};

const GRANT: Grant = { namespace: "shop", serviceAccount: "cart" };
const ID = "spiffe://cluster.local/ns/shop/sa/cart";

async function csrPem(
  names: { type: "url" | "dns" | "ip" | "email"; value: string }[] = [{ type: "url", value: ID }],
  opts: { name?: string; keys?: CryptoKeyPair; alg?: SigningAlgorithm } = {},
): Promise<string> {
  const keys = opts.keys ?? (await generateEcKeyPair());
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: opts.alg ?? EC_P256,
    ...(opts.name ? { name: opts.name } : {}),
    extensions: names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, true)] : [],
  });
  return csr.toString("pem");
}

/** Throws unless `chain` (leaf first, root last) verifies link by link and ends at a root of `bundle`. */
async function assertChain(chain: string[], bundle: string[]): Promise<void> {
  const certs = chain.map((p) => new X509Certificate(p));
  for (let i = 0; i + 1 < certs.length; i++) {
    assert.ok(certs[i]!.checkIssued(certs[i + 1]!), `cert ${i} issued by ${i + 1}`);
    assert.ok(certs[i]!.verify(certs[i + 1]!.publicKey), `cert ${i} signed by ${i + 1}`);
  }
  const roots = bundle.map((p) => new X509Certificate(p));
  assert.ok(
    roots.some((r) => r.raw.equals(certs[certs.length - 1]!.raw)),
    "the chain ends at a bundle root",
  );
  // And with @peculiar/x509's chain builder, from the leaf alone.
  const builder = new x509.X509ChainBuilder({
    certificates: [...chain.slice(1), ...bundle].map((p) => new x509.X509Certificate(p)),
  });
  const built = await builder.build(new x509.X509Certificate(chain[0]!));
  assert.equal(built.length, chain.length);
  assert.ok(bundle.includes(`${built[built.length - 1]!.toString("pem")}\n`));
}

test("a self-signed CA signs a CSR into a SPIFFE certificate, 24 h by default, chain leaf .. root", async () => {
  const ca = await CertificateAuthority.selfSigned();
  const r = await ca.sign(await csrPem(), GRANT);
  assert.ok(r.ok, r.ok ? "" : r.message);
  assert.equal(r.certChain.length, 2);
  const leaf = new X509Certificate(r.certChain[0]!);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.equal(leaf.subject ?? "", "");
  assert.equal(leaf.ca, false);
  assert.deepEqual(leaf.keyUsage?.sort(), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  const ttl = new Date(leaf.validTo).getTime() - Date.now();
  assert.ok(Math.abs(ttl - 86_400_000) < 10_000, `ttl ${ttl}`);
  assert.deepEqual(r.trustBundle, ca.trustBundle());
  await assertChain(r.certChain, r.trustBundle);
  // A requested validity is honoured.
  const short = await ca.sign(await csrPem(), GRANT, 120);
  assert.ok(short.ok);
  assert.ok(Math.abs(short.notAfter.getTime() - Date.now() - 120_000) < 5000);
});

test("CSRs for anything but exactly the granted identity are refused with a reason", async () => {
  const ca = await CertificateAuthority.selfSigned();
  const cases: [string, Promise<string>, string][] = [
    [
      "another service account",
      csrPem([{ type: "url", value: "spiffe://cluster.local/ns/shop/sa/admin" }]),
      "identity-mismatch",
    ],
    [
      "another trust domain",
      csrPem([{ type: "url", value: "spiffe://evil.org/ns/shop/sa/cart" }]),
      "identity-mismatch",
    ],
    [
      "an extra DNS SAN",
      csrPem([
        { type: "url", value: ID },
        { type: "dns", value: "cart.shop.svc" },
      ]),
      "identity-mismatch",
    ],
    [
      "two URI SANs",
      csrPem([
        { type: "url", value: ID },
        { type: "url", value: `${ID}2` },
      ]),
      "identity-mismatch",
    ],
    ["no SAN", csrPem([]), "identity-mismatch"],
    ["a CN", csrPem(undefined, { name: "CN=cart.shop" }), "csr-subject"],
  ];
  for (const [what, pem, reason] of cases) {
    const r = await ca.sign(await pem, GRANT);
    assert.equal(r.ok, false, what);
    if (!r.ok) assert.equal(r.reason, reason, `${what}: ${r.message}`);
  }
});

test("malformed, tampered, oversized CSRs, unaccepted keys and validities are refused", async () => {
  const ca = await CertificateAuthority.selfSigned({ maxTtlSeconds: 3600 });
  const good = await csrPem();
  const refusal = async (pem: string, ttl = 0) => {
    const r = await ca.sign(pem, GRANT, ttl);
    assert.equal(r.ok, false);
    return r.ok ? "" : r.reason;
  };
  assert.equal(await refusal("hello"), "csr-malformed");
  assert.equal(await refusal(good + good), "csr-malformed");
  assert.equal(
    await refusal("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"),
    "csr-malformed",
  );
  assert.equal(await refusal(`${good}${" ".repeat(MAX_CSR_BYTES)}`), "csr-too-large");
  // Signed content changed after signing (the SAN's "cart" -> "cars"): the signature does not verify.
  const der = Buffer.from(new x509.Pkcs10CertificateRequest(good).rawData);
  const at = der.indexOf("sa/cart");
  assert.ok(at > 0);
  der[at + 6] = "s".charCodeAt(0);
  assert.equal(await refusal(x509.PemConverter.encode(der, "CERTIFICATE REQUEST")), "csr-signature");
  // A P-521 key is not accepted (nor would an RSA 1024 one be).
  const p521 = (await (
    await import("node:crypto")
  ).webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-521" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  assert.equal(
    await refusal(await csrPem(undefined, { keys: p521, alg: { name: "ECDSA", hash: "SHA-512" } })),
    "csr-key",
  );
  assert.equal(await refusal(good, 3601), "ttl");
  assert.equal(await refusal(good, -1), "ttl");
  const ok = await ca.sign(good, GRANT, 3600);
  assert.ok(ok.ok);
});

test("plug-in CAs from `isthmus ca root/intermediate`: two clusters' workloads chain to the shared root", async () => {
  const base = tempDir();
  const io = { out: () => {}, err: () => {} };
  assert.equal(
    await main(["ca", "root", "--out", join(base, "root"), "--trust-domain", "mesh.example"], io),
    0,
  );
  for (const cluster of ["east", "west"])
    assert.equal(
      await main(
        [
          "ca",
          "intermediate",
          "--root",
          join(base, "root"),
          "--cluster",
          cluster,
          "--out",
          join(base, cluster),
        ],
        io,
      ),
      0,
    );
  // Never overwrites a key.
  assert.equal(await main(["ca", "root", "--out", join(base, "root")], io), 1);
  const rootPem = readFileSync(join(base, "root", "root-cert.pem"), "utf8");
  const chains: string[][] = [];
  for (const cluster of ["east", "west"]) {
    const ca = await CertificateAuthority.fromDirectory(join(base, cluster), { trustDomain: "mesh.example" });
    assert.deepEqual(ca.trustBundle(), [rootPem]);
    const r = await ca.sign(
      await csrPem([{ type: "url", value: "spiffe://mesh.example/ns/shop/sa/cart" }]),
      GRANT,
    );
    assert.ok(r.ok, r.ok ? "" : r.message);
    assert.equal(r.certChain.length, 3);
    assert.equal(r.certChain[2], rootPem);
    assert.match(new X509Certificate(r.certChain[1]!).subject, new RegExp(`L=${cluster}`));
    await assertChain(r.certChain, [rootPem]);
    chains.push(r.certChain);
  }
  // East's workload verifies against west's bundle: the same root.
  const westCa = await CertificateAuthority.fromDirectory(join(base, "west"));
  await assertChain(chains[0]!, westCa.trustBundle());
});

test("a plug-in CA with an RSA PKCS#1 key, a cert-chain.pem without ca-cert, several roots; bad sets refused", async () => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const rootKeys = {
    privateKey: privateKey.toCryptoKey(alg, false, ["sign"]),
    publicKey: publicKey.toCryptoKey(alg, true, ["verify"]),
  } as unknown as CryptoKeyPair;
  const caExt = [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "O=Istio, CN=Root CA",
    keys: rootKeys,
    signingAlgorithm: alg,
    notAfter: new Date(Date.now() + 86_400_000),
    extensions: caExt,
  });
  const inter = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const interCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: "O=Istio, CN=Intermediate CA",
    issuer: root.subject,
    publicKey: inter.publicKey.toCryptoKey(alg, true, ["verify"]) as never,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: alg,
    notAfter: new Date(Date.now() + 86_400_000),
    extensions: caExt,
  });
  const oldRoot = (await CertificateAuthority.selfSigned()).trustBundle()[0]!;
  const rootPem = `${root.toString("pem")}\n`;
  const files = {
    caCert: `${interCert.toString("pem")}\n`,
    caKey: inter.privateKey.export({ format: "pem", type: "pkcs1" }).toString(),
    rootCert: rootPem + oldRoot,
    certChain: "",
  };
  assert.match(files.caKey, /BEGIN RSA PRIVATE KEY/);
  const ca = await CertificateAuthority.fromPem(files);
  assert.deepEqual(ca.trustBundle(), [rootPem, oldRoot]);
  const r = await ca.sign(await csrPem(), GRANT);
  assert.ok(r.ok, r.ok ? "" : r.message);
  assert.equal(r.certChain.length, 3);
  await assertChain(r.certChain, r.trustBundle);

  const dir = tempDir();
  writeFileSync(join(dir, "ca-cert.pem"), files.caCert);
  writeFileSync(join(dir, "ca-key.pem"), files.caKey);
  writeFileSync(join(dir, "root-cert.pem"), files.rootCert);
  assert.ok((await CertificateAuthority.fromDirectory(dir)).trustBundle().length === 2);

  const refused = async (f: typeof files, pattern: RegExp) =>
    assert.rejects(
      CertificateAuthority.fromPem(f),
      (e: Error) => e instanceof CacertsError && pattern.test(e.message),
    );
  await refused(
    {
      ...files,
      caKey: generateKeyPairSync("rsa", { modulusLength: 2048 })
        .privateKey.export({ format: "pem", type: "pkcs8" })
        .toString(),
    },
    /does not belong/,
  );
  await refused({ ...files, rootCert: oldRoot }, /no certificate of root-cert.pem signed/);
  await refused({ ...files, caCert: "" }, /must hold one certificate/);
  await refused({ ...files, caKey: "garbage" }, /not a readable/);
});

test("the self-signed root is kept in its directory and reused", async () => {
  const dir = join(tempDir(), "self-signed-ca");
  const a = await CertificateAuthority.selfSigned({ dir, trustDomain: "td.example" });
  const b = await CertificateAuthority.selfSigned({ dir, trustDomain: "td.example" });
  assert.deepEqual(a.trustBundle(), b.trustBundle());
  const r = await b.sign(
    await csrPem([{ type: "url", value: "spiffe://td.example/ns/shop/sa/cart" }]),
    GRANT,
  );
  assert.ok(r.ok);
  await assertChain(r.certChain, a.trustBundle());
});
