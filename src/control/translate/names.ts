// Istio's names for what the translation produces, so that proxy-config output and stats read as in Istio.

/** outbound|PORT|SUBSET|HOST — a service port (and subset) as seen by clients. */
export function outboundCluster(host: string, port: number, subset = ""): string {
  return `outbound|${port}|${subset}|${host}`;
}

/** inbound|PORT|| — the local app behind a sidecar. */
export function inboundCluster(port: number): string {
  return `inbound|${port}||`;
}

export const OUTBOUND_LISTENER = "virtualOutbound";
export const INBOUND_LISTENER = "virtualInbound";
export const OUTBOUND_PORT = 15001;
export const INBOUND_PORT = 15006;

/** Istio's clusters for traffic to hosts the registry does not know (outboundTrafficPolicy). */
export const PASSTHROUGH_CLUSTER = "PassthroughCluster";
export const BLACKHOLE_CLUSTER = "BlackHoleCluster";
