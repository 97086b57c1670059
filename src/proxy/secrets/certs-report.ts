// Envoy's admin /certs in the proxy's terms: for each named secret, what its certificates say (subject, SANs,
// serial, validity, days left) — never the private key.
import { cryptoModule } from "../lazy-modules.ts";
import type { SecretStore } from "./secret-store.ts";

export interface CertificateDetails {
  readonly subject: string;
  readonly subjectAltNames: string[];
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly expirationTime: string;
  readonly daysUntilExpiration: number;
}

export interface CertsReport {
  readonly certificates: Array<{ name: string; chain: CertificateDetails[] }>;
  readonly validations: Array<{ name: string; ca: CertificateDetails[] }>;
}

export function certsReport(store: SecretStore, now = Date.now()): CertsReport {
  const { certificates, validations } = store.names();
  return {
    certificates: certificates.map((name) => ({
      name,
      chain: details(store.certificate(name)?.certificateChain ?? "", now),
    })),
    validations: validations.map((name) => ({
      name,
      ca: details(store.validation(name)?.trustedCa ?? "", now),
    })),
  };
}

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function details(pem: string, now: number): CertificateDetails[] {
  return (pem.match(PEM) ?? []).map((block) => {
    const c = new (cryptoModule().X509Certificate)(block);
    const expires = new Date(c.validTo);
    return {
      subject: (c.subject ?? "").replaceAll("\n", ", "),
      subjectAltNames: (c.subjectAltName ?? "").split(", ").filter((s) => s !== ""),
      serialNumber: c.serialNumber,
      validFrom: new Date(c.validFrom).toISOString(),
      expirationTime: expires.toISOString(),
      daysUntilExpiration: Math.floor((expires.getTime() - now) / 86_400_000),
    };
  });
}
