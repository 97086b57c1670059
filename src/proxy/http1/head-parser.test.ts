// The HTTP/1 head parser on its own: what it accepts, what it refuses and with which status, every
// request-smuggling vector, and two properties over arbitrary input (it never throws; feeding the bytes in
// pieces, as a socket does, ends in the same result as one buffer).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type HeadLimits,
  type ParseResult,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  responseHasBody,
} from "./head-parser.ts";

const b = (s: string) => Buffer.from(s, "latin1");
const req = (s: string, limits?: HeadLimits) => parseRequestHead(b(s), 0, limits);

function ok(s: string, limits?: HeadLimits): RequestHead {
  const r = req(s, limits);
  assert.equal(r.kind, "ok", `expected ok for ${JSON.stringify(s)}, got ${JSON.stringify(r)}`);
  return (r as { head: RequestHead }).head;
}

function refused(s: string, status: number, reason?: RegExp, limits?: HeadLimits): void {
  const r = req(s, limits);
  assert.equal(r.kind, "error", `expected an error for ${JSON.stringify(s)}, got ${JSON.stringify(r)}`);
  const e = r as { status: number; reason: string };
  assert.equal(e.status, status, `status for ${JSON.stringify(s)} (${e.reason})`);
  if (reason) assert.match(e.reason, reason);
}

// ------------------------------------------------------------------------------------------- accepted

test("a simple GET: method, target, version, headers in order, lower-cased names, trimmed values", () => {
  const h = ok("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v1 \t\r\nx-thing: v2\r\n\r\n");
  assert.equal(h.method, "GET");
  assert.equal(h.target, "/a?b=c");
  assert.equal(h.minor, 1);
  assert.equal(h.host, "example.com");
  assert.deepEqual(h.headers, ["host", "example.com", "x-thing", "v1", "x-thing", "v2"]);
  assert.equal(h.contentLength, -1);
  assert.equal(h.chunked, false);
  assert.equal(h.close, false);
  assert.equal(h.upgrade, null);
  assert.equal(h.connectionTokens, null);
  assert.equal(h.expectContinue, false);
});

test("headBytes counts the head only; a body or a pipelined request after it is left alone", () => {
  const head = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
  const r = parseRequestHead(b(`${head}helloGET / HTTP/1.1\r\n`), 0);
  assert.equal(r.kind, "ok");
  assert.equal((r as { head: RequestHead }).head.headBytes, head.length);
  assert.equal((r as { head: RequestHead }).head.contentLength, 5);
});

test("parsing at an offset gives the same head as parsing from 0", () => {
  const s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const at0 = parseRequestHead(b(s), 0);
  const at7 = parseRequestHead(b(`garbage${s}`), 7);
  assert.deepEqual(at7, at0);
});

test("framing and connection semantics", () => {
  assert.equal(ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").chunked, true);
  assert.equal(ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\n").contentLength, 12);
  assert.equal(ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").close, true);
  assert.equal(ok("GET / HTTP/1.0\r\n\r\n").close, true, "HTTP/1.0 closes by default");
  assert.equal(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close, false);
  const h = ok(
    "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Foo,, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
  );
  assert.deepEqual(h.connectionTokens, ["x-foo", "upgrade"]);
  assert.equal(h.upgrade, "websocket");
  assert.equal(
    ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n").upgrade,
    null,
    "Upgrade without Connection: upgrade is not an upgrade",
  );
  assert.equal(ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n").expectContinue, true);
});

test("smuggling: Content-Length named in Connection stays a framing header, not a hop-by-hop one", () => {
  const h = ok("POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, x-a\r\nContent-Length: 3\r\n\r\n");
  assert.deepEqual(h.connectionTokens, ["x-a"]);
  assert.equal(h.contentLength, 3);
});

test("HTTP/1.0 needs no Host; an empty Host is allowed in HTTP/1.1; absolute-form and CONNECT targets", () => {
  assert.equal(ok("GET / HTTP/1.0\r\n\r\n").host, null);
  assert.equal(ok("GET / HTTP/1.1\r\nHost:\r\n\r\n").host, "");
  assert.equal(
    ok("GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n").target,
    "http://a.example/x?y",
  );
  assert.equal(ok("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n").target, "a.example:443");
  assert.equal(ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target, "*");
});

test("obs-text (0x80-0xff) is allowed in header values", () => {
  assert.equal(ok("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n").headers[3], "caf\xe9");
});

test("an incomplete head is incomplete, not an error", () => {
  for (const s of ["", "G", "GET / HTTP/1.1", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r"]) {
    assert.deepEqual(req(s), { kind: "incomplete" }, JSON.stringify(s));
  }
});

// ------------------------------------------------------------------------------ request smuggling

test("smuggling: Content-Length with Transfer-Encoding (either order) is refused", () => {
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
    /both/,
  );
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    400,
    /both/,
  );
});

test("smuggling: two Content-Lengths, equal or different, and a list value, are refused", () => {
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n",
    400,
    /Content-Length/,
  );
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    400,
    /Content-Length/,
  );
  refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n", 400, /Content-Length/);
  refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n", 400, /Content-Length/);
});

test("smuggling: Content-Length that is not a plain decimal is refused", () => {
  for (const v of ["-1", "+1", "0x10", "1.0", "1 1", "", "١", "9999999999999999"]) {
    refused(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${v}\r\n\r\n`, 400, /Content-Length/);
  }
});

test("smuggling: a transfer coding other than exactly chunked is 501", () => {
  for (const v of [
    "chunked, identity",
    "identity, chunked",
    "gzip, chunked",
    "identity",
    "chunked;q=1",
    "xchunked",
  ]) {
    refused(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${v}\r\n\r\n`, 501, /transfer coding/);
  }
});

test("smuggling: two Transfer-Encoding fields are refused", () => {
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  );
});

test("smuggling: Transfer-Encoding in an HTTP/1.0 request is refused", () => {
  refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, /HTTP\/1\.0/);
});

test("smuggling: obs-fold (a continuation line) is refused", () => {
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400, /folding/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400, /folding/);
  // Folded Transfer-Encoding: the empty first line is already refused (as an unknown coding, 501).
  const folded = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n");
  assert.equal(folded.kind, "error");
  assert.ok([400, 501].includes((folded as { status: number }).status));
  refused("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, /folding/);
});

test("smuggling: whitespace before the colon is refused", () => {
  refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, /whitespace before/);
  refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 3\r\n\r\n", 400, /whitespace before/);
  refused("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, /whitespace before/);
});

test("smuggling: bare CR anywhere in the head is refused", () => {
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400, /bare CR/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n", 400);
  refused("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
});

test("smuggling: bare LF line endings are refused, complete or not", () => {
  refused("GET / HTTP/1.1\nHost: a\n\n", 400, /bare LF/);
  refused("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
  // Not terminated by CRLF CRLF, so never complete: the parser must not wait for more (the slowloris timer)
  // but refuse as soon as a line ends with a bare LF.
  refused("GET / HTTP/1.1\r\nHost: a\n\n", 400, /bare LF/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: b\n", 400, /bare LF/);
});

test("smuggling: NUL and other control characters in a header value are refused", () => {
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400, /NUL/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400, /invalid character/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400, /invalid character/);
});

test("invalid characters in a header name are refused; a line without a colon or a name too", () => {
  refused("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 400, /header name/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX\xe9: b\r\n\r\n", 400, /header name/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", 400, /without a name/);
});

test("non-ASCII, control characters and spaces in the request target are refused", () => {
  refused("GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, /target/);
  refused("GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400, /target/);
  refused("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 400, /target/);
  refused("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
});

test("Host: missing in HTTP/1.1 and two of them are refused", () => {
  refused("GET / HTTP/1.1\r\n\r\n", 400, /without Host/);
  refused("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, /without Host/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, /more than one Host/);
  refused("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, /more than one Host/);
});

test("malformed request lines are 400; other HTTP versions are 505", () => {
  for (const s of [
    "GET\r\nHost: a\r\n\r\n",
    "GET /\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    " GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / http/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1 \r\nHost: a\r\n\r\n".replace("HTTP/1.1 ", "HTP/1.1 "),
    "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
  ]) {
    refused(s, 400);
  }
  refused("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  refused("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
  refused("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
  refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
});

test("limits: a head over maxHeadBytes is 431 (complete or still arriving); too many fields is 431", () => {
  const limits = { maxHeadBytes: 1024, maxHeaders: 10 };
  const big = `GET / HTTP/1.1\r\nHost: a\r\nX: ${"v".repeat(1100)}\r\n\r\n`;
  refused(big, 431, /larger/, limits);
  refused(big.slice(0, 1030), 431, /larger/, limits);
  const exact = `GET / HTTP/1.1\r\nHost: a\r\nX: ${"v".repeat(1024 - 32)}\r\n\r\n`;
  assert.equal(exact.length, 1024);
  ok(exact, limits);
  refused(`${exact.slice(0, -4)}v\r\n\r\n`, 431, /larger/, limits);
  const fields = (n: number) => `GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(n - 1)}\r\n`;
  ok(fields(10), limits);
  refused(fields(11), 431, /header fields/, limits);
  // The defaults: 60 KiB and 100 fields.
  refused(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"v".repeat(61 * 1024)}\r\n\r\n`, 431);
  refused(`GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(100)}\r\n`, 431);
});

// ------------------------------------------------------------------------------------------ responses

test("response heads: status, reason, framing; garbage is 502", () => {
  const r = parseResponseHead(b("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), 0);
  assert.equal(r.kind, "ok");
  const h = (r as { head: { status: number; reason: string; contentLength: number } }).head;
  assert.equal(h.status, 200);
  assert.equal(h.reason, "OK");
  assert.equal(h.contentLength, 3);
  assert.equal(parseResponseHead(b("HTTP/1.1 204\r\n\r\n"), 0).kind, "ok", "the reason phrase is optional");
  for (const s of [
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 20 OK\r\n\r\n",
    "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/2 200 OK\r\n\r\n",
    "HTTP/1.1 099 Low\r\n\r\n",
    "garbage\r\n\r\n",
    "HTTP/1.1 200 OK\nX: y\n\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
  ]) {
    const e = parseResponseHead(b(s), 0);
    assert.equal(e.kind, "error", JSON.stringify(s));
    assert.equal((e as { status: number }).status, 502);
  }
});

test("responseHasBody: HEAD, 1xx, 204, 304 and 2xx to CONNECT have none", () => {
  assert.equal(responseHasBody("HEAD", 200), false);
  assert.equal(responseHasBody("GET", 100), false);
  assert.equal(responseHasBody("GET", 204), false);
  assert.equal(responseHasBody("GET", 304), false);
  assert.equal(responseHasBody("CONNECT", 200), false);
  assert.equal(responseHasBody("CONNECT", 407), true);
  assert.equal(responseHasBody("GET", 200), true);
});

// ------------------------------------------------------------------------------------------ properties

const STATUSES = new Set([400, 431, 501, 505]);

/** What a connection ends up with when the bytes arrive cut at `cuts`: the first result that is not incomplete. */
function fedInPieces(bytes: Buffer, cuts: number[], limits?: HeadLimits): ParseResult<RequestHead> {
  for (const c of [...cuts, bytes.length]) {
    const r = parseRequestHead(bytes.subarray(0, c), 0, limits);
    if (r.kind !== "incomplete") return r;
  }
  return { kind: "incomplete" };
}

function sameOutcome(a: ParseResult<RequestHead>, whole: ParseResult<RequestHead>): void {
  assert.equal(a.kind, whole.kind);
  if (a.kind === "ok") assert.deepEqual(a, whole);
}

test("property: parseRequestHead never throws on arbitrary bytes, and refuses only with known statuses", () => {
  const small = { maxHeadBytes: 256, maxHeaders: 8 };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }),
        // Bytes that look like HTTP more often than uniform noise does.
        fc
          .array(
            fc.constantFrom(
              "GET ",
              "/",
              " HTTP/1.1",
              "\r\n",
              "\r",
              "\n",
              "Host: a",
              ":",
              " ",
              "\0",
              "\xff",
              "x",
              "Content-Length: 1",
              "Transfer-Encoding: chunked",
            ),
            { maxLength: 40 },
          )
          .map((parts) => Buffer.from(parts.join(""), "latin1")),
      ),
      fc.integer({ min: 0, max: 5 }),
      (bytes, start) => {
        const buf = Buffer.from(bytes);
        for (const limits of [undefined, small]) {
          const r = parseRequestHead(buf, Math.min(start, buf.length), limits);
          if (r.kind === "error") assert.ok(STATUSES.has(r.status), `status ${r.status}`);
          if (r.kind === "ok") assert.ok(r.head.headBytes <= buf.length);
        }
        const resp = parseResponseHead(buf, 0);
        if (resp.kind === "error") assert.equal(resp.status, 502);
      },
    ),
    { numRuns: 2000 },
  );
});

/** A valid request head (and maybe body bytes after it). */
const validRequest = fc
  .record({
    method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-CUSTOM"),
    path: fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,40}$/),
    minor: fc.constantFrom(0, 1),
    fields: fc.array(
      fc.tuple(
        fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/),
        fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/),
      ),
      { maxLength: 8 },
    ),
    framing: fc.constantFrom("none", "length", "chunked"),
    after: fc.uint8Array({ maxLength: 20 }),
  })
  .map(({ method, path, minor, fields, framing, after }) => {
    const reserved = /^(host|content-length|transfer-encoding|connection|upgrade|expect)$/i;
    let head = `${method} ${path} HTTP/1.${minor}\r\n`;
    if (minor === 1) head += "Host: example.com:8080\r\n";
    for (const [n, v] of fields) if (!reserved.test(n)) head += `${n}: ${v}\r\n`;
    if (framing === "length") head += `Content-Length: ${after.length}\r\n`;
    if (framing === "chunked" && minor === 1) head += "Transfer-Encoding: chunked\r\n";
    head += "\r\n";
    return Buffer.concat([Buffer.from(head, "latin1"), after]);
  });

test("property: a valid request split at every byte boundary parses as in one buffer", () => {
  fc.assert(
    fc.property(validRequest, (bytes) => {
      const whole = parseRequestHead(bytes, 0);
      assert.equal(whole.kind, "ok", JSON.stringify(whole));
      const headBytes = (whole as { head: RequestHead }).head.headBytes;
      for (let cut = 0; cut < bytes.length; cut++) {
        // Two pieces, as two socket reads: the first alone, then both together.
        const first = parseRequestHead(bytes.subarray(0, cut), 0);
        if (cut < headBytes) assert.deepEqual(first, { kind: "incomplete" }, `cut at ${cut}`);
        else assert.deepEqual(first, whole, `cut at ${cut}`);
        sameOutcome(fedInPieces(bytes, [cut]), whole);
      }
      // And one byte at a time.
      sameOutcome(
        fedInPieces(
          bytes,
          Array.from({ length: bytes.length }, (_, i) => i),
        ),
        whole,
      );
    }),
    { numRuns: 300 },
  );
});

test("property: arbitrary bytes fed in pieces end in the same outcome as one buffer", () => {
  const limits = { maxHeadBytes: 200, maxHeaders: 6 };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 260 }),
        fc
          .array(
            fc.constantFrom(
              "GET / HTTP/1.1",
              "\r\n",
              "\r",
              "\n",
              "Host: a",
              "X: y",
              ":",
              " ",
              "\0",
              "Content-Length: 1",
            ),
            { maxLength: 40 },
          )
          .map((parts) => Buffer.from(parts.join(""), "latin1")),
      ),
      fc.array(fc.nat(), { maxLength: 5 }),
      (raw, rawCuts) => {
        const bytes = Buffer.from(raw);
        const whole = parseRequestHead(bytes, 0, limits);
        if (whole.kind === "incomplete") return;
        const cuts = rawCuts.map((c) => c % (bytes.length + 1)).sort((x, y) => x - y);
        sameOutcome(fedInPieces(bytes, cuts, limits), whole);
      },
    ),
    { numRuns: 3000 },
  );
});
