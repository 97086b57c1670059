// A PeerLinks fed by a raw gRPC client that holds a valid cluster-b certificate and speaks the protocol
// by hand: malformed snapshots (wrong types, unknown fields, bad encodings, a deflate bomb, too many
// instances, a service the config validators refuse, random JSON and random mutations of a good export) are
// each refused with the field, acknowledged with the error, shown in the status, and never replace the last
// good export; protocol violations, undecodable protobuf and an oversized message end that stream only.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { deflateRawSync } from "node:zlib";
import fc from "fast-check";
import type { PeeringCredentials } from "./credentials.ts";
import { PEERING_LIMITS } from "./limits.ts";
import {
  grpc,
  type PeerClientStream,
  type PeerMessage,
  peerService,
  type SnapshotMessage,
} from "./peering-proto.ts";
import {
  clusterCa,
  exportOf,
  type Harness,
  identity,
  makePeeringCredentials,
  newRoot,
  startLinks,
  waitFor,
} from "./peering-test-support.ts";
import { encodeSnapshot } from "./snapshot-codec.ts";

const cleanups: (() => unknown)[] = [];
let credsA: PeeringCredentials;
let credsB: PeeringCredentials;
let a: Harness;

const A = identity("cluster-a");
const B = identity("cluster-b");
const HELLO_B = {
  protocolVersion: 1,
  cluster: "cluster-b",
  network: B.network,
  locality: "",
  private: false,
};

before(async () => {
  const root = await newRoot();
  credsA = await makePeeringCredentials(await clusterCa(root, "cluster-a"));
  credsB = await makePeeringCredentials(await clusterCa(root, "cluster-b"));
  a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A hand-driven client end of the PeerService. */
class RawPeer {
  readonly received: PeerMessage[] = [];
  readonly status: Promise<grpc.StatusObject>;
  private readonly client: grpc.Client;
  private readonly call: PeerClientStream;
  private waiters: (() => void)[] = [];

  constructor(address: string, creds: PeeringCredentials, serialize?: (m: unknown) => Buffer) {
    const Client = peerService();
    this.client = new Client(
      address,
      grpc.credentials.createSsl(
        Buffer.from(creds.roots.join("")),
        Buffer.from(creds.key),
        Buffer.from(creds.chain.join("")),
        { checkServerIdentity: () => undefined },
      ),
      {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.ssl_target_name_override": "cluster-a.peer.isthmus",
        "grpc.max_send_message_length": 64 * 1024 * 1024,
      },
    );
    const method = Client.service.Exchange!;
    this.call = this.client.makeBidiStreamRequest(
      method.path,
      serialize ?? (method.requestSerialize as (m: unknown) => Buffer),
      method.responseDeserialize as (b: Buffer) => PeerMessage,
    ) as PeerClientStream;
    this.call.on("data", (m: PeerMessage) => {
      this.received.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    this.call.on("error", () => {});
    this.status = new Promise((resolve) => this.call.on("status", resolve));
    cleanups.push(() => this.close());
  }

  write(m: unknown): void {
    this.call.write(m as PeerMessage);
  }

  /** The next received message of `kind` not taken yet. */
  async next(kind: "hello" | "snapshot" | "ack", ms = 10_000): Promise<PeerMessage> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.received.findIndex((m) => m.kind === kind);
      if (i >= 0) return this.received.splice(i, 1)[0]!;
      if (Date.now() > end)
        throw new Error(`no ${kind} within ${ms} ms; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Sends a snapshot and returns the error of its acknowledgement ("" when accepted). */
  async send(snapshot: SnapshotMessage): Promise<string> {
    this.write({ snapshot });
    const ack = (await this.next("ack")).ack!;
    assert.equal(ack.version, snapshot.version.slice(0, PEERING_LIMITS.maxVersionLength));
    return ack.error;
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

const json = (v: unknown, version = "v-test"): SnapshotMessage => ({
  version,
  payload: Buffer.from(JSON.stringify(v)),
  encoding: "",
});

const good = () =>
  JSON.parse(JSON.stringify(exportOf(B, ["10.1.0.1"]))) as Record<string, unknown> & {
    instances: Record<string, unknown>[];
    services: Record<string, unknown>[];
  };

test("malformed snapshots are refused with the field, the last good one is kept, the stream stays up", async () => {
  const raw = new RawPeer(a.links.address!, credsB);
  raw.write({ hello: HELLO_B });
  const hello = (await raw.next("hello")).hello!;
  assert.equal(hello.cluster, "cluster-a");
  const theirs = (await raw.next("snapshot")).snapshot!;
  raw.write({ ack: { version: theirs.version, error: "" } });
  await waitFor(() => a.linkStatus("cluster-b")?.lastSyncSent !== undefined, "A's snapshot acknowledged");

  assert.equal(await raw.send((await encodeSnapshot(exportOf(B, ["10.1.0.1"]))).message), "");
  await waitFor(() => a.peer("cluster-b") !== undefined, "the good export");
  const goodExport = a.peer("cluster-b");
  const eventsBefore = a.events.length;

  const big = good();
  big.instances = Array.from({ length: PEERING_LIMITS.maxInstances + 1 }, (_, i) => ({
    host: "reviews.shop.svc.cluster.local",
    servicePort: 9080,
    address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    port: 9080,
    labels: {},
  }));
  const mutate = (f: (e: ReturnType<typeof good>) => void) => {
    const e = good();
    f(e);
    return e;
  };
  const cases: [string, SnapshotMessage, RegExp][] = [
    [
      "not JSON",
      { version: "v1", payload: Buffer.from("{not json"), encoding: "" },
      /^snapshot payload: is not UTF-8 JSON/,
    ],
    [
      "not UTF-8",
      { version: "v2", payload: Buffer.from([0x7b, 0xff, 0x7d]), encoding: "" },
      /not UTF-8 JSON/,
    ],
    ["unknown encoding", { ...json(good()), version: "v3", encoding: "gzip" }, /^snapshot encoding: "gzip"/],
    [
      "garbage deflate",
      { version: "v4", payload: Buffer.from("not deflate at all"), encoding: "deflate" },
      /does not inflate/,
    ],
    [
      "a deflate bomb",
      {
        version: "v5",
        payload: deflateRawSync(Buffer.alloc(PEERING_LIMITS.maxPayloadJsonBytes + 1, 0x20)),
        encoding: "deflate",
      },
      /inflates to more than/,
    ],
    ["empty version", { ...json(good()), version: "" }, /^snapshot version:/],
    ["a list", json([1, 2]), /^\(export\): must be a map, not a list/],
    ["an unknown field", json(mutate((e) => (e.extra = 1))), /^extra: unknown field/],
    [
      "another cluster",
      json(mutate((e) => (e.cluster = "cluster-a"))),
      /^cluster: "cluster-a" is not the cluster the peer said/,
    ],
    ["another network", json(mutate((e) => (e.network = "elsewhere"))), /^network: /],
    ["private flipped", json(mutate((e) => (e.private = true))), /^private: /],
    [
      "a port out of range",
      json(mutate((e) => (e.instances[0]!.port = 70000))),
      /^instances\[0\]\.port: must be an integer 1\.\.65535/,
    ],
    ["a port as a string", json(mutate((e) => (e.instances[0]!.port = "80"))), /^instances\[0\]\.port: /],
    [
      "an unknown instance field",
      json(mutate((e) => (e.instances[0]!.zone = "a"))),
      /^instances\[0\]\.zone: unknown field/,
    ],
    [
      "a bad address",
      json(mutate((e) => (e.instances[0]!.address = "not an address"))),
      /^instances\[0\]\.address: /,
    ],
    [
      "a bad label",
      json(mutate((e) => (e.instances[0]!.labels = { "bad key!": "x" }))),
      /^instances\[0\]\.labels\["bad key!"\]/,
    ],
    [
      "an endpoint of another cluster",
      json(mutate((e) => (e.instances[0]!.cluster = "cluster-a"))),
      /^instances\[0\]\.cluster: /,
    ],
    [
      "a duplicate endpoint",
      json(mutate((e) => e.instances.push({ ...e.instances[0]! }))),
      /^instances\[1\]: 10\.1\.0\.1:9080 is listed twice/,
    ],
    [
      "too many instances",
      { ...(await encodeSnapshot(big as never)).message, version: "v6" },
      /^instances: 100001 entries; at most 100000/,
    ],
    [
      "a Deployment",
      json(mutate((e) => (e.services[0]!.kind = "Deployment"))),
      /^services\[0\]\.kind: .*not exported between clusters/,
    ],
    [
      "a Service field the schema does not know",
      json(mutate((e) => ((e.services[0]!.spec as Record<string, unknown>).portz = []))),
      /^services\[0\]\.spec\.portz: /,
    ],
    [
      "a Service port out of range",
      json(mutate((e) => ((e.services[0]!.spec as { ports: { port: number }[] }).ports[0]!.port = 0))),
      /^services\[0\]\.spec\.ports\[0\]\.port: /,
    ],
    [
      "metadata with a uid",
      json(mutate((e) => ((e.services[0]!.metadata as Record<string, unknown>).uid = "x"))),
      /^services\[0\]\.metadata\.uid: unknown field/,
    ],
    [
      "gateways of a wrong shape",
      json(mutate((e) => (e.gateways = [{ address: "1.2.3.4" }]))),
      /^gateways\[0\]\.port: /,
    ],
    [
      "deep nesting",
      json(
        mutate((e) => {
          let deep: Record<string, unknown> = {};
          const top = deep;
          for (let i = 0; i < 200; i++) deep = deep.x = {} as Record<string, unknown>;
          (e.services[0]!.spec as Record<string, unknown>).deep = top;
        }),
      ),
      /^services\[0\]\.spec\.deep(\.x)+: nested deeper than 64 levels/,
    ],
  ];
  for (const [what, snapshot, expected] of cases) {
    const error = await raw.send(snapshot);
    assert.match(error, expected, what);
    assert.match(
      a.linkStatus("cluster-b")!.lastError ?? "",
      /^snapshot .* from cluster "cluster-b" refused: /,
      what,
    );
  }
  assert.equal(a.events.length, eventsBefore, "no refused snapshot reached the registry");
  assert.equal(a.peer("cluster-b"), goodExport);
  assert.equal(a.linkStatus("cluster-b")!.state, "connected");
  assert.ok(a.logs.some((l) => /from cluster "cluster-b" refused: instances\[0\]\.port/.test(l)));

  // Random JSON, and the good export with one field replaced by a random value: every one is answered, none
  // crashes anything, and whatever is accepted is a valid export.
  const values = fc.sample(fc.jsonValue({ maxDepth: 4 }), { numRuns: 40, seed: 8 });
  const paths: ((e: ReturnType<typeof good>, v: unknown) => void)[] = [
    (e, v) => (e.gateways = v as never),
    (e, v) => (e.instances[0]!.labels = v),
    (e, v) => (e.instances[0]!.weight = v),
    (e, v) => (e.instances[0]!.healthy = v),
    (e, v) => (e.instances[0]!.locality = v),
    (e, v) => (e.services[0]!.spec = v),
    (e, v) => (e.services[0]!.metadata = v),
    (e, v) => (e.locality = v),
  ];
  let n = 0;
  for (const v of values) {
    const error = await raw.send(json(v, `random-${n++}`));
    assert.notEqual(error, "", `random JSON ${JSON.stringify(v)} accepted`);
    for (const set of paths) {
      const e = good();
      set(e, v);
      const answer = await raw.send(json(e, `mutated-${n++}`));
      assert.equal(typeof answer, "string");
    }
  }
  assert.equal(a.linkStatus("cluster-b")!.state, "connected");

  // A good snapshot after all that is accepted.
  assert.equal(await raw.send((await encodeSnapshot(exportOf(B, ["10.1.0.2"]))).message), "");
  await waitFor(() => a.peer("cluster-b")?.instances[0]?.address === "10.1.0.2", "the new good export");

  // An oversized message ends this stream; the last good export stays.
  raw.write({
    snapshot: { version: "huge", payload: Buffer.alloc(PEERING_LIMITS.maxMessageBytes + 1), encoding: "" },
  });
  const st = await raw.status;
  assert.equal(st.code, grpc.status.RESOURCE_EXHAUSTED, st.details);
  await waitFor(
    () => a.linkStatus("cluster-b")?.state === "down",
    "the stream gone at A",
    () => a.links.status(),
  );
  assert.equal(a.peer("cluster-b")?.instances[0]?.address, "10.1.0.2");
});

test("protocol violations and undecodable messages end the stream with a reason", async () => {
  // A snapshot before the Hello.
  const early = new RawPeer(a.links.address!, credsB);
  early.write({ snapshot: json(good()) });
  const st1 = await early.status;
  assert.equal(st1.code, grpc.status.INVALID_ARGUMENT);
  assert.match(st1.details, /the first message must be a Hello, not snapshot/);

  // A Hello of a protocol version this side does not speak.
  const future = new RawPeer(a.links.address!, credsB);
  future.write({ hello: { ...HELLO_B, protocolVersion: 7 } });
  const st2 = await future.status;
  assert.equal(st2.code, grpc.status.FAILED_PRECONDITION);
  assert.match(st2.details, /speaks peering protocol version 7; cluster-a speaks 1/);

  // An acknowledgement of a snapshot never sent.
  const liar = new RawPeer(a.links.address!, credsB);
  liar.write({ hello: HELLO_B });
  await liar.next("hello");
  await liar.next("snapshot");
  liar.write({ ack: { version: "never-sent", error: "" } });
  const st3 = await liar.status;
  assert.equal(st3.code, grpc.status.INVALID_ARGUMENT);
  assert.match(st3.details, /acknowledgement of snapshot "never-sent", which is not the one in flight/);

  // Bytes that are not a PeerMessage at all.
  const garbage = new RawPeer(a.links.address!, credsB, (m) => m as Buffer);
  garbage.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  const st4 = await garbage.status;
  assert.notEqual(st4.code, grpc.status.OK);

  // A still serves: a well-behaved peer syncs.
  const ok = new RawPeer(a.links.address!, credsB);
  ok.write({ hello: HELLO_B });
  await ok.next("hello");
  await ok.next("snapshot");
  assert.equal(await ok.send((await encodeSnapshot(exportOf(B, ["10.1.0.3"]))).message), "");
  await waitFor(() => a.peer("cluster-b")?.instances[0]?.address === "10.1.0.3", "synced again");
  ok.close();
});
