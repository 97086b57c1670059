// Clients that misbehave on the push stream: garbage instead of protobuf, a length prefix beyond the message
// limit, bytes that are not HTTP/2 at all, and a proxy that refuses every config. Each is refused or recorded
// without a crash, nothing is resent in a loop, and well-behaved proxies keep being served.
import assert from "node:assert/strict";
import { connect as http2Connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { after, test } from "node:test";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { closeAll, onClose, waitFor } from "../../proxy/test-support.ts";
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

let generation = 0;
const render = (): ProxyConfig => ({
  listeners: [
    {
      name: "main",
      address: "127.0.0.1",
      port: 1,
      filterChains: [{ filter: { type: "tcp", cluster: `c${generation}` } }],
    },
  ],
  clusters: [{ name: `c${generation}`, endpoints: [{ address: "127.0.0.1", port: 2 }] }],
});

async function server(observer?: ControlPlaneMetrics) {
  const cp = new DiscoveryServer({ render, debounceMs: 10, ...(observer ? { observer } : {}) });
  const port = await cp.listen("127.0.0.1:0");
  onClose(() => cp.stop());
  return { cp, port };
}

/** A well-behaved stream client: ACKs everything; resolves once it has its first config. */
function goodClient(port: number, id: string) {
  const { Discovery } = discoveryPackage();
  const raw = new Discovery(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  onClose(() => raw.close());
  const call = (
    raw as unknown as { Stream(): grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage> }
  ).Stream();
  call.on("error", () => {});
  onClose(() => call.cancel());
  const responses: DiscoveryResponseMessage[] = [];
  return {
    responses,
    call,
    start(errorDetail = "") {
      call.on("data", (r: DiscoveryResponseMessage) => {
        responses.push(r);
        call.write({ typeUrl: PROXY_CONFIG_TYPE, versionInfo: "", responseNonce: r.nonce, errorDetail });
      });
      call.write({
        node: {
          id,
          namespace: "default",
          cluster: "",
          network: "",
          serviceAccount: "",
          labels: {},
          ip: "",
          locality: "",
        },
        typeUrl: PROXY_CONFIG_TYPE,
        versionInfo: "",
        responseNonce: "",
        errorDetail: "",
      });
    },
  };
}

/** Opens the Stream method by hand and writes `frames`; resolves with the grpc-status the server ends with. */
async function rawGrpc(port: number, frames: Buffer[]): Promise<string> {
  const session = http2Connect(`http://127.0.0.1:${port}`);
  onClose(() => session.destroy());
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": "/isthmus.discovery.v1.Discovery/Stream",
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  let status = "";
  stream.on("response", (h) => {
    if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
  });
  stream.on("trailers", (h) => {
    status = String(h["grpc-status"]);
  });
  stream.resume();
  for (const f of frames) stream.write(f);
  stream.end();
  await new Promise<void>((resolve) => {
    stream.on("close", resolve);
    setTimeout(resolve, 3000).unref();
  });
  session.destroy();
  return status;
}

function frame(payload: Buffer, declaredLength = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, payload]);
}

test("garbage on the stream: the stream is refused, the server serves others", async () => {
  const { cp, port } = await server();
  // Not protobuf: field 1 (the node) declared 100 bytes long with 3 behind it.
  assert.equal(
    await rawGrpc(port, [frame(Buffer.from([0x0a, 0x64, 1, 2, 3]))]),
    String(grpc.status.INTERNAL),
  );
  // A message beyond the 1 MiB receive limit is refused by its declared length, before it is buffered.
  assert.equal(
    await rawGrpc(port, [frame(Buffer.alloc(16), 512 * 1024 * 1024)]),
    String(grpc.status.RESOURCE_EXHAUSTED),
  );
  // Not HTTP/2 at all.
  const sock = netConnect(port, "127.0.0.1");
  onClose(() => {
    sock.destroy();
  });
  sock.on("error", () => {});
  sock.resume(); // read the server's answer (a GOAWAY), so the close is seen
  sock.write("GET / HTTP/1.1\r\nhost: x\r\n\r\n\u0000\u0001\u0002garbage");
  await new Promise<void>((resolve) => sock.on("close", () => resolve()));
  assert.equal(cp.status().length, 0, "no proxy was registered by garbage");

  const good = goodClient(port, "good-1");
  good.start();
  await waitFor(() => good.responses.length === 1, 3000, "a good proxy is served");
});

test("a proxy that NACKs forever: recorded with its reason, counted, never resent in a loop", async () => {
  const metrics = new ControlPlaneMetrics();
  const { cp, port } = await server(metrics);
  const bad = goodClient(port, "nacker");
  bad.start("listener main: refused for the test");
  await waitFor(() => cp.status()[0]?.nack !== "" && cp.status()[0]?.nack !== undefined, 3000, "the NACK");
  const s = cp.status()[0]!;
  assert.equal(syncState(s), "NACKED");
  assert.match(s.nack, /refused for the test/);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(bad.responses.length, 1, "a NACK is not answered by sending the same config again");
  for (let i = 1; i <= 3; i++) {
    generation = i;
    cp.push();
    await waitFor(() => bad.responses.length === i + 1, 3000, `response to change ${i}`);
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(bad.responses.length, 4, "one response per change, no more");
  // Each response after a NACK is diffed from what the proxy runs (nothing acknowledged): the full set again.
  assert.deepEqual(
    bad.responses[3]!.resources.map((r) => r.name),
    ["bootstrap", "listener/main", "cluster/c3"],
  );
  assert.equal(cp.rejects, 4);
  assert.match(await metrics.exposition(), /pilot_total_xds_rejects\{type="proxy-config"\} 4/);
});
