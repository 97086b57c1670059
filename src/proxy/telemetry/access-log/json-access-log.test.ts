// The access log's byte encoder and its chunked writer: every line valid JSON that reads back as the record,
// whatever the strings hold and however long a line is; lines to a slow pipe are neither lost nor torn.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import type { HttpRequestRecord } from "../request-record.ts";
import { JsonAccessLog } from "./json-access-log.ts";
import { JsonBytes, maxQuotedBytes } from "./json-bytes.ts";

const dir = mkdtempSync(join(tmpdir(), "isthmus-access-log-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function encode(write: (o: JsonBytes) => void, room: number): Buffer {
  const o = new JsonBytes(Buffer.alloc(room));
  write(o);
  return o.buf.subarray(0, o.pos);
}

test("fuzz: config text is JSON-quoted UTF-8 within its bound (lone surrogates become U+FFFD)", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 64 }), (s) => {
      const bytes = encode((o) => o.text(s), maxQuotedBytes(s));
      assert.ok(bytes.length <= maxQuotedBytes(s));
      assert.equal(JSON.parse(bytes.toString("utf8")), Buffer.from(s, "utf8").toString("utf8"));
    }),
    { numRuns: 3000 },
  );
});

test("fuzz: wire text writes each byte back as received, escaped where JSON needs it", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
      const s = Buffer.from(raw).toString("latin1");
      const bytes = encode((o) => o.wire(s), maxQuotedBytes(s));
      assert.ok(bytes.length <= maxQuotedBytes(s));
      assert.equal(JSON.parse(bytes.toString("latin1")), s);
    }),
    { numRuns: 3000 },
  );
});

test("fuzz: integers as JSON numbers, fractions rounded, negatives and NaN as 0", () => {
  fc.assert(
    fc.property(fc.oneof(fc.nat(), fc.maxSafeNat(), fc.double()), (n) => {
      const bytes = encode((o) => o.uint(n), 32);
      const want =
        Number.isFinite(n) && Math.round(n) > 0 ? Math.min(Math.round(n), Number.MAX_SAFE_INTEGER) : 0;
      assert.equal(bytes.toString("latin1"), String(want));
    }),
    { numRuns: 3000 },
  );
});

const record = (over: Partial<HttpRequestRecord>): HttpRequestRecord => ({
  startTimeMs: 1_700_000_000_000,
  durationMs: 1.6,
  method: "GET",
  path: "/",
  authority: "svc",
  protocol: "HTTP/1.1",
  responseCode: 200,
  responseFlags: "-",
  grpcStatus: 14,
  bytesReceived: 5,
  bytesSent: 12345678901,
  upstreamHost: "127.0.0.1:8080",
  upstreamCluster: "outbound|80||svc",
  retries: 2,
  routeName: "default",
  downstreamRemoteAddress: "127.0.0.9:40000",
  requestId: "id",
  traceId: "",
  userAgent: "curl",
  connectionSecurityPolicy: "none",
  reporter: "destination",
  peer: undefined,
  destinationService: "svc",
  ...over,
});

test("many lines across chunks, and a line longer than a chunk, all read back in order", async () => {
  const path = join(dir, "chunks.log");
  const log = new JsonAccessLog(path);
  const huge = `/${"p".repeat(300_000)}`;
  for (let i = 0; i < 3000; i++) log.onHttpRequest(record({ path: i === 1500 ? huge : `/item/${i}` }));
  log.onTcpClose({
    startTimeMs: 1_700_000_000_999,
    durationMs: 7,
    bytesReceived: 1,
    bytesSent: 2,
    upstreamHost: "",
    upstreamCluster: "tcp-cluster",
    downstreamRemoteAddress: "127.0.0.1:1",
    connectionSecurityPolicy: "mutual_tls",
    reporter: "source",
    peer: undefined,
    destinationService: "svc",
    responseFlags: "UF",
  });
  await log.close();
  const lines = readFileSync(path, "utf8").trimEnd().split("\n");
  assert.equal(lines.length, 3001);
  assert.equal(log.written, 3001);
  assert.equal(log.dropped, 0);
  const parsed = lines.map((l) => JSON.parse(l));
  for (let i = 0; i < 3000; i++) assert.equal(parsed[i].path, i === 1500 ? huge : `/item/${i}`);
  assert.deepEqual(parsed[0], {
    start_time: "2023-11-14T22:13:20.000Z",
    method: "GET",
    path: "/item/0",
    protocol: "HTTP/1.1",
    response_code: 200,
    response_flags: "-",
    grpc_status: 14,
    bytes_received: 5,
    bytes_sent: 12345678901,
    duration: 2,
    upstream_host: "127.0.0.1:8080",
    upstream_cluster: "outbound|80||svc",
    upstream_retries: 2,
    route_name: "default",
    authority: "svc",
    x_request_id: "id",
    trace_id: null,
    user_agent: "curl",
    downstream_remote_address: "127.0.0.9:40000",
    connection_security_policy: "none",
    reporter: "destination",
  });
  assert.deepEqual(parsed[3000], {
    start_time: "2023-11-14T22:13:20.999Z",
    protocol: "tcp",
    response_flags: "UF",
    bytes_received: 1,
    bytes_sent: 2,
    duration: 7,
    upstream_host: null,
    upstream_cluster: "tcp-cluster",
    downstream_remote_address: "127.0.0.1:1",
    connection_security_policy: "mutual_tls",
    reporter: "source",
  });
});

test("a pipe read slowly: every line arrives whole (short writes are continued)", async () => {
  // A FIFO whose reader opens it at once but sleeps before reading, so the pipe (64 KiB) fills and writes wait
  // or come back short.
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  const reader = spawn("sh", ["-c", 'exec 3<"$0"; sleep 0.3; cat <&3', fifo], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let got = "";
  reader.stdout.setEncoding("utf8");
  reader.stdout.on("data", (d: string) => {
    got += d;
  });
  const closed = new Promise((r) => reader.on("close", r));
  const log = new JsonAccessLog(fifo);
  const path = `/${"x".repeat(2000)}`;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 100; i++) log.onHttpRequest(record({ path, requestId: `r${round}-${i}` }));
    await new Promise((r) => setTimeout(r, 20));
  }
  await log.close();
  await closed;
  const lines = got.trimEnd().split("\n");
  assert.equal(log.dropped, 0);
  assert.equal(lines.length, 2000);
  lines.forEach((l, i) => {
    assert.equal(JSON.parse(l).x_request_id, `r${Math.floor(i / 100)}-${i % 100}`);
  });
});
