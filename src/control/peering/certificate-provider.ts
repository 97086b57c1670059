// The peering credentials as a grpc-js CertificateProvider: the server reads its certificate, key and trusted
// roots through it, so renewed credentials apply to the next handshake without a restart.

import type { PeeringCredentials } from "./credentials.ts";
import type { grpc } from "./peering-proto.ts";

type Provider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

export type PeeringKeyMaterial = Pick<PeeringCredentials, "key" | "chain" | "roots">;

export class PeeringCertificateProvider implements Provider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private material: PeeringKeyMaterial;

  constructor(material: PeeringKeyMaterial) {
    this.material = material;
  }

  get current(): PeeringKeyMaterial {
    return this.material;
  }

  update(material: PeeringKeyMaterial): void {
    this.material = material;
    for (const l of this.caListeners) l(this.ca());
    for (const l of this.identityListeners) l(this.identity());
  }

  // A new listener hears the current material on the next microtask, not at once: grpc-js registers the
  // server's own watcher only after adding its listener, and would miss an answer given synchronously.
  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    queueMicrotask(() => {
      if (this.caListeners.has(l)) l(this.ca());
    });
  }
  removeCaCertificateListener(l: CaListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdentityListener): void {
    this.identityListeners.add(l);
    queueMicrotask(() => {
      if (this.identityListeners.has(l)) l(this.identity());
    });
  }
  removeIdentityCertificateListener(l: IdentityListener): void {
    this.identityListeners.delete(l);
  }

  private ca() {
    return { caCertificate: Buffer.from(this.material.roots.join("")) };
  }
  private identity() {
    return {
      certificate: Buffer.from(this.material.chain.join("")),
      privateKey: Buffer.from(this.material.key),
    };
  }
}
