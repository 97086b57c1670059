// Strict HTTP/1.1 message-head parsing (RFC 9112), written for the proxy's hot path: one pass over the
// head, no regex per byte, the framing-relevant headers picked out on the way. Anything ambiguous is an
// error, never guessed: bare CR or LF, obs-fold, whitespace before a colon, invalid token or value
// characters, Content-Length together with Transfer-Encoding, two Content-Lengths, a transfer coding
// other than chunked. Speed never buys leniency here: these are the request-smuggling vectors.

export interface HeadLimits {
  /** Bytes of request line + headers + final CRLF. Beyond: 431. */
  readonly maxHeadBytes: number;
  /** Number of header fields. Beyond: 431. */
  readonly maxHeaders: number;
}

export const DEFAULT_HEAD_LIMITS: HeadLimits = { maxHeadBytes: 60 * 1024, maxHeaders: 100 };

/** Fields common to requests and responses. */
interface HeadBase {
  /** 0 or 1 (HTTP/1.0, HTTP/1.1). */
  readonly minor: number;
  /** Flat list [name, value, name, value, ...]; names lower-cased, values trimmed, order kept. */
  readonly headers: string[];
  /** Body framing: -1 none given; otherwise the Content-Length. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** "close" among the Connection tokens, or HTTP/1.0 without "keep-alive". */
  readonly close: boolean;
  /** Lower-cased Connection tokens other than close/keep-alive: headers to drop as hop-by-hop. */
  readonly connectionTokens: readonly string[] | null;
  /** Lower-cased Upgrade value when Connection has "upgrade". */
  readonly upgrade: string | null;
  /** Bytes of the head including the final CRLF CRLF. */
  readonly headBytes: number;
}

export interface RequestHead extends HeadBase {
  readonly method: string;
  readonly target: string;
  readonly host: string | null;
  readonly expectContinue: boolean;
}

export interface ResponseHead extends HeadBase {
  readonly status: number;
  readonly reason: string;
}

export type ParseResult<T> =
  | { readonly kind: "incomplete" }
  | { readonly kind: "ok"; readonly head: T }
  | { readonly kind: "error"; readonly status: number; readonly reason: string };

const INCOMPLETE = { kind: "incomplete" } as const;

function fail(status: number, reason: string): { kind: "error"; status: number; reason: string } {
  return { kind: "error", status, reason };
}

// Character classes as lookup tables: one array read per character.
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;
/** Field value: VCHAR, SP, HTAB, obs-text (0x80-0xff). */
const VALUE_CHAR = new Uint8Array(256);
for (let i = 0x20; i < 0x7f; i++) VALUE_CHAR[i] = 1;
for (let i = 0x80; i < 0x100; i++) VALUE_CHAR[i] = 1;
VALUE_CHAR[0x09] = 1;
/** request-target: visible ASCII only. */
const TARGET_CHAR = new Uint8Array(256);
for (let i = 0x21; i < 0x7f; i++) TARGET_CHAR[i] = 1;

const CRLFCRLF = Buffer.from("\r\n\r\n");

/**
 * Locates the end of a message head starting at `start`. Returns the index just past CRLF CRLF, -1 when the
 * head is not complete yet, or -2 when it can never be valid (a bare LF ends a line, or it exceeds the limit).
 */
function headEnd(buf: Buffer, start: number, limits: HeadLimits): number {
  const end = buf.indexOf(CRLFCRLF, start);
  if (end !== -1) return end + 4 - start > limits.maxHeadBytes ? -3 : end + 4;
  if (buf.length - start > limits.maxHeadBytes) return -3;
  // Not complete: a head terminated by bare LFs would otherwise wait for the timeout. Every LF received so
  // far is checked, not only the first: "GET / HTTP/1.1\r\nHost: a\n\n" (a proper request line, then bare LFs)
  // used to wait for the header timeout instead of getting its 400.
  for (let lf = buf.indexOf(0x0a, start); lf !== -1; lf = buf.indexOf(0x0a, lf + 1)) {
    if (lf === start || buf[lf - 1] !== 0x0d) return -2;
  }
  return -1;
}

interface Common {
  headers: string[];
  contentLength: number;
  chunked: boolean;
  connClose: boolean;
  connKeepAlive: boolean;
  connUpgrade: boolean;
  connectionTokens: string[] | null;
  upgrade: string | null;
  host: string | null;
  hostCount: number;
  expectContinue: boolean;
  error: string | null;
  errorStatus: number;
}

/** Parses header lines [from, to) of `head`; fills `c`. Returns false on error (c.error set). */
function parseFields(head: string, from: number, to: number, limits: HeadLimits, c: Common): boolean {
  let pos = from;
  let count = 0;
  let sawTransferEncoding = false;
  while (pos < to) {
    let eol = head.indexOf("\r\n", pos);
    if (eol === -1 || eol > to) eol = to;
    if (eol === pos) break;
    if (++count > limits.maxHeaders) {
      c.error = `more than ${limits.maxHeaders} header fields`;
      c.errorStatus = 431;
      return false;
    }
    const first = head.charCodeAt(pos);
    if (first === 0x20 || first === 0x09) {
      c.error = "obsolete line folding";
      return false;
    }
    const colon = head.indexOf(":", pos);
    if (colon === -1 || colon >= eol || colon === pos) {
      c.error = "header line without a name";
      return false;
    }
    for (let i = pos; i < colon; i++) {
      if (TCHAR[head.charCodeAt(i)] !== 1) {
        c.error =
          i === colon - 1 && (head.charCodeAt(i) === 0x20 || head.charCodeAt(i) === 0x09)
            ? "whitespace before a header colon"
            : "invalid character in a header name";
        return false;
      }
    }
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (head.charCodeAt(vs) === 0x20 || head.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (head.charCodeAt(ve - 1) === 0x20 || head.charCodeAt(ve - 1) === 0x09)) ve--;
    for (let i = vs; i < ve; i++) {
      const ch = head.charCodeAt(i);
      if (ch > 0xff || VALUE_CHAR[ch] !== 1) {
        c.error =
          ch === 0
            ? "NUL in a header value"
            : ch === 0x0d || ch === 0x0a
              ? "bare CR or LF in a header"
              : "invalid character in a header value";
        return false;
      }
    }
    const name = head.slice(pos, colon).toLowerCase();
    const value = head.slice(vs, ve);
    c.headers.push(name, value);
    switch (name) {
      case "content-length": {
        if (c.contentLength !== -1) {
          c.error = "more than one Content-Length";
          return false;
        }
        if (value.length === 0 || value.length > 15 || !/^[0-9]+$/.test(value)) {
          c.error = "invalid Content-Length";
          return false;
        }
        c.contentLength = Number(value);
        break;
      }
      case "transfer-encoding": {
        if (sawTransferEncoding) {
          c.error = "more than one Transfer-Encoding";
          return false;
        }
        sawTransferEncoding = true;
        if (value.toLowerCase() !== "chunked") {
          c.error = `unsupported transfer coding "${value}"`;
          c.errorStatus = 501;
          return false;
        }
        c.chunked = true;
        break;
      }
      case "connection": {
        for (const raw of value.split(",")) {
          const token = raw.trim().toLowerCase();
          if (token === "") continue;
          if (token === "close") c.connClose = true;
          else if (token === "keep-alive") c.connKeepAlive = true;
          // Content-Length frames the message; it is never a connection option (RFC 9110 7.6.1). Listed here it
          // used to be dropped as hop-by-hop while the body was still forwarded, unframed: the next hop read the
          // body as a new request (request smuggling), or a response body as the rest of the stream.
          else if (token === "content-length") continue;
          else {
            if (token === "upgrade") c.connUpgrade = true;
            if (c.connectionTokens === null) c.connectionTokens = [];
            c.connectionTokens.push(token);
          }
        }
        break;
      }
      case "upgrade":
        c.upgrade = value.toLowerCase();
        break;
      case "host":
        c.hostCount++;
        c.host = value;
        break;
      case "expect":
        if (value.toLowerCase() === "100-continue") c.expectContinue = true;
        break;
    }
    pos = eol + 2;
  }
  if (c.chunked && c.contentLength !== -1) {
    c.error = "both Content-Length and Transfer-Encoding";
    return false;
  }
  return true;
}

function common(): Common {
  return {
    headers: [],
    contentLength: -1,
    chunked: false,
    connClose: false,
    connKeepAlive: false,
    connUpgrade: false,
    connectionTokens: null,
    upgrade: null,
    host: null,
    hostCount: 0,
    expectContinue: false,
    error: null,
    errorStatus: 400,
  };
}

/**
 * A request line whose version is not HTTP/1.0 or HTTP/1.1: 505 only for a well-formed HTTP-version
 * ("HTTP/" DIGIT "." DIGIT, RFC 9112 2.3) we do not speak; anything else is a malformed request line (400).
 * "HTTP/1.1\rHost: a" or "HTTP/1.1 x" used to get 505 because they merely start with "HTTP/".
 */
function badVersion(
  head: string,
  from: number,
  to: number,
): { kind: "error"; status: number; reason: string } {
  return /^HTTP\/[0-9]\.[0-9]$/.test(head.slice(from, to))
    ? fail(505, "HTTP version not supported")
    : fail(400, "malformed request line");
}

/** Parses a request head at buf[start...]. */
export function parseRequestHead(
  buf: Buffer,
  start: number,
  limits: HeadLimits = DEFAULT_HEAD_LIMITS,
): ParseResult<RequestHead> {
  const end = headEnd(buf, start, limits);
  if (end === -1) return INCOMPLETE;
  if (end === -2) return fail(400, "bare LF in the request head");
  if (end === -3) return fail(431, `request head larger than ${limits.maxHeadBytes} bytes`);
  const head = buf.toString("latin1", start, end - 2);
  // Request line: method SP request-target SP HTTP/1.x
  const eol = head.indexOf("\r\n");
  const sp1 = head.indexOf(" ");
  if (sp1 <= 0 || sp1 > eol) return fail(400, "malformed request line");
  const sp2 = head.indexOf(" ", sp1 + 1);
  if (sp2 === -1 || sp2 > eol || sp2 === sp1 + 1) return fail(400, "malformed request line");
  for (let i = 0; i < sp1; i++) if (TCHAR[head.charCodeAt(i)] !== 1) return fail(400, "invalid method");
  for (let i = sp1 + 1; i < sp2; i++) {
    if (TARGET_CHAR[head.charCodeAt(i)] !== 1) return fail(400, "invalid character in the request target");
  }
  if (eol - sp2 - 1 !== 8 || !head.startsWith("HTTP/1.", sp2 + 1)) return badVersion(head, sp2 + 1, eol);
  const minorChar = head.charCodeAt(sp2 + 8);
  if (minorChar !== 0x30 && minorChar !== 0x31) return badVersion(head, sp2 + 1, eol);
  const minor = minorChar - 0x30;
  for (let i = 0; i < eol; i++) {
    const ch = head.charCodeAt(i);
    if (ch === 0x0d || ch === 0x0a) return fail(400, "bare CR or LF in the request line");
  }
  const c = common();
  if (!parseFields(head, eol + 2, head.length, limits, c)) return fail(c.errorStatus, c.error!);
  if (c.hostCount > 1) return fail(400, "more than one Host");
  if (minor === 1 && c.hostCount === 0) return fail(400, "HTTP/1.1 request without Host");
  if (minor === 0 && c.chunked) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  return {
    kind: "ok",
    head: {
      method: head.slice(0, sp1),
      target: head.slice(sp1 + 1, sp2),
      minor,
      headers: c.headers,
      contentLength: c.contentLength,
      chunked: c.chunked,
      close: c.connClose || (minor === 0 && !c.connKeepAlive),
      connectionTokens: c.connectionTokens,
      upgrade: c.connUpgrade ? c.upgrade : null,
      host: c.host,
      expectContinue: c.expectContinue,
      headBytes: end - start,
    },
  };
}

/** Parses a response head at buf[start...]. Errors here mean the upstream sent garbage (502 UPE). */
export function parseResponseHead(
  buf: Buffer,
  start: number,
  limits: HeadLimits = DEFAULT_HEAD_LIMITS,
): ParseResult<ResponseHead> {
  const end = headEnd(buf, start, limits);
  if (end === -1) return INCOMPLETE;
  if (end === -2) return fail(502, "bare LF in the response head");
  if (end === -3) return fail(502, `response head larger than ${limits.maxHeadBytes} bytes`);
  const head = buf.toString("latin1", start, end - 2);
  const eol = head.indexOf("\r\n");
  // HTTP/1.x SP 3DIGIT SP reason
  if (
    eol < 12 ||
    !head.startsWith("HTTP/1.") ||
    head.charCodeAt(8) !== 0x20 ||
    (head.charCodeAt(12) !== 0x20 && eol > 12)
  ) {
    return fail(502, "malformed status line");
  }
  const minorChar = head.charCodeAt(7);
  if (minorChar !== 0x30 && minorChar !== 0x31)
    return fail(502, "unsupported HTTP version in the status line");
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = head.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return fail(502, "malformed status code");
    status = status * 10 + d;
  }
  if (status < 100) return fail(502, "malformed status code");
  const reason = eol > 13 ? head.slice(13, eol) : "";
  for (let i = 0; i < reason.length; i++) {
    const ch = reason.charCodeAt(i);
    if (ch > 0xff || VALUE_CHAR[ch] !== 1) return fail(502, "invalid character in the reason phrase");
  }
  const c = common();
  if (!parseFields(head, eol + 2, head.length, limits, c)) return fail(502, c.error!);
  const minor = minorChar - 0x30;
  return {
    kind: "ok",
    head: {
      status,
      reason,
      minor,
      headers: c.headers,
      contentLength: c.contentLength,
      chunked: c.chunked,
      close: c.connClose || (minor === 0 && !c.connKeepAlive),
      connectionTokens: c.connectionTokens,
      upgrade: c.connUpgrade ? c.upgrade : null,
      headBytes: end - start,
    },
  };
}

/** Whether a response to `method` with `status` can carry a body at all (RFC 9110 6.4.1). */
export function responseHasBody(method: string, status: number): boolean {
  if (method === "HEAD") return false;
  if (status < 200 || status === 204 || status === 304) return false;
  if (method === "CONNECT" && status >= 200 && status < 300) return false;
  return true;
}
