// The control plane's peering certificate, issued by its own CA like any workload's: a key generated here
// (never written, never logged), a CSR for spiffe://TD/ns/istio-system/sa/isthmus-control-plane signed through
// CertificateAuthority.sign with that grant. The certificate names no cluster: the CA signs exactly the one
// SPIFFE identity a grant allows, and the cluster is announced in the Hello instead, which a receiver accepts
// only for a cluster one of its links names (docs/peering.md says why that binds as tightly as a DNS SAN would).

import { EC_P256, generateEcKeyPair, privateKeyPem, x509 } from "../../proxy/identity/x509.ts";
import { type CertificateAuthority, spiffeId } from "../ca/authority.ts";
import { CONTROL_PLANE_GRANT } from "./identity.ts";

/** What a PeerLinks presents and trusts. */
export interface PeeringCredentials {
  /** PKCS#8 PEM. Secret: pass it to PeerLinks, never to a log. */
  readonly key: string;
  /** The leaf first, then the CA's signing chain up to the root (PEM each). */
  readonly chain: readonly string[];
  /** The roots a peer's chain must reach: the CA's trust bundle (PEM each). */
  readonly roots: readonly string[];
  readonly notAfter: Date;
}

export class PeeringCredentialsError extends Error {}

/** A peering certificate from `ca`; `ttlSeconds` 0 is the CA's default (24 h). Renew at half-life. */
export async function makePeeringCredentials(
  ca: CertificateAuthority,
  options: { ttlSeconds?: number } = {},
): Promise<PeeringCredentials> {
  const keys = await generateEcKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        [{ type: "url", value: spiffeId(ca.trustDomain, CONTROL_PLANE_GRANT) }],
        true,
      ),
    ],
  });
  const signed = await ca.sign(csr.toString("pem"), CONTROL_PLANE_GRANT, options.ttlSeconds ?? 0);
  if (!signed.ok)
    throw new PeeringCredentialsError(
      `the CA refused the peering certificate: ${signed.reason}: ${signed.message}`,
    );
  return {
    key: await privateKeyPem(keys.privateKey),
    chain: signed.certChain,
    roots: signed.trustBundle,
    notAfter: signed.notAfter,
  };
}

/** Milliseconds until `credentials` should be renewed (half their remaining life), at least 1 s. */
export function renewalDelayMs(credentials: PeeringCredentials, now = Date.now()): number {
  return Math.max(1000, Math.floor((credentials.notAfter.getTime() - now) / 2));
}
