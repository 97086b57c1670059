// The reverse tunnel's handshake (docs/proxy.md, "Reverse tunnels"): the initiator, which dialled, asks in
// HTTP/1.1 to turn the connection into a tunnel under a name; the acceptor answers 101 and from then on is the
// HTTP/2 *client* of the connection (it opens CONNECT streams), the initiator its HTTP/2 *server*. Only what is
// needed to write and read those two heads is here, bounded in size, with a clear reason for every refusal.
import { type HeadLimits, parseRequestHead, parseResponseHead } from "../http1/head-parser.ts";

/**
 * The ALPN protocol of a tunnel's TLS connection. Node's HTTP/2 server refuses a TLS socket that negotiated
 * "http/1.1" or nothing (it takes it for an HTTP/1 fallback), and a protocol of its own also lets an acceptor
 * chain be chosen by ALPN next to HTTPS chains on one port.
 */
export { TUNNEL_ALPN } from "./lazy.ts";
/** The Upgrade token of the handshake request and of its 101 answer. */
export const UPGRADE_TOKEN = "isthmus-reverse-tunnel";
/** The request header that names the tunnel. */
export const NAME_HEADER = "isthmus-tunnel-name";
export const MAX_NAME_LENGTH = 253;
/** The handshake head is a few short lines; anything larger is not an initiator. */
export const HANDSHAKE_LIMITS: HeadLimits = { maxHeadBytes: 4096, maxHeaders: 32 };
/** A refusal's reason travels as its body, at most this long. */
const MAX_REASON_BYTES = 1024;

const NAME_CHARS = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

/** Why `name` cannot name a tunnel, or undefined when it can. */
export function tunnelNameProblem(name: string): string | undefined {
  if (name.length === 0) return "the tunnel name is empty";
  if (name.length > MAX_NAME_LENGTH) return `the tunnel name is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_CHARS.test(name))
    return "the tunnel name may hold only letters, digits, '.', '_', ':' and '-', and starts with a letter or digit";
  return undefined;
}

/** The initiator's request. `host` is the acceptor as dialled (its SNI or address:port). */
export function upgradeRequest(name: string, host: string): string {
  return (
    "GET /reverse-tunnel HTTP/1.1\r\n" +
    `Host: ${host}\r\n` +
    "Connection: Upgrade\r\n" +
    `Upgrade: ${UPGRADE_TOKEN}\r\n` +
    `Isthmus-Tunnel-Name: ${name}\r\n` +
    "\r\n"
  );
}

export const SWITCHING_RESPONSE = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${UPGRADE_TOKEN}\r\n\r\n`;

const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  403: "Forbidden",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable",
};

/** The acceptor's refusal: the reason as a short text body, and the connection closed after it. */
export function refusalResponse(status: number, reason: string): string {
  const body = Buffer.from(reason, "utf8").subarray(0, MAX_REASON_BYTES);
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Refused"}\r\n` +
    "Content-Type: text/plain; charset=utf-8\r\n" +
    `Content-Length: ${body.length}\r\n` +
    "Connection: close\r\n\r\n" +
    body.toString("latin1")
  );
}

export type UpgradeRequestResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "ok"; readonly name: string; readonly headBytes: number }
  | { readonly kind: "refused"; readonly status: number; readonly reason: string };

/** Reads the initiator's request from the first bytes of the connection. */
export function readUpgradeRequest(buf: Buffer): UpgradeRequestResult {
  const r = parseRequestHead(buf, 0, HANDSHAKE_LIMITS);
  if (r.kind === "incomplete") return r;
  if (r.kind === "error") return refused(r.status === 431 ? 431 : 400, `malformed handshake: ${r.reason}`);
  const h = r.head;
  if (h.method !== "GET") return refused(400, `the handshake is a GET request, not ${h.method}`);
  if (h.upgrade !== UPGRADE_TOKEN)
    return refused(400, `the handshake needs Connection: Upgrade and Upgrade: ${UPGRADE_TOKEN}`);
  if (h.contentLength > 0 || h.chunked) return refused(400, "the handshake request has no body");
  let name: string | undefined;
  for (let i = 0; i < h.headers.length; i += 2) {
    if (h.headers[i] !== NAME_HEADER) continue;
    if (name !== undefined) return refused(400, `more than one ${NAME_HEADER} header`);
    name = h.headers[i + 1]!;
  }
  if (name === undefined) return refused(400, `the handshake has no ${NAME_HEADER} header`);
  const problem = tunnelNameProblem(name);
  if (problem !== undefined) return refused(400, problem);
  return { kind: "ok", name, headBytes: h.headBytes };
}

export type UpgradeResponseResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "switched"; readonly headBytes: number }
  | { readonly kind: "refused"; readonly reason: string };

/**
 * Reads the acceptor's answer. A refusal is complete with its body (bounded), whose text is the reason; bytes
 * after a 101 belong to the HTTP/2 session (headBytes tells where they start).
 */
export function readUpgradeResponse(buf: Buffer): UpgradeResponseResult {
  const r = parseResponseHead(buf, 0, HANDSHAKE_LIMITS);
  if (r.kind === "incomplete") return r;
  if (r.kind === "error") return { kind: "refused", reason: `malformed answer: ${r.reason}` };
  const h = r.head;
  if (h.status === 101) {
    if (h.upgrade !== UPGRADE_TOKEN)
      return { kind: "refused", reason: `101 answer upgrading to ${JSON.stringify(h.upgrade)}` };
    return { kind: "switched", headBytes: h.headBytes };
  }
  const length = Math.min(Math.max(h.contentLength, 0), MAX_REASON_BYTES);
  const available = buf.length - h.headBytes;
  if (h.contentLength > 0 && available < length) return { kind: "incomplete" };
  const body = buf.toString("utf8", h.headBytes, h.headBytes + Math.min(length, available));
  const text = body.replace(/[^\x20-\x7e]/g, "?").trim();
  return { kind: "refused", reason: `${h.status} ${h.reason}${text ? `: ${text}` : ""}` };
}

function refused(status: number, reason: string): UpgradeRequestResult {
  return { kind: "refused", status, reason };
}

/** host:port as an HTTP authority (an IPv6 address in brackets). */
export function authorityOf(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
