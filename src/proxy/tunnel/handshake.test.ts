// The tunnel handshake under bad input: a real acceptor (a proxy's mTLS listener) answers garbage, oversized or
// refused names and a wrong ALPN with the reason and closes, and keeps accepting good initiators; an initiator
// facing an acceptor that answers nonsense counts and logs it and retries; and the two head readers, fed random
// and mutated bytes, never throw.
import assert from "node:assert/strict";
import type net from "node:net";
import { after, before, test } from "node:test";
import tls from "node:tls";
import { testPki } from "../test-pki.ts";
import { closeAll, onClose, type RunningProxy, startProxy, waitFor } from "../test-support.ts";
import {
  MAX_NAME_LENGTH,
  readUpgradeRequest,
  readUpgradeResponse,
  refusalResponse,
  SWITCHING_RESPONSE,
  TUNNEL_ALPN,
  upgradeRequest,
} from "./protocol.ts";
import { tunnelLog } from "./tunnel-log.ts";

const pki = testPki();
const root = pki.ca("handshake-root");
const serverCert = pki.leaf(root, "acceptor", "IP:127.0.0.1");
const clientCert = pki.leaf(root, "initiator", "URI:spiffe://test/ns/a/sa/b");
const logLines: string[] = [];
before(() => {
  tunnelLog.write = (line) => {
    logLines.push(line);
  };
});
after(async () => {
  await closeAll();
  pki.remove();
});

function stat(p: RunningProxy, name: string): number {
  return p.proxy.stats.snapshot().find(([k]) => k === name)?.[1] ?? 0;
}

async function acceptor(): Promise<RunningProxy> {
  return startProxy({
    listeners: [
      {
        name: "tunnels",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            tls: {
              certificateChain: serverCert.cert,
              privateKey: serverCert.key,
              validationContext: root.cert,
              requireClientCertificate: true,
            },
            filter: { type: "reverse_tunnel_acceptor", statPrefix: "ew", allowedNames: ["good", "other"] },
          },
        ],
      },
    ],
  });
}

/** Connects with the initiator's certificate, sends `bytes`, returns everything the acceptor answered. */
function knock(port: number, bytes: Buffer | string, alpn: string[] | null = [TUNNEL_ALPN]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      ca: root.cert,
      cert: clientCert.cert,
      key: clientCert.key,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    onClose(() => {
      s.destroy();
    });
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", (e) => (got.length > 0 ? undefined : reject(e)));
    s.once("close", () => resolve(Buffer.concat(got).toString("latin1")));
    s.once("secureConnect", () => s.write(bytes));
    s.setTimeout(10_000, () => s.destroy(new Error("no answer")));
  });
}

test("bad handshakes are answered with the reason and closed; the acceptor keeps serving", async () => {
  const a = await acceptor();
  const garbage = await knock(a.port, Buffer.from([0, 1, 2, 3, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]));
  assert.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*malformed handshake/);
  const noUpgrade = await knock(a.port, "GET / HTTP/1.1\r\nHost: x\r\nIsthmus-Tunnel-Name: good\r\n\r\n");
  assert.match(noUpgrade, /^HTTP\/1\.1 400 [\s\S]*Upgrade: isthmus-reverse-tunnel/);
  const longName = await knock(a.port, upgradeRequest("n".repeat(MAX_NAME_LENGTH + 1), "x"));
  assert.match(longName, /^HTTP\/1\.1 400 [\s\S]*longer than 253/);
  const hugeHead = await knock(a.port, upgradeRequest("n".repeat(64 * 1024), "x"));
  assert.match(hugeHead, /^HTTP\/1\.1 431 /);
  const badChars = await knock(a.port, upgradeRequest("a b/../c", "x"));
  assert.match(badChars, /^HTTP\/1\.1 400 [\s\S]*may hold only/);
  const notAllowed = await knock(a.port, upgradeRequest("intruder", "x"));
  assert.match(notAllowed, /^HTTP\/1\.1 403 Forbidden[\s\S]*tunnel name intruder is not allowed here$/);
  const noAlpn = await knock(a.port, upgradeRequest("good", "x"), null);
  assert.match(noAlpn, /^HTTP\/1\.1 400 [\s\S]*negotiated ALPN false/);
  const eager = await knock(a.port, `${upgradeRequest("good", "x")}PRI * HTTP/2.0`);
  assert.match(eager, /^HTTP\/1\.1 400 [\s\S]*bytes after the handshake request/);
  assert.equal(stat(a, "reverse_tunnel_acceptor.ew.handshake_fail"), 8);
  assert.equal(stat(a, "reverse_tunnel_acceptor.ew.accepted"), 0);
  assert.ok(logLines.some((l) => l.includes("refused 127.0.0.1:") && l.includes("403")));

  // A good handshake still becomes a tunnel: 101, and the acceptor's HTTP/2 preface follows.
  const good = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port: a.port,
      ca: root.cert,
      cert: clientCert.cert,
      key: clientCert.key,
      ALPNProtocols: [TUNNEL_ALPN],
    });
    onClose(() => {
      s.destroy();
    });
    let got = "";
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (got.includes("PRI * HTTP/2.0")) {
        resolve(got);
        s.destroy();
      }
    });
    s.on("error", reject);
    s.once("secureConnect", () => s.write(upgradeRequest("good", "x")));
  });
  assert.ok(good.startsWith(SWITCHING_RESPONSE), good);
  await waitFor(() => stat(a, "reverse_tunnel_acceptor.ew.accepted") === 1, 3000, "accepted");
});

test("an initiator facing an acceptor that answers nonsense counts it, says why, and retries", async () => {
  const answers = [
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "\x00\x01garbage\r\n\r\n",
    refusalResponse(503, "busy"),
  ];
  let accepted = 0;
  const server = tls.createServer(
    { cert: serverCert.cert, key: serverCert.key, ALPNProtocols: [TUNNEL_ALPN] },
    (s: tls.TLSSocket) => {
      const answer = answers[accepted++ % answers.length]!;
      s.on("error", () => {});
      s.once("data", () => s.end(answer));
    },
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const b = await startProxy({
    listeners: [
      {
        name: "local",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "none" } }],
      },
    ],
    reverseTunnels: [
      {
        name: "lost",
        address: "127.0.0.1",
        port,
        tls: { certificateChain: clientCert.cert, privateKey: clientCert.key, validationContext: root.cert },
        listener: "local",
      },
    ],
  });
  await waitFor(() => stat(b, "reverse_tunnel.lost.handshake_fail") >= 3, 15_000, "three failed handshakes");
  assert.equal(stat(b, "reverse_tunnel.lost.connections"), 0);
  const lines = logLines.filter((l) => l.includes("reverse tunnel lost"));
  assert.ok(
    lines.some((l) => l.includes("refused the tunnel: 200 OK")),
    lines.join(""),
  );
  assert.ok(
    lines.some((l) => l.includes("malformed answer")),
    lines.join(""),
  );
  assert.ok(
    lines.some((l) => l.includes("503 Service Unavailable: busy")),
    lines.join(""),
  );
});

test("fuzz: the handshake readers never throw on random or mutated bytes", () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const request = Buffer.from(upgradeRequest("private-network.1", "eastwest.example:15008"), "latin1");
  const response = Buffer.from(`${SWITCHING_RESPONSE}\x00\x00\x12\x04`, "latin1");
  const refusal = Buffer.from(refusalResponse(403, "no"), "latin1");
  assert.deepEqual(readUpgradeRequest(request), {
    kind: "ok",
    name: "private-network.1",
    headBytes: request.length,
  });
  assert.deepEqual(readUpgradeResponse(response), { kind: "switched", headBytes: SWITCHING_RESPONSE.length });
  assert.deepEqual(readUpgradeResponse(refusal), { kind: "refused", reason: "403 Forbidden: no" });
  for (let i = 1; i < request.length; i++)
    assert.equal(readUpgradeRequest(request.subarray(0, i)).kind, "incomplete");
  for (let i = 0; i < 4000; i++) {
    for (const base of [request, response, refusal]) {
      const b = Buffer.from(base);
      for (let k = 0; k < 1 + rnd(5); k++) b[rnd(b.length)] = rnd(256);
      const cut = rnd(2) === 0 ? b : b.subarray(0, rnd(b.length + 1));
      const q = readUpgradeRequest(cut);
      assert.ok(["incomplete", "ok", "refused"].includes(q.kind));
      if (q.kind === "ok") assert.ok(q.name.length > 0 && q.name.length <= MAX_NAME_LENGTH);
      assert.ok(["incomplete", "switched", "refused"].includes(readUpgradeResponse(cut).kind));
    }
  }
  for (let i = 0; i < 1000; i++) {
    const b = Buffer.alloc(rnd(600));
    for (let k = 0; k < b.length; k++) b[k] = rnd(256);
    readUpgradeRequest(b);
    readUpgradeResponse(b);
  }
  // Bounded: a head that never ends is refused once it outgrows the limit, not waited for.
  assert.equal(readUpgradeRequest(Buffer.alloc(5000, 0x61)).kind, "refused");
  assert.equal(
    readUpgradeResponse(Buffer.from(`HTTP/1.1 200 OK\r\n${"x: y\r\n".repeat(2000)}`)).kind,
    "refused",
  );
});
