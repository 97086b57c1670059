// The CertificateService definition (proto/isthmus/ca/v1/ca.proto), loaded once with proto-loader; shared by
// the proxy's WorkloadIdentity (client) and the control plane's CA (server).
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const CA_PROTO_PATH = fileURLToPath(new URL("../../../proto/isthmus/ca/v1/ca.proto", import.meta.url));

export interface CertificateRequestMessage {
  csr: string;
  /** Seconds; int64 read as a number (longs: Number): a validity never needs 2^53 seconds. */
  validityDuration: number;
}

export interface CertificateResponseMessage {
  certChain: string[];
  trustBundle: string[];
}

let loaded: grpc.ServiceClientConstructor | undefined;

/** The service's client constructor; `.service` is its definition for grpc.Server.addService. */
export function certificateService(): grpc.ServiceClientConstructor {
  if (loaded === undefined) {
    const pkg = grpc.loadPackageDefinition(
      protoLoader.loadSync(CA_PROTO_PATH, { keepCase: false, longs: Number, defaults: true }),
    );
    const ns = ((pkg.isthmus as grpc.GrpcObject).ca as grpc.GrpcObject).v1 as grpc.GrpcObject;
    loaded = ns.CertificateService as grpc.ServiceClientConstructor;
  }
  return loaded;
}

export { grpc };
