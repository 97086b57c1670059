// A failed TLS connect to an upstream: classified (Envoy's cluster.NAME.ssl.fail_verify_error,
// ssl.fail_verify_san, ssl.connection_error), counted, logged (rate-limited, naming the endpoint and the reason),
// and turned into the transport failure reason of the 503 UF. The code behind it loads on the first failure.
import type tls from "node:tls";
import { tlsFailures } from "../secrets/tls-failures-lazy.ts";
import type { Counter, StatsStore } from "../stats/stats.ts";

/**
 * For code that knows its cluster (the TCP proxy, HTTP/2 sessions): call it with the error a TLS connection
 * failed with before it was established (and the socket, when there is one: it tells a peer identity check
 * apart). Returns the reason to report, or undefined when TLS was not the cause (refused, unreachable, a
 * timeout before TCP connected): nothing is counted then.
 */
export function upstreamTlsFailure(
  store: StatsStore,
  cluster: string,
  endpoint: string,
  err: Error,
  socket?: tls.TLSSocket,
): string | undefined {
  return tlsFailures().upstreamStats(store, cluster).failure(endpoint, err, socket);
}

/**
 * The same for a connection pool, which holds its cluster's `cluster.NAME.upstream_cx_total` counter but
 * neither the name nor the store: both are found from the counter (once per cluster).
 */
export function poolTlsFailure(
  clusterCounter: Counter,
  endpoint: string,
  err: Error,
  socket: tls.TLSSocket,
): string | undefined {
  const m = tlsFailures();
  const stats = m.upstreamStatsOf(clusterCounter);
  if (stats !== undefined) return stats.failure(endpoint, err, socket);
  // A pool outside a proxy (unit tests): the reason still reaches the 503.
  const f = m.classifyUpstream(err, socket);
  return f === undefined ? undefined : `TLS error: ${f.reason} (ssl.${f.kind})`;
}

/**
 * For code that opens TLS connections itself and has no failure reason to report (the TCP proxy; HTTP/2
 * sessions through `session.socket`): one call right after tls.connect(). A failure after the TCP connection
 * and before the handshake completed is counted and logged as above; earlier ones (refused, unreachable, a
 * timeout while connecting) are not TLS's and are left alone; nothing is done after the handshake.
 */
export function watchUpstreamTls(
  socket: tls.TLSSocket,
  store: StatsStore,
  cluster: string,
  endpoint: string,
): void {
  let tcp = false;
  const onConnect = () => {
    tcp = true;
  };
  const onError = (err: Error) => {
    if (!tcp) return;
    try {
      upstreamTlsFailure(store, cluster, endpoint, err, socket);
    } catch {
      // Counting a failure must never become one: a socket already torn down has nothing more to tell.
    }
  };
  socket.once("connect", onConnect);
  socket.once("error", onError);
  socket.once("secureConnect", () => socket.off("error", onError));
}
