// The push stream end to end over real gRPC: a control plane serves configs to a real proxy, which applies
// them and ACKs; a config it refuses is NACKed with the reason while it keeps serving the last good one; with
// the control plane gone the proxy keeps serving and, once one is back, reconnects and resyncs.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import { closeAll, get, onClose, waitFor } from "../../proxy/test-support.ts";
import { DiscoveryClient } from "../../proxy/xds/discovery-client.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  PROXY_CONFIG_TYPE,
} from "../../proxy/xds/discovery-proto.ts";
import { ControlPlaneMetrics } from "../monitoring/control-plane-metrics.ts";
import { DiscoveryServer, syncState } from "./discovery-server.ts";

after(closeAll);

function configSaying(body: string, port: number): ProxyConfig {
  return {
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port,
        filterChains: [
          {
            filter: {
              type: "http",
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    name: "v",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, directResponse: { status: 200, body } }],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
  };
}

async function freePort(): Promise<number> {
  const net = await import("node:net");
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function controlPlane(render: () => ProxyConfig, port = 0, observer?: ControlPlaneMetrics) {
  const cp = new DiscoveryServer({ render, debounceMs: 10, ...(observer ? { observer } : {}) });
  const bound = await cp.listen(`127.0.0.1:${port}`);
  onClose(() => cp.stop());
  return { cp, port: bound };
}

const node = {
  id: "reviews-v1-abc",
  namespace: "default",
  cluster: "c1",
  network: "",
  serviceAccount: "reviews",
  labels: { app: "reviews" },
  ip: "",
  locality: "",
};

test("push, ACK, update, NACK keeps the good config, control plane restart: no request fails", async () => {
  const listenPort = await freePort();
  let current = configSaying("v1", listenPort);
  const metrics = new ControlPlaneMetrics();
  const { cp, port } = await controlPlane(() => current, 0, metrics);
  /** One sample of the exposition, by its full name and labels. */
  const sample = async (series: string) => {
    const line = (await metrics.exposition()).split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.split(" ")[1]);
  };
  const proxy = new ProxyServer();
  onClose(() => proxy.shutdown(0));
  const client = new DiscoveryClient(proxy, { address: `127.0.0.1:${port}`, node });
  onClose(() => client.stop());
  client.start();
  await waitFor(() => client.appliedVersion !== "", 5000, "the first config");
  assert.equal((await get(listenPort, "/")).body.toString(), "v1");
  await waitFor(() => cp.status()[0]?.acked === cp.status()[0]?.sent, 3000, "the ACK");
  assert.equal(syncState(cp.status()[0]!), "SYNCED");
  assert.equal(await sample("pilot_xds"), 1);
  assert.equal(await sample('pilot_xds_pushes{type="proxy-config"}'), 1);
  assert.equal(await sample("pilot_proxy_convergence_time_count"), 0, "a first config is no change");

  const v1 = client.appliedVersion;
  current = configSaying("v2", listenPort);
  cp.push();
  await waitFor(
    () => client.appliedVersion !== v1 && cp.status()[0]?.acked === client.appliedVersion,
    3000,
    "v2 applied and acked",
  );
  assert.equal((await get(listenPort, "/")).body.toString(), "v2");
  assert.equal(await sample("pilot_proxy_convergence_time_count"), 1, "the change converged once");
  assert.equal(await sample('pilot_push_triggers{type="config"}'), 1);

  const good = client.appliedVersion;
  current = { listeners: [{ name: "main", port: -1, filterChains: [] }] } as unknown as ProxyConfig;
  cp.push();
  await waitFor(() => cp.status()[0]?.nack !== "", 3000, "the NACK");
  assert.match(cp.status()[0]!.nack, /port/);
  assert.equal(cp.rejects, 1);
  assert.equal(syncState(cp.status()[0]!), "NACKED");
  assert.equal(await sample('pilot_total_xds_rejects{type="proxy-config"}'), 1);
  assert.equal(await sample("pilot_proxy_convergence_time_count"), 1, "a NACK is no convergence");
  assert.equal(client.appliedVersion, good, "the proxy kept its version");
  assert.equal((await get(listenPort, "/")).body.toString(), "v2", "and serves it");

  // The control plane goes away: traffic goes on.
  await cp.stop();
  assert.equal(await sample("pilot_xds"), 0, "the proxy counted as gone");
  for (let i = 0; i < 5; i++) assert.equal((await get(listenPort, "/")).status, 200);
  // A new one on the same address with a new config: the proxy reconnects and resyncs.
  current = configSaying("v3", listenPort);
  await controlPlane(() => current, port);
  const deadline = Date.now() + 10_000;
  let body = "";
  while (Date.now() < deadline) {
    body = (await get(listenPort, "/")).body.toString();
    if (body === "v3") break;
    assert.equal(body, "v2", "served the last good config meanwhile");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(body, "v3");
});

test("a stream whose first message names no node is closed; the server keeps serving others", async () => {
  const listenPort = await freePort();
  const { cp, port } = await controlPlane(() => configSaying("ok", listenPort));
  const { Discovery } = discoveryPackage();
  const raw = new Discovery(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  onClose(() => raw.close());
  const call = (raw as unknown as { Stream(): grpc.ClientDuplexStream<object, object> }).Stream();
  const ended = new Promise<string>((resolve) => {
    call.on("error", (e: Error) => resolve(e.message));
    call.on("end", () => resolve("end"));
  });
  call.write({ typeUrl: "something-else" });
  assert.ok(await ended);
  assert.equal(cp.status().length, 0);

  const proxy = new ProxyServer();
  onClose(() => proxy.shutdown(0));
  const client = new DiscoveryClient(proxy, { address: `127.0.0.1:${port}`, node });
  onClose(() => client.stop());
  client.start();
  await waitFor(() => client.appliedVersion !== "", 5000, "a good proxy is still served");
});

/** A raw stream client that records responses and ACKs only when told. */
function rawClient(port: number, id: string) {
  const { Discovery } = discoveryPackage();
  const raw = new Discovery(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  onClose(() => raw.close());
  const call = (
    raw as unknown as {
      Stream(): grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
    }
  ).Stream();
  const responses: DiscoveryResponseMessage[] = [];
  call.on("data", (r: DiscoveryResponseMessage) => responses.push(r));
  call.on("error", () => {});
  onClose(() => call.cancel());
  call.write({
    node: { ...node, id },
    typeUrl: PROXY_CONFIG_TYPE,
    versionInfo: "",
    responseNonce: "",
    errorDetail: "",
  });
  const answer = (r: DiscoveryResponseMessage, errorDetail = "") =>
    call.write({
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: r.versionInfo,
      responseNonce: r.nonce,
      errorDetail,
    });
  return { responses, answer };
}

test("incremental: only changed resources are sent, removals by name, one response in flight per proxy", async () => {
  const clusterOf = (name: string, port: number) => ({ name, endpoints: [{ address: "127.0.0.1", port }] });
  let clusters = [clusterOf("a", 1), clusterOf("b", 2), clusterOf("c", 3)];
  const render = (): ProxyConfig => ({ ...configSaying("x", 1), clusters });
  const { cp, port } = await controlPlane(render);
  const p = rawClient(port, "raw-1");
  await waitFor(() => p.responses.length === 1, 3000, "the first response");
  const first = p.responses[0]!;
  assert.equal(first.fullState, true);
  assert.deepEqual(
    first.resources.map((r) => r.name),
    ["bootstrap", "listener/main", "cluster/a", "cluster/b", "cluster/c"],
  );
  assert.deepEqual(JSON.parse(first.resources[2]!.json.toString()), clusterOf("a", 1));

  // Not acknowledged yet: a change waits behind the response in flight.
  clusters = [clusterOf("a", 1), clusterOf("b", 20), clusterOf("c", 3)];
  cp.push();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(p.responses.length, 1, "nothing more while the first response is unanswered");
  assert.equal(syncState(cp.status()[0]!), "STALE");
  p.answer(first);
  await waitFor(() => p.responses.length === 2, 3000, "the change, once the first is acknowledged");
  const second = p.responses[1]!;
  assert.equal(second.fullState, false);
  assert.deepEqual(
    second.resources.map((r) => r.name),
    ["cluster/b"],
  );
  assert.deepEqual(second.removedResources, []);

  // A NACK: the next diff starts from what the proxy acknowledged, so b is sent again with the removal of c.
  p.answer(second, "refused for the test");
  await waitFor(() => cp.status()[0]!.nack !== "", 3000, "the NACK");
  clusters = [clusterOf("a", 1), clusterOf("b", 20)];
  cp.push();
  await waitFor(() => p.responses.length === 3, 3000, "the next change");
  const third = p.responses[2]!;
  assert.deepEqual(
    third.resources.map((r) => r.name),
    ["cluster/b"],
  );
  assert.deepEqual(third.removedResources, ["cluster/c"]);
  p.answer(third);
  await waitFor(() => syncState(cp.status()[0]!) === "SYNCED", 3000, "synced");
});

test("large resources travel deflated, and a real proxy inflates and applies them", async () => {
  const listenPort = await freePort();
  const endpoints = Array.from({ length: 200 }, (_, i) => ({
    address: `10.1.${i >> 8}.${i & 255}`,
    port: 8080,
    labels: { version: "v1" },
  }));
  const clusters = [{ name: "big", endpoints }];
  const { port } = await controlPlane(() => ({ ...configSaying("inflated", listenPort), clusters }));
  const p = rawClient(port, "raw-deflate");
  await waitFor(() => p.responses.length === 1, 3000, "the first response");
  const big = p.responses[0]!.resources.find((r) => r.name === "cluster/big")!;
  assert.equal(big.encoding, "deflate");
  const json = JSON.stringify(clusters[0]);
  assert.ok(big.json.length < json.length / 4, `${big.json.length} bytes for ${json.length} of JSON`);
  assert.equal(p.responses[0]!.resources.find((r) => r.name === "bootstrap")!.encoding, "", "small: as text");

  const proxy = new ProxyServer();
  onClose(() => proxy.shutdown(0));
  const client = new DiscoveryClient(proxy, { address: `127.0.0.1:${port}`, node });
  onClose(() => client.stop());
  client.start();
  await waitFor(() => client.appliedVersion !== "", 5000, "the proxy applies the config");
  assert.equal(client.rejected, 0, client.lastError);
  assert.equal((await get(listenPort, "/")).body.toString(), "inflated");
});

test("the push budget: sends beyond it wait for answers; a proxy that never answers stops holding it", async () => {
  const clusterOf = (name: string, port: number) => ({ name, endpoints: [{ address: "127.0.0.1", port }] });
  let clusters = [clusterOf("a", 1)];
  const render = (): ProxyConfig => ({ ...configSaying("x", 1), clusters });
  const cp = new DiscoveryServer({ render, debounceMs: 10, maxInFlightBytes: 1, holdTimeoutMs: 400 });
  const port = await cp.listen("127.0.0.1:0");
  onClose(() => cp.stop());
  const a = rawClient(port, "budget-a");
  await waitFor(() => a.responses.length === 1, 3000, "a's first response");
  const b = rawClient(port, "budget-b");
  await waitFor(() => cp.status().length === 2, 3000, "b connected");
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(b.responses.length, 0, "b waits while a's response holds the budget");
  a.answer(a.responses[0]!);
  await waitFor(() => b.responses.length === 1, 3000, "b is served once a answers");

  // b never answers: after the hold timeout a's next change is sent anyway.
  clusters = [clusterOf("a", 2)];
  cp.push();
  await waitFor(() => a.responses.length === 2, 3000, "a served despite b's silence");
  assert.deepEqual(
    a.responses[1]!.resources.map((r) => r.name),
    ["cluster/a"],
  );
  assert.equal(b.responses.length, 1, "b still has one response in flight, not a queue");
});
