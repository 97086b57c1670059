// Priority failover through the proxy with real backends: two priority-0 servers and one priority-1 server
// behind outlier detection. Traffic stays on P0 while it is up; with both P0 servers gone, each fails once, is
// ejected, and everything reaches P1; when one P0 server is back after its ejection, traffic returns to P0
// (70% of it, Envoy's share for a level half healthy).
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { after, test } from "node:test";
import { PriorityLoadBalancer } from "../lb/priority.ts";
import { closeAll, config, get, httpBackend, onClose, startProxy, waitFor } from "../test-support.ts";

after(closeAll);

interface NamedServer {
  readonly port: number;
  hits: number;
  close(): Promise<void>;
}

/** An HTTP server answering its name, on `port` (0: any free one); stopped by closeAll at the latest. */
async function namedServer(name: string, port = 0): Promise<NamedServer> {
  const open = new Set<net.Socket>();
  const s: NamedServer = { port: 0, hits: 0, close: async () => {} };
  const server = http.createServer((_req, res) => {
    s.hits++;
    res.end(name);
  });
  server.on("connection", (c: net.Socket) => {
    open.add(c);
    c.once("close", () => open.delete(c));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  (s as { port: number }).port = (server.address() as net.AddressInfo).port;
  s.close = () =>
    new Promise<void>((resolve) => {
      for (const c of open) c.destroy();
      if (!server.listening) resolve();
      else server.close(() => resolve());
    });
  onClose(s.close);
  return s;
}

test("P0 fails over to P1 after ejections and takes traffic back after its ejection time", async () => {
  const p0a = await namedServer("p0a");
  const p0b = await namedServer("p0b");
  const p1 = await httpBackend((_req, res) => res.end("p1"));
  const p = await startProxy(
    config({
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [{ match: { prefix: "/" }, route: { cluster: "up", retryPolicy: { numRetries: 0 } } }],
          },
        ],
      },
      clusters: [
        {
          name: "up",
          endpoints: [
            { address: "127.0.0.1", port: p0a.port, priority: 0 },
            { address: "127.0.0.1", port: p0b.port, priority: 0 },
            { address: "127.0.0.1", port: p1.port, priority: 1 },
          ],
          outlierDetection: {
            consecutive5xxErrors: 0,
            consecutiveGatewayErrors: 1,
            intervalMs: 50,
            baseEjectionTimeMs: 500,
            maxEjectionPercent: 100,
          },
        },
      ],
    }),
  );
  const cluster = p.proxy.clusters.get("up")!;
  const lb = cluster.lb;
  assert.ok(lb instanceof PriorityLoadBalancer);
  const bodies = async (n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await get(p.port, "/");
      out.push(r.status === 200 ? r.body.toString() : `status ${r.status}`);
    }
    return out;
  };

  const healthy = await bodies(20);
  assert.ok(
    healthy.every((b) => b === "p0a" || b === "p0b"),
    `all traffic on P0: ${healthy}`,
  );
  assert.equal(p1.requests, 0);

  await p0a.close();
  await p0b.close();
  const failover = await bodies(20);
  const errors = failover.filter((b) => b.startsWith("status")).length;
  assert.ok(errors >= 2 && errors <= 3, `one failure per P0 server before its ejection: ${failover}`);
  assert.deepEqual(failover.slice(-10), new Array(10).fill("p1"), `then everything on P1: ${failover}`);
  assert.deepEqual(lb.currentLoads(), [0, 100]);
  assert.equal(cluster.endpoints.filter((e) => !e.healthy).length, 2);

  // One P0 server back on its port; once the ejections end, traffic returns to P0. The other P0 endpoint comes
  // back too, fails its first request and is ejected again: P0 is then half healthy and gets 70%.
  const back = await namedServer("p0a", p0a.port);
  await waitFor(() => cluster.endpoints.every((e) => e.healthy), 3000, "the ejections to end");
  const recovered = await bodies(40);
  const recoveryErrors = recovered.filter((b) => b.startsWith("status")).length;
  assert.ok(recoveryErrors <= 1, `only the still-dead P0 server fails, once: ${recovered}`);
  assert.deepEqual(lb.currentLoads(), [70, 30]);
  assert.ok(back.hits >= 15, `traffic back on P0: ${back.hits} of 40 (${recovered})`);
  assert.ok(
    recovered.every((b) => b === "p0a" || b === "p1" || b.startsWith("status")),
    `${recovered}`,
  );
});
