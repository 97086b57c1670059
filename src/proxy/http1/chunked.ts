// Incremental, strict decoder of the chunked transfer coding (RFC 9112 section 7.1). The proxy forwards
// chunked bodies byte for byte when both sides speak HTTP/1.1, but it must still find exactly where a body
// ends (that is what request smuggling attacks), so every byte passes through this state machine.

const enum_ = {
  SIZE: 0,
  SIZE_EXT: 1,
  SIZE_LF: 2,
  DATA: 3,
  DATA_CR: 4,
  DATA_LF: 5,
  TRAILER_START: 6,
  TRAILER_LINE: 7,
  TRAILER_LF: 8,
  FINAL_LF: 9,
  DONE: 10,
  SIZE_BWS: 11,
} as const;

/** A chunk-size line longer than this (hex digits + extensions) is refused. */
const MAX_SIZE_LINE = 4096;
/** Trailer section bound. */
const MAX_TRAILER_BYTES = 16 * 1024;
/** 2^53: more than any body we will ever see, less than Number can hold exactly. */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x41 + i] = 10 + i;
  HEX[0x61 + i] = 10 + i;
}

export class ChunkedDecoder {
  private state: number = enum_.SIZE;
  private size = 0;
  private sizeDigits = 0;
  private lineBytes = 0;
  private trailerBytes = 0;
  /** Set when the body is malformed; the message must be refused and the connection closed. */
  error: string | null = null;

  get done(): boolean {
    return this.state === enum_.DONE;
  }

  /**
   * Consumes bytes of buf[start..end). Returns the index after the last byte that belongs to the body (end,
   * unless the body finished earlier). `onData(buf, from, to)`, when given, receives each run of payload bytes.
   * On a malformed body, sets `error` and returns -1.
   */
  feed(
    buf: Buffer,
    start: number,
    end: number,
    onData?: (buf: Buffer, from: number, to: number) => void,
  ): number {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case enum_.SIZE: {
          const ch = buf[i]!;
          const v = HEX[ch]!;
          if (v >= 0) {
            if (++this.sizeDigits > 14) return this.fail("chunk size too large");
            this.size = this.size * 16 + v;
            i++;
          } else if (this.sizeDigits === 0) {
            return this.fail("invalid chunk size");
          } else if (ch === 0x0d) {
            this.state = enum_.SIZE_LF;
            i++;
          } else if (ch === 0x3b) {
            this.state = enum_.SIZE_EXT;
            i++;
          } else if (ch === 0x20 || ch === 0x09) {
            this.state = enum_.SIZE_BWS;
            i++;
          } else {
            return this.fail("invalid chunk size");
          }
          if (++this.lineBytes > MAX_SIZE_LINE) return this.fail("chunk size line too long");
          break;
        }
        case enum_.SIZE_BWS: {
          // Whitespace after the size may only lead to ";" (chunk-ext = *( BWS ";" ... )) or the CRLF. "5 5" was
          // taken as size 5 with an extension " 5", while a server that skips spaces in sizes reads 0x55: the
          // body is forwarded as is, so the two would disagree on where it ends.
          const ch = buf[i]!;
          if (ch === 0x3b) this.state = enum_.SIZE_EXT;
          else if (ch === 0x0d) this.state = enum_.SIZE_LF;
          else if (ch !== 0x20 && ch !== 0x09) return this.fail("invalid chunk size");
          if (++this.lineBytes > MAX_SIZE_LINE) return this.fail("chunk size line too long");
          i++;
          break;
        }
        case enum_.SIZE_EXT: {
          const ch = buf[i]!;
          if (ch === 0x0d) this.state = enum_.SIZE_LF;
          else if (ch === 0x0a || ch === 0 || (ch < 0x20 && ch !== 0x09) || ch === 0x7f)
            return this.fail("invalid character in a chunk extension");
          if (++this.lineBytes > MAX_SIZE_LINE) return this.fail("chunk size line too long");
          i++;
          break;
        }
        case enum_.SIZE_LF: {
          if (buf[i] !== 0x0a) return this.fail("bare CR after a chunk size");
          i++;
          if (this.size > MAX_CHUNK_SIZE) return this.fail("chunk size too large");
          this.lineBytes = 0;
          this.sizeDigits = 0;
          this.state = this.size === 0 ? enum_.TRAILER_START : enum_.DATA;
          break;
        }
        case enum_.DATA: {
          const n = Math.min(this.size, end - i);
          if (onData) onData(buf, i, i + n);
          i += n;
          this.size -= n;
          if (this.size === 0) this.state = enum_.DATA_CR;
          break;
        }
        case enum_.DATA_CR:
          if (buf[i] !== 0x0d) return this.fail("chunk data not followed by CRLF");
          i++;
          this.state = enum_.DATA_LF;
          break;
        case enum_.DATA_LF:
          if (buf[i] !== 0x0a) return this.fail("chunk data not followed by CRLF");
          i++;
          this.state = enum_.SIZE;
          break;
        case enum_.TRAILER_START:
          if (buf[i] === 0x0d) {
            this.state = enum_.FINAL_LF;
            i++;
            break;
          }
          this.state = enum_.TRAILER_LINE;
          break;
        case enum_.TRAILER_LINE: {
          const ch = buf[i]!;
          if (ch === 0x0d) this.state = enum_.TRAILER_LF;
          else if (ch === 0x0a || ch === 0) return this.fail("invalid character in a trailer");
          if (++this.trailerBytes > MAX_TRAILER_BYTES) return this.fail("trailers too large");
          i++;
          break;
        }
        case enum_.TRAILER_LF:
          if (buf[i] !== 0x0a) return this.fail("bare CR in a trailer");
          i++;
          this.state = enum_.TRAILER_START;
          break;
        case enum_.FINAL_LF:
          if (buf[i] !== 0x0a) return this.fail("bare CR at the end of a chunked body");
          i++;
          this.state = enum_.DONE;
          return i;
        case enum_.DONE:
          return i;
      }
    }
    return i;
  }

  private fail(reason: string): number {
    this.error = reason;
    return -1;
  }
}
