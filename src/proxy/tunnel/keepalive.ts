// HTTP/2 PING keepalive for a tunnel's session, on both sides: a peer that vanished without closing (a host
// gone, a NAT entry dropped) is noticed within pingIntervalMs + pingTimeoutMs, so that the initiator redials
// and the acceptor stops opening streams on it. TCP keepalive alone takes minutes to say so.
import type http2 from "node:http2";

export interface KeepAliveOptions {
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepAliveOptions = { pingIntervalMs: 3000, pingTimeoutMs: 5000 };

/** Pings `session` until it closes; destroys it when an answer is late. */
export function keepAlive(session: http2.Http2Session, o: KeepAliveOptions): void {
  let outstanding: NodeJS.Timeout | undefined;
  const tick = () => {
    if (outstanding !== undefined || session.destroyed || session.closed) return;
    const deadline = setTimeout(() => {
      session.destroy(new Error(`no answer to an HTTP/2 PING within ${o.pingTimeoutMs} ms`));
    }, o.pingTimeoutMs);
    deadline.unref();
    outstanding = deadline;
    try {
      session.ping((err) => {
        clearTimeout(deadline);
        outstanding = undefined;
        // An error here means the session is going away; its close does the rest.
        void err;
      });
    } catch {
      clearTimeout(deadline);
      outstanding = undefined;
    }
  };
  const interval = setInterval(tick, o.pingIntervalMs);
  interval.unref();
  session.once("close", () => {
    clearInterval(interval);
    if (outstanding !== undefined) clearTimeout(outstanding);
  });
}
