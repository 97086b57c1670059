// What a downstream connection drives to send one request upstream, whatever the upstream protocol: an
// HTTP/1.1 connection from a pool, or a stream on an HTTP/2 session (Http2UpstreamExchange). Requests are
// written as HTTP/1 bytes (head, then body); the response comes back through a ResponseHandler.
import type { ResponseHandler } from "./http1-connection.ts";

export interface UpstreamExchange {
  begin(handler: ResponseHandler, method: string, close: boolean): void;
  /** false: the upstream is full; wait for handlerDrain. */
  write(data: string | Buffer): boolean;
  endRequest(): void;
  pause(): void;
  resume(): void;
  /** The downstream went away: drop the exchange (and, for HTTP/1, its connection). */
  abort(): void;
  /** Gives an exchange that was handed out but never used back (a connection to its pool). */
  release(): void;
  handlerDrain: (() => void) | null;
}
