// What a verified TLS peer is: its principal (Envoy's authenticated principal) and the
// x-forwarded-client-cert value a sidecar hands its app (Istio's inbound: By, Hash, Subject, URI). Read once per
// connection and cached on the socket, since every request of a keep-alive connection asks again.
import type net from "node:net";
import type tls from "node:tls";
import { cryptoModule } from "../lazy-modules.ts";
import type { PeerInfo } from "../telemetry/request-record.ts";

/** Istio's sidecars present the caller to the app in this header; a caller's own value is never forwarded. */
export const XFCC_HEADER = "x-forwarded-client-cert";

interface PeerIdentity {
  readonly principal: string | undefined;
  readonly xfcc: string | undefined;
}

const cache = new WeakMap<net.Socket, PeerIdentity>();
const NONE: PeerIdentity = { principal: undefined, xfcc: undefined };

function identityOf(socket: net.Socket): PeerIdentity {
  const s = socket as Partial<tls.TLSSocket>;
  if (s.encrypted !== true || s.authorized !== true || typeof s.getPeerCertificate !== "function")
    return NONE;
  let id = cache.get(socket);
  if (id !== undefined) return id;
  const cert = s.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) {
    cache.set(socket, NONE);
    return NONE;
  }
  const sans = (cert.subjectaltname ?? "").split(", ");
  const uri = sans.find((x) => x.startsWith("URI:"))?.slice(4);
  const dns = sans.find((x) => x.startsWith("DNS:"))?.slice(4);
  const cn = typeof cert.subject?.CN === "string" ? cert.subject.CN : undefined;
  const own = s.getCertificate?.();
  const by =
    own && "subjectaltname" in own
      ? (own.subjectaltname ?? "")
          .split(", ")
          .find((x) => x.startsWith("URI:"))
          ?.slice(4)
      : undefined;
  // Envoy's format: key=value pairs joined by ";", Subject quoted; Istio sets By, Hash, Subject, URI (and DNS).
  const parts: string[] = [];
  if (by !== undefined) parts.push(`By=${by}`);
  if (cert.raw) parts.push(`Hash=${cryptoModule().createHash("sha256").update(cert.raw).digest("hex")}`);
  parts.push(`Subject="${subjectOf(cert).replaceAll('"', '\\"')}"`);
  if (uri !== undefined) parts.push(`URI=${uri}`);
  if (dns !== undefined) parts.push(`DNS=${dns}`);
  id = { principal: uri ?? dns ?? cn, xfcc: parts.join(";") };
  cache.set(socket, id);
  return id;
}

function subjectOf(cert: tls.PeerCertificate): string {
  const s = cert.subject as unknown as Record<string, string | string[]> | undefined;
  if (!s) return "";
  return Object.entries(s)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
    .join(",");
}

/**
 * The identity of a TLS peer whose certificate the chain verified: its URI SAN (SPIFFE), else its first DNS
 * SAN, else its subject CN, as Envoy's authenticated principal. A plain-text or unverified peer has none.
 */
export function peerPrincipalOf(socket: net.Socket): string | undefined {
  return identityOf(socket).principal;
}

/** The x-forwarded-client-cert value for requests of this connection; undefined without a verified peer. */
export function clientCertDetailsOf(socket: net.Socket): string | undefined {
  return identityOf(socket).xfcc;
}

const EMPTY_PEER: PeerInfo = {};
const withPrincipals = new WeakMap<PeerInfo, Map<string, PeerInfo>>();
const MAX_PRINCIPALS_PER_PEER = 64;

/**
 * The peer's telemetry labels with the principal its certificate proved (source_principal at the server's
 * sidecar). The same object for the same (peer, principal), so the metrics find their series by identity.
 */
export function peerWithPrincipal(peer: PeerInfo | undefined, socket: net.Socket): PeerInfo | undefined {
  const principal = peerPrincipalOf(socket);
  if (principal === undefined) return peer;
  const base = peer ?? EMPTY_PEER;
  let byPrincipal = withPrincipals.get(base);
  if (byPrincipal === undefined) {
    byPrincipal = new Map();
    withPrincipals.set(base, byPrincipal);
  }
  let out = byPrincipal.get(principal);
  if (out === undefined) {
    out = { ...base, principal };
    if (byPrincipal.size >= MAX_PRINCIPALS_PER_PEER) byPrincipal.clear();
    byPrincipal.set(principal, out);
  }
  return out;
}
