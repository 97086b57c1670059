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
  /** region/zone[/subzone]; "" when unknown. */
  locality: string;
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
  /** "" (JSON text) or "deflate" (raw DEFLATE of the JSON text). */
  encoding: string;
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

type StreamMethod = grpc.MethodDefinition<DiscoveryRequestMessage, DiscoveryResponseMessage>;

function streamMethod(): StreamMethod {
  return discoveryPackage().Discovery.service.Stream as unknown as StreamMethod;
}

/**
 * A DiscoveryResponse (or the part of one given) in protobuf's wire format. Protobuf lets a message be the
 * concatenation of its fields, repeated ones included, so the control plane serializes each resource once
 * (`serializeResponse({resources: [r]})`) and builds each proxy's response by concatenating those pieces after
 * a header of the other fields, instead of re-encoding every resource for every proxy.
 */
export function serializeResponse(message: Partial<DiscoveryResponseMessage>): Buffer {
  return streamMethod().responseSerialize(message as DiscoveryResponseMessage);
}

/** The Discovery service whose responses are written as bytes already serialized (see serializeResponse). */
export function preSerializedDiscoveryService(): grpc.ServiceDefinition {
  const stream = streamMethod();
  return {
    Stream: { ...stream, responseSerialize: (bytes: Buffer) => bytes },
  } as unknown as grpc.ServiceDefinition;
}

export { grpc };
