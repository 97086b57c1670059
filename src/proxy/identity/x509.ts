// @peculiar/x509 with what it needs before it loads: tsyringe (its dependency injection) throws at import
// without a Reflect metadata polyfill, and ESM evaluates this module's imports in order, so importing the
// library through here guarantees the polyfill came first. Node's webcrypto is the provider: the library's
// default would be a global `crypto` that other code could replace.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

// WebCrypto's types by Node's names: the project compiles without the DOM library.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type SigningAlgorithm = webcrypto.Algorithm | webcrypto.EcdsaParams;

/** ECDSA P-256 with SHA-256: the keys isthmus generates (see docs/security.md for why not RSA). */
export const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A new P-256 key pair, extractable so that its private half can be written as PEM for node:tls. */
export function generateEcKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
}

/** PKCS#8 PEM ("PRIVATE KEY"), what node:tls and Istio's ca-key.pem readers accept. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return `${x509.PemConverter.encode(der, "PRIVATE KEY")}\n`;
}

/** Every PEM block of `label` in `text`, as DER. */
export function pemBlocks(text: string, label: string): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`, "g");
  for (const m of text.matchAll(re)) {
    const buf = Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
    out.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
  }
  return out;
}

/** Certificates of a PEM bundle, in file order. */
export function parseCertificates(text: string): x509.X509Certificate[] {
  return pemBlocks(text, "CERTIFICATE").map((der) => new x509.X509Certificate(der));
}

/** One certificate as PEM with a final newline. */
export function certificatePem(cert: x509.X509Certificate): string {
  return `${cert.toString("pem")}\n`;
}

/** The URI SANs of a certificate or CSR extension list. */
export function uriSans(extensions: readonly x509.Extension[]): string[] {
  const out: string[] = [];
  for (const ext of extensions) {
    if (ext.type !== "2.5.29.17") continue;
    const san =
      ext instanceof x509.SubjectAlternativeNameExtension
        ? ext
        : new x509.SubjectAlternativeNameExtension(ext.rawData);
    for (const n of san.names.items) if (n.type === "url") out.push(n.value);
  }
  return out;
}
