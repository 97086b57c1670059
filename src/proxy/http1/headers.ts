// Header rewriting between downstream and upstream: hop-by-hop fields are dropped (RFC 9110 7.6.1), the
// route's header operations applied. Writes HTTP/1 head text directly; no intermediate header objects.
import type { HeaderValueOption } from "../config/types.ts";

/** Fields that describe one connection, never forwarded. Transfer-Encoding is re-added when the body is. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "expect",
  "host",
  // Peer metadata is exchanged between two proxies on one hop and never reaches an app or the next hop.
  "x-isthmus-peer-metadata",
  // Set only by the proxy that verified the client's certificate (setClientCertDetails), never passed along.
  "x-forwarded-client-cert",
]);

/**
 * Appends "name: value\r\n" for every header of `flat` that is not hop-by-hop, not named by the Connection
 * header, not in `remove`, and not replaced by `set` (non-append options); then the `set` options.
 */
export function serializeHeaders(
  flat: readonly string[],
  connectionTokens: readonly string[] | null,
  remove: readonly string[],
  set: readonly HeaderValueOption[],
): string {
  let out = "";
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    if (HOP_BY_HOP.has(name)) continue;
    if (connectionTokens?.includes(name)) continue;
    if (remove.length > 0 && remove.includes(name)) continue;
    if (set.length > 0 && replaced(set, name)) continue;
    out += `${name}: ${flat[i + 1]}\r\n`;
  }
  for (const h of set) out += `${h.name}: ${h.value}\r\n`;
  return out;
}

function replaced(set: readonly HeaderValueOption[], name: string): boolean {
  for (let i = 0; i < set.length; i++) {
    const h = set[i]!;
    if (h.append !== true && h.name.toLowerCase() === name) return true;
  }
  return false;
}
