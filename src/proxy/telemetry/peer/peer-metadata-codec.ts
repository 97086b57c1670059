// The value of the peer metadata header (PEER_METADATA_HEADER): base64url of a small JSON object with a
// workload's telemetry labels. Encoded once per config; decoded per request with strict bounds (2 KiB, known
// keys, short values of safe characters) and a small cache, since a proxy sees the same few peers over and
// over. Anything else decodes to undefined: a peer's header can never throw or inject label values.
import type { PeerInfo } from "../request-record.ts";

// No principal: an identity is only what mTLS verified, never what a peer says about itself (Istio takes
// source_principal and destination_principal from the certificate).
const KEYS = [
  "workload",
  "namespace",
  "app",
  "version",
  "cluster",
  "canonicalService",
  "canonicalRevision",
] as const;
const KNOWN = new Set<string>(KEYS);
const MAX_HEADER = 2048;
const MAX_VALUE = 253;
const SAFE = /^[A-Za-z0-9._:/@-]*$/;
const CACHE_SIZE = 256;

/** From NodeInfo.metadata (Istio's label names: canonical_service, ...) to a PeerInfo. */
export function peerInfoFromMetadata(m: Readonly<Record<string, string>> | undefined): PeerInfo {
  const out: Record<string, string> = {};
  if (!m) return out;
  const pick = (key: (typeof KEYS)[number], from: string) => {
    const v = m[from];
    if (typeof v === "string" && v.length <= MAX_VALUE && SAFE.test(v)) out[key] = v;
  };
  pick("workload", "workload");
  pick("namespace", "namespace");
  pick("app", "app");
  pick("version", "version");
  pick("cluster", "cluster");
  pick("canonicalService", "canonical_service");
  pick("canonicalRevision", "canonical_revision");
  return out;
}

export function encodePeer(p: PeerInfo): string {
  return Buffer.from(JSON.stringify(p)).toString("base64url");
}

const cache = new Map<string, PeerInfo | undefined>();

export function decodePeer(value: string): PeerInfo | undefined {
  const hit = cache.get(value);
  if (hit !== undefined || cache.has(value)) return hit;
  const p = parse(value);
  if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
  cache.set(value, p);
  return p;
}

function parse(value: string): PeerInfo | undefined {
  if (value.length === 0 || value.length > MAX_HEADER || !/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!KNOWN.has(k) || typeof v !== "string" || v.length > MAX_VALUE || !SAFE.test(v)) return undefined;
    out[k] = v;
  }
  return Object.freeze(out);
}
