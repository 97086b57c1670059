// The control plane's side of the push stream: every connected proxy gets its ProxyConfig, rendered for its
// identity, with a version (a digest of the config, so an unchanged config is never resent) and a nonce; the
// proxy's ACK or NACK is recorded per proxy (proxy-status). push() re-renders for every proxy after a change,
// coalescing bursts (debounce), and sends only to proxies whose config changed.
import { createHash, randomBytes } from "node:crypto";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
} from "../../proxy/xds/discovery-proto.ts";

export interface ProxyStatus {
  readonly id: string;
  /** What was last sent, and what the proxy says it runs. */
  sent: string;
  acked: string;
  /** The proxy's error for the last response it refused; "" when it accepted. */
  nack: string;
}

interface Connection {
  readonly node: NodeMessage;
  readonly call: grpc.ServerDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
  readonly status: ProxyStatus;
  nonce: string;
}

export interface DiscoveryServerOptions {
  /** The config for a proxy (throws: nothing is sent, the error is recorded). */
  readonly render: (node: NodeMessage) => ProxyConfig;
  /** Changes within this window are pushed together. Default 100 ms (istiod's PILOT_DEBOUNCE_AFTER). */
  readonly debounceMs?: number;
}

export class DiscoveryServer {
  private readonly server = new grpc.Server({ "grpc.max_receive_message_length": 1024 * 1024 });
  private readonly options: DiscoveryServerOptions;
  private readonly connections = new Set<Connection>();
  private debounce: NodeJS.Timeout | undefined;
  /** Responses sent (pilot_xds_pushes). */
  pushes = 0;
  /** NACKs received (pilot_total_xds_rejects). */
  rejects = 0;

  constructor(options: DiscoveryServerOptions) {
    this.options = options;
    const { Discovery } = discoveryPackage();
    this.server.addService(Discovery.service, {
      Stream: (call: grpc.ServerDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>) =>
        this.onStream(call),
    });
  }

  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      );
    });
  }

  /** Per proxy: what was sent and acknowledged (isthmus proxy-status). */
  status(): ProxyStatus[] {
    return [...this.connections].map((c) => ({ ...c.status }));
  }

  /** Re-renders every proxy's config after a change; bursts within the debounce window become one push. */
  push(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      for (const c of this.connections) this.send(c);
    }, this.options.debounceMs ?? 100);
  }

  private onStream(call: grpc.ServerDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>): void {
    let conn: Connection | undefined;
    call.on("data", (req: DiscoveryRequestMessage) => {
      if (conn === undefined) {
        if (!req.node?.id || req.typeUrl !== PROXY_CONFIG_TYPE) {
          // grpc-js sends an error emitted on the call as the stream's status.
          call.emit("error", {
            code: grpc.status.INVALID_ARGUMENT,
            details: "the first request must name the node and the proxy-config type",
          });
          return;
        }
        conn = {
          node: req.node,
          call,
          status: { id: req.node.id, sent: "", acked: req.versionInfo, nack: "" },
          nonce: "",
        };
        this.connections.add(conn);
        this.send(conn);
        return;
      }
      if (req.responseNonce !== conn.nonce) return; // an answer to an older response: superseded
      if (req.errorDetail) {
        this.rejects++;
        conn.status.nack = req.errorDetail.slice(0, 4096);
      } else {
        conn.status.nack = "";
        conn.status.acked = req.versionInfo;
      }
    });
    const drop = () => {
      if (conn) this.connections.delete(conn);
    };
    call.on("end", () => {
      drop();
      call.end();
    });
    call.on("error", drop);
    call.on("cancelled", drop);
  }

  private send(c: Connection): void {
    let json: string;
    try {
      json = JSON.stringify(this.options.render(c.node));
    } catch (e) {
      c.status.nack = `not rendered: ${(e as Error).message}`;
      return;
    }
    const version = createHash("sha256").update(json).digest("hex").slice(0, 16);
    // What the proxy already runs (it says so when it connects) or was just sent is not sent again.
    if (version === c.status.acked || version === c.status.sent) return;
    c.nonce = randomBytes(8).toString("hex");
    c.status.sent = version;
    this.pushes++;
    c.call.write({
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: version,
      nonce: c.nonce,
      resourceJson: Buffer.from(json),
    });
  }

  async stop(): Promise<void> {
    if (this.debounce) clearTimeout(this.debounce);
    for (const c of this.connections) c.call.end();
    // Proxies may hold their half of a stream open; after a moment they are cut (they reconnect elsewhere).
    await Promise.race([
      new Promise<void>((r) => this.server.tryShutdown(() => r())),
      new Promise<void>((r) => setTimeout(r, 500).unref()),
    ]);
    this.server.forceShutdown();
    this.connections.clear();
  }
}
