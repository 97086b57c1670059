// The peering certificate: issued by the cluster's own intermediate CA for the control plane's SPIFFE ID, a
// chain up to the shared root, the CA's trust bundle as roots, and the identity check a peer applies to it.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { test } from "node:test";
import { renewalDelayMs } from "./credentials.ts";
import { checkPeerCertificate, explainDialFailure } from "./peer-certificate.ts";
import { clusterCa, makePeeringCredentials, newRoot, TRUST_DOMAIN } from "./peering-test-support.ts";

test("the peering certificate: the control plane's SPIFFE ID, chained to the shared root", async () => {
  const root = await newRoot();
  const ca = await clusterCa(root, "east");
  const creds = await makePeeringCredentials(ca, { ttlSeconds: 3600 });
  const certs = creds.chain.map((p) => new X509Certificate(p));
  assert.equal(certs.length, 3, "leaf, intermediate, root");
  assert.equal(
    certs[0]!.subjectAltName,
    `URI:spiffe://${TRUST_DOMAIN}/ns/istio-system/sa/isthmus-control-plane`,
  );
  for (let i = 0; i + 1 < certs.length; i++) assert.ok(certs[i]!.verify(certs[i + 1]!.publicKey));
  assert.deepEqual(creds.roots, [root.cert]);
  assert.equal(creds.roots.length, 1);
  assert.match(creds.key, /^-----BEGIN PRIVATE KEY-----/);
  assert.ok(Math.abs(creds.notAfter.getTime() - Date.now() - 3_600_000) < 10_000);
  const delay = renewalDelayMs(creds);
  assert.ok(delay > 1_700_000 && delay <= 1_800_000, `renew at half-life, not ${delay}`);

  assert.equal(checkPeerCertificate(certs[0]!.raw, TRUST_DOMAIN), undefined);
  assert.match(
    checkPeerCertificate(certs[0]!.raw, "other.domain") ?? "",
    /is for spiffe:\/\/mesh\.example\/ns\/istio-system\/sa\/isthmus-control-plane, not the control plane's identity spiffe:\/\/other\.domain\//,
  );
  assert.match(checkPeerCertificate(certs[1]!.raw, TRUST_DOMAIN) ?? "", /is for no URI SAN/);
  assert.match(checkPeerCertificate(undefined, TRUST_DOMAIN) ?? "", /presented no certificate/);
  assert.match(checkPeerCertificate(Buffer.from("junk"), TRUST_DOMAIN) ?? "", /does not parse/);
});

test("dial failures read as an operator needs them", () => {
  assert.equal(
    explainDialFailure(
      "No connection established. Last error: Error: self-signed certificate in certificate chain. Resolution note: ",
    ),
    "certificate signed by unknown authority: the peer's chain does not reach this mesh's root (self-signed certificate in certificate chain)",
  );
  assert.match(
    explainDialFailure("Last error: Error: unable to get local issuer certificate"),
    /^certificate signed by unknown authority/,
  );
  assert.equal(
    explainDialFailure(
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ",
    ),
    "connect ECONNREFUSED 127.0.0.1:1",
  );
  assert.equal(
    explainDialFailure('cluster "a" has no MeshLink for cluster "b"'),
    'cluster "a" has no MeshLink for cluster "b"',
  );
});
