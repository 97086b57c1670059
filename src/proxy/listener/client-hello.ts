// The server name (SNI) and ALPN offers of a TLS ClientHello, read from the first bytes of a connection without
// terminating TLS (Envoy's tls_inspector), for chains that pass TLS through by SNI (an east-west gateway's
// AUTO_PASSTHROUGH). Bounded: one handshake message in at most MAX_HELLO_BYTES; anything that is not a
// well-formed ClientHello is "not-tls" or "invalid", never an exception.

/** Larger than any ClientHello a client sends (a few hundred bytes to ~2 KB; post-quantum shares ~2 KB more). */
export const MAX_HELLO_BYTES = 16 * 1024;

export type HelloResult =
  | { readonly status: "need-more" }
  | { readonly status: "not-tls" }
  | { readonly status: "invalid" }
  | { readonly status: "done"; readonly sni: string | undefined; readonly alpn: readonly string[] };

const NEED_MORE: HelloResult = { status: "need-more" };
const NOT_TLS: HelloResult = { status: "not-tls" };
const INVALID: HelloResult = { status: "invalid" };

/** Reads the ClientHello at the start of `buf` (the bytes received so far). */
export function parseClientHello(buf: Buffer): HelloResult {
  if (buf.length < 1) return NEED_MORE;
  if (buf[0] !== 0x16) return NOT_TLS;
  // The handshake message may span several records: gather their fragments.
  const fragments: Buffer[] = [];
  let have = 0;
  let need = -1;
  let at = 0;
  while (need < 0 || have < need) {
    if (at + 5 > buf.length) return buf.length >= MAX_HELLO_BYTES ? INVALID : NEED_MORE;
    if (buf[at] !== 0x16 || buf[at + 1] !== 0x03) return at === 0 ? NOT_TLS : INVALID;
    const len = buf.readUInt16BE(at + 3);
    if (len === 0 || len > 16_384) return INVALID;
    if (at + 5 + len > buf.length) return at + 5 + len > MAX_HELLO_BYTES ? INVALID : NEED_MORE;
    fragments.push(buf.subarray(at + 5, at + 5 + len));
    have += len;
    at += 5 + len;
    if (need < 0 && have >= 4) {
      const first = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
      if (first[0] !== 0x01) return INVALID; // not a ClientHello
      need = 4 + ((first[1]! << 16) | (first[2]! << 8) | first[3]!);
      if (need > MAX_HELLO_BYTES) return INVALID;
    }
  }
  const hello = (fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments)).subarray(4, need);
  return readHello(hello);
}

function readHello(h: Buffer): HelloResult {
  let p = 2 + 32; // version, random
  if (p + 1 > h.length) return INVALID;
  p += 1 + h[p]!; // session id
  if (p + 2 > h.length) return INVALID;
  p += 2 + h.readUInt16BE(p); // cipher suites
  if (p + 1 > h.length) return INVALID;
  p += 1 + h[p]!; // compression methods
  if (p === h.length) return { status: "done", sni: undefined, alpn: [] };
  if (p + 2 > h.length) return INVALID;
  const end = p + 2 + h.readUInt16BE(p);
  if (end > h.length) return INVALID;
  p += 2;
  let sni: string | undefined;
  const alpn: string[] = [];
  while (p + 4 <= end) {
    const type = h.readUInt16BE(p);
    const len = h.readUInt16BE(p + 2);
    const body = p + 4;
    if (body + len > end) return INVALID;
    if (type === 0x0000) sni = serverName(h.subarray(body, body + len)) ?? sni;
    else if (type === 0x0010) {
      // ALPN: a list of length-prefixed protocol names.
      let q = body + 2;
      const stop = Math.min(body + 2 + (len >= 2 ? h.readUInt16BE(body) : 0), body + len);
      while (q < stop) {
        const n = h[q]!;
        if (q + 1 + n > stop) return INVALID;
        alpn.push(h.toString("latin1", q + 1, q + 1 + n));
        q += 1 + n;
      }
    }
    p = body + len;
  }
  return { status: "done", sni, alpn };
}

/** The host_name entry of a server_name extension, lower-cased; undefined when there is none or it is bad. */
function serverName(ext: Buffer): string | undefined {
  if (ext.length < 2) return undefined;
  const end = Math.min(2 + ext.readUInt16BE(0), ext.length);
  let p = 2;
  while (p + 3 <= end) {
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    if (p + 3 + len > end) return undefined;
    if (type === 0) {
      const name = ext.toString("latin1", p + 3, p + 3 + len).toLowerCase();
      return /^[a-z0-9_.-]{1,253}$/.test(name) ? name : undefined;
    }
    p += 3 + len;
  }
  return undefined;
}
