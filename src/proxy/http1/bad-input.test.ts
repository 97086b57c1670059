// What the proxy does with bad input, through real sockets: malformed and smuggling requests are refused and
// their connection closed (and the backend never sees what was smuggled), oversized and slow heads are cut
// off, a bad upstream gets the client a 502 or an aborted connection, and ten thousand idle connections
// neither stop it serving nor cost it much memory.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  catchAll,
  closeAll,
  cluster,
  config,
  get,
  type HttpBackend,
  httpBackend,
  json,
  netBackend,
  onClose,
  RawClient,
  type RunningProxy,
  rssBytes,
  sleep,
  spawnProxy,
  startProxy,
} from "../test-support.ts";

/** Every request the backend saw: method and url. */
const seen: string[] = [];
let backend: HttpBackend;
let proxy: RunningProxy;

function recordAndEcho(req: http.IncomingMessage, res: http.ServerResponse): void {
  seen.push(`${req.method} ${req.url}`);
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("error", () => {});
  req.on("end", () => {
    const out = JSON.stringify({ url: req.url, body: Buffer.concat(chunks).toString("latin1") });
    res.writeHead(200, { "content-length": Buffer.byteLength(out) });
    res.end(out);
  });
}

before(async () => {
  backend = await httpBackend(recordAndEcho);
  proxy = await startProxy(
    config({
      routes: catchAll("backend"),
      clusters: [cluster("backend", [backend.port])],
      statPrefix: "bad",
    }),
  );
});
after(closeAll);

/** Sends `raw`; expects `status`, then the connection closed; then checks the proxy still serves. */
async function refusedAndClosed(raw: string, status: number): Promise<string> {
  const c = await RawClient.connect(proxy.port);
  c.write(raw);
  const r = await c.read();
  assert.equal(r.status, status, `${JSON.stringify(raw)} -> ${r.status} ${r.body}`);
  assert.equal(r.header("connection"), "close");
  assert.ok(await c.closesWithin(1000), `connection closed after ${JSON.stringify(raw)}`);
  const ok = await get(proxy.port, "/still-serving");
  assert.equal(ok.status, 200);
  return r.body.toString();
}

test("malformed request lines and headers: 400, connection closed, proxy still serving", async () => {
  for (const raw of [
    "GARBAGE\r\n\r\n",
    "GET\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
    "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
  ]) {
    await refusedAndClosed(raw, 400);
  }
  await refusedAndClosed("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
});

const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

/** Head-level vectors: refused before anything reaches the backend. */
const HEAD_VECTORS: Array<[string, string, number]> = [
  ["CL then TE", "Content-Length: 4\r\nTransfer-Encoding: chunked", 400],
  ["TE then CL", "Transfer-Encoding: chunked\r\nContent-Length: 4", 400],
  ["two equal CL", "Content-Length: 4\r\nContent-Length: 4", 400],
  ["two different CL", "Content-Length: 4\r\nContent-Length: 40", 400],
  ["CL list", "Content-Length: 1,1", 400],
  ["TE chunked, identity", "Transfer-Encoding: chunked, identity", 501],
  ["TE identity", "Transfer-Encoding: identity", 501],
  ["two TE", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400],
  ["space before colon", "Transfer-Encoding : chunked", 400],
  ["obs-fold", "X-A: 1\r\n Transfer-Encoding: chunked", 400],
  ["bare CR", "X-A: 1\rTransfer-Encoding: chunked", 400],
  ["bare LF", "X-A: 1\nTransfer-Encoding: chunked", 400],
  ["NUL", "X-A: 1\0Transfer-Encoding: chunked", 400],
  ["two Hosts", "Host: b", 400],
  ["CL with a sign", "Content-Length: +4", 400],
];

test("smuggling vectors in the head: refused, closed, and the backend sees nothing", async () => {
  const before = seen.length;
  for (const [name, fields, status] of HEAD_VECTORS) {
    const raw = `POST /first HTTP/1.1\r\nHost: a\r\n${fields}\r\n\r\n0\r\n\r\n${SMUGGLED}`;
    const c = await RawClient.connect(proxy.port);
    c.write(raw);
    const r = await c.read();
    assert.equal(r.status, status, `${name}: ${r.body}`);
    assert.ok(await c.closesWithin(1000), `${name}: connection closed`);
  }
  for (const raw of [
    `POST /first HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    `GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n${SMUGGLED}`,
    `GET /first HTTP/1.1\r\n\r\n${SMUGGLED}`,
    `GET /first HTTP/2.0\r\nHost: a\r\n\r\n${SMUGGLED}`,
  ]) {
    const c = await RawClient.connect(proxy.port);
    c.write(raw);
    const r = await c.read();
    assert.ok(r.status === 400 || r.status === 505, `${JSON.stringify(raw)} -> ${r.status}`);
    assert.ok(await c.closesWithin(1000));
  }
  await sleep(50);
  assert.deepEqual(seen.slice(before), [], "the backend saw none of these requests");
});

test("smuggling vectors in a chunked body: 400, closed, the smuggled request never reaches the backend", async () => {
  const bodies: Array<[string, string]> = [
    ["non-hex size", "zz\r\n"],
    ["negative size", "-1\r\nx\r\n"],
    ["overflowing size", "fffffffffffffffffff\r\n"],
    ["size with a space inside", "3 3\r\nabc\r\n0\r\n\r\n"],
    ["size ended by bare LF", "3\nabc\r\n0\r\n\r\n"],
    ["data without CRLF", "3\r\nabcX0\r\n\r\n"],
    ["extension with bare LF", "3;ext\nabc\r\n0\r\n\r\n"],
    ["extension with bare CR", "3;e\rx\r\nabc\r\n0\r\n\r\n"],
    ["last chunk with bare LF", "0\n\r\n"],
  ];
  const before = seen.length;
  for (const [name, body] of bodies) {
    const c = await RawClient.connect(proxy.port);
    c.write(
      `POST /chunked-vector HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}${SMUGGLED}`,
    );
    const r = await c.read();
    assert.equal(r.status, 400, `${name}: ${r.status}`);
    assert.match(r.body.toString(), /chunked/, name);
    assert.ok(await c.closesWithin(1000), `${name}: connection closed`);
  }
  await sleep(100);
  const saw = seen.slice(before);
  assert.ok(!saw.includes("GET /smuggled"), `backend saw ${saw.join(", ")}`);
  assert.ok(saw.every((s) => s === "POST /chunked-vector"));
  assert.equal((await get(proxy.port, "/ok")).status, 200);
});

test("smuggling: Connection cannot make the proxy drop Content-Length (request side)", async () => {
  // RFC 9110 7.6.1 lets a client name headers in Connection to have them removed; if Content-Length were
  // removed, the body would reach the backend with no framing and be read as the next request.
  const before = seen.length;
  const c = await RawClient.connect(proxy.port);
  c.write(
    `POST /cl HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  );
  const r = await c.read("POST");
  assert.ok(r.status === 200 || r.status === 400, `status ${r.status}`);
  if (r.status === 200) assert.equal(json(r).body, SMUGGLED, "the body arrived as a body");
  c.destroy();
  await sleep(100);
  assert.ok(!seen.slice(before).includes("GET /smuggled"), `backend saw ${seen.slice(before).join(", ")}`);
});

test("smuggling: Connection cannot make the proxy drop the response's Content-Length", async () => {
  const raw = await netBackend((s) => {
    let buf = "";
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      while (buf.includes("\r\n\r\n")) {
        buf = buf.slice(buf.indexOf("\r\n\r\n") + 4);
        s.write("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello");
      }
    });
  });
  const p = await startProxy(config({ routes: catchAll("raw"), clusters: [cluster("raw", [raw.port])] }));
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = await c.read("GET", 2000);
  assert.equal(r.framing, "length", "the response still says where its body ends");
  assert.equal(r.body.toString(), "hello");
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await c.read("GET", 2000)).body.toString(), "hello");
  c.destroy();
});

test("a head over 60 KiB gets 431 and the connection is closed", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(61 * 1024)}\r\n\r\n`);
  const r = await c.read();
  assert.equal(r.status, 431);
  assert.ok(await c.closesWithin(1000));
  // Also when the limit is crossed by many headers rather than one, and when no end of head is in sight.
  await refusedAndClosed(
    `GET / HTTP/1.1\r\nHost: a\r\n${"X-H: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(2500)}\r\n`,
    431,
  );
  await refusedAndClosed(`GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(101)}\r\n`, 431);
  const d = await RawClient.connect(proxy.port);
  d.write(`GET / HTTP/1.1\r\nHost: a\r\nX: ${"a".repeat(70 * 1024)}`);
  assert.equal((await d.read()).status, 431);
  assert.ok(await d.closesWithin(1000));
});

test("slowloris: a head trickling in a byte every 200 ms is cut off with 408 within ~2 s", async () => {
  const p = await startProxy(
    config({
      routes: catchAll("backend"),
      clusters: [cluster("backend", [backend.port])],
      limits: { requestHeadersTimeoutMs: 1000 },
    }),
  );
  const c = await RawClient.connect(p.port);
  const head = `GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ${"s".repeat(100)}\r\n\r\n`;
  const started = Date.now();
  let i = 0;
  const trickle = setInterval(() => {
    if (!c.isClosed && i < head.length) c.write(head[i++]!);
  }, 200);
  try {
    const r = await c.read("GET", 4000);
    assert.equal(r.status, 408);
    assert.ok(await c.closesWithin(500));
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 900 && elapsed < 2500, `cut off after ${elapsed} ms`);
  } finally {
    clearInterval(trickle);
  }
});

test("slowloris on the default codec: a silent connection and a trickled HTTP/2 preface are closed too", async () => {
  // codec "auto" (the default) reads the first bytes to tell HTTP/1 from the HTTP/2 preface; a client that
  // sends nothing, or only the preface's first bytes, must not hold its connection forever.
  const base = config({
    routes: catchAll("backend"),
    clusters: [cluster("backend", [backend.port])],
    limits: { requestHeadersTimeoutMs: 1000, idleTimeoutMs: 1000 },
  });
  const chain = base.listeners[0]!.filterChains[0]!;
  const auto = {
    ...base,
    listeners: [
      {
        ...base.listeners[0]!,
        filterChains: [{ ...chain, filter: { ...chain.filter, codec: "auto" as const } }],
      },
    ],
  };
  const p = await startProxy(auto);
  const silent = await RawClient.connect(p.port);
  const preface = await RawClient.connect(p.port);
  const pri = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  let i = 0;
  const trickle = setInterval(() => {
    if (!preface.isClosed && i < pri.length - 1) preface.write(pri[i++]!);
  }, 200);
  try {
    const [a, b] = await Promise.all([silent.closesWithin(3000), preface.closesWithin(3000)]);
    assert.ok(a, "a connection that sends nothing is closed after idleTimeoutMs");
    assert.ok(b, "a connection trickling the HTTP/2 preface is closed after requestHeadersTimeoutMs");
  } finally {
    clearInterval(trickle);
  }
  assert.equal((await get(p.port, "/")).status, 200);
});

test("an idle keep-alive connection is closed after idleTimeoutMs; one in use is not", async () => {
  const p = await startProxy(
    config({
      routes: catchAll("backend"),
      clusters: [cluster("backend", [backend.port])],
      limits: { idleTimeoutMs: 500 },
    }),
  );
  const idle = await RawClient.connect(p.port);
  idle.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await idle.read()).status, 200);
  const busy = await RawClient.connect(p.port);
  const started = Date.now();
  // Keeps its connection active with a request every 200 ms.
  for (let i = 0; i < 8; i++) {
    busy.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal((await busy.read()).status, 200);
    await sleep(200);
  }
  assert.ok(await idle.closesWithin(3000 - (Date.now() - started)), "the idle one was closed");
  assert.equal(busy.isClosed, false, "the busy one was not");
});

test("listener maxConnections: connections beyond it are closed at once", async () => {
  const p = await startProxy(
    config({
      routes: catchAll("backend"),
      clusters: [cluster("backend", [backend.port])],
      limits: { maxConnections: 2 },
    }),
  );
  const a = await RawClient.connect(p.port);
  const b = await RawClient.connect(p.port);
  await sleep(50);
  const c = await RawClient.connect(p.port);
  assert.ok(await c.closesWithin(1000), "the third connection is closed");
  a.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await a.read()).status, 200);
  b.destroy();
  await sleep(50);
  assert.equal((await get(p.port, "/")).status, 200, "a slot is free again");
});

test("upstream garbage: 502 whose body names the invalid response", async () => {
  const garbage = await netBackend((s) => {
    s.once("data", () => s.end("SSH-2.0-OpenSSH_9.6\r\n\r\n"));
  });
  const p = await startProxy(
    config({ routes: catchAll("garbage"), clusters: [cluster("garbage", [garbage.port])], statPrefix: "g" }),
  );
  const r = await get(p.port, "/");
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /upstream sent an invalid response/);
  assert.match(r.body.toString(), /status line/);
  assert.equal(p.proxy.stats.counter("http.g.response_flag.UPE").value, 1);
  // The client connection is still usable after a 502 for a bodiless request.
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await c.read()).status, 502);
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await c.read()).status, 502);
  c.destroy();
});

test("upstream closing mid-response: the client connection is aborted, not left hanging or completed", async () => {
  const cut = await netBackend((s) => {
    s.once("data", () => {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial");
      setTimeout(() => s.destroy(), 30);
    });
  });
  const chunkedCut = await netBackend((s) => {
    s.once("data", () => {
      s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n");
      setTimeout(() => s.destroy(), 30);
    });
  });
  for (const b of [cut, chunkedCut]) {
    const p = await startProxy(config({ routes: catchAll("cut"), clusters: [cluster("cut", [b.port])] }));
    const c = await RawClient.connect(p.port);
    c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    await assert.rejects(c.read("GET", 3000), /connection closed/);
    assert.ok(await c.closesWithin(1000), "aborted");
  }
  // And before any response byte: 503 UC.
  const early = await netBackend((s) => s.once("data", () => s.destroy()));
  const p = await startProxy(
    config({ routes: catchAll("early"), clusters: [cluster("early", [early.port])] }),
  );
  const r = await get(p.port, "/");
  assert.equal(r.status, 503);
  assert.match(r.body.toString(), /connection termination/);
});

test("10,000 idle connections: the proxy still answers, and its memory grows by less than 150 MB", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-idle-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "proxy.json");
  const cfg = config({ routes: catchAll("backend"), clusters: [cluster("backend", [backend.port])] });
  const chain = cfg.listeners[0]!.filterChains[0]!;
  writeFileSync(
    file,
    JSON.stringify({
      ...cfg,
      admin: { port: 0 },
      listeners: [
        {
          ...cfg.listeners[0]!,
          // The default limit is 10,000 connections: leave room for the request made while they are open.
          limits: { maxConnections: 10_100 },
          // The default codec, as a sidecar runs.
          filterChains: [{ ...chain, filter: { type: "http", routeConfig: catchAll("backend") } }],
        },
      ],
    }),
  );
  const child = await spawnProxy(["--config", file]);
  const port = child.ports.get("main")!;
  assert.equal((await get(port, "/warm")).status, 200);
  await sleep(200);
  const baseline = rssBytes(child.pid);

  const sockets: net.Socket[] = [];
  onClose(() => {
    for (const s of sockets) s.destroy();
  });
  const N = 10_000;
  const BATCH = 500;
  for (let i = 0; i < N; i += BATCH) {
    await Promise.all(
      Array.from(
        { length: Math.min(BATCH, N - i) },
        () =>
          new Promise<void>((resolve, reject) => {
            const s = net.connect({ port, host: "127.0.0.1" });
            sockets.push(s);
            s.once("connect", () => resolve());
            s.once("error", reject);
          }),
      ),
    );
  }
  // A few of them send a request, then stay as idle keep-alive connections.
  for (const s of sockets.slice(0, 100)) s.write("GET /k HTTP/1.1\r\nHost: a\r\n\r\n");
  await sleep(300);
  const r = await get(port, "/while-10k-open");
  assert.equal(r.status, 200);
  assert.equal(json(r).url, "/while-10k-open");
  const grown = rssBytes(child.pid) - baseline;
  t.diagnostic(
    `proxy RSS ${(baseline / 1048576).toFixed(1)} MB, grew by ${(grown / 1048576).toFixed(1)} MB with ${N} idle connections`,
  );
  assert.ok(grown < 150 * 1024 * 1024, `RSS grew by ${(grown / 1048576).toFixed(1)} MB`);
  assert.equal(sockets.filter((s) => s.destroyed).length, 0, "none of the idle connections was dropped");
  for (const s of sockets) s.destroy();
  child.child.kill("SIGKILL");
  await child.exited;
});
