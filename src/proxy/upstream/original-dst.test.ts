// An original_dst cluster sends each request to the host and port its own authority names: absolute-form
// requests and Host headers through an http_proxy listener, and CONNECT tunnels. The control plane uses it for
// traffic to hosts it does not know (Istio's PassthroughCluster).
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { validateProxyConfig } from "../config/validate.ts";
import {
  catchAll,
  closeAll,
  closedPort,
  config,
  httpBackend,
  netBackend,
  RawClient,
  send,
  startProxy,
} from "../test-support.ts";

after(closeAll);

const passthrough = { name: "passthrough", type: "original_dst" as const, endpoints: [] };

test("original_dst: each request goes to the host:port of its own authority", async () => {
  const a = await httpBackend((_req, res) => res.end("a"));
  const b = await httpBackend((req, res) => res.end(`b ${req.headers.host}`));
  const { port } = await startProxy(
    config({ routes: catchAll("passthrough"), clusters: [passthrough], mode: "http_proxy" }),
  );
  const ra = await send(
    port,
    `GET http://127.0.0.1:${a.port}/x HTTP/1.1\r\nhost: 127.0.0.1:${a.port}\r\n\r\n`,
  );
  assert.equal(ra.status, 200);
  assert.equal(ra.body.toString(), "a");
  // Origin-form: the Host header names the destination.
  const rb = await send(port, `GET /y HTTP/1.1\r\nhost: localhost:${b.port}\r\n\r\n`);
  assert.equal(rb.body.toString(), `b localhost:${b.port}`);
});

test("original_dst: CONNECT tunnels to the target; a closed port is 503 UF", async () => {
  const backend = await netBackend((s) =>
    s.on("data", (d) => s.write(Buffer.concat([Buffer.from("echo:"), d]))),
  );
  const { port } = await startProxy(
    config({ routes: catchAll("passthrough"), clusters: [passthrough], mode: "http_proxy" }),
  );
  const c = await RawClient.connect(port);
  c.write(`CONNECT 127.0.0.1:${backend.port} HTTP/1.1\r\nhost: 127.0.0.1:${backend.port}\r\n\r\n`);
  const r = await c.read("CONNECT");
  assert.equal(r.status, 200);
  const got = new Promise<string>((resolve) => c.socket.once("data", (d: Buffer) => resolve(d.toString())));
  c.write("hi");
  assert.equal(await got, "echo:hi");
  c.destroy();
  const dead = await closedPort();
  const r2 = await send(port, `GET http://127.0.0.1:${dead}/ HTTP/1.1\r\nhost: 127.0.0.1:${dead}\r\n\r\n`);
  assert.equal(r2.status, 503);
});

test("original_dst: listed endpoints are refused", () => {
  const problems = validateProxyConfig({
    listeners: [],
    clusters: [{ ...passthrough, endpoints: [{ address: "127.0.0.1", port: 1 }] }],
  });
  assert.deepEqual(
    problems.map((p) => p.path.join(".")),
    ["clusters.0.endpoints"],
  );
});
