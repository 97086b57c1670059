// Istio's ISTIO_MUTUAL between sidecars, decided where clusters are built: which endpoints a client dials with
// mutual TLS (auto mTLS: the endpoint has a sidecar — its workload is labelled security.istio.io/tlsMode=istio —
// and its PeerAuthentication does not DISABLE that port; or the DestinationRule says ISTIO_MUTUAL), the SNI
// that names the destination to the server's sidecar (outbound_.PORT_.SUBSET_.HOST, Istio's), and the SPIFFE
// identities the server may present (the service accounts of the service's instances).
import type { Resource } from "../../api/resource.ts";
import type { TransportSocketMatch, UpstreamTlsConfig } from "../../proxy/config/types.ts";
import type { ServiceInstance } from "../model.ts";
import { peerAuthenticationMode } from "./security/peer-authentication.ts";

/** The label a sidecar-injected workload carries (Istio's); its value `istio` means "has a sidecar". */
export const TLS_MODE_LABEL = "security.istio.io/tlsMode";
/** The endpoint label the transport socket match keys on (Istio's envoy.transport_socket_match tlsMode). */
export const ENDPOINT_TLS_MODE = "tlsMode";
/** Envoy's SDS names, as Istio's: the workload certificate and the mesh's trusted roots. */
export const WORKLOAD_SECRET = "default";
export const ROOT_SECRET = "ROOTCA";

/** The mesh-wide inputs of mTLS decisions: one per registry, named by `key` for render caches. */
export interface MeshTls {
  readonly trustDomain: string;
  /** Trust domain aliases (MeshConfig trustDomainAliases): a server may present its identity in any of them. */
  readonly aliases: readonly string[];
  readonly rootNamespace: string;
  readonly peerAuthentications: readonly Resource[];
  /** Changes whenever anything above does (the policies by name and version). */
  readonly key: string;
}

export function meshTls(
  peerAuthentications: readonly Resource[],
  trustDomain = "cluster.local",
  rootNamespace = "istio-system",
  aliases: readonly string[] = [],
): MeshTls {
  const key = [
    trustDomain,
    aliases.join(","),
    rootNamespace,
    ...peerAuthentications.map((r) => `${r.namespace}/${r.name}/${JSON.stringify(r.object.spec ?? {})}`),
  ].join("\u0001");
  return { trustDomain, aliases, rootNamespace, peerAuthentications, key };
}

/** A DestinationRule traffic policy's tls mode, as far as the mesh's own mTLS is concerned. */
export type ClientTlsMode = "AUTO" | "ISTIO_MUTUAL" | "DISABLE" | "ORIGINATE";

/** Istio's SNI for a cluster: how the server's sidecar (or an east-west gateway) knows the destination. */
export function meshSni(host: string, port: number, subset: string): string {
  // Istio's BuildDNSSrvSubsetKey: the subset may be empty ("outbound_.9080_._.reviews...").
  return `outbound_.${port}_.${subset}_.${host}`;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/**
 * Whether a client dials this instance's sidecar (its inbound port) with the mesh's mutual TLS. With a
 * DestinationRule ISTIO_MUTUAL, instances without a sidecar get mutual TLS too, to their own port (the
 * cluster's tls, meshTransportSocket's): a call that fails, as Istio's does, rather than plain text.
 */
export function usesMeshTls(
  mesh: MeshTls | undefined,
  mode: ClientTlsMode,
  namespace: string,
  instance: ServiceInstance,
): boolean {
  if (mesh === undefined || mode === "DISABLE" || mode === "ORIGINATE") return false;
  if (instance.labels[TLS_MODE_LABEL] !== "istio") return false;
  if (mode === "ISTIO_MUTUAL") return true;
  // Auto mTLS respects the server's PeerAuthentication: a port it DISABLEs gets plain text.
  return (
    peerAuthenticationMode(
      mesh.peerAuthentications,
      { namespace, labels: instance.labels },
      instance.port,
      mesh.rootNamespace,
    ) !== "DISABLE"
  );
}

/** The mesh's mutual TLS to a server: the workload certificate, the mesh roots, SNI and identities. */
export function mutualTls(sni: string, identities: readonly string[], h2: boolean): UpstreamTlsConfig {
  return {
    sni,
    certificateSecret: WORKLOAD_SECRET,
    validationSecret: ROOT_SECRET,
    matchSubjectAltNames: identities,
    alpnProtocols: h2 ? ["h2"] : ["http/1.1"],
  };
}

/** The transport socket for endpoints labelled tlsMode=istio. */
export function meshTransportSocket(tls: UpstreamTlsConfig): TransportSocketMatch {
  return { name: "tlsMode-istio", match: { [ENDPOINT_TLS_MODE]: "istio" }, tls };
}
