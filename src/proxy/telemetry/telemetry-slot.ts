// Where the HTTP exchanges and TCP proxies find the telemetry sink of the running config. One object shared by
// every runtime of a proxy; a config swap replaces `sink` in place, so open connections report to the new one.
import type { PeerInfo, TelemetrySink } from "./request-record.ts";

export class TelemetrySlot {
  /** undefined: no telemetry configured; exchanges then skip building records entirely. */
  sink: TelemetrySink | undefined;
  /** Value of the peer metadata header this proxy sends (precomputed), or "" for none. */
  ownPeerHeader = "";
  /** Parses a peer's metadata header value; undefined when absent or invalid. */
  decodePeer: (value: string) => PeerInfo | undefined = () => undefined;
}
