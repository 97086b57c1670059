// The CSR endpoint (ca.proto's CertificateService) on the control plane's gRPC server: authenticates the
// caller by its workload token, has the CA sign the CSR for the identity the token grants, and answers
// the chain and the trust bundle. Every refusal has a gRPC status that says whose fault it is
// (UNAUTHENTICATED: the token; PERMISSION_DENIED: an identity the token does not grant; INVALID_ARGUMENT: the
// CSR or the validity), a message that says why, a log line and a metric; the token is never logged.

import {
  type CertificateRequestMessage,
  type CertificateResponseMessage,
  certificateService,
  grpc,
} from "../../proxy/identity/ca-proto.ts";
import type { CaObserver } from "../monitoring/control-plane-metrics.ts";
import { type CertificateAuthority, type CsrRefusal, spiffeId } from "./authority.ts";
import type { TokenCheck, TokenRefusal, WorkloadTokens } from "./tokens.ts";

export interface CertificateServiceOptions {
  readonly ca: CertificateAuthority;
  readonly tokens: WorkloadTokens;
  readonly observer?: CaObserver;
  /** One line per refusal and per issued certificate. */
  readonly log?: (line: string) => void;
}

/** What can take a gRPC service: a grpc.Server, or the control plane's DiscoveryServer. */
export interface ServiceHost {
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void;
}

type Call = grpc.ServerUnaryCall<CertificateRequestMessage, CertificateResponseMessage>;
type Callback = grpc.sendUnaryData<CertificateResponseMessage>;

const STATUS: Record<CsrRefusal, grpc.status> = {
  "csr-too-large": grpc.status.INVALID_ARGUMENT,
  "csr-malformed": grpc.status.INVALID_ARGUMENT,
  "csr-signature": grpc.status.INVALID_ARGUMENT,
  "csr-key": grpc.status.INVALID_ARGUMENT,
  "csr-subject": grpc.status.INVALID_ARGUMENT,
  "identity-mismatch": grpc.status.PERMISSION_DENIED,
  ttl: grpc.status.INVALID_ARGUMENT,
  "sign-error": grpc.status.INTERNAL,
};

/** Adds the CertificateService to `host`. */
export function registerCertificateService(host: ServiceHost, options: CertificateServiceOptions): void {
  host.addService(certificateService().service, {
    CreateCertificate: (call: Call, callback: Callback) => {
      createCertificate(call, options).then(
        (r) => callback(r.error ?? null, r.response),
        (e: unknown) =>
          callback({ code: grpc.status.INTERNAL, details: `internal error: ${(e as Error).message}` }),
      );
    },
  });
  const expiry = options.ca.expiry();
  options.observer?.caExpiry(expiry.root, expiry.chain);
}

async function createCertificate(
  call: Call,
  { ca, tokens, observer, log }: CertificateServiceOptions,
): Promise<{ error?: Partial<grpc.StatusObject>; response?: CertificateResponseMessage }> {
  observer?.csrReceived();
  const peer = call.getPeer();
  const checked = await authenticate(call.metadata, tokens);
  if (!checked.ok) {
    observer?.csrRefused("authentication", checked.reason);
    log?.(`ca: refused a CSR from ${peer}: ${checked.reason}: ${checked.message}\n`);
    return {
      error: { code: grpc.status.UNAUTHENTICATED, details: `workload token refused: ${checked.message}` },
    };
  }
  const { grant } = checked;
  const validity = Number(call.request.validityDuration ?? 0);
  const signed = await ca.sign(String(call.request.csr ?? ""), grant, validity);
  if (!signed.ok) {
    observer?.csrRefused(
      signed.reason === "identity-mismatch"
        ? "identity"
        : signed.reason === "ttl" || signed.reason === "sign-error"
          ? "sign"
          : "csr",
      signed.reason,
    );
    log?.(
      `ca: refused a CSR from ${peer} (token for ${grant.namespace}/${grant.serviceAccount}): ${signed.reason}: ${signed.message}\n`,
    );
    return { error: { code: STATUS[signed.reason], details: signed.message } };
  }
  observer?.certIssued();
  log?.(
    `ca: issued ${spiffeId(ca.trustDomain, grant)} to ${peer}, valid until ${signed.notAfter.toISOString()}\n`,
  );
  return { response: { certChain: signed.certChain, trustBundle: signed.trustBundle } };
}

/** The identity the call's bearer token grants, or why none. */
async function authenticate(metadata: grpc.Metadata, tokens: WorkloadTokens): Promise<TokenCheck> {
  const refuse = (reason: TokenRefusal, message: string): TokenCheck => ({ ok: false, reason, message });
  const values = metadata.get("authorization");
  if (values.length === 0) return tokens.verify(undefined);
  if (values.length > 1) return refuse("malformed", "several authorization headers");
  const value = values[0];
  if (typeof value !== "string") return refuse("malformed", "the authorization header is not text");
  const m = /^Bearer +(\S+)$/i.exec(value.trim());
  if (m === null) return refuse("malformed", 'the authorization header is not "Bearer TOKEN"');
  return tokens.verify(m[1]);
}
