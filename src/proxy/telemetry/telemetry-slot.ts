// Where the HTTP exchanges and TCP proxies find the telemetry sink of the running config. One object shared by
// every runtime of a proxy; a config swap replaces `sink` in place, so open connections report to the new one.
import type { PeerInfo, TelemetrySink } from "./request-record.ts";
import type { RequestTracer } from "./trace/request-tracer.ts";

/**
 * The header two proxies exchange their workload metadata in (Istio's x-envoy-peer-metadata): the source
 * proxy adds its own to the requests it sends, the destination proxy to its responses; each removes the
 * peer's before the message goes on (it is hop-by-hop in http1/headers.ts).
 */
export const PEER_METADATA_HEADER = "x-isthmus-peer-metadata";

export class TelemetrySlot {
  /** undefined: no telemetry configured; exchanges then skip building records entirely. */
  sink: TelemetrySink | undefined;
  /** Tracing (trace context, x-request-id, spans); undefined when not configured. */
  tracer: RequestTracer | undefined;
  /** Value of the peer metadata header this proxy sends (precomputed), or "" for none. */
  ownPeerHeader = "";
  /** Parses a peer's metadata header value; undefined when absent or invalid. */
  decodePeer: (value: string) => PeerInfo | undefined = () => undefined;
}
