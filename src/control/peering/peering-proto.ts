// The PeerService definition (proto/isthmus/peering/v1/peering.proto), loaded once with proto-loader, and the
// gRPC channel and server options both sides of a link use (message bounds, keepalive).
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { PEERING_LIMITS } from "./limits.ts";

export const PEERING_PROTO_PATH = fileURLToPath(
  new URL("../../../proto/isthmus/peering/v1/peering.proto", import.meta.url),
);

/** The protocol versions this code speaks (Hello.protocol_version). */
export const PROTOCOL_VERSIONS: readonly number[] = [1];
export const PROTOCOL_VERSION = 1;

export interface HelloMessage {
  protocolVersion: number;
  cluster: string;
  network: string;
  locality: string;
  private: boolean;
}

export interface SnapshotMessage {
  version: string;
  payload: Buffer;
  /** "" (JSON text) or "deflate" (raw DEFLATE of the JSON text). */
  encoding: string;
}

export interface AckMessage {
  version: string;
  /** Set: the snapshot was refused, and why. */
  error: string;
}

/** A PeerMessage as proto-loader reads it (oneofs: `kind` names the field that is set). */
export interface PeerMessage {
  kind?: "hello" | "snapshot" | "ack";
  hello?: HelloMessage | null;
  snapshot?: SnapshotMessage | null;
  ack?: AckMessage | null;
}

export type PeerClientStream = grpc.ClientDuplexStream<PeerMessage, PeerMessage>;
export type PeerServerStream = grpc.ServerDuplexStream<PeerMessage, PeerMessage>;

let loaded: grpc.ServiceClientConstructor | undefined;

/** The service's client constructor; `.service` is its definition for grpc.Server.addService. */
export function peerService(): grpc.ServiceClientConstructor {
  if (loaded === undefined) {
    const pkg = grpc.loadPackageDefinition(
      protoLoader.loadSync(PEERING_PROTO_PATH, {
        keepCase: false,
        longs: Number,
        defaults: true,
        oneofs: true,
      }),
    );
    const ns = ((pkg.isthmus as grpc.GrpcObject).peering as grpc.GrpcObject).v1 as grpc.GrpcObject;
    loaded = ns.PeerService as grpc.ServiceClientConstructor;
  }
  return loaded;
}

/**
 * Options for both ends: messages bounded both ways; keepalive pings so a dead peer (a crashed host, a cut
 * network) is noticed in seconds rather than at the kernel's TCP timeout; a channel's own subchannel pool, so
 * that two links to one address (or two PeerLinks in one process, as in tests) never share a connection made
 * with other credentials.
 */
export function channelOptions(keepaliveTimeMs: number, keepaliveTimeoutMs: number): grpc.ChannelOptions {
  return {
    "grpc.max_receive_message_length": PEERING_LIMITS.maxMessageBytes,
    "grpc.max_send_message_length": PEERING_LIMITS.maxMessageBytes,
    "grpc.keepalive_time_ms": keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.use_local_subchannel_pool": 1,
    // Our own loop redials with backoff; the channel's would retry a refused peer behind our back.
    "grpc.enable_retries": 0,
  };
}

export function serverOptions(keepaliveTimeMs: number, keepaliveTimeoutMs: number): grpc.ServerOptions {
  return {
    "grpc.max_receive_message_length": PEERING_LIMITS.maxMessageBytes,
    "grpc.max_send_message_length": PEERING_LIMITS.maxMessageBytes,
    "grpc.keepalive_time_ms": keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": keepaliveTimeoutMs,
  };
}

export { grpc };
