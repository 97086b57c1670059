// Named TLS secrets, as Envoy's SDS serves them: a certificate with its key ("default" for the workload's
// own identity) and trusted roots ("ROOTCA"). Config refers to secrets by name and never carries a key the
// control plane would have to know; whatever supplies them (the proxy's identity client) replaces them at
// will, and listeners and clusters that use them pick up the new material for new handshakes without a config
// push or a dropped connection.

export interface TlsCertificateSecret {
  /** PEM: the certificate first, then intermediates. */
  readonly certificateChain: string;
  /** PEM. Held in memory only; never logged or dumped. */
  readonly privateKey: string;
}

export interface ValidationSecret {
  /** PEM roots. */
  readonly trustedCa: string;
}

export class SecretStore {
  private readonly certificates = new Map<string, TlsCertificateSecret>();
  private readonly validations = new Map<string, ValidationSecret>();
  private readonly listeners = new Set<() => void>();
  /** Bumped on every change: users cache what they built from the store by this number. */
  generation = 0;

  certificate(name: string): TlsCertificateSecret | undefined {
    return this.certificates.get(name);
  }

  validation(name: string): ValidationSecret | undefined {
    return this.validations.get(name);
  }

  setCertificate(name: string, secret: TlsCertificateSecret): void {
    this.certificates.set(name, secret);
    this.changed();
  }

  setValidation(name: string, secret: ValidationSecret): void {
    this.validations.set(name, secret);
    this.changed();
  }

  /** Names of what the store holds (for /certs and readiness), never the material. */
  names(): { certificates: string[]; validations: string[] } {
    return { certificates: [...this.certificates.keys()], validations: [...this.validations.keys()] };
  }

  /** Calls `fn` after each change; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private changed(): void {
    this.generation++;
    for (const fn of this.listeners) fn();
  }
}
