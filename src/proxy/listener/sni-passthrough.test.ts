// TLS passed through by SNI (an east-west gateway's AUTO_PASSTHROUGH): tcp chains with serverNames and no tls
// read the ClientHello without terminating it, so the client's TLS session is the backend's own (its
// certificate verified end to end); an unknown name is closed; next to terminating chains, a name they serve
// is terminated by the proxy. And the ClientHello reader: real hellos whole, fragmented and byte by byte, and
// random or mutated bytes never throwing.
import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import tls from "node:tls";
import type { ListenerConfig } from "../config/types.ts";
import { testPki } from "../test-pki.ts";
import { closeAll, cluster, onClose, startProxy } from "../test-support.ts";
import { MAX_HELLO_BYTES, parseClientHello } from "./client-hello.ts";

after(closeAll);

const pki = testPki();
const root = pki.ca("passthrough-root");
const certA = pki.leaf(root, "a", "DNS:a.mesh.internal");
const certB = pki.leaf(root, "b", "DNS:b.mesh.internal");
const certC = pki.leaf(root, "c", "DNS:c.mesh.internal");
after(() => pki.remove());

/** A TLS echo server presenting `cert`, answering "NAME:" + what it got. */
async function tlsBackend(name: string, cert: { cert: string; key: string }): Promise<number> {
  const server = tls.createServer({ cert: cert.cert, key: cert.key }, (s) => {
    s.on("data", (d) => s.write(`${name}:${d}`));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

function call(port: number, servername: string): Promise<{ peer: string; answer: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ca: root.cert }, () => {
      const peer = s.getPeerCertificate().subjectaltname ?? "";
      s.write("ping");
      s.once("data", (d) => {
        resolve({ peer, answer: d.toString() });
        s.destroy();
      });
    });
    s.on("error", reject);
    s.setTimeout(5000, () => s.destroy(new Error("timeout")));
  });
}

function listener(chains: ListenerConfig["filterChains"]): ListenerConfig {
  return { name: "eastwest", address: "127.0.0.1", port: 0, filterChains: chains };
}

test("TLS passed through by SNI: the backend's own session, an unknown name closed", async () => {
  const a = await tlsBackend("a", certA);
  const b = await tlsBackend("b", certB);
  const { port } = await startProxy({
    listeners: [
      listener([
        { match: { serverNames: ["a.mesh.internal"] }, filter: { type: "tcp", cluster: "a" } },
        {
          match: { serverNames: ["*.b.mesh.internal", "b.mesh.internal"] },
          filter: { type: "tcp", cluster: "b" },
        },
      ]),
    ],
    clusters: [cluster("a", [a]), cluster("b", [b])],
  });
  const toA = await call(port, "a.mesh.internal");
  assert.equal(toA.peer, "DNS:a.mesh.internal", "the backend's certificate, verified by the client");
  assert.equal(toA.answer, "a:ping");
  const toB = await call(port, "b.mesh.internal");
  assert.equal(toB.peer, "DNS:b.mesh.internal");
  assert.equal(toB.answer, "b:ping");
  await assert.rejects(call(port, "other.mesh.internal"), "no chain for that name: closed");
  // Plain text to a listener with only passthrough chains: closed.
  const plain = net.connect(port, "127.0.0.1");
  plain.write("GET / HTTP/1.1\r\n\r\n");
  await new Promise<void>((r) => plain.once("close", () => r()));
});

test("passthrough and terminating chains side by side: each name where it belongs", async () => {
  const a = await tlsBackend("a", certA);
  const { port } = await startProxy({
    listeners: [
      listener([
        { match: { serverNames: ["a.mesh.internal"] }, filter: { type: "tcp", cluster: "a" } },
        {
          match: { serverNames: ["c.mesh.internal"] },
          tls: { certificateChain: certC.cert, privateKey: certC.key },
          filter: { type: "tcp", cluster: "plain-echo" },
        },
      ]),
    ],
    clusters: [cluster("a", [a]), cluster("plain-echo", [await plainEcho()])],
  });
  assert.equal((await call(port, "a.mesh.internal")).peer, "DNS:a.mesh.internal");
  const terminated = await call(port, "c.mesh.internal");
  assert.equal(terminated.peer, "DNS:c.mesh.internal", "the proxy's own certificate");
  assert.equal(terminated.answer, "echo:ping");
});

async function plainEcho(): Promise<number> {
  const server = net.createServer((s) => {
    s.on("data", (d) => s.write(`echo:${d}`));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** The first bytes a real TLS client sends. */
async function realHello(servername: string, alpn: string[]): Promise<Buffer> {
  let got = Buffer.alloc(0);
  const server = net.createServer((s) => {
    s.on("data", (d) => {
      got = Buffer.concat([got, d]);
      s.destroy();
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => {
    const c = tls.connect({ host: "127.0.0.1", port, servername, ALPNProtocols: alpn });
    c.on("error", () => resolve());
    c.on("close", () => resolve());
  });
  server.close();
  return got;
}

test("the ClientHello reader: SNI and ALPN whole, fragmented, byte by byte", async () => {
  const hello = await realHello("outbound_.9080_._.reviews.default.svc.cluster.local", ["h2", "http/1.1"]);
  const whole = parseClientHello(hello);
  assert.deepEqual(whole, {
    status: "done",
    sni: "outbound_.9080_._.reviews.default.svc.cluster.local",
    alpn: ["h2", "http/1.1"],
  });
  // The same handshake message split across two records.
  const body = hello.subarray(5);
  const cut = 40;
  const record = (b: Buffer) =>
    Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b]);
  assert.deepEqual(
    parseClientHello(Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))])),
    whole,
  );
  for (let i = 1; i < hello.length; i++)
    assert.equal(parseClientHello(hello.subarray(0, i)).status, "need-more");
  assert.equal(parseClientHello(Buffer.from("GET / HTTP/1.1\r\n")).status, "not-tls");
});

test("fuzz: random and mutated bytes never throw, and stay within the size bound", async () => {
  const hello = await realHello("a.mesh.internal", ["http/1.1"]);
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(hello);
    for (let k = 0; k < 1 + rnd(6); k++) b[rnd(b.length)] = rnd(256);
    const cut = b.subarray(0, rnd(b.length + 1));
    const r = parseClientHello(i % 2 === 0 ? b : cut);
    assert.ok(["done", "need-more", "not-tls", "invalid"].includes(r.status));
  }
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(rnd(300));
    for (let k = 0; k < b.length; k++) b[k] = rnd(256);
    if (b.length > 0 && rnd(2) === 0) b[0] = 0x16;
    parseClientHello(b);
  }
  // A record header claiming more than the bound is refused once the bound is reached, not waited for.
  const huge = Buffer.alloc(MAX_HELLO_BYTES + 10);
  huge.set([0x16, 0x03, 0x01, 0x40, 0x00]);
  assert.notEqual(parseClientHello(huge).status, "need-more");
});
