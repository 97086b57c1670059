// Bee Travels without the mesh: the committed data is what data/generate.mjs writes (the JSON Lines for v1 and
// the seed SQL for v2/v3 from the same records), and the CONNECT tunnel that v3 uses to reach its database
// through the sidecar (lib/connect-tunnel.mjs) against a stand-in proxy: bytes both ways, the proxy's refusal
// and a silent proxy reported as errors. The apps themselves run through real sidecars in
// beetravels-up.e2e.test.ts.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
// @ts-expect-error: a plain JavaScript module of the example, without types
import { ConnectTunnelSocket } from "./lib/connect-tunnel.mjs";

const DIR = import.meta.dirname;
const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as net.AddressInfo).port;
}

test("the committed data is data/generate.mjs' output, the same records in JSON Lines and in the seed SQL", () => {
  const check = spawnSync(process.execPath, [join(DIR, "data", "generate.mjs"), "--check"], {
    encoding: "utf8",
  });
  assert.equal(check.status, 0, check.stderr);
  const lines = (f: string) =>
    readFileSync(join(DIR, "data", f), "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; cityId?: string });
  const cities = lines("cities.jsonl");
  const hotels = lines("hotels.jsonl");
  const cars = lines("cars.jsonl");
  assert.equal(cities.length, 20);
  assert.equal(hotels.length, 300);
  assert.equal(cars.length, 240);
  const cityIds = new Set(cities.map((c) => c.id));
  assert.ok(
    [...hotels, ...cars].every((x) => cityIds.has(x.cityId!)),
    "every hotel and car in a known city",
  );
  const seed = readFileSync(join(DIR, "data", "seed.sql"), "utf8");
  for (const x of [...hotels, ...cars]) assert.ok(seed.includes(`('${x.id}', '${x.cityId}'`), x.id);
});

test("ConnectTunnelSocket: CONNECT through a proxy, then bytes both ways; refusals and silence are errors", async () => {
  // An echo server, and a stand-in sidecar: CONNECT to "db.example:5432" reaches the echo server, any
  // other target is refused, "silent.example" never answers.
  const echoPort = await listen(net.createServer((s) => s.pipe(s)));
  const targets: string[] = [];
  const proxy = http.createServer((_req, res) => res.writeHead(405).end());
  proxy.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    targets.push(req.url ?? "");
    if (req.url?.startsWith("silent.example")) return;
    if (req.url !== "db.example:5432") {
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const up = net.connect(echoPort, "127.0.0.1", () => {
      // The answer and the first bytes from the server in one write: the stream must not lose them.
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
  });
  const proxyPort = await listen(proxy);
  const via = { host: "127.0.0.1", port: proxyPort };

  const tunnel = new ConnectTunnelSocket(via);
  tunnel.setNoDelay(true); // pg does this before connect()
  tunnel.connect(5432, "db.example");
  tunnel.write("written before the tunnel is up; "); // queued until it is
  await once(tunnel, "connect");
  tunnel.write("and after");
  let echoed = "";
  tunnel.on("data", (d: Buffer) => {
    echoed += d.toString();
  });
  const want = "written before the tunnel is up; and after";
  for (let i = 0; i < 50 && echoed.length < want.length; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(echoed, want);
  tunnel.end();
  await once(tunnel, "close");

  const refused = new ConnectTunnelSocket(via);
  refused.connect(5432, "elsewhere.example");
  const [refusal] = (await once(refused, "error")) as [Error];
  assert.match(refusal.message, /CONNECT elsewhere\.example:5432 .* refused: HTTP\/1\.1 403 Forbidden/);

  const silent = new ConnectTunnelSocket(via, { connectTimeoutMs: 200 });
  silent.connect(5432, "silent.example");
  const [timeout] = (await once(silent, "error")) as [Error];
  assert.match(timeout.message, /no answer within 200 ms/);
  assert.deepEqual(targets, ["db.example:5432", "elsewhere.example:5432", "silent.example:5432"]);
});
