// The Discovery service definition (proto/isthmus/discovery/v1/discovery.proto), loaded once with
// proto-loader. Shared by the proxy's client and the control plane's server; both only import it when they use
// the push stream, so a static proxy never loads gRPC.
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

export const PROTO_PATH = fileURLToPath(
  new URL("../../../proto/isthmus/discovery/v1/discovery.proto", import.meta.url),
);
export const PROXY_CONFIG_TYPE = "proxy-config";

export interface NodeMessage {
  id: string;
  namespace: string;
  cluster: string;
  network: string;
  serviceAccount: string;
  labels: Record<string, string>;
  ip: string;
}

export interface DiscoveryRequestMessage {
  node?: NodeMessage | null;
  typeUrl: string;
  versionInfo: string;
  responseNonce: string;
  errorDetail: string;
}

export interface ResourceMessage {
  name: string;
  version: string;
  json: Buffer;
}

export interface DiscoveryResponseMessage {
  typeUrl: string;
  versionInfo: string;
  nonce: string;
  resources: ResourceMessage[];
  removedResources: string[];
  fullState: boolean;
}

let loaded: grpc.GrpcObject | undefined;

/** The package object with the Discovery service constructor. */
export function discoveryPackage(): { Discovery: grpc.ServiceClientConstructor } {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: String, defaults: true, oneofs: true }),
  );
  const ns = (loaded.isthmus as grpc.GrpcObject).discovery as grpc.GrpcObject;
  return ns.v1 as unknown as { Discovery: grpc.ServiceClientConstructor };
}

export { grpc };
