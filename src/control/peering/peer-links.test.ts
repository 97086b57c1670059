// PeerLinks over real gRPC and real mutual TLS on 127.0.0.1, with certificates from real CertificateAuthority
// instances (one root, an intermediate per cluster; a second root for the mismatched cases): snapshots both ways
// whichever side dials, one stream when both dial, refusals with their reasons on the sides that can see them,
// a gone peer kept while its gateway answers and withdrawn after the grace period, reconnection.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { CertificateAuthority } from "../ca/authority.ts";
import type { PeeringCredentials } from "./credentials.ts";
import type { PeerExport } from "./peer-export.ts";
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

const cleanups: (() => unknown)[] = [];
let caA: CertificateAuthority;
let credsA: PeeringCredentials;
let credsB: PeeringCredentials;
/** cluster-b's certificate from an intermediate of another root. */
let foreignB: PeeringCredentials;

before(async () => {
  const root = await newRoot();
  caA = await clusterCa(root, "cluster-a");
  credsA = await makePeeringCredentials(caA);
  credsB = await makePeeringCredentials(await clusterCa(root, "cluster-b"));
  foreignB = await makePeeringCredentials(await clusterCa(await newRoot(), "cluster-b"));
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups.length = 0;
});

const A = identity("cluster-a");
const B = identity("cluster-b");

const connected = (h: Harness, cluster: string) => h.linkStatus(cluster)?.state === "connected";
const addresses = (exp: PeerExport | undefined) => exp?.instances.map((i) => i.address) ?? [];

test("A listens, B dials A: snapshots flow both ways, changes on either side reach the other", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  const b = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address!, network: "net-cluster-a" }],
    {},
    cleanups,
  );
  await waitFor(
    () => a.peer("cluster-b") !== undefined && b.peer("cluster-a") !== undefined,
    "both exports",
    () => [a.links.status(), b.links.status(), a.logs, b.logs],
  );
  assert.deepEqual(addresses(a.peer("cluster-b")), ["10.0.0.1"]);
  assert.deepEqual(addresses(b.peer("cluster-a")), ["10.0.0.1"]);
  // Received instances are tagged with the peer's cluster, network and locality.
  const inst = b.peer("cluster-a")!.instances[0]!;
  assert.equal(inst.cluster, "cluster-a");
  assert.equal(inst.network, "net-cluster-a");
  assert.equal(inst.locality, "eu/zone-1");

  await waitFor(() => a.linkStatus("cluster-b")?.lastSyncSent !== undefined, "A's snapshot acknowledged");
  await waitFor(() => b.linkStatus("cluster-a")?.lastSyncSent !== undefined, "B's snapshot acknowledged");
  const sa = a.linkStatus("cluster-b")!;
  assert.equal(sa.state, "connected");
  assert.equal(sa.direction, "accept");
  assert.equal(sa.network, "net-cluster-b");
  assert.equal(sa.services, 1);
  assert.equal(sa.endpoints, 1);
  assert.ok(sa.lastSyncReceived instanceof Date);
  assert.equal(sa.lastError, undefined);
  const sb = b.linkStatus("cluster-a")!;
  assert.equal(sb.state, "connected");
  assert.equal(sb.direction, "dial");
  assert.equal(sb.address, a.links.address);

  // A change on A reaches B, and one on B reaches A; several changes in a row travel as one snapshot.
  a.current = exportOf(A, ["10.0.0.1", "10.0.0.2"]);
  a.links.exportChanged();
  a.current = exportOf(A, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
  a.links.exportChanged();
  await waitFor(
    () => addresses(b.peer("cluster-a")).length === 3,
    "A's change at B",
    () => b.events,
  );
  assert.equal(b.events.filter((e) => e.cluster === "cluster-a").length, 2, "one snapshot for both changes");
  b.current = exportOf(B, ["10.1.0.9"]);
  b.links.exportChanged();
  await waitFor(() => addresses(a.peer("cluster-b"))[0] === "10.1.0.9", "B's change at A");
  // An unchanged export sends nothing.
  b.links.exportChanged();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(a.events.length, 2);

  await b.links.stop();
  await a.links.stop();
});

test("both sides dial each other: one stream is kept, the one the smaller cluster dialled", async () => {
  const a = await startLinks(A, credsA, [], { listen: "127.0.0.1:0" }, cleanups);
  const b = await startLinks(B, credsB, [], { listen: "127.0.0.1:0" }, cleanups);
  // Each dial goes through a relay that holds its bytes until both dials are under way, so that both
  // streams really come up and each side has to choose.
  const toA = await relay(a.links.address!, { held: true });
  const toB = await relay(b.links.address!, { held: true });
  cleanups.push(
    () => toA.close(),
    () => toB.close(),
  );
  a.links.setLinks([{ name: "to-b", cluster: "cluster-b", address: toB.address }]);
  b.links.setLinks([{ name: "to-a", cluster: "cluster-a", address: toA.address }]);
  await waitFor(() => toA.connections > 0 && toB.connections > 0, "both dials under way");
  toA.release();
  toB.release();
  await waitFor(
    () => a.peer("cluster-b") !== undefined && b.peer("cluster-a") !== undefined,
    "both exports",
    () => [a.links.status(), b.links.status()],
  );
  // Settled: cluster-a < cluster-b, so the stream A dialled carries the link on both sides.
  await waitFor(
    () =>
      a.linkStatus("cluster-b")?.direction === "dial" && b.linkStatus("cluster-a")?.direction === "accept",
    "the stream dialled by cluster-a",
    () => [a.links.status(), b.links.status(), a.logs, b.logs],
  );
  await new Promise((r) => setTimeout(r, 500));
  for (const [h, peer] of [
    [a, "cluster-b"],
    [b, "cluster-a"],
  ] as const) {
    const st = h.linkStatus(peer)!;
    assert.equal(st.state, "connected");
    assert.equal(st.lastError, undefined);
    // Both streams were verified, one was closed as the duplicate, and the link never went down for it.
    assert.equal(h.logs.filter((l) => /two streams; keeping the one/.test(l)).length, 1, h.logs.join(""));
    assert.deepEqual(
      h.logs.filter((l) => /lost cluster/.test(l)),
      [],
    );
    assert.ok(h.events.every((e) => e.exp !== undefined));
  }
  assert.ok(a.logs.some((l) => /keeping the one we dialled/.test(l)));
  assert.ok(b.logs.some((l) => /keeping the one it dialled/.test(l)));
  // A change still flows both ways over the kept stream.
  b.current = exportOf(B, ["10.1.0.7"]);
  b.links.exportChanged();
  await waitFor(() => addresses(a.peer("cluster-b"))[0] === "10.1.0.7", "B's change at A");
  a.current = exportOf(A, ["10.0.0.7"]);
  a.links.exportChanged();
  await waitFor(() => addresses(b.peer("cluster-a"))[0] === "10.0.0.7", "A's change at B");
  await b.links.stop();
  await a.links.stop();
});

test("B private with no listen address, A's link to B without one: B dials, both sides sync", async () => {
  const privateB = identity("cluster-b", { private: true });
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  assert.equal(a.linkStatus("cluster-b")?.state, "connecting");
  const b = await startLinks(
    privateB,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  assert.equal(b.links.address, undefined);
  await waitFor(
    () => a.peer("cluster-b") !== undefined && b.peer("cluster-a") !== undefined,
    "both exports",
    () => [a.links.status(), b.links.status()],
  );
  assert.equal(a.peer("cluster-b")!.private, true);
  assert.deepEqual(a.peer("cluster-b")!.gateways, []);
  const sa = a.linkStatus("cluster-b")!;
  assert.equal(sa.state, "connected");
  assert.equal(sa.direction, "accept");
  assert.match(sa.address ?? "", /127\.0\.0\.1/);
  await waitFor(() => b.linkStatus("cluster-a")?.lastSyncSent !== undefined, "B's snapshot acknowledged");
  await waitFor(() => a.linkStatus("cluster-b")?.lastSyncSent !== undefined, "A's snapshot acknowledged");
  await b.links.stop();
  await a.links.stop();
});

test("mismatched roots are refused with the reason; nothing is exchanged", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  // B's chain goes up to another root, and B trusts only that root: B refuses A's certificate in the handshake
  // (A sees nothing of it: the dialler aborts before A has a stream to look at).
  const b = await startLinks(
    B,
    foreignB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => b.linkStatus("cluster-a")?.state === "refused",
    "B refused",
    () => b.links.status(),
  );
  assert.match(
    b.linkStatus("cluster-a")!.lastError ?? "",
    /^certificate signed by unknown authority: .*\((self[- ]signed certificate in certificate chain|unable to get local issuer certificate)\)$/,
  );
  assert.ok(
    b.logs.some((l) => /refused: certificate signed by unknown authority/.test(l)),
    b.logs.join(""),
  );
  // Retries with backoff log the same failure once.
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(b.logs.filter((l) => /unknown authority/.test(l)).length, 1);
  await b.links.stop();

  // Now B also trusts A's root, so B accepts A; A still refuses B's certificate, and says so on both sides.
  const trusting = { ...foreignB, roots: [...foreignB.roots, ...credsA.roots] };
  const b2 = await startLinks(
    B,
    trusting,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => a.linkStatus("cluster-b")?.state === "refused",
    "A refused B",
    () => [a.links.status(), a.logs],
  );
  assert.match(
    a.linkStatus("cluster-b")!.lastError ?? "",
    /refused a dial from .* claiming to be cluster "cluster-b": its certificate does not chain to the trust bundle/,
  );
  assert.ok(a.links.refusals().some((r) => r.cluster === "cluster-b" && /does not chain/.test(r.reason)));
  await waitFor(
    () => b2.linkStatus("cluster-a")?.state === "refused",
    "B2 refused",
    () => b2.links.status(),
  );
  assert.match(
    b2.linkStatus("cluster-a")!.lastError ?? "",
    /cluster "cluster-a" refused the peer .*does not chain/,
  );
  assert.equal(a.events.length, 0);
  assert.equal(b.events.length + b2.events.length, 0);
  await b2.links.stop();
  await a.links.stop();
});

test("a peer is accepted only as a cluster a link names, and only with the control plane's identity", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  // B claims a cluster A has no link for.
  const x = await startLinks(
    identity("cluster-x"),
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => x.linkStatus("cluster-a")?.state === "refused",
    "X refused",
    () => x.links.status(),
  );
  assert.match(
    x.linkStatus("cluster-a")!.lastError ?? "",
    /cluster "cluster-a" has no MeshLink for cluster "cluster-x"/,
  );
  assert.ok(a.links.refusals().some((r) => r.cluster === "cluster-x" && /no MeshLink/.test(r.reason)));
  assert.ok(
    a.logs.some((l) => /refused the peer at .*no MeshLink for cluster "cluster-x"/.test(l)),
    a.logs.join(""),
  );
  await x.links.stop();

  // B dials A's address believing it is cluster-c: the control plane there says it is cluster-a.
  const c = await startLinks(
    B,
    credsB,
    [{ name: "to-c", cluster: "cluster-c", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => c.linkStatus("cluster-c")?.state === "refused",
    "wrong cluster refused",
    () => c.links.status(),
  );
  assert.match(
    c.linkStatus("cluster-c")!.lastError ?? "",
    /dialled .* for cluster "cluster-c", but the control plane there is cluster "cluster-a"/,
  );
  await c.links.stop();

  // The network a link expects is checked against the peer's Hello.
  const n = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address!, network: "net-elsewhere" }],
    {},
    cleanups,
  );
  await waitFor(
    () => n.linkStatus("cluster-a")?.state === "refused",
    "wrong network refused",
    () => n.links.status(),
  );
  assert.match(
    n.linkStatus("cluster-a")!.lastError ?? "",
    /is on network "net-cluster-a", but link to-a .* expects network "net-elsewhere"/,
  );
  await n.links.stop();

  // A workload's certificate from the same CA is not a control plane's.
  const workload = await workloadCredentials(caA);
  const w = await startLinks(
    B,
    workload,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => w.linkStatus("cluster-a")?.state === "refused",
    "workload refused",
    () => w.links.status(),
  );
  assert.match(w.linkStatus("cluster-a")!.lastError ?? "", /sa\/cart, not the control plane's identity/);
  await w.links.stop();
  assert.equal(a.events.length, 0);
  await a.links.stop();
});

/** A workload's certificate (spiffe://TD/ns/shop/sa/cart) from `ca`, in the shape of peering credentials. */
async function workloadCredentials(ca: CertificateAuthority): Promise<PeeringCredentials> {
  const { EC_P256, generateEcKeyPair, privateKeyPem, x509 } = await import("../../proxy/identity/x509.ts");
  const keys = await generateEcKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.SubjectAlternativeNameExtension(
        [{ type: "url", value: `spiffe://${ca.trustDomain}/ns/shop/sa/cart` }],
        true,
      ),
    ],
  });
  const r = await ca.sign(csr.toString("pem"), { namespace: "shop", serviceAccount: "cart" });
  assert.ok(r.ok);
  return {
    key: await privateKeyPem(keys.privateKey),
    chain: r.certChain,
    roots: r.trustBundle,
    notAfter: r.notAfter,
  };
}

test("A stopped: B keeps A's export while A's gateway answers, withdraws it after the grace period, re-syncs when A is back", async () => {
  let alive = true;
  let lastYes = 0;
  const probed: unknown[] = [];
  const graceMs = 800;
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  a.current = exportOf(A, ["10.0.0.1"], [{ address: "127.0.0.2", port: 15443 }]);
  a.links.exportChanged();
  const address = a.links.address!;
  const b = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address }],
    {
      graceMs,
      probeIntervalMs: 100,
      probe: async (gateways) => {
        probed.push(gateways);
        if (alive) lastYes = Date.now();
        return alive;
      },
    },
    cleanups,
  );
  await waitFor(
    () => b.peer("cluster-a")?.gateways.length === 1,
    "A's export with its gateway at B",
    () => b.links.status(),
  );

  await a.links.stop();
  await waitFor(
    () => b.linkStatus("cluster-a")?.state === "down",
    "B sees A down",
    () => b.links.status(),
  );
  assert.match(b.linkStatus("cluster-a")!.lastError ?? "", /cluster "cluster-a" is stopping/);
  // Three grace periods with the gateway answering: kept.
  await new Promise((r) => setTimeout(r, 3 * graceMs));
  const kept = b.linkStatus("cluster-a")!;
  assert.equal(kept.state, "down");
  assert.equal(kept.services, 1);
  assert.equal(kept.endpoints, 1);
  assert.notEqual(b.peer("cluster-a"), undefined);
  assert.ok(probed.length >= 3, `probed ${probed.length} times`);
  assert.deepEqual(probed[0], [{ address: "127.0.0.2", port: 15443 }]);

  // The gateway stops answering: withdrawn once it has been silent for the grace period.
  alive = false;
  await waitFor(
    () => b.events.at(-1)?.cluster === "cluster-a" && b.events.at(-1)?.exp === undefined,
    "A withdrawn at B",
    () => [b.links.status(), b.logs],
  );
  assert.ok(
    b.events.at(-1)!.at - lastYes >= graceMs,
    "withdrawn a grace period after the last answer, not before",
  );
  const withdrawn = b.linkStatus("cluster-a")!;
  assert.equal(withdrawn.state, "withdrawn");
  assert.equal(withdrawn.services, 0);
  assert.ok(b.logs.some((l) => /cluster cluster-a withdrawn: its gateway has not answered/.test(l)));

  // A back on the same address: B's redial (with backoff) finds it and both sides sync again.
  const a2 = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: address },
    cleanups,
  );
  await waitFor(
    () =>
      connected(b, "cluster-a") && b.peer("cluster-a") !== undefined && a2.peer("cluster-b") !== undefined,
    "re-synced",
    () => [b.links.status(), a2.links.status()],
  );
  assert.equal(b.linkStatus("cluster-a")!.services, 1);
  await b.links.stop();
  await a2.links.stop();
});

test("without a probe (or gateways) a gone peer is withdrawn after the grace period", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0", graceMs: 300 },
    cleanups,
  );
  const b = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(() => b.peer("cluster-a") !== undefined && a.peer("cluster-b") !== undefined, "synced");
  await b.links.stop();
  // A sees the dialler go, keeps its export for the grace period, then withdraws it.
  await waitFor(
    () => a.linkStatus("cluster-b")?.state === "withdrawn",
    "withdrawn at A",
    () => a.links.status(),
  );
  assert.equal(a.events.at(-1)?.exp, undefined);
  assert.equal(a.linkStatus("cluster-b")?.direction, "accept");
  await a.links.stop();
});

test("a link removed at runtime withdraws its peer at once; a link added starts dialling", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  const b = await startLinks(B, credsB, [], {}, cleanups);
  assert.deepEqual(b.links.status(), []);
  b.links.setLinks([{ name: "to-a", cluster: "cluster-a", address: a.links.address! }]);
  await waitFor(() => b.peer("cluster-a") !== undefined && a.peer("cluster-b") !== undefined, "synced");
  assert.throws(
    () => b.links.setLinks([{ name: "x", cluster: "cluster-b" }]),
    /MeshLink links\[0\] \(x\): cluster: "cluster-b" is this control plane's own cluster/,
  );
  assert.equal(b.links.status().length, 1, "an invalid set of links changes nothing");
  a.links.setLinks([]);
  assert.equal(a.events.at(-1)?.exp, undefined, "withdrawn at once");
  await waitFor(() => b.linkStatus("cluster-a")?.state !== "connected", "B sees the stream closed");
  await a.links.stop();
  await b.links.stop();
});

test("a peer that stops answering (a frozen network path) is noticed by keepalive", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  const path = await relay(a.links.address!);
  cleanups.push(() => path.close());
  const b = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: path.address }],
    { keepalive: { timeMs: 300, timeoutMs: 300 } },
    cleanups,
  );
  await waitFor(() => b.peer("cluster-a") !== undefined, "synced");
  path.freeze();
  await waitFor(
    () => b.linkStatus("cluster-a")?.state === "down",
    "B sees A down",
    () => b.links.status(),
    10_000,
  );
  assert.equal(b.linkStatus("cluster-a")!.services, 1, "the export is kept for the grace period");
  await b.links.stop();
  await a.links.stop();
});

/**
 * A TCP relay to `target`. Held, it keeps what it receives until released (a slow path); frozen, it drops it
 * without closing anything (a network path gone silent).
 */
async function relay(
  target: string,
  options: { held?: boolean } = {},
): Promise<{
  address: string;
  connections: number;
  release(): void;
  freeze(): void;
  close(): Promise<void>;
}> {
  const net = await import("node:net");
  const host = target.slice(0, target.lastIndexOf(":"));
  const port = Number(target.slice(target.lastIndexOf(":") + 1));
  let mode: "held" | "open" | "frozen" = options.held ? "held" : "open";
  const heldBack: (() => void)[] = [];
  const sockets = new Set<import("node:net").Socket>();
  const server = net.createServer((down) => {
    r.connections++;
    const up = net.connect(port, host);
    sockets.add(down).add(up);
    for (const [from, to] of [
      [down, up],
      [up, down],
    ] as const) {
      from.on("data", (chunk) => {
        if (mode === "open") to.write(chunk);
        else if (mode === "held") heldBack.push(() => to.write(chunk));
      });
      from.on("error", () => {});
      from.on("close", () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const r = {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    connections: 0,
    release: () => {
      mode = "open";
      for (const write of heldBack.splice(0)) write();
    },
    freeze: () => {
      mode = "frozen";
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return r;
}

test("renewed credentials are presented from the next handshake on, and links keep working", async () => {
  const a = await startLinks(
    A,
    credsA,
    [{ name: "to-b", cluster: "cluster-b" }],
    { listen: "127.0.0.1:0" },
    cleanups,
  );
  const presented = async () => {
    const tls = await import("node:tls");
    const [host, port] = a.links.address!.split(":") as [string, string];
    return new Promise<string>((resolve, reject) => {
      const socket = tls.connect({
        host,
        port: Number(port),
        servername: "cluster-a.peer.isthmus",
        ALPNProtocols: ["h2"],
        ca: credsB.roots.join(""),
        key: credsB.key,
        cert: credsB.chain.join(""),
        checkServerIdentity: () => undefined,
      });
      socket.once("secureConnect", () => {
        resolve(socket.getPeerCertificate().serialNumber);
        socket.destroy();
      });
      socket.once("error", reject);
    });
  };
  const before = await presented();
  const renewed = await makePeeringCredentials(caA);
  a.links.setCredentials(renewed);
  const after = await presented();
  assert.notEqual(after, before);
  const { X509Certificate } = await import("node:crypto");
  assert.equal(after, new X509Certificate(renewed.chain[0]!).serialNumber);
  const b = await startLinks(
    B,
    credsB,
    [{ name: "to-a", cluster: "cluster-a", address: a.links.address! }],
    {},
    cleanups,
  );
  await waitFor(
    () => connected(b, "cluster-a") && a.peer("cluster-b") !== undefined,
    "synced with the renewed certificate",
  );
  await b.links.stop();
  await a.links.stop();
});
