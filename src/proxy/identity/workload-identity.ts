// The proxy's workload certificate: a key pair generated here (the private key never leaves the process), a
// CSR for the SPIFFE ID the proxy is given, sent to the control plane's CertificateService with the workload
// token read from a file, and the answer checked before it is used (our key, our identity, a chain that
// verifies up to the trust bundle). Rotated at half its lifetime, with a fresh key each time, as istio-agent
// does (SECRET_GRACE_PERIOD_RATIO 0.5, jittered so that workloads started together do not rotate together);
// a failed request is retried with jittered exponential backoff while the current certificate keeps being
// served. The token file is re-read on each request, so a rotated token is picked up.
//
// This module knows nothing of Istio: the SPIFFE ID and the token file are given to it.
import { X509Certificate } from "node:crypto";
import { open } from "node:fs/promises";
import {
  type CertificateRequestMessage,
  type CertificateResponseMessage,
  certificateService,
  grpc,
} from "./ca-proto.ts";
import { EC_P256, generateEcKeyPair, privateKeyPem, x509 } from "./x509.ts";

export interface IdentityMaterial {
  readonly spiffeId: string;
  /** PEM: the workload's certificate first, then its intermediates (the root is in trustBundle): node:tls `cert`. */
  readonly certificateChain: string;
  /** PEM (PKCS#8): node:tls `key`. */
  readonly privateKey: string;
  /** PEM roots to verify peers with: node:tls `ca`. */
  readonly trustBundle: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface WorkloadIdentityOptions {
  readonly spiffeId: string;
  /** host:port of the control plane's gRPC server. */
  readonly caAddress: string;
  /** The workload token ("Bearer" credential for the CA), re-read on each request. */
  readonly tokenFile: string;
  /** Requested validity in seconds; 0 or absent: the CA's default (24 h). */
  readonly ttlSeconds?: number;
  /** Default insecure, as the push stream today. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Fraction of a certificate's lifetime after which it is replaced. Default 0.5. */
  readonly rotateFraction?: number;
  /** First retry delay after a failure, doubled up to maxRetryMs. Defaults 1 s and 30 s. */
  readonly initialRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Per request. Default 10 s. */
  readonly requestTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

/** Larger than any token the control plane issues; a bigger file is refused unread. */
const MAX_TOKEN_FILE_BYTES = 16 * 1024;
/** ± this fraction of the lifetime around the rotation point. */
const ROTATE_JITTER = 0.05;

export class WorkloadIdentity {
  private readonly options: WorkloadIdentityOptions;
  private readonly client: grpc.Client;
  private material: IdentityMaterial | undefined;
  private readonly listeners = new Set<(m: IdentityMaterial) => void>();
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private retryMs: number;
  private waiters: { resolve: (m: IdentityMaterial) => void; reject: (e: Error) => void }[] = [];
  /** Consecutive failed requests (0 after a success). */
  failures = 0;
  /** The last failure's reason ("" after a success). */
  lastError = "";
  /** Certificates obtained so far. */
  rotations = 0;

  constructor(options: WorkloadIdentityOptions) {
    if (!/^spiffe:\/\/[^/]+\/.+/.test(options.spiffeId))
      throw new Error(`"${options.spiffeId}" is not a SPIFFE ID (spiffe://TRUST_DOMAIN/PATH)`);
    this.options = options;
    this.retryMs = options.initialRetryMs ?? 1000;
    const Client = certificateService();
    this.client = new Client(options.caAddress, options.credentials ?? grpc.credentials.createInsecure());
  }

  /** Starts (once); resolves with the first certificate, retrying until one is obtained or close() is called. */
  start(): Promise<IdentityMaterial> {
    if (this.closed) return Promise.reject(new Error("the workload identity is closed"));
    if (this.material !== undefined) return Promise.resolve(this.material);
    const first = new Promise<IdentityMaterial>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.started) {
      this.started = true;
      void this.renew();
    }
    return first;
  }

  /** The certificate in use, or undefined before the first one. */
  current(): IdentityMaterial | undefined {
    return this.material;
  }

  /** `fn` is called with each new certificate, the first included; returns the unsubscribe function. */
  onRotate(fn: (m: IdentityMaterial) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.client.close();
    for (const w of this.waiters.splice(0)) w.reject(new Error("the workload identity was closed"));
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    let next: IdentityMaterial;
    try {
      next = await this.request();
    } catch (e) {
      if (this.closed) return;
      this.failures++;
      this.lastError = (e as Error).message;
      const delay = this.retryDelay();
      this.options.log?.(
        `identity: cannot renew the certificate of ${this.options.spiffeId} (attempt ${this.failures}): ` +
          `${this.lastError}; retrying in ${Math.round(delay)} ms\n`,
      );
      this.schedule(delay);
      return;
    }
    if (this.closed) return;
    this.material = next;
    this.failures = 0;
    this.lastError = "";
    this.retryMs = this.options.initialRetryMs ?? 1000;
    this.rotations++;
    for (const w of this.waiters.splice(0)) w.resolve(next);
    for (const fn of this.listeners) {
      try {
        fn(next);
      } catch (e) {
        this.options.log?.(`identity: a rotation listener failed: ${(e as Error).message}\n`);
      }
    }
    const lifetime = next.notAfter.getTime() - Date.now();
    const fraction = (this.options.rotateFraction ?? 0.5) + (Math.random() * 2 - 1) * ROTATE_JITTER;
    this.schedule(Math.max(0, lifetime * fraction));
  }

  /** Jittered exponential backoff, never past the expiry of the certificate in use if it is not expired. */
  private retryDelay(): number {
    const base = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.options.maxRetryMs ?? 30_000);
    let delay = base * (0.8 + Math.random() * 0.4);
    const left = this.material ? this.material.notAfter.getTime() - Date.now() : 0;
    // Close to expiry, try more often than the backoff would: a gap in identity breaks every mTLS connection.
    if (left > 0) delay = Math.min(delay, Math.max(left / 4, 50));
    return delay;
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renew(), ms);
    // The proxy's listeners keep the process alive; a pending renewal alone must not.
    this.timer.unref();
  }

  private async request(): Promise<IdentityMaterial> {
    const token = await readToken(this.options.tokenFile);
    const keys = await generateEcKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: EC_P256,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: this.options.spiffeId }], true),
      ],
    });
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    const response = await new Promise<CertificateResponseMessage>((resolve, reject) => {
      const request: CertificateRequestMessage = {
        csr: csr.toString("pem"),
        validityDuration: this.options.ttlSeconds ?? 0,
      };
      (this.client as unknown as CaClient).CreateCertificate(
        request,
        metadata,
        { deadline: Date.now() + (this.options.requestTimeoutMs ?? 10_000) },
        (err, res) => (err ? reject(new Error(err.details || err.message)) : resolve(res!)),
      );
    });
    return checkResponse(
      response,
      this.options.spiffeId,
      Buffer.from(csr.publicKey.rawData),
      await privateKeyPem(keys.privateKey),
    );
  }
}

type CaClient = {
  CreateCertificate(
    request: CertificateRequestMessage,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, res?: CertificateResponseMessage) => void,
  ): void;
};

async function readToken(file: string): Promise<string> {
  const handle = await open(file, "r").catch((e: Error) => {
    throw new Error(`cannot read the token file ${file}: ${e.message}`);
  });
  try {
    const { size } = await handle.stat();
    if (size > MAX_TOKEN_FILE_BYTES)
      throw new Error(`the token file ${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes`);
    const token = (await handle.readFile("utf8")).trim();
    if (token === "" || /\s/.test(token)) throw new Error(`the token file ${file} does not hold one token`);
    return token;
  } finally {
    await handle.close();
  }
}

/**
 * The CA's answer as usable material, or an error: the leaf must carry exactly our SPIFFE ID and our public
 * key (a CA answering someone else's certificate would make us present an identity we cannot prove) and the
 * chain must verify up to a root of the trust bundle.
 */
function checkResponse(
  response: CertificateResponseMessage,
  spiffeId: string,
  spki: Buffer,
  privateKey: string,
): IdentityMaterial {
  const parse = (pem: string, what: string) => {
    try {
      return new X509Certificate(pem);
    } catch (e) {
      throw new Error(`the CA answered an unreadable ${what}: ${(e as Error).message}`);
    }
  };
  const chain = (response.certChain ?? []).map((p) => parse(p, "certificate"));
  const roots = (response.trustBundle ?? []).map((p) => parse(p, "trust bundle root"));
  if (chain.length === 0) throw new Error("the CA answered no certificate");
  if (roots.length === 0) throw new Error("the CA answered an empty trust bundle");
  const leaf = chain[0]!;
  if (!Buffer.from(leaf.publicKey.export({ format: "der", type: "spki" })).equals(spki))
    throw new Error("the CA answered a certificate for another key");
  if (leaf.subjectAltName !== `URI:${spiffeId}`)
    throw new Error(
      `the CA answered a certificate for ${leaf.subjectAltName ?? "no identity"}, not ${spiffeId}`,
    );
  const notAfter = new Date(leaf.validToDate);
  if (notAfter.getTime() <= Date.now()) throw new Error("the CA answered an expired certificate");
  for (let i = 0; i + 1 < chain.length; i++)
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey))
      throw new Error(`certificate ${i + 1} of the chain is not signed by certificate ${i + 2}`);
  const top = chain[chain.length - 1]!;
  const anchored = roots.some(
    (r) => r.raw.equals(top.raw) || (top.checkIssued(r) && top.verify(r.publicKey)),
  );
  if (!anchored) throw new Error("the certificate chain does not lead to a root of the trust bundle");
  // The root travels in trustBundle; a peer has it already.
  const presented = chain.filter((c, i) => i === 0 || !roots.some((r) => r.raw.equals(c.raw)));
  return {
    spiffeId,
    certificateChain: presented.map((c) => c.toString()).join(""),
    privateKey,
    trustBundle: roots.map((r) => r.toString()).join(""),
    notBefore: new Date(leaf.validFromDate),
    notAfter,
  };
}
