// Lightweight push-stream clients for bench:control-plane: N proxies' worth of streams in one process. Each
// stream names its node, ACKs every response (it does not parse or apply the config: the control plane is
// what is measured), and notes when each response arrived.
//
// Protocol with the parent, one JSON object per line: on stdin {"clients", "server", "namespaces"} to start;
// on stdout {"ready": ms, "bytes"} once every client has its first config (ms from the first connection).
// Then per change: {"mark": EPOCH_MS} (answered {"marked": true}) before the parent makes it, and {"collect":
// true} after, answered {"latencies": [ms...]}: per client, from the mark to its first response after it.
import { createInterface } from "node:readline";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  PROXY_CONFIG_TYPE,
} from "../../src/proxy/xds/discovery-proto.ts";

/** Streams per channel (one HTTP/2 connection each), as sidecars would spread over connections. */
const STREAMS_PER_CHANNEL = 50;

interface Client {
  /** Epoch ms of the first response since the last mark; 0 while none. */
  firstAfterMark: number;
  responses: number;
}

const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function start(count: number, server: string, namespaces: number): Promise<Client[]> {
  const { Discovery } = discoveryPackage();
  const clients: Client[] = [];
  const channels: grpc.Client[] = [];
  let bytes = 0;
  let ready = 0;
  const t0 = Date.now();
  for (let i = 0; i < count; i++) {
    if (i % STREAMS_PER_CHANNEL === 0)
      channels.push(
        new Discovery(server, grpc.credentials.createInsecure(), {
          "grpc.max_receive_message_length": 256 * 1024 * 1024,
          // HTTP/2's default 64 KiB window makes a large config crawl, a round trip per window (as istio-agent
          // raises it); the config size is bounded by max_receive_message_length anyway.
          "grpc-node.flow_control_window": 8 * 1024 * 1024,
        }),
      );
    const channel = channels[channels.length - 1] as unknown as {
      Stream(): grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
    };
    const call = channel.Stream();
    const c: Client = { firstAfterMark: 0, responses: 0 };
    clients.push(c);
    call.on("data", (r: DiscoveryResponseMessage) => {
      if (c.firstAfterMark === 0) c.firstAfterMark = Date.now();
      c.responses++;
      for (const res of r.resources) bytes += res.json.length;
      call.write({
        typeUrl: PROXY_CONFIG_TYPE,
        versionInfo: r.versionInfo,
        responseNonce: r.nonce,
        errorDetail: "",
      });
      if (c.responses === 1 && ++ready === count) out({ ready: Date.now() - t0, bytes });
    });
    call.on("error", (e: Error) => process.stderr.write(`client ${i}: ${e.message}\n`));
    const ip = `10.${200 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
    call.write({
      node: {
        id: `load-${i}`,
        namespace: `ns-${i % namespaces}`,
        cluster: "bench",
        network: "",
        serviceAccount: "default",
        labels: { app: `load-${i}` },
        ip,
        locality: "",
      },
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: "",
      responseNonce: "",
      errorDetail: "",
    });
  }
  return clients;
}

let clients: Client[] = [];
let markAt = 0;
const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const msg = JSON.parse(line) as {
    clients?: number;
    server?: string;
    namespaces?: number;
    mark?: number;
    collect?: boolean;
  };
  if (msg.clients !== undefined) {
    clients = await start(msg.clients, msg.server!, msg.namespaces!);
  } else if (msg.mark !== undefined) {
    markAt = msg.mark;
    for (const c of clients) c.firstAfterMark = 0;
    out({ marked: true });
  } else if (msg.collect) {
    const deadline = Date.now() + 60_000;
    while (clients.some((c) => c.firstAfterMark === 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    out({ latencies: clients.map((c) => (c.firstAfterMark === 0 ? Number.NaN : c.firstAfterMark - markAt)) });
  }
});
lines.on("close", () => process.exit(0));
