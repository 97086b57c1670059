// The mesh CA: signs workload CSRs into SPIFFE certificates (URI SAN spiffe://TRUST_DOMAIN/ns/NS/sa/SA) with a
// self-signed root (generated at start, or kept in --state-dir) or a plug-in intermediate from Istio's cacerts
// files. A CSR is signed only for the one identity its caller was granted (the token's service account):
// anything else in it — a subject, another SAN, a second SAN — is refused, never dropped, so that a caller
// never gets a certificate other than the one it asked for and a confused client fails loudly.
import { createPublicKey } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { x509 } from "../../proxy/identity/x509.ts";
import {
  assertKeyMatches,
  CACERTS_FILES,
  CacertsError,
  type CacertsPem,
  createRoot,
  importSigningKey,
  pemCerts,
  randomSerial,
  readCacerts,
  type SigningKey,
  writeFiles,
} from "./cacerts.ts";

/** Why a CSR was refused; a fixed set (metrics label values). */
export type CsrRefusal =
  | "csr-too-large"
  | "csr-malformed"
  | "csr-signature"
  | "csr-key"
  | "csr-subject"
  | "identity-mismatch"
  | "ttl"
  | "sign-error";

export type SignResult =
  | {
      readonly ok: true;
      /** Leaf first, then the intermediates, the root last (Istio's CreateCertificate order). */
      readonly certChain: string[];
      readonly trustBundle: string[];
      readonly notAfter: Date;
    }
  | { readonly ok: false; readonly reason: CsrRefusal; readonly message: string };

/** The identity a caller was granted (by its token). */
export interface Grant {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface CaOptions {
  /** Default cluster.local, as Istio's. */
  readonly trustDomain?: string;
  /** Default 24 h (Istio's DEFAULT_WORKLOAD_CERT_TTL). */
  readonly defaultTtlSeconds?: number;
  /** Longest validity a CSR may ask for; default 90 days (Istio's MAX_WORKLOAD_CERT_TTL). */
  readonly maxTtlSeconds?: number;
  /**
   * Roots trusted besides the CA's own (PEM): the old root while a root is rotated, the roots of trust domains
   * given as aliases. Sent to every workload in its trust bundle.
   */
  readonly extraRoots?: string;
}

/** A CSR is a few hundred bytes (P-256) to two kilobytes (RSA 4096); anything much larger is refused unread. */
export const MAX_CSR_BYTES = 16 * 1024;
const MIN_RSA_BITS = 2048;
/** Verifying a larger RSA signature costs more than a workload key is worth. */
const MAX_RSA_BITS = 4096;
/** Istio's self-signed root lives 10 years (CITADEL_SELF_SIGNED_CA_CERT_TTL). */
const SELF_SIGNED_ROOT_DAYS = 3650;
const BACKDATE_MS = 60_000;

export const spiffeId = (trustDomain: string, g: Grant): string =>
  `spiffe://${trustDomain}/ns/${g.namespace}/sa/${g.serviceAccount}`;

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  private readonly signer: SigningKey;
  /** The signing certificate, its intermediates, the root last. */
  private readonly chain: readonly x509.X509Certificate[];
  private readonly chainPem: readonly string[];
  private readonly roots: readonly string[];

  private constructor(
    signer: SigningKey,
    chain: x509.X509Certificate[],
    roots: x509.X509Certificate[],
    options: CaOptions,
  ) {
    this.trustDomain = options.trustDomain ?? "cluster.local";
    this.maxTtlSeconds = options.maxTtlSeconds ?? 90 * 86_400;
    this.defaultTtlSeconds = Math.min(options.defaultTtlSeconds ?? 86_400, this.maxTtlSeconds);
    this.signer = signer;
    this.chain = chain;
    this.chainPem = chain.map(pem);
    const bundle = roots.map(pem);
    for (const extra of pemCerts(options.extraRoots ?? "")) {
      const p = pem(extra);
      if (!bundle.includes(p)) bundle.push(p);
    }
    this.roots = bundle;
  }

  /**
   * A CA from Istio's cacerts PEM: ca-cert.pem signs, cert-chain.pem holds its issuers (with or without
   * ca-cert.pem first, with or without the root), root-cert.pem the roots (several during a root rotation).
   * Refused with the reason when the key does not match, ca-cert.pem is not a CA or not valid now, or the
   * chain does not verify up to one of the roots.
   */
  static async fromPem(files: CacertsPem, options: CaOptions = {}): Promise<CertificateAuthority> {
    const caCerts = pemCerts(files.caCert);
    if (caCerts.length !== 1)
      throw new CacertsError(`${CACERTS_FILES.caCert} must hold one certificate, not ${caCerts.length}`);
    const caCert = caCerts[0]!;
    assertKeyMatches(caCert, files.caKey);
    const signer = importSigningKey(files.caKey);
    const bc = caCert.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca)
      throw new CacertsError(`${CACERTS_FILES.caCert} is not a CA certificate (basicConstraints CA:TRUE)`);
    const ku = caCert.getExtension(x509.KeyUsagesExtension);
    if (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0)
      throw new CacertsError(
        `${CACERTS_FILES.caCert} may not sign certificates (keyUsage without keyCertSign)`,
      );
    const now = Date.now();
    if (caCert.notAfter.getTime() <= now || caCert.notBefore.getTime() > now + BACKDATE_MS)
      throw new CacertsError(
        `${CACERTS_FILES.caCert} is not valid now (${caCert.notBefore.toISOString()} to ${caCert.notAfter.toISOString()})`,
      );
    const roots = pemCerts(files.rootCert);
    if (roots.length === 0) throw new CacertsError(`${CACERTS_FILES.rootCert} holds no certificate`);
    const chain = [caCert];
    for (const c of pemCerts(files.certChain)) if (!c.equal(caCert)) chain.push(c);
    for (let i = 0; i + 1 < chain.length; i++)
      if (!(await signedBy(chain[i]!, chain[i + 1]!)))
        throw new CacertsError(
          `${CACERTS_FILES.certChain}: "${chain[i]!.subject}" is not signed by the next certificate "${chain[i + 1]!.subject}"`,
        );
    const last = chain[chain.length - 1]!;
    if (!roots.some((r) => r.equal(last))) {
      let issuer: x509.X509Certificate | undefined;
      for (const r of roots) if (await signedBy(last, r)) issuer = r;
      if (issuer === undefined)
        throw new CacertsError(
          `the chain of ${CACERTS_FILES.caCert} ends at "${last.subject}", which no certificate of ${CACERTS_FILES.rootCert} signed`,
        );
      chain.push(issuer);
    }
    return new CertificateAuthority(signer, chain, roots, options);
  }

  /** A CA from a cacerts directory (isthmus control-plane --ca-dir). */
  static async fromDirectory(dir: string, options: CaOptions = {}): Promise<CertificateAuthority> {
    try {
      return await CertificateAuthority.fromPem(readCacerts(dir), options);
    } catch (e) {
      if (e instanceof CacertsError) throw new CacertsError(`plug-in CA ${dir}: ${e.message}`);
      throw e;
    }
  }

  /**
   * Istio's default: a self-signed root that signs the workloads directly. With `dir` (under --state-dir) the
   * root is kept there in the cacerts layout and reused on restart, as istiod keeps it in istio-ca-secret:
   * a new root at every restart would invalidate every workload certificate in the mesh.
   */
  static async selfSigned(options: CaOptions & { dir?: string } = {}): Promise<CertificateAuthority> {
    const trustDomain = options.trustDomain ?? "cluster.local";
    if (options.dir !== undefined && existsSync(join(options.dir, CACERTS_FILES.caKey)))
      return CertificateAuthority.fromDirectory(options.dir, options);
    const root = await createRoot({
      trustDomain,
      days: SELF_SIGNED_ROOT_DAYS,
      commonName: "isthmus self-signed root CA",
    });
    const files: CacertsPem = { caCert: root.cert, caKey: root.key, rootCert: root.cert, certChain: "" };
    if (options.dir !== undefined)
      writeFiles(options.dir, {
        [CACERTS_FILES.caCert]: files.caCert,
        [CACERTS_FILES.caKey]: files.caKey,
        [CACERTS_FILES.rootCert]: files.rootCert,
        [CACERTS_FILES.certChain]: files.certChain,
      });
    return CertificateAuthority.fromPem(files, options);
  }

  /** The roots workloads trust (PEM, one certificate each). */
  trustBundle(): string[] {
    return [...this.roots];
  }

  /** The signing certificate up to the root (PEM). */
  signingChain(): string[] {
    return [...this.chainPem];
  }

  /** When the root of the signing chain expires, and when the first certificate of the chain does. */
  expiry(): { root: Date; chain: Date } {
    return {
      root: this.chain[this.chain.length - 1]!.notAfter,
      chain: new Date(Math.min(...this.chain.map((c) => c.notAfter.getTime()))),
    };
  }

  /** Signs `csrPem` for `grant`'s identity, or says why not. Never throws for bad input. */
  async sign(csrPem: string, grant: Grant, requestedTtlSeconds = 0): Promise<SignResult> {
    const refuse = (reason: CsrRefusal, message: string): SignResult => ({ ok: false, reason, message });
    if (csrPem.length > MAX_CSR_BYTES)
      return refuse(
        "csr-too-large",
        `the CSR has ${csrPem.length} bytes; at most ${MAX_CSR_BYTES} are accepted`,
      );
    const blocks = csrPem.match(
      /-----BEGIN CERTIFICATE REQUEST-----[\s\S]*?-----END CERTIFICATE REQUEST-----/g,
    );
    if (blocks?.length !== 1)
      return refuse(
        "csr-malformed",
        `expected one PEM CERTIFICATE REQUEST block, found ${blocks?.length ?? 0}`,
      );
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(blocks[0]!);
    } catch (e) {
      return refuse("csr-malformed", `the CSR does not parse: ${(e as Error).message}`);
    }
    const keyProblem = checkPublicKey(csr.publicKey.rawData);
    if (keyProblem !== undefined) return refuse("csr-key", keyProblem);
    let verified = false;
    try {
      verified = await csr.verify();
    } catch {
      verified = false;
    }
    if (!verified) return refuse("csr-signature", "the CSR's signature does not verify with its public key");
    if (csr.subjectName.toJSON().length > 0)
      return refuse(
        "csr-subject",
        `the CSR's subject must be empty (the identity is its URI SAN), not "${csr.subject}"`,
      );
    const expected = spiffeId(this.trustDomain, grant);
    let names: { type: string; value: string }[];
    try {
      names = sanNames(csr.extensions);
    } catch (e) {
      return refuse("csr-malformed", `the CSR's subjectAltName does not parse: ${(e as Error).message}`);
    }
    if (names.length !== 1 || names[0]!.type !== "url" || names[0]!.value !== expected)
      return refuse(
        "identity-mismatch",
        `the CSR asks for ${names.length === 0 ? "no identity" : names.map((n) => `${n.type}:${n.value}`).join(", ")}; ` +
          `the token grants exactly one URI SAN, ${expected}`,
      );
    if (!Number.isFinite(requestedTtlSeconds) || requestedTtlSeconds < 0)
      return refuse("ttl", `invalid validity ${requestedTtlSeconds}`);
    if (requestedTtlSeconds > this.maxTtlSeconds)
      return refuse(
        "ttl",
        `requested validity ${requestedTtlSeconds}s is longer than the maximum ${this.maxTtlSeconds}s`,
      );
    const ttl = requestedTtlSeconds === 0 ? this.defaultTtlSeconds : requestedTtlSeconds;
    const now = Date.now();
    // Never past the signing certificate: the chain would be invalid from then on anyway.
    const notAfter = new Date(Math.min(now + ttl * 1000, this.chain[0]!.notAfter.getTime()));
    try {
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: "",
        issuer: this.chain[0]!.subjectName,
        publicKey: csr.publicKey,
        signingKey: this.signer.key,
        signingAlgorithm: this.signer.algorithm,
        notBefore: new Date(Math.max(now - BACKDATE_MS, this.chain[0]!.notBefore.getTime())),
        notAfter,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
            true,
          ),
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          await x509.AuthorityKeyIdentifierExtension.create(this.chain[0]!.publicKey),
          // Critical: the subject is empty (RFC 5280 4.2.1.6).
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: expected }], true),
        ],
      });
      return { ok: true, certChain: [pem(leaf), ...this.chainPem], trustBundle: [...this.roots], notAfter };
    } catch (e) {
      return refuse("sign-error", `signing failed: ${(e as Error).message}`);
    }
  }
}

const pem = (c: x509.X509Certificate): string => `${c.toString("pem")}\n`;

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/** Why a CSR's key is not acceptable for a workload, or undefined. */
function checkPublicKey(spki: ArrayBuffer): string | undefined {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (e) {
    return `the CSR's public key does not parse: ${(e as Error).message}`;
  }
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    if (d.namedCurve === "prime256v1" || d.namedCurve === "secp384r1") return undefined;
    return `EC curve ${d.namedCurve} is not accepted (P-256 or P-384)`;
  }
  if (key.asymmetricKeyType === "rsa") {
    const bits = d.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS) return undefined;
    return `an RSA key of ${bits} bits is not accepted (${MIN_RSA_BITS} to ${MAX_RSA_BITS})`;
  }
  return `key type ${key.asymmetricKeyType} is not accepted (EC P-256, P-384 or RSA)`;
}

/** Every name of every subjectAltName extension requested. */
function sanNames(extensions: readonly x509.Extension[]): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  for (const ext of extensions) {
    if (ext.type !== "2.5.29.17") continue;
    const san = new x509.SubjectAlternativeNameExtension(ext.rawData);
    for (const n of san.names.items) out.push({ type: n.type, value: n.value });
  }
  return out;
}
