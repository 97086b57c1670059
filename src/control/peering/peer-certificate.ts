// The identity check on a peer's certificate, after TLS has verified its chain up to our roots: it must be
// a control plane's certificate (exactly the SPIFFE ID spiffe://TD/ns/istio-system/sa/isthmus-control-plane),
// not a workload's that the same root also vouches for.
import { uriSans, x509 } from "../../proxy/identity/x509.ts";
import { clip, controlPlaneSpiffeId } from "./identity.ts";

/** Why the certificate (DER) is not a control plane's of `trustDomain`, or undefined when it is. */
export function checkPeerCertificate(raw: Buffer | undefined, trustDomain: string): string | undefined {
  const expected = controlPlaneSpiffeId(trustDomain);
  if (raw === undefined || raw.length === 0) return "the peer presented no certificate";
  let uris: string[];
  try {
    uris = uriSans(new x509.X509Certificate(raw).extensions);
  } catch (e) {
    return `the peer's certificate does not parse: ${(e as Error).message}`;
  }
  if (uris.length === 1 && uris[0] === expected) return undefined;
  const shown = uris.length === 0 ? "no URI SAN" : uris.map((u) => clip(u, 120)).join(", ");
  return `the peer's certificate is for ${shown}, not the control plane's identity ${expected}`;
}

/**
 * A dial's failure as an operator reads it: grpc-js's wrapping taken off ("No connection established. Last
 * error: Error: ... Resolution note: "), and OpenSSL's words explained for a link ("self-signed certificate in
 * certificate chain" and "unable to get local issuer certificate" are a peer whose CA does not chain to our
 * roots).
 */
export function explainDialFailure(details: string): string {
  const m = /Last error: (?:Error: )?(.*?)(?:\.? Resolution note:.*)?$/s.exec(details);
  const message = (m?.[1] ?? details).trim();
  if (
    /unable to get (local )?issuer certificate|self[- ]signed certificate|unable to verify the first/i.test(
      message,
    )
  )
    return `certificate signed by unknown authority: the peer's chain does not reach this mesh's root (${message})`;
  if (/certificate has expired|not yet valid/i.test(message))
    return `the peer's certificate is not valid now (${message})`;
  return message;
}
