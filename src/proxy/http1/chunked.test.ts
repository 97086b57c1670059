// The chunked transfer-coding decoder on its own: where a body ends is what request smuggling attacks, so
// every malformed size line, extension and trailer must be refused, and feeding the bytes in pieces must
// give exactly what one buffer gives.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ChunkedDecoder } from "./chunked.ts";

interface Outcome {
  /** Index just past the body in the input, or -1 on error. */
  stop: number;
  payload: Buffer;
  done: boolean;
  error: string | null;
}

/** Feeds `bytes` cut at `cuts` (sorted) to a fresh decoder, as socket reads arrive. */
function decode(bytes: Buffer, cuts: number[] = []): Outcome {
  const d = new ChunkedDecoder();
  const parts: Buffer[] = [];
  const onData = (buf: Buffer, from: number, to: number) => parts.push(Buffer.from(buf.subarray(from, to)));
  let pos = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut < pos) continue;
    // Each read is a separate buffer, as from a socket; indexes are into that buffer.
    const piece = Buffer.from(bytes.subarray(pos, cut));
    const r = d.feed(piece, 0, piece.length, onData);
    if (r === -1) return { stop: -1, payload: Buffer.concat(parts), done: false, error: d.error };
    if (d.done) return { stop: pos + r, payload: Buffer.concat(parts), done: true, error: null };
    assert.equal(r, piece.length, "an unfinished body consumes the whole piece");
    pos = cut;
  }
  return { stop: bytes.length, payload: Buffer.concat(parts), done: d.done, error: d.error };
}

const s = (x: string) => Buffer.from(x, "latin1");

function valid(body: string, payload: string): void {
  const o = decode(s(body));
  assert.equal(o.error, null, `${JSON.stringify(body)}: ${o.error}`);
  assert.equal(o.done, true, JSON.stringify(body));
  assert.equal(o.payload.toString("latin1"), payload);
  assert.equal(o.stop, body.length);
}

function invalid(body: string, reason?: RegExp): void {
  const o = decode(s(body));
  assert.equal(o.stop, -1, `expected an error for ${JSON.stringify(body)}`);
  assert.ok(o.error, "error is set");
  if (reason) assert.match(o.error, reason);
  // The same in pieces of one byte: an error is an error however the bytes arrive.
  const bytewise = decode(
    s(body),
    Array.from({ length: body.length }, (_, i) => i),
  );
  assert.equal(bytewise.stop, -1, `byte by byte: expected an error for ${JSON.stringify(body)}`);
}

test("valid bodies: sizes in either case, extensions, trailers, empty body", () => {
  valid("0\r\n\r\n", "");
  valid("5\r\nhello\r\n0\r\n\r\n", "hello");
  valid("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
  valid("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", "01234567890123456789");
  valid("000005\r\nhello\r\n0\r\n\r\n", "hello");
  valid("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello");
  valid('5 ; name="quoted \\" value"\r\nhello\r\n0\r\n\r\n', "hello");
  valid("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", "hello");
  valid("3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r");
});

test("bytes after the end of the body are not consumed (the next pipelined request)", () => {
  const body = "5\r\nhello\r\n0\r\n\r\n";
  const o = decode(s(`${body}GET / HTTP/1.1\r\n\r\n`));
  assert.equal(o.done, true);
  assert.equal(o.stop, body.length);
  assert.equal(o.payload.toString(), "hello");
  // Feeding after the end consumes nothing.
  const d = new ChunkedDecoder();
  const buf = s(body);
  assert.equal(d.feed(buf, 0, buf.length), buf.length);
  assert.equal(d.feed(s("more"), 0, 4), 0);
});

test("the payload callback gets exactly the data bytes, split however the input is", () => {
  const body = s("4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n");
  for (let cut = 0; cut <= body.length; cut++) {
    const o = decode(body, [cut]);
    assert.equal(o.payload.toString(), "Wikipedia in\r\n\r\nchunks.", `cut at ${cut}`);
    assert.equal(o.stop, body.length);
  }
});

test("smuggling: non-hex, negative, signed, prefixed or empty chunk sizes are refused", () => {
  invalid("g\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("-5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("+5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("0x5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid(" 5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("5\0\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  // Whitespace inside the size: a server that skips it would read 0x55 where we read 5.
  invalid("5 5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("5\t5\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("5 x;a\r\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("0 0\r\n\r\n", /invalid chunk size/);
  // Whitespace before ";" (BWS) or before the CRLF is harmless and accepted.
  valid("5 \t ;a=b\r\nhello\r\n0 \r\n\r\n", "hello");
});

test("smuggling: chunk sizes that overflow are refused", () => {
  invalid("fffffffffffffffff\r\n", /too large/);
  invalid("10000000000000000\r\n", /too large/);
  invalid("ffffffffffffff\r\n", /too large/); // 2^56 - 1: 14 digits, over 2^53
  // Large but representable: accepted as a size, then the data simply has not arrived.
  const d = new ChunkedDecoder();
  const big = s("fffffffff\r\n");
  assert.equal(d.feed(big, 0, big.length), big.length);
  assert.equal(d.error, null);
});

test("smuggling: a size line or chunk data without its CRLF is refused", () => {
  invalid("5\nhello\r\n0\r\n\r\n", /invalid chunk size/);
  invalid("5\rhello\r\n0\r\n\r\n", /bare CR/);
  invalid("5\r\nhelloX\r\n0\r\n\r\n", /not followed by CRLF/);
  invalid("5\r\nhello\n0\r\n\r\n", /not followed by CRLF/);
  invalid("5\r\nhello\r0\r\n\r\n", /not followed by CRLF/);
  invalid("5\r\nhello0\r\n\r\n", /not followed by CRLF/);
  invalid("5\r\nhello\r\n0\r\n\n", /bare|trailer/);
  invalid("5\r\nhello\r\n0\n\r\n", /invalid chunk size/);
  invalid("5\r\nhello\r\n0\r\n\r\r\n", /bare CR/);
});

test("smuggling: bare CR, bare LF, NUL and controls in a chunk extension are refused", () => {
  invalid("5;a\nhello\r\n0\r\n\r\n", /extension/);
  invalid("5;a\rb\r\nhello\r\n0\r\n\r\n", /bare CR/);
  invalid("5;a\0\r\nhello\r\n0\r\n\r\n", /extension/);
  invalid("5;a\x01\r\nhello\r\n0\r\n\r\n", /extension/);
  invalid("5;a\x7f\r\nhello\r\n0\r\n\r\n", /extension/);
  invalid("0;a\nb\r\n\r\n", /extension/);
});

test("smuggling: bare LF, bare CR and NUL in a trailer are refused", () => {
  invalid("0\r\nX: a\nY: b\r\n\r\n", /trailer/);
  invalid("0\r\nX: a\rY: b\r\n\r\n", /bare CR/);
  invalid("0\r\nX: a\0\r\n\r\n", /trailer/);
});

test("limits: a very long size line and very large trailers are refused", () => {
  invalid(`5;${"a".repeat(5000)}\r\nhello\r\n0\r\n\r\n`, /too long/);
  invalid(`0\r\n${"X: y\r\n".repeat(4000)}\r\n`, /too large/);
});

test("once failed, the decoder stays failed", () => {
  const d = new ChunkedDecoder();
  assert.equal(d.feed(s("zz"), 0, 2), -1);
  assert.ok(d.error);
  assert.equal(d.done, false);
});

// ------------------------------------------------------------------------------------------ properties

/** A valid chunked encoding of `chunks`, with optional extensions and trailers. */
const validBody = fc
  .record({
    chunks: fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 }),
    upper: fc.boolean(),
    zeros: fc.nat({ max: 3 }),
    ext: fc.option(fc.stringMatching(/^;[a-z]{1,5}(=[a-z0-9]{1,5})?$/), { nil: undefined }),
    trailers: fc.array(fc.stringMatching(/^[A-Za-z-]{1,10}: [ -~]{0,10}$/), { maxLength: 3 }),
  })
  .map(({ chunks, upper, zeros, ext, trailers }) => {
    const parts: Buffer[] = [];
    for (const c of chunks) {
      let size = c.length.toString(16);
      if (upper) size = size.toUpperCase();
      parts.push(s(`${"0".repeat(zeros)}${size}${ext ?? ""}\r\n`), Buffer.from(c), s("\r\n"));
    }
    parts.push(s(`0${ext ?? ""}\r\n${trailers.map((t) => `${t}\r\n`).join("")}\r\n`));
    return { encoded: Buffer.concat(parts), payload: Buffer.concat(chunks.map((c) => Buffer.from(c))) };
  });

test("property: a valid body decodes to its payload, cut at every byte boundary", () => {
  fc.assert(
    fc.property(validBody, fc.uint8Array({ maxLength: 10 }), ({ encoded, payload }, after) => {
      const input = Buffer.concat([encoded, after]);
      const whole = decode(input);
      assert.equal(whole.error, null);
      assert.equal(whole.done, true);
      assert.equal(whole.stop, encoded.length);
      assert.ok(whole.payload.equals(payload));
      for (let cut = 0; cut <= input.length; cut++)
        assert.deepEqual(decode(input, [cut]), whole, `cut ${cut}`);
      assert.deepEqual(
        decode(
          input,
          Array.from({ length: input.length }, (_, i) => i),
        ),
        whole,
      );
    }),
    { numRuns: 300 },
  );
});

test("property: arbitrary bytes never throw, and pieces give the same outcome as one buffer", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        fc
          .array(
            fc.constantFrom("0", "5", "a", "F", "\r\n", "\r", "\n", ";", "x=y", " ", "\0", "hello", "-"),
            {
              maxLength: 40,
            },
          )
          .map((p) => s(p.join(""))),
      ),
      fc.array(fc.nat(), { maxLength: 6 }),
      (raw, rawCuts) => {
        const bytes = Buffer.from(raw);
        const whole = decode(bytes);
        if (whole.stop === -1) assert.ok(whole.error);
        const cuts = rawCuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b);
        assert.deepEqual(decode(bytes, cuts), whole);
      },
    ),
    { numRuns: 3000 },
  );
});
