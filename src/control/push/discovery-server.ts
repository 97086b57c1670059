// The control plane's side of the push stream. Every connected proxy gets its ProxyConfig, rendered for its
// identity, as named resources (discovery.proto): the first response of a stream carries them all, later ones
// only those whose version changed and the names of those gone, so an endpoint change costs each proxy that
// sees it one cluster. Each resource is serialized and digested once however many proxies share it (cached by
// object: the renderer shares scopes between proxies). At most one response is in flight per proxy: a change
// that arrives meanwhile is sent when the proxy answers, diffed against what it acknowledged, so a slow or
// stuck proxy holds one response, not a queue. ACK and NACK are recorded per proxy (proxy-status); a NACKed
// response leaves the proxy on what it had, which is what the next diff starts from.
import { createHash, randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { splitConfig } from "../../proxy/xds/config-resources.ts";
import {
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  discoveryPackage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
  type ResourceMessage,
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
  /** Resource name -> version the proxy acknowledged (what it runs). */
  known: Map<string, string>;
  /** The set sent in the response in flight, if one is. */
  inFlight: Map<string, string> | undefined;
  /** A change arrived while a response was in flight: send again once it is answered. */
  dirty: boolean;
  /** When the change waiting behind the response in flight was made. */
  dirtySince: number | undefined;
  /** Nothing sent on this stream yet: the next response is the full state. */
  fresh: boolean;
}

/** A resource serialized once: its JSON and version. */
interface Encoded {
  readonly json: Buffer;
  readonly version: string;
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
  /** Serialized resources by the object they were made from (configs share objects between proxies). */
  private encoded = new WeakMap<object, Encoded>();
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
      return { status: { ...c.status }, version: setVersion(this.encode(config)), config };
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
          known: new Map(),
          inFlight: undefined,
          dirty: false,
          dirtySince: undefined,
          fresh: true,
        };
        this.connections.add(conn);
        this.options.observer?.connected(1);
        this.send(conn, undefined);
        return;
      }
      if (req.responseNonce !== conn.nonce || conn.inFlight === undefined) return; // not the response in flight
      if (req.errorDetail) {
        this.rejects++;
        this.options.observer?.rejected(PROXY_CONFIG_TYPE);
        conn.status.nack = req.errorDetail.slice(0, 4096);
      } else {
        conn.status.nack = "";
        conn.status.acked = req.versionInfo;
        conn.known = conn.inFlight;
        if (conn.changeAt !== undefined)
          this.options.observer?.converged((performance.now() - conn.changeAt) / 1000);
      }
      conn.inFlight = undefined;
      conn.changeAt = undefined;
      if (conn.dirty) {
        conn.dirty = false;
        const since = conn.dirtySince;
        conn.dirtySince = undefined;
        this.send(conn, since);
      }
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

  /** Renders and sends `c` what changed in its config; `changeAt` is when the change that caused this was made. */
  private send(c: Connection, changeAt: number | undefined): void {
    if (c.inFlight !== undefined) {
      c.dirty = true;
      c.dirtySince ??= changeAt;
      return;
    }
    const started = performance.now();
    let parts: Array<[string, Encoded]>;
    try {
      parts = this.encode(this.options.render(c.node));
    } catch (e) {
      c.status.nack = `not rendered: ${(e as Error).message}`;
      this.options.observer?.renderFailed(PROXY_CONFIG_TYPE);
      return;
    }
    const version = setVersion(parts);
    const current = new Map(parts.map(([name, e]) => [name, e.version]));
    if (c.fresh && version === c.status.acked) {
      // A proxy that reconnects running exactly this set (a restarted control plane): nothing to send.
      c.fresh = false;
      c.known = current;
      c.status.sent = version;
      return;
    }
    if (!c.fresh && version === c.status.sent && c.status.acked === version) return;
    const resources: ResourceMessage[] = [];
    for (const [name, e] of parts)
      if (c.fresh || c.known.get(name) !== e.version)
        resources.push({ name, version: e.version, json: e.json });
    const removedResources = c.fresh ? [] : [...c.known.keys()].filter((n) => !current.has(n));
    if (!c.fresh && resources.length === 0 && removedResources.length === 0) {
      // What the proxy runs already: a change that did not reach it (or a NACKed one undone).
      c.status.sent = version;
      return;
    }
    c.nonce = randomBytes(8).toString("hex");
    c.status.sent = version;
    c.changeAt = changeAt;
    c.inFlight = current;
    const fullState = c.fresh;
    c.fresh = false;
    this.pushes++;
    c.call.write({
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: version,
      nonce: c.nonce,
      resources,
      removedResources,
      fullState,
    });
    let bytes = 0;
    for (const r of resources) bytes += r.json.length;
    this.options.observer?.pushed(PROXY_CONFIG_TYPE, (performance.now() - started) / 1000, bytes);
  }

  /** A config's resources, each serialized once per object. */
  private encode(config: ProxyConfig): Array<[string, Encoded]> {
    return splitConfig(config).map(([name, part]) => {
      let e = this.encoded.get(part);
      if (e === undefined) {
        const json = JSON.stringify(part);
        e = { json: Buffer.from(json), version: digest(json) };
        this.encoded.set(part, e);
      }
      return [name, e];
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
    for (const c of this.connections) if (this.connections.delete(c)) this.options.observer?.connected(-1);
  }
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** The version of a set of resources: a digest of every name and version, so equal sets have equal versions. */
function setVersion(parts: ReadonlyArray<readonly [string, Encoded]>): string {
  const h = createHash("sha256");
  for (const [name, e] of parts) h.update(`${name}\u0000${e.version}\n`);
  return h.digest("hex").slice(0, 16);
}
