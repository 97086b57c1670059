// Writes JSON values as bytes into a buffer, for the access log's per-request line.
//
// Why not strings: a line built from ~40 string pieces is a rope that V8 flattens again when it is written, and
// the pieces and ropes are garbage; together that cost the proxy ~10% of its requests/s with the access log on
// (npm run bench:proxy). Here each character is copied once, into a buffer that is reused.
//
// Two kinds of text: wire text (method, path, authority, headers) arrived as bytes and was read as latin1 by the
// proxy's parser, and each character is written back as the byte it was (UTF-8 from a client reads back as
// UTF-8, as Envoy logs it); config text (route and cluster names) is Unicode and is written as UTF-8.

const HEX = "0123456789abcdef";

/** The largest number of bytes `text` can take once quoted and escaped (\u00XX is 6 bytes; UTF-8 at most 3 per
 * UTF-16 unit). */
export function maxQuotedBytes(text: string): number {
  return text.length * 6 + 2;
}

export class JsonBytes {
  buf: Buffer;
  pos = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  /** Bytes already encoded (keys, punctuation). */
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** ASCII text that needs no escaping (numbers' digits, flags, addresses, fixed words), unquoted. */
  ascii(s: string): void {
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) buf[p++] = s.charCodeAt(i);
    this.pos = p;
  }

  /** A non-negative integer (fractions are rounded; negative or non-finite values write 0). */
  uint(n: number): void {
    let v = Math.round(n);
    if (!(v > 0 && v < Number.POSITIVE_INFINITY)) {
      this.buf[this.pos++] = 0x30;
      return;
    }
    if (v > Number.MAX_SAFE_INTEGER) v = Number.MAX_SAFE_INTEGER;
    let digits = 1;
    for (let t = v; t >= 10; t = Math.floor(t / 10)) digits++;
    const buf = this.buf;
    let p = this.pos + digits;
    this.pos = p;
    do {
      const q = Math.floor(v / 10);
      buf[--p] = 0x30 + (v - q * 10);
      v = q;
    } while (v > 0);
  }

  /** A JSON string of wire text (characters up to U+00FF are the bytes received). */
  wire(s: string): void {
    this.quoted(s, true);
  }

  /** A JSON string of config text, as UTF-8. */
  text(s: string): void {
    this.quoted(s, false);
  }

  /** A JSON string, or null for "". */
  wireOrNull(s: string): void {
    if (s === "") this.null();
    else this.quoted(s, true);
  }

  textOrNull(s: string): void {
    if (s === "") this.null();
    else this.quoted(s, false);
  }

  null(): void {
    const buf = this.buf;
    const p = this.pos;
    buf[p] = 0x6e;
    buf[p + 1] = 0x75;
    buf[p + 2] = 0x6c;
    buf[p + 3] = 0x6c;
    this.pos = p + 4;
  }

  private quoted(s: string, wire: boolean): void {
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 0x22;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x20 && c < 0x7f) {
        if (c === 0x22 || c === 0x5c) buf[p++] = 0x5c;
        buf[p++] = c;
      } else if (c < 0x20 || c === 0x7f) {
        // \u00XX: control characters must be escaped in JSON; DEL is, so that a log viewer shows it.
        buf[p++] = 0x5c;
        buf[p++] = 0x75;
        buf[p++] = 0x30;
        buf[p++] = 0x30;
        buf[p++] = HEX.charCodeAt(c >> 4);
        buf[p++] = HEX.charCodeAt(c & 15);
      } else if (wire && c < 0x100) {
        buf[p++] = c;
      } else if (c < 0x800) {
        buf[p++] = 0xc0 | (c >> 6);
        buf[p++] = 0x80 | (c & 0x3f);
      } else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
        buf[p++] = 0xf0 | (cp >> 18);
        buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
      } else {
        // A lone surrogate cannot be UTF-8: U+FFFD, as TextEncoder writes it.
        const u = c >= 0xd800 && c < 0xe000 ? 0xfffd : c;
        buf[p++] = 0xe0 | (u >> 12);
        buf[p++] = 0x80 | ((u >> 6) & 0x3f);
        buf[p++] = 0x80 | (u & 0x3f);
      }
    }
    buf[p++] = 0x22;
    this.pos = p;
  }
}

/** The bytes of an ASCII string (for keys and punctuation encoded once). */
export function asciiBytes(s: string): Buffer {
  return Buffer.from(s, "latin1");
}
