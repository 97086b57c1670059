// HTTP/1.1 through the proxy, on real sockets: keep-alive on both sides, pipelining, bodies of every framing,
// HEAD / 204 / 304, 100-continue, hop-by-hop headers, Upgrade tunnels, HTTP_PROXY mode (absolute-form and
// CONNECT) and HTTP/1.0 clients.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type http from "node:http";
import type net from "node:net";
import { after, before, test } from "node:test";
import {
  catchAll,
  closeAll,
  cluster,
  config,
  echo,
  get,
  type HttpBackend,
  httpBackend,
  json,
  keepAliveClient,
  netBackend,
  RawClient,
  type RunningProxy,
  send,
  sleep,
  startProxy,
  waitFor,
} from "../test-support.ts";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const BIG = randomBytes(5 * 1024 * 1024);

let backend: HttpBackend;
let proxy: RunningProxy;

/** /echo echoes; /slow/N answers after N ms; /big sends BIG chunked; /sha hashes the request body. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? "/";
  if (url.startsWith("/slow/")) {
    setTimeout(() => echo(req, res), Number(url.slice(6)));
    return;
  }
  if (url === "/big") {
    // No Content-Length: node sends it chunked, in pieces of varied sizes.
    res.writeHead(200, { "content-type": "application/octet-stream", "x-sha": sha(BIG) });
    let off = 0;
    const step = () => {
      while (off < BIG.length) {
        const n = Math.min(BIG.length - off, 1000 + ((off * 7) % 70_000));
        const more = res.write(BIG.subarray(off, off + n));
        off += n;
        if (!more) {
          res.once("drain", step);
          return;
        }
      }
      res.end();
    };
    step();
    return;
  }
  if (url === "/sha") {
    const h = createHash("sha256");
    let n = 0;
    req.on("data", (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    req.on("end", () => {
      const out = JSON.stringify({
        sha: h.digest("hex"),
        length: n,
        te: req.headers["transfer-encoding"] ?? null,
        cl: req.headers["content-length"] ?? null,
      });
      res.writeHead(200, { "content-length": Buffer.byteLength(out) });
      res.end(out);
    });
    return;
  }
  if (url === "/head") {
    res.writeHead(200, { "content-length": "1234", "x-head": "yes" });
    res.end(req.method === "HEAD" ? undefined : "x".repeat(1234));
    return;
  }
  if (url === "/204") {
    res.writeHead(204, { "x-status": "204" });
    res.end();
    return;
  }
  if (url === "/304") {
    res.writeHead(304, { etag: '"v1"' });
    res.end();
    return;
  }
  if (url === "/chunked") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("hello, ");
    setTimeout(() => res.end("world"), 20);
    return;
  }
  echo(req, res);
}

before(async () => {
  backend = await httpBackend(handler);
  proxy = await startProxy(
    config({ routes: catchAll("backend"), clusters: [cluster("backend", [backend.port])] }),
  );
});
after(closeAll);

test("keep-alive: many requests on one downstream connection use one upstream connection", async () => {
  const before = backend.connections;
  const c = await keepAliveClient(proxy.port);
  for (let i = 0; i < 20; i++) {
    const r = await c.get(`/n/${i}`);
    assert.equal(r.status, 200);
    assert.equal(json(r).url, `/n/${i}`);
    assert.equal(r.header("connection"), undefined, "no connection: close on a keep-alive exchange");
  }
  assert.equal(c.client.isClosed, false);
  // A second downstream connection, after the first went idle, reuses the same upstream connection.
  const c2 = await keepAliveClient(proxy.port);
  for (let i = 0; i < 5; i++) assert.equal((await c2.get("/again")).status, 200);
  assert.equal(backend.connections - before, 1, "one upstream connection for 25 requests");
  c.client.destroy();
  c2.client.destroy();
});

test("pipelining: requests sent together are answered in order, a slow one first", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write(
    "GET /slow/150 HTTP/1.1\r\nHost: a\r\n\r\n" +
      "POST /p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
      "GET /p3 HTTP/1.1\r\nHost: a\r\n\r\n" +
      "POST /p4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
      "GET /p5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  const urls: string[] = [];
  const bodies: Array<string | undefined> = [];
  for (let i = 0; i < 5; i++) {
    const r = await c.read();
    assert.equal(r.status, 200);
    urls.push(json(r).url);
    bodies.push(json(r).body);
  }
  assert.deepEqual(urls, ["/slow/150", "/p2", "/p3", "/p4", "/p5"]);
  assert.deepEqual(bodies, ["", "hello", "", "abc", ""]);
  assert.ok(await c.closesWithin(1000), "closed after the request with Connection: close");
});

test("a chunked request body of 5 MB reaches the backend intact, still chunked", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("POST /sha HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
  let off = 0;
  let i = 0;
  while (off < BIG.length) {
    const n = Math.min(BIG.length - off, [1, 17, 4096, 65_536, 300_000][i++ % 5]!);
    const ok = c.write(
      Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), BIG.subarray(off, off + n), Buffer.from("\r\n")]),
    );
    off += n;
    if (!ok) await new Promise((r) => c.socket.once("drain", r));
  }
  c.write("0\r\n\r\n");
  const r = await c.read("POST", 15_000);
  assert.equal(r.status, 200);
  const got = JSON.parse(r.body.toString());
  assert.deepEqual(got, { sha: sha(BIG), length: BIG.length, te: "chunked", cl: null });
  c.destroy();
});

test("a chunked response body of 5 MB reaches the client intact, still chunked", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = await c.read("GET", 15_000);
  assert.equal(r.status, 200);
  assert.equal(r.framing, "chunked");
  assert.equal(r.body.length, BIG.length);
  assert.equal(sha(r.body), r.header("x-sha"));
  // And the connection is still usable.
  c.write("GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(json(await c.read()).url, "/after");
  c.destroy();
});

test("Content-Length bodies both ways", async () => {
  const body = BIG.subarray(0, 1024 * 1024);
  const c = await RawClient.connect(proxy.port);
  c.write(
    Buffer.concat([
      Buffer.from(`PUT /sha HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`),
      body,
    ]),
  );
  const r = await c.read("PUT", 10_000);
  assert.equal(r.status, 200);
  assert.equal(r.framing, "length");
  assert.deepEqual(JSON.parse(r.body.toString()), {
    sha: sha(body),
    length: body.length,
    te: null,
    cl: String(body.length),
  });
  // A zero-length body and a GET with a body.
  c.write("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  assert.equal(json(await c.read()).bodyLength, 0);
  c.write("GET /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz");
  assert.equal(json(await c.read()).body, "xyz");
  c.destroy();
});

test("HEAD: the headers of a GET, no body, and the connection stays in step", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = await c.read("HEAD");
  assert.equal(r.status, 200);
  assert.equal(r.header("content-length"), "1234");
  assert.equal(r.header("x-head"), "yes");
  c.write("GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  const n = await c.read();
  assert.equal(json(n).url, "/next", "no stray body bytes before the next response");
  c.destroy();
});

test("204 and 304 have no body; the next response follows directly", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write(
    "GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n",
  );
  const a = await c.read();
  assert.equal(a.status, 204);
  assert.equal(a.header("x-status"), "204");
  assert.equal(a.header("transfer-encoding"), undefined);
  const b = await c.read();
  assert.equal(b.status, 304);
  assert.equal(b.header("etag"), '"v1"');
  const last = await c.read();
  assert.equal(json(last).url, "/last");
  c.destroy();
});

test("100-continue: the client waits for 100 before sending the body", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
  const interim = await c.read();
  assert.equal(interim.status, 100);
  c.write("hello world");
  const r = await c.read("POST");
  assert.equal(r.status, 200);
  const e = json(r);
  assert.equal(e.body, "hello world");
  assert.equal(e.headers.expect, undefined, "the proxy answered the expectation; it is not forwarded");
  c.destroy();
});

test("hop-by-hop request headers are not forwarded; end-to-end ones are; x-forwarded-proto is set", async () => {
  const r = await send(
    proxy.port,
    "GET /hop HTTP/1.1\r\nHost: a.example\r\n" +
      "Connection: keep-alive, X-Private, x-other\r\nX-Private: secret\r\nX-Other: 1\r\nKeep-Alive: timeout=5\r\n" +
      "TE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nTrailer: x-t\r\nX-Public: yes\r\n\r\n",
  );
  assert.equal(r.status, 200);
  const h = json(r).headers;
  for (const name of ["x-private", "x-other", "keep-alive", "te", "upgrade", "proxy-connection", "trailer"]) {
    assert.equal(h[name], undefined, `${name} must not be forwarded`);
  }
  // Node's server reports "keep-alive" for a missing Connection header on HTTP/1.1: look at the raw list.
  assert.ok(
    !json(r).rawHeaders.some((x) => x.toLowerCase() === "connection"),
    "no Connection header forwarded",
  );
  assert.equal(h["x-public"], "yes");
  assert.equal(h.host, "a.example");
  assert.equal(h["x-forwarded-proto"], "http");
});

/** A raw backend answering every request head with `response` (requests must have no body). */
async function rawBackend(response: string | ((head: string) => string)) {
  return netBackend((s: net.Socket) => {
    let buf = "";
    s.on("data", (c: Buffer) => {
      buf += c.toString("latin1");
      for (let end = buf.indexOf("\r\n\r\n"); end !== -1; end = buf.indexOf("\r\n\r\n")) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        s.write(typeof response === "string" ? response : response(head));
      }
    });
  });
}

test("hop-by-hop response headers are not forwarded either", async () => {
  const raw = await rawBackend(
    "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Resp-Private\r\nX-Resp-Private: 1\r\nKeep-Alive: timeout=5\r\n" +
      "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: x-t\r\nX-Resp-Public: 2\r\nContent-Length: 2\r\n\r\nok",
  );
  const p = await startProxy(config({ routes: catchAll("raw"), clusters: [cluster("raw", [raw.port])] }));
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = await c.read();
  assert.equal(r.status, 200);
  for (const name of [
    "connection",
    "x-resp-private",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "trailer",
  ]) {
    assert.equal(r.header(name), undefined, `${name} must not be forwarded`);
  }
  assert.equal(r.header("x-resp-public"), "2");
  assert.equal(r.body.toString(), "ok");
  // Keep-alive on both sides still.
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal((await c.read()).status, 200);
  assert.equal(raw.connections, 1);
  c.destroy();
});

test("Upgrade (WebSocket): 101 and then bytes both ways, including bytes sent with the request head", async () => {
  let seenHead = "";
  const ws = await netBackend((s) => {
    let buf = "";
    let upgraded = false;
    s.on("data", (c: Buffer) => {
      if (upgraded) {
        s.write(c);
        return;
      }
      buf += c.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      seenHead = buf.slice(0, end);
      upgraded = true;
      s.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nserver-first",
      );
      const early = buf.slice(end + 4);
      if (early) s.write(Buffer.from(early, "latin1"));
    });
  });
  const p = await startProxy(config({ routes: catchAll("ws"), clusters: [cluster("ws", [ws.port])] }));
  const c = await RawClient.connect(p.port);
  c.write(
    "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly",
  );
  const r = await c.read();
  assert.equal(r.status, 101);
  assert.equal(r.header("upgrade")?.toLowerCase(), "websocket");
  assert.equal(r.header("connection")?.toLowerCase(), "upgrade");
  assert.equal(r.header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert.match(seenHead, /\r\nupgrade: websocket\r\n/i);
  assert.match(seenHead, /\r\nconnection: upgrade\r\n/i);
  assert.match(seenHead, /\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n/i);
  assert.equal((await c.readBytes("server-first".length)).toString(), "server-first");
  assert.equal((await c.readBytes("early".length)).toString(), "early");
  c.write("ping");
  assert.equal((await c.readBytes("ping".length)).toString(), "ping");
  const big = randomBytes(1024 * 1024);
  c.write(big);
  assert.ok((await c.readBytes(big.length)).equals(big), "1 MB echoed intact through the tunnel");
  // Closing the client closes the backend side.
  c.destroy();
  await sleep(50);
  assert.equal(ws.open.size, 0, "the upstream side of the tunnel closed with the client");
});

test("http_proxy mode: absolute-form requests route by the URL's authority", async () => {
  const p = await startProxy(
    config({
      mode: "http_proxy",
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "svc",
            domains: ["svc.local"],
            routes: [{ match: { prefix: "/" }, route: { cluster: "backend" } }],
          },
        ],
      },
      clusters: [cluster("backend", [backend.port])],
    }),
  );
  const r = await send(
    p.port,
    "GET http://svc.local:8080/path?x=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n",
  );
  assert.equal(r.status, 200);
  const e = json(r);
  assert.equal(e.url, "/path?x=1", "origin-form upstream");
  assert.equal(e.headers.host, "svc.local:8080", "Host from the absolute URL");
  const root = await send(p.port, "GET http://svc.local HTTP/1.1\r\nHost: svc.local\r\n\r\n");
  assert.equal(json(root).url, "/");
  assert.equal(
    (await send(p.port, "GET http://other.local/ HTTP/1.1\r\nHost: svc.local\r\n\r\n")).status,
    404,
  );
});

test("http_proxy mode: CONNECT opens a TCP tunnel; in server mode CONNECT gets no route", async () => {
  const tcp = await netBackend((s) => {
    s.write("hello from tcp\n");
    s.on("data", (c: Buffer) => s.write(c.toString().toUpperCase()));
  });
  const routes = {
    name: "r",
    virtualHosts: [
      { name: "db", domains: ["db.local"], routes: [{ match: { prefix: "/" }, route: { cluster: "tcp" } }] },
    ],
  };
  const p = await startProxy(config({ mode: "http_proxy", routes, clusters: [cluster("tcp", [tcp.port])] }));
  const c = await RawClient.connect(p.port);
  c.write("CONNECT db.local:5432 HTTP/1.1\r\nHost: db.local:5432\r\n\r\n");
  const r = await c.read("CONNECT");
  assert.equal(r.status, 200);
  assert.equal((await c.readBytes(15)).toString(), "hello from tcp\n");
  c.write("select 1");
  assert.equal((await c.readBytes(8)).toString(), "SELECT 1");
  c.destroy();

  const server = await startProxy(config({ routes, clusters: [cluster("tcp", [tcp.port])] }));
  const refused = await send(
    server.port,
    "CONNECT db.local:5432 HTTP/1.1\r\nHost: db.local:5432\r\n\r\n",
    "CONNECT",
  );
  assert.equal(refused.status, 404);
});

test("an HTTP/1.0 client gets a chunked upstream response decoded, then the connection closes", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("GET /chunked HTTP/1.0\r\n\r\n");
  const r = await c.read();
  assert.equal(r.status, 200);
  assert.equal(r.header("transfer-encoding"), undefined, "no chunked coding to an HTTP/1.0 client");
  assert.equal(r.header("connection"), "close");
  assert.equal(r.framing, "close");
  assert.equal(r.body.toString(), "hello, world");
  assert.ok(await c.closesWithin(1000));
});

test("an HTTP/1.0 client with keep-alive and a Content-Length response keeps its connection", async () => {
  const c = await RawClient.connect(proxy.port);
  c.write("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  const r = await c.read();
  assert.equal(json(r).url, "/a");
  // An HTTP/1.0 client assumes the connection closes unless the response says keep-alive (RFC 9112 9.3).
  assert.equal(r.header("connection"), "keep-alive");
  c.write("GET /b HTTP/1.0\r\n\r\n");
  assert.equal(json(await c.read()).url, "/b");
  assert.ok(await c.closesWithin(1000), "HTTP/1.0 without keep-alive: closed after the response");
});

test("GET with a query and a percent-encoded path is forwarded unchanged", async () => {
  const r = await get(proxy.port, "/a%20b/c?x=%2F&y=1#frag".replace("#frag", ""));
  assert.equal(json(r).url, "/a%20b/c?x=%2F&y=1");
});

test("HTTP/1.0 keep-alive: local replies say keep-alive too", async () => {
  const p = await startProxy(
    config({
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [{ match: { path: "/direct" }, directResponse: { status: 200, body: "d" } }],
          },
        ],
      },
    }),
  );
  const c = await RawClient.connect(p.port);
  c.write("GET /direct HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  const r = await c.read();
  assert.equal(r.body.toString(), "d");
  assert.equal(r.header("connection"), "keep-alive");
  c.write("GET /nothing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  const nr = await c.read();
  assert.equal(nr.status, 404);
  assert.equal(nr.header("connection"), "keep-alive");
  c.destroy();
});

test("2,000 pipelined requests in one write (more than the head limit buffered) are all answered in order", async () => {
  const c = await RawClient.connect(proxy.port);
  const N = 2000;
  let all = "";
  for (let i = 0; i < N; i++) all += `GET /pipe/${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
  assert.ok(all.length > 60 * 1024);
  c.write(all);
  for (let i = 0; i < N; i++) {
    const r = await c.read("GET", 10_000);
    assert.equal(json(r).url, `/pipe/${i}`);
  }
  c.destroy();
});

test("chunked request trailers reach the backend", async () => {
  const trailers = await httpBackend((req, res) => {
    req.resume();
    req.on("end", () => {
      const out = JSON.stringify(req.trailers);
      res.writeHead(200, { "content-length": Buffer.byteLength(out) });
      res.end(out);
    });
  });
  const p = await startProxy(config({ routes: catchAll("t"), clusters: [cluster("t", [trailers.port])] }));
  const r = await send(
    p.port,
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n",
    "POST",
  );
  assert.deepEqual(JSON.parse(r.body.toString()), { "x-checksum": "42" });
});

test("a response delimited by the upstream closing is passed through, then the client connection closes", async () => {
  const old = await netBackend((s) => {
    s.once("data", () => s.end("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"));
  });
  const p = await startProxy(config({ routes: catchAll("old"), clusters: [cluster("old", [old.port])] }));
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const r = await c.read();
  assert.equal(r.status, 200);
  assert.equal(r.framing, "close");
  assert.equal(r.header("connection"), "close");
  assert.equal(r.body.toString(), "until close");
  assert.ok(await c.closesWithin(1000));
});

test("a client that goes away in the middle of its body: the upstream request is aborted, nothing leaks", async () => {
  let aborted = false;
  const sink = await httpBackend((req, res) => {
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => {
      if (!req.complete) aborted = true;
      res.destroy();
    });
  });
  const p = await startProxy(
    config({ routes: catchAll("sink"), clusters: [cluster("sink", [sink.port])], statPrefix: "sink" }),
  );
  const c = await RawClient.connect(p.port);
  c.write("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
  c.write(Buffer.alloc(1000, 1));
  await waitFor(() => sink.requests === 1, 3000, "request at the backend");
  c.destroy();
  await waitFor(() => aborted, 3000, "backend saw the request aborted");
  await waitFor(() => sink.open.size === 0, 3000, "upstream connection closed");
  const stats = p.proxy.stats;
  await waitFor(() => stats.gauge("http.sink.downstream_cx_active").value === 0, 3000, "downstream gauge");
  assert.equal(stats.gauge("cluster.sink.upstream_rq_active").value, 0);
  assert.equal(stats.gauge("cluster.sink.upstream_cx_active").value, 0);
  assert.equal(p.proxy.clusters.get("sink")!.endpoints[0]!.activeRequests, 0);
});
