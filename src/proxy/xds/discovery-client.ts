// The proxy's side of the push stream: connects to the control plane with its identity, merges each response's
// resources into those it holds (config-resources.ts), applies the assembled ProxyConfig through the proxy's
// usual lifecycle (validate -> provision -> swap) and answers ACK or NACK; a NACKed response changes nothing.
// Static stability: while the control plane is away the proxy keeps serving its last good config, and it
// reconnects with exponential backoff (100 ms to 5 s, jittered), announcing the version it runs so that an
// unchanged config is not sent again.
import { inflateRawSync } from "node:zlib";
import type { ProxyServer } from "../proxy.ts";
import { assembleConfig } from "./config-resources.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
  type ResourceMessage,
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

interface ResourceState {
  readonly version: string;
  readonly bytes: number;
  readonly value: unknown;
}

/** Largest config accepted from the stream (the proxy refuses a bigger one rather than parse it). */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export class DiscoveryClient {
  private readonly proxy: ProxyServer;
  private readonly options: DiscoveryClientOptions;
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<DiscoveryRequestMessage, DiscoveryResponseMessage> | undefined;
  private version = "";
  /** The resources of the applied config, by name. */
  private resources = new Map<string, ResourceState>();
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
      // HTTP/2's default 64 KiB window makes a large config crawl, a round trip per window (as istio-agent
      // raises it); the config size is bounded by max_receive_message_length anyway.
      "grpc-node.flow_control_window": 8 * 1024 * 1024,
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
    let next: Map<string, ResourceState> | undefined;
    if (res.typeUrl !== PROXY_CONFIG_TYPE) error = `unknown type ${JSON.stringify(res.typeUrl)}`;
    else {
      try {
        next = this.merge(res);
        const r = await this.proxy.apply(
          assembleConfig(new Map([...next].map(([n, s]) => [n, s.value]))) as Parameters<
            ProxyServer["apply"]
          >[0],
        );
        if (!r.ok) error = r.errors.slice(0, 20).join("; ");
      } catch (e) {
        error = (e as Error).message;
      }
    }
    if (error === "" && next !== undefined) this.resources = next;
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

  /**
   * What this proxy would hold after `res`: its current resources (none for a full state) with the response's
   * removed and added. Throws on a resource that is not JSON or a set beyond the size bound.
   */
  private merge(res: DiscoveryResponseMessage): Map<string, ResourceState> {
    const next = res.fullState ? new Map<string, ResourceState>() : new Map(this.resources);
    for (const name of res.removedResources) next.delete(name);
    for (const r of res.resources) {
      let value: unknown;
      const json = resourceJson(r);
      try {
        value = JSON.parse(json.toString("utf8"));
      } catch (e) {
        throw new Error(
          `resource ${JSON.stringify(r.name.slice(0, 200))} is not JSON: ${(e as Error).message}`,
        );
      }
      next.set(r.name, { version: r.version, bytes: json.length, value });
    }
    let total = 0;
    for (const s of next.values()) total += s.bytes;
    if (total > MAX_CONFIG_BYTES)
      throw new Error(`config of ${total} bytes is larger than ${MAX_CONFIG_BYTES}`);
    return next;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
    this.client?.close();
  }
}

/** A resource's JSON text, inflated if compressed; bounded, so a small message cannot expand without limit. */
function resourceJson(r: ResourceMessage): Buffer {
  if (r.encoding === "") return r.json;
  if (r.encoding !== "deflate")
    throw new Error(
      `resource ${JSON.stringify(r.name.slice(0, 200))}: unknown encoding ${JSON.stringify(r.encoding.slice(0, 50))}`,
    );
  try {
    return inflateRawSync(r.json, { maxOutputLength: MAX_CONFIG_BYTES });
  } catch (e) {
    throw new Error(
      `resource ${JSON.stringify(r.name.slice(0, 200))} does not inflate: ${(e as Error).message}`,
    );
  }
}
