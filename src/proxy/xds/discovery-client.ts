// The proxy's side of the push stream: connects to the control plane with its identity, applies each config
// it is sent through the proxy's usual lifecycle (validate -> provision -> swap) and answers ACK or NACK.
// Static stability: while the control plane is away the proxy keeps serving its last good config, and it
// reconnects with exponential backoff (100 ms to 5 s, jittered), announcing the version it runs so that an
// unchanged config is not sent again.
import type { ProxyServer } from "../proxy.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
} from "./discovery-proto.ts";

export interface DiscoveryClientOptions {
  /** host:port of the control plane. */
  readonly address: string;
  readonly node: NodeMessage;
  /** Called with each outcome (for logs). */
  readonly onEvent?: (e: {
    kind: "connected" | "applied" | "rejected" | "disconnected";
    detail: string;
  }) => void;
}

/** Largest config accepted from the stream (the proxy refuses a bigger one rather than parse it). */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export class DiscoveryClient {
  private readonly proxy: ProxyServer;
  private readonly options: DiscoveryClientOptions;
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage> | undefined;
  private version = "";
  private backoffMs = 100;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** NACKs sent, for tests and status. */
  rejected = 0;
  lastError = "";

  constructor(proxy: ProxyServer, options: DiscoveryClientOptions) {
    this.proxy = proxy;
    this.options = options;
  }

  get appliedVersion(): string {
    return this.version;
  }

  start(): void {
    const { Discovery } = discoveryPackage();
    this.client = new Discovery(this.options.address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_CONFIG_BYTES,
      "grpc.keepalive_time_ms": 30_000,
    });
    this.connect();
  }

  private connect(): void {
    if (this.stopped || !this.client) return;
    const call = (
      this.client as unknown as {
        Stream(): grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>;
      }
    ).Stream();
    this.call = call;
    let gotResponse = false;
    call.on("data", (res: DiscoveryResponseMessage) => {
      gotResponse = true;
      this.backoffMs = 100;
      this.onResponse(call, res).catch((e: unknown) => {
        this.lastError = (e as Error).message;
        this.options.onEvent?.({ kind: "rejected", detail: this.lastError });
      });
    });
    const retry = (why: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      this.options.onEvent?.({ kind: "disconnected", detail: why });
      if (this.stopped) return;
      const delay = this.backoffMs * (0.5 + Math.random() / 2);
      this.backoffMs = gotResponse ? 100 : Math.min(5000, this.backoffMs * 2);
      this.timer = setTimeout(() => this.connect(), delay);
    };
    call.on("error", (e: Error) => retry(e.message));
    call.on("end", () => retry("stream ended"));
    call.write({
      node: this.options.node,
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: this.version,
      responseNonce: "",
      errorDetail: "",
    });
    this.options.onEvent?.({ kind: "connected", detail: this.options.address });
  }

  private async onResponse(
    call: grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage>,
    res: DiscoveryResponseMessage,
  ): Promise<void> {
    let error = "";
    if (res.typeUrl !== PROXY_CONFIG_TYPE) error = `unknown type ${JSON.stringify(res.typeUrl)}`;
    else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(res.resourceJson.toString("utf8"));
      } catch (e) {
        error = `config is not JSON: ${(e as Error).message}`;
      }
      if (error === "") {
        const r = await this.proxy.apply(parsed as Parameters<ProxyServer["apply"]>[0]);
        if (!r.ok) error = r.errors.slice(0, 20).join("; ");
      }
    }
    if (error === "") {
      this.version = res.versionInfo;
      this.options.onEvent?.({ kind: "applied", detail: res.versionInfo });
    } else {
      this.rejected++;
      this.lastError = error;
      this.options.onEvent?.({ kind: "rejected", detail: error });
    }
    if (this.call === call)
      call.write({
        typeUrl: PROXY_CONFIG_TYPE,
        versionInfo: this.version,
        responseNonce: res.nonce,
        errorDetail: error,
      });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
    this.client?.close();
  }
}
