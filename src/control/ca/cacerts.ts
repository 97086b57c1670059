// Istio's plug-in CA files ("cacerts": ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) and the
// certificates `isthmus ca root` and `isthmus ca intermediate` put in them, as Istio's tools/certs does: one
// root shared by every cluster, kept offline, and an intermediate per cluster that signs its workloads, so
// workloads of different clusters trust each other through the root.
import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import {
  type CryptoKey,
  generateEcKeyPair,
  privateKeyPem,
  type SigningAlgorithm,
  x509,
} from "../../proxy/identity/x509.ts";

export const CACERTS_FILES = {
  caCert: "ca-cert.pem",
  caKey: "ca-key.pem",
  rootCert: "root-cert.pem",
  certChain: "cert-chain.pem",
} as const;

/** A cacerts directory's contents as PEM text. `certChain` is "" for a self-signed CA (Istio's layout too). */
export interface CacertsPem {
  readonly caCert: string;
  readonly caKey: string;
  readonly rootCert: string;
  readonly certChain: string;
}

/** A file of the layout larger than this is not a certificate bundle; refused before it is read whole. */
const MAX_FILE_BYTES = 1024 * 1024;

export class CacertsError extends Error {}

/** Reads DIR's four files; cert-chain.pem may be missing (a self-signed plug-in root). */
export function readCacerts(dir: string): CacertsPem {
  const read = (name: string, optional: boolean): string => {
    const path = join(dir, name);
    let size: number;
    try {
      const st = lstatSync(path);
      if (!st.isFile() && !st.isSymbolicLink()) throw new CacertsError(`${path} is not a regular file`);
      size = st.size;
    } catch (e) {
      if (e instanceof CacertsError) throw e;
      if (optional && (e as NodeJS.ErrnoException).code === "ENOENT") return "";
      throw new CacertsError(`cannot read ${path}: ${(e as Error).message}`);
    }
    if (size > MAX_FILE_BYTES) throw new CacertsError(`${path} is larger than ${MAX_FILE_BYTES} bytes`);
    return readFileSync(path, "utf8");
  };
  return {
    caCert: read(CACERTS_FILES.caCert, false),
    caKey: read(CACERTS_FILES.caKey, false),
    rootCert: read(CACERTS_FILES.rootCert, false),
    certChain: read(CACERTS_FILES.certChain, true),
  };
}

/**
 * Writes files into DIR (created 0700), each durably (temporary file, fsync, rename), keys 0600. Refuses to
 * replace an existing key unless `overwrite`: a CA key overwritten by mistake cannot be recovered, and every
 * certificate it signed would stop verifying.
 */
export function writeFiles(
  dir: string,
  files: Readonly<Record<string, string>>,
  options: { overwrite?: boolean } = {},
): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!options.overwrite)
    for (const name of Object.keys(files)) {
      try {
        lstatSync(join(dir, name));
      } catch {
        continue;
      }
      throw new CacertsError(`${join(dir, name)} exists; not overwriting it`);
    }
  for (const [name, text] of Object.entries(files)) {
    const path = join(dir, name);
    const temp = join(dir, `.${name}.${randomBytes(4).toString("hex")}.tmp`);
    const fd = openSync(temp, "wx", name.endsWith("-key.pem") ? 0o600 : 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  }
  const dfd = openSync(dir, "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** What a CA certificate's key can sign with, and the key imported for it. */
export interface SigningKey {
  readonly key: CryptoKey;
  readonly algorithm: SigningAlgorithm;
}

/**
 * A private key in any PEM form Istio's files use (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" from older
 * openssl genrsa, SEC1 "EC PRIVATE KEY") as a webcrypto signing key. Node's parser reads them all.
 */
export function importSigningKey(pem: string): SigningKey {
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new CacertsError(`the CA key is not a readable unencrypted private key: ${(e as Error).message}`);
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "ec") {
    const curve =
      details.namedCurve === "prime256v1" ? "P-256" : details.namedCurve === "secp384r1" ? "P-384" : "";
    if (curve === "") throw new CacertsError(`unsupported EC curve ${details.namedCurve}`);
    const hash = curve === "P-256" ? "SHA-256" : "SHA-384";
    return {
      key: key.toCryptoKey({ name: "ECDSA", namedCurve: curve }, false, ["sign"]) as CryptoKey,
      algorithm: { name: "ECDSA", hash },
    };
  }
  if (key.asymmetricKeyType === "rsa") {
    if ((details.modulusLength ?? 0) < 2048)
      throw new CacertsError("an RSA CA key must have at least 2048 bits");
    return {
      key: key.toCryptoKey({ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]) as CryptoKey,
      algorithm: { name: "RSASSA-PKCS1-v1_5" },
    };
  }
  throw new CacertsError(`unsupported CA key type ${key.asymmetricKeyType}`);
}

/** A positive 128-bit serial number (RFC 5280 allows 20 octets; the top bit clear keeps it positive). */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString("hex");
}

const DAY_MS = 86_400_000;

/** Certificates start a little in the past: hosts whose clocks lag accept them at once. */
const BACKDATE_MS = 60_000;

export interface RootOptions {
  readonly trustDomain: string;
  readonly days: number;
  /** Subject common name. */
  readonly commonName?: string;
}

/** A self-signed root: its certificate and PKCS#8 key, as PEM. */
export async function createRoot(options: RootOptions): Promise<{ cert: string; key: string }> {
  const keys = await generateEcKeyPair();
  const now = Date.now();
  const name = `O=${escapeDn(options.trustDomain)}, CN=${escapeDn(options.commonName ?? "isthmus root CA")}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + options.days * DAY_MS),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: `${cert.toString("pem")}\n`, key: await privateKeyPem(keys.privateKey) };
}

export interface IntermediateOptions {
  readonly rootCert: string;
  readonly rootKey: string;
  readonly cluster: string;
  readonly days: number;
}

/**
 * An intermediate CA for one cluster, signed by the root, as the cacerts files of that cluster. Its validity
 * ends no later than the root's: a chain is only as valid as its shortest-lived member.
 */
export async function createIntermediate(options: IntermediateOptions): Promise<CacertsPem> {
  const roots = pemCerts(options.rootCert);
  if (roots.length !== 1)
    throw new CacertsError(`the root file must hold one certificate, not ${roots.length}`);
  const root = roots[0]!;
  const signer = importSigningKey(options.rootKey);
  assertKeyMatches(root, options.rootKey);
  const keys = await generateEcKeyPair();
  const now = Date.now();
  const notAfter = Math.min(now + options.days * DAY_MS, root.notAfter.getTime());
  const org = root.subjectName.getField("O")[0] ?? "isthmus";
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `O=${escapeDn(org)}, CN=${escapeDn("isthmus intermediate CA")}, L=${escapeDn(options.cluster)}`,
    issuer: root.subjectName,
    publicKey: keys.publicKey,
    signingKey: signer.key,
    signingAlgorithm: signer.algorithm,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.publicKey),
    ],
  });
  const caCert = `${cert.toString("pem")}\n`;
  const rootPem = `${root.toString("pem")}\n`;
  return {
    caCert,
    caKey: await privateKeyPem(keys.privateKey),
    rootCert: rootPem,
    certChain: caCert + rootPem,
  };
}

/** Certificates of a PEM text; a block that does not parse is an error, not skipped. */
export function pemCerts(text: string): x509.X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b, i) => {
    try {
      return new x509.X509Certificate(b);
    } catch (e) {
      throw new CacertsError(`certificate ${i + 1} does not parse: ${(e as Error).message}`);
    }
  });
}

/** Throws unless the private key in `keyPem` is the one of `cert`'s public key. */
export function assertKeyMatches(cert: x509.X509Certificate, keyPem: string): void {
  let fromKey: Buffer;
  try {
    fromKey = createPublicKey(createPrivateKey(keyPem)).export({ format: "der", type: "spki" });
  } catch (e) {
    throw new CacertsError(`the key is not a readable unencrypted private key: ${(e as Error).message}`);
  }
  const fromCert = Buffer.from(cert.publicKey.rawData);
  if (!fromKey.equals(fromCert))
    throw new CacertsError(`the key does not belong to the certificate ${cert.subject}`);
}

/** RFC 4514 escaping for a value put into a DN string. */
function escapeDn(value: string): string {
  return value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/^[ #]|[ ]$/g, (c) => `\\${c}`);
}
