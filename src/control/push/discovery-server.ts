// The control plane's side of the push stream. Every connected proxy gets its ProxyConfig, rendered for its
// identity, as named resources (discovery.proto): the first response of a stream carries them all, later ones
// only those whose version changed and the names of those gone, so an endpoint change costs each proxy that
// sees it one cluster.
//
// The work per proxy is kept independent of the mesh's size, because the renderer shares objects between
// proxies (one cluster list per outbound scope): each resource is serialized, compressed and framed once per
// object; each shared list is versioned once and diffed once per (acknowledged, new) pair of lists; a proxy's
// response is a concatenation of those cached bytes behind a small header (protobuf allows a message to be
// built from its fields' encodings), never a re-encoding. At most one response is in flight per proxy: a
// change that arrives meanwhile is sent when the proxy answers, diffed against what it acknowledged, so a slow
// or stuck proxy holds one response, not a queue. The bytes awaiting an answer are bounded across proxies (as
// istiod's PILOT_PUSH_THROTTLE bounds concurrent pushes): a full push to thousands of proxies does not hold
// every proxy's config in memory at once. ACK and NACK are recorded per proxy (proxy-status); a NACKed
// response leaves the proxy on what it had, which is what the next diff starts from.
import { createHash, randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { deflateRawSync } from "node:zlib";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { BOOTSTRAP, configLists } from "../../proxy/xds/config-resources.ts";
import {
  type DiscoveryRequestMessage,
  grpc,
  type NodeMessage,
  PROXY_CONFIG_TYPE,
  preSerializedDiscoveryService,
  serializeResponse,
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

type Stream = grpc.ServerDuplexStream<DiscoveryRequestMessage, Buffer>;

/** One resource serialized once: its version and its bytes as a DiscoveryResponse's `resources` field. */
interface Encoded {
  readonly version: string;
  readonly wire: Buffer;
}

/** Resources versioned and diffed together: the bootstrap, or one of the config's lists. */
interface Group {
  readonly byName: ReadonlyMap<string, Encoded>;
  readonly version: string;
  /** Every resource's bytes, concatenated on first use (a full-state response). */
  full: Buffer | undefined;
}

/** What a proxy runs or is sent: [bootstrap, listeners, route configurations, clusters]. */
type ResourceSet = readonly Group[];

/** Changed resources of one group against another, as response bytes, and the names gone. */
interface GroupDiff {
  readonly wire: Buffer;
  readonly count: number;
  readonly removed: readonly string[];
}

const EMPTY_GROUP: Group = { byName: new Map(), version: "", full: Buffer.alloc(0) };

interface Connection {
  readonly node: NodeMessage;
  readonly call: Stream;
  readonly status: ProxyStatus;
  nonce: string;
  /** When the change carried by the response in flight was made (performance.now()), for convergence time. */
  changeAt: number | undefined;
  /** The set the proxy acknowledged (what it runs); undefined before its first ACK on this stream. */
  known: ResourceSet | undefined;
  /** The set sent in the response in flight, if one is. */
  inFlight: ResourceSet | undefined;
  /** Bytes of the response in flight counted against the push budget (0 once released). */
  held: number;
  holdTimer: NodeJS.Timeout | undefined;
  /** A change arrived while a response was in flight or the budget was spent: send once possible. */
  dirty: boolean;
  /** When the change waiting to be sent was made. */
  dirtySince: number | undefined;
  /** Nothing sent on this stream yet: the next response is the full state. */
  fresh: boolean;
  readonly noncePrefix: string;
  sequence: number;
}

export interface DiscoveryServerOptions {
  /** The config for a proxy (throws: nothing is sent, the error is recorded). */
  readonly render: (node: NodeMessage) => ProxyConfig;
  /** Changes within this window are pushed together. Default 100 ms (istiod's PILOT_DEBOUNCE_AFTER). */
  readonly debounceMs?: number;
  /**
   * Bytes of responses awaiting an answer, across proxies, beyond which further sends wait for answers.
   * Default 64 MiB. One response is always allowed, whatever its size.
   */
  readonly maxInFlightBytes?: number;
  /** A response unanswered this long stops counting against the budget (a stuck proxy). Default 10 s. */
  readonly holdTimeoutMs?: number;
  /** Told of pushes, rejects and convergence (the pilot_* metrics). */
  readonly observer?: PushObserver;
}

/** Resources smaller than this are sent as JSON text: compressing them saves little and costs a header. */
const COMPRESS_FROM_BYTES = 512;

export class DiscoveryServer {
  private readonly server = new grpc.Server({ "grpc.max_receive_message_length": 1024 * 1024 });
  private readonly options: DiscoveryServerOptions;
  private readonly maxInFlightBytes: number;
  private readonly connections = new Set<Connection>();
  /** Connections with a change to send, waiting for the budget (insertion order: first come, first served). */
  private readonly waiting = new Set<Connection>();
  private inFlightBytes = 0;
  private debounce: NodeJS.Timeout | undefined;
  /** When the first change of the pending push was made. */
  private pendingSince = 0;
  /** Serialized resources by the object they were made from (configs share objects between proxies). */
  private encoded = new WeakMap<object, Encoded>();
  /** Groups by the list they were made from. */
  private groups = new WeakMap<object, Group>();
  /** Sets by the config they were made from. */
  private sets = new WeakMap<ProxyConfig, ResourceSet>();
  /** Diffs by (acknowledged group, new group). */
  private diffs = new WeakMap<Group, WeakMap<Group, GroupDiff>>();
  /** Responses sent (pilot_xds_pushes). */
  pushes = 0;
  /** NACKs received (pilot_total_xds_rejects). */
  rejects = 0;

  constructor(options: DiscoveryServerOptions) {
    this.options = options;
    this.maxInFlightBytes = options.maxInFlightBytes ?? 16 * 1024 * 1024;
    this.server.addService(preSerializedDiscoveryService(), {
      Stream: (call: Stream) => this.onStream(call),
    });
  }

  /** Serves another gRPC service on the same server and port (the CA's CertificateService). */
  addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    this.server.addService(service, implementation);
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
      return { status: { ...c.status }, version: setVersion(this.resourceSet(config)), config };
    }
    return undefined;
  }

  /** What the proxy `id` announced of itself, if it is connected. */
  node(id: string): NodeMessage | undefined {
    for (const c of this.connections) if (c.status.id === id) return c.node;
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

  private onStream(call: Stream): void {
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
          known: undefined,
          inFlight: undefined,
          held: 0,
          holdTimer: undefined,
          dirty: false,
          dirtySince: undefined,
          fresh: true,
          noncePrefix: `${randomBytes(6).toString("hex")}-`,
          sequence: 0,
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
      this.release(conn);
      if (conn.dirty) {
        conn.dirty = false;
        const since = conn.dirtySince;
        conn.dirtySince = undefined;
        this.send(conn, since);
      }
      this.drain();
    });
    const drop = () => {
      if (!conn || !this.connections.delete(conn)) return;
      this.waiting.delete(conn);
      this.release(conn);
      this.options.observer?.connected(-1);
      this.drain();
    };
    call.on("end", () => {
      drop();
      call.end();
    });
    call.on("error", drop);
    call.on("cancelled", drop);
  }

  /** Returns the budget `c`'s response in flight held. */
  private release(c: Connection): void {
    if (c.holdTimer) clearTimeout(c.holdTimer);
    c.holdTimer = undefined;
    this.inFlightBytes -= c.held;
    c.held = 0;
  }

  /** Sends to waiting proxies while the budget allows. */
  private drain(): void {
    for (const c of this.waiting) {
      if (this.inFlightBytes > 0 && this.inFlightBytes >= this.maxInFlightBytes) return;
      this.waiting.delete(c);
      c.dirty = false;
      const since = c.dirtySince;
      c.dirtySince = undefined;
      this.send(c, since);
    }
  }

  /** Renders and sends `c` what changed in its config; `changeAt` is when the change that caused this was made. */
  private send(c: Connection, changeAt: number | undefined): void {
    if (c.inFlight !== undefined || this.waiting.has(c)) {
      c.dirty = true;
      c.dirtySince ??= changeAt;
      return;
    }
    if (this.inFlightBytes > 0 && this.inFlightBytes >= this.maxInFlightBytes) {
      c.dirty = true;
      c.dirtySince ??= changeAt;
      this.waiting.add(c);
      return;
    }
    const started = performance.now();
    let set: ResourceSet;
    try {
      set = this.resourceSet(this.options.render(c.node));
    } catch (e) {
      c.status.nack = `not rendered: ${(e as Error).message}`;
      this.options.observer?.renderFailed(PROXY_CONFIG_TYPE);
      return;
    }
    const version = setVersion(set);
    if (c.fresh && version === c.status.acked) {
      // A proxy that reconnects running exactly this set (a restarted control plane): nothing to send.
      c.fresh = false;
      c.known = set;
      c.status.sent = version;
      return;
    }
    if (!c.fresh && version === c.status.sent && c.status.acked === version) return;
    const fullState = c.fresh;
    const pieces: Buffer[] = [];
    const removedResources: string[] = [];
    let count = 0;
    for (let i = 0; i < set.length; i++) {
      const g = set[i]!;
      if (fullState) {
        pieces.push(fullBytes(g));
        count += g.byName.size;
      } else {
        const d = this.diff(c.known?.[i] ?? EMPTY_GROUP, g);
        if (d.count > 0) pieces.push(d.wire);
        count += d.count;
        removedResources.push(...d.removed);
      }
    }
    if (!fullState && count === 0 && removedResources.length === 0) {
      // What the proxy runs already: a change that did not reach it (or a NACKed one undone).
      c.status.sent = version;
      return;
    }
    // Unique per response on the stream, which is all a nonce must be; a counter costs nothing per push.
    c.nonce = `${c.noncePrefix}${(++c.sequence).toString(36)}`;
    c.status.sent = version;
    c.changeAt = changeAt;
    c.inFlight = set;
    c.fresh = false;
    this.pushes++;
    const header = serializeResponse({
      typeUrl: PROXY_CONFIG_TYPE,
      versionInfo: version,
      nonce: c.nonce,
      removedResources,
      fullState,
    });
    const bytes = Buffer.concat([header, ...pieces]);
    c.held = bytes.length;
    this.inFlightBytes += c.held;
    c.holdTimer = setTimeout(() => {
      // The proxy neither answers nor reads: its response stays in flight, but stops holding others back.
      this.release(c);
      this.drain();
    }, this.options.holdTimeoutMs ?? 10_000);
    c.holdTimer.unref();
    c.call.write(bytes);
    this.options.observer?.pushed(PROXY_CONFIG_TYPE, (performance.now() - started) / 1000, bytes.length);
  }

  /**
   * A config as groups, each made once per list object (the renderer shares lists between proxies), once per
   * config object, and the bootstrap once per node object when that is all it holds.
   */
  private resourceSet(config: ProxyConfig): ResourceSet {
    const cached = this.sets.get(config);
    if (cached !== undefined) return cached;
    const { bootstrap, lists } = configLists(config);
    const keys = Object.keys(bootstrap);
    const nodeOnly = keys.length === 1 && keys[0] === "node" && config.node !== undefined;
    let head = nodeOnly ? this.groups.get(config.node!) : undefined;
    if (head === undefined) {
      head = this.group([[BOOTSTRAP, bootstrap]]);
      if (nodeOnly) this.groups.set(config.node!, head);
    }
    const set: Group[] = [head];
    for (const list of lists) {
      let g = this.groups.get(list.items);
      if (g === undefined) {
        g = this.group(list.items.map((item) => [list.prefix + item.name, item]));
        this.groups.set(list.items, g);
      }
      set.push(g);
    }
    this.sets.set(config, set);
    return set;
  }

  private group(parts: ReadonlyArray<readonly [string, object]>): Group {
    const byName = new Map<string, Encoded>();
    const h = createHash("sha256");
    for (const [name, part] of parts) {
      let e = this.encoded.get(part);
      if (e === undefined) {
        e = encodeResource(name, part);
        this.encoded.set(part, e);
      }
      byName.set(name, e);
      h.update(`${name}\u0000${e.version}\n`);
    }
    return { byName, version: h.digest("hex").slice(0, 16), full: undefined };
  }

  /** What `to` changes against `from`, computed once per pair. */
  private diff(from: Group, to: Group): GroupDiff {
    let byTo = this.diffs.get(from);
    if (byTo === undefined) {
      byTo = new WeakMap();
      this.diffs.set(from, byTo);
    }
    let d = byTo.get(to);
    if (d !== undefined) return d;
    const changed: Buffer[] = [];
    const removed: string[] = [];
    if (from !== to) {
      for (const [name, e] of to.byName)
        if (from.byName.get(name)?.version !== e.version) changed.push(e.wire);
      for (const name of from.byName.keys()) if (!to.byName.has(name)) removed.push(name);
    }
    d = { wire: concatOwned(changed), count: changed.length, removed };
    byTo.set(to, d);
    return d;
  }

  async stop(): Promise<void> {
    if (this.debounce) clearTimeout(this.debounce);
    for (const c of this.connections) {
      this.release(c);
      c.call.end();
    }
    this.waiting.clear();
    // Proxies may hold their half of a stream open; after a moment they are cut (they reconnect elsewhere).
    await Promise.race([
      new Promise<void>((r) => this.server.tryShutdown(() => r())),
      new Promise<void>((r) => setTimeout(r, 500).unref()),
    ]);
    this.server.forceShutdown();
    for (const c of this.connections) if (this.connections.delete(c)) this.options.observer?.connected(-1);
  }
}

/** A resource as a DiscoveryResponse `resources` field: JSON, compressed when that pays. */
function encodeResource(name: string, part: object): Encoded {
  const json = Buffer.from(JSON.stringify(part));
  const version = createHash("sha256").update(json).digest("hex").slice(0, 16);
  let body = json;
  let encoding = "";
  if (json.length >= COMPRESS_FROM_BYTES) {
    const deflated = deflateRawSync(json);
    if (deflated.length < json.length) {
      body = deflated;
      encoding = "deflate";
    }
  }
  return {
    version,
    wire: concatOwned([serializeResponse({ resources: [{ name, version, json: body, encoding }] })]),
  };
}

/**
 * Buffers concatenated into memory of their own. Small Buffers are slices of shared 8-64 KiB slabs, and one
 * long-lived slice keeps its whole slab alive: cached resources made from pooled slices held hundreds of MB of
 * mostly dead slabs at 1,000 services (bench:control-plane).
 */
function concatOwned(parts: readonly Buffer[]): Buffer {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = Buffer.allocUnsafeSlow(length);
  let at = 0;
  for (const p of parts) at += p.copy(out, at);
  return out;
}

function fullBytes(g: Group): Buffer {
  g.full ??= concatOwned([...g.byName.values()].map((e) => e.wire));
  return g.full;
}

/** The version of a set of resources: a digest of every group's, so equal sets have equal versions. */
function setVersion(set: ResourceSet): string {
  const h = createHash("sha256");
  for (const g of set) h.update(`${g.version}\n`);
  return h.digest("hex").slice(0, 16);
}
