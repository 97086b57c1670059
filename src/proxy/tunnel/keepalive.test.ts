// The PING keepalive against a peer that went silent without closing: a TCP server that accepts and never
// answers (as a vanished host behind a NAT looks): the session is destroyed once a PING goes unanswered; and
// against a live peer it stays up across several intervals.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, test } from "node:test";
import { closeAll, onClose, sleep, waitFor } from "../test-support.ts";
import { keepAlive } from "./keepalive.ts";

after(closeAll);

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

test("a silent peer is noticed: the session is destroyed when a PING goes unanswered", async () => {
  const held = new Set<net.Socket>();
  const silent = net.createServer((s) => {
    held.add(s);
    s.on("error", () => {});
  });
  onClose(() => {
    for (const s of held) s.destroy();
  });
  const port = await listen(silent);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  onClose(() => {
    session.destroy();
  });
  let reason: Error | undefined;
  session.once("error", (e) => {
    reason = e;
  });
  let closed = false;
  session.once("close", () => {
    closed = true;
  });
  keepAlive(session, { pingIntervalMs: 50, pingTimeoutMs: 200 });
  await waitFor(() => closed, 5000, "the session closed");
  assert.match(String(reason?.message), /no answer to an HTTP\/2 PING within 200 ms/);
});

test("a live peer answers: the session stays up", async () => {
  const h2 = http2.createServer();
  const raw = net.createServer((s) => h2.emit("connection", s));
  const port = await listen(raw);
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  onClose(() => {
    session.destroy();
  });
  keepAlive(session, { pingIntervalMs: 20, pingTimeoutMs: 1000 });
  await sleep(300);
  assert.equal(session.destroyed, false);
  session.close();
});
