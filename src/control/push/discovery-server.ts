// The control plane's side of the push stream: every connected proxy gets its ProxyConfig, rendered for its
// identity, with a version (a digest of the config, so an unchanged config is never resent) and a nonce; the
// proxy's ACK or NACK is recorded per proxy (proxy-status). push() re-renders for every proxy after a change,
// coalescing bursts (debounce), and sends only to proxies whose config changed.
import { createHash, randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
} from "../../proxy/xds/discovery-proto.ts";
import type { PushObserver } from "../monitoring/control-plane-metrics.ts";

export interface ProxyStatus {
  readonly id: string;
  readonly namespace: string;
  readonly cluster: string;
  /** What was last sent, and what the proxy says it runs. */
  sent: string;
  acked: string;
  /** The proxy's error for the last response it refused; "" when it accepted. */
  nack: string;
}

/** istioctl proxy-status' words for a proxy's state of one resource type. */
export type SyncState = "SYNCED" | "STALE" | "NOT SENT" | "NACKED";

export function syncState(s: ProxyStatus): SyncState {
  if (s.nack !== "") return "NACKED";
  if (s.sent === "") return "NOT SENT";
  return s.acked === s.sent ? "SYNCED" : "STALE";
}

interface Connection {
  readonly node: NodeMessage;
  readonly call: grpc.ServerDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
  readonly status: ProxyStatus;
  nonce: string;
  /** When the change carried by the response in flight was made (performance.now()), for convergence time. */
  changeAt: number | undefined;
}

export interface DiscoveryServerOptions {
  /** The config for a proxy (throws: nothing is sent, the error is recorded). */
  readonly render: (node: NodeMessage) => ProxyConfig;
  /** Changes within this window are pushed together. Default 100 ms (istiod's PILOT_DEBOUNCE_AFTER). */
  readonly debounceMs?: number;
  /** Told of pushes, rejects and convergence (the pilot_* metrics). */
  readonly observer?: PushObserver;
}

export class DiscoveryServer {
  private readonly server = new grpc.Server({ "grpc.max_receive_message_length": 1024 * 1024 });
  private readonly options: DiscoveryServerOptions;
  private readonly connections = new Set<Connection>();
  private debounce: NodeJS.Timeout | undefined;
  /** When the first change of the pending push was made. */
  private pendingSince = 0;
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

  /** The proxy `id`'s config as it would be rendered now, with its version, and its status (proxy-config). */
  currentConfig(id: string): { status: ProxyStatus; version: string; config: ProxyConfig } | undefined {
    for (const c of this.connections) {
      if (c.status.id !== id) continue;
      const config = this.options.render(c.node);
      return { status: { ...c.status }, version: versionOf(JSON.stringify(config)), config };
    }
    return undefined;
  }

  /** Re-renders every proxy's config after a change; bursts within the debounce window become one push. */
  push(reason = "config"): void {
    if (this.debounce) return;
    this.pendingSince = performance.now();
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.options.observer?.triggered(reason);
      for (const c of this.connections) this.send(c, this.pendingSince);
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
          status: {
            id: req.node.id,
            namespace: req.node.namespace,
            cluster: req.node.cluster,
            sent: "",
            acked: req.versionInfo,
            nack: "",
          },
          nonce: "",
          changeAt: undefined,
        };
        this.connections.add(conn);
        this.options.observer?.connected(1);
        this.send(conn, undefined);
        return;
      }
      if (req.responseNonce !== conn.nonce) return; // an answer to an older response: superseded
      if (req.errorDetail) {
        this.rejects++;
        this.options.observer?.rejected(PROXY_CONFIG_TYPE);
        conn.status.nack = req.errorDetail.slice(0, 4096);
      } else {
        conn.status.nack = "";
        conn.status.acked = req.versionInfo;
        if (conn.changeAt !== undefined)
          this.options.observer?.converged((performance.now() - conn.changeAt) / 1000);
      }
      conn.changeAt = undefined;
    });
    const drop = () => {
      if (conn && this.connections.delete(conn)) this.options.observer?.connected(-1);
    };
    call.on("end", () => {
      drop();
      call.end();
    });
    call.on("error", drop);
    call.on("cancelled", drop);
  }

  /** Renders and sends `c` its config if it changed; `changeAt` is when the change that caused this was made. */
  private send(c: Connection, changeAt: number | undefined): void {
    const started = performance.now();
    let json: string;
    try {
      json = JSON.stringify(this.options.render(c.node));
    } catch (e) {
      c.status.nack = `not rendered: ${(e as Error).message}`;
      this.options.observer?.renderFailed(PROXY_CONFIG_TYPE);
      return;
    }
    const version = versionOf(json);
    // What the proxy already runs (it says so when it connects) or was just sent is not sent again.
    if (version === c.status.acked) c.status.sent = version;
    if (version === c.status.sent) return;
    c.nonce = randomBytes(8).toString("hex");
    c.status.sent = version;
    c.changeAt = changeAt;
    this.pushes++;
    const resourceJson = Buffer.from(json);
    c.call.write({ typeUrl: PROXY_CONFIG_TYPE, versionInfo: version, nonce: c.nonce, resourceJson });
    this.options.observer?.pushed(
      PROXY_CONFIG_TYPE,
      (performance.now() - started) / 1000,
      resourceJson.length,
    );
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
    for (const c of this.connections) if (this.connections.delete(c)) this.options.observer?.connected(-1);
  }
}

/** A config's version: a digest of its JSON, so equal configs have equal versions across restarts. */
function versionOf(json: string): string {
  return createHash("sha256").update(json).digest("hex").slice(0, 16);
}
