// The strict check of a received export (besides the cases peer-snapshots.test.ts sends over the wire), the
// snapshot codec, and the checks on identities and links.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assertIdentity, assertLinks, parseHostPort } from "./identity.ts";
import { PEERING_LIMITS } from "./limits.ts";
import { checkPeerExport, type PeerExport, ServiceCheckCache } from "./peer-export.ts";
import { exportOf, identity } from "./peering-test-support.ts";
import { decodeSnapshot, encodeSnapshot, SnapshotTooLargeError } from "./snapshot-codec.ts";

const B = identity("west");
const EXPECT = { cluster: "west", network: "net-west", private: false };
const clone = (e: PeerExport) => JSON.parse(JSON.stringify(e)) as Record<string, unknown> & PeerExport;

test("an accepted export: instances tagged with the peer's cluster, network and locality where they name none", async () => {
  const e = clone(exportOf(B, ["10.0.0.1", "reviews.example.com"], [{ address: "192.0.2.1", port: 15443 }]));
  (e.instances as unknown as Record<string, unknown>[])[1] = {
    ...e.instances[1],
    network: "other-net",
    locality: "us/east",
    weight: 3,
    healthy: false,
    serviceAccount: "reviews",
  };
  const r = await checkPeerExport(e, EXPECT);
  assert.ok(r.ok, r.ok ? "" : `${r.field}: ${r.message}`);
  assert.deepEqual(r.export.instances[0], {
    host: "reviews.shop.svc.cluster.local",
    servicePort: 9080,
    address: "10.0.0.1",
    port: 9080,
    labels: { app: "reviews", version: "v1" },
    locality: "eu/zone-1",
    network: "net-west",
    cluster: "west",
  });
  assert.deepEqual(r.export.instances[1], {
    host: "reviews.shop.svc.cluster.local",
    servicePort: 9080,
    address: "reviews.example.com",
    port: 9080,
    labels: { app: "reviews", version: "v1" },
    locality: "us/east",
    serviceAccount: "reviews",
    network: "other-net",
    cluster: "west",
    weight: 3,
    healthy: false,
  });
  assert.deepEqual(r.export.gateways, [{ address: "192.0.2.1", port: 15443 }]);
});

test("refusals name the field", async () => {
  const base = () => clone(exportOf(B, ["10.0.0.1"]));
  const refused = async (e: unknown, expect = EXPECT) => {
    const r = await checkPeerExport(e, expect);
    assert.equal(r.ok, false);
    return r.ok ? "" : `${r.field}: ${r.message}`;
  };
  assert.match(await refused(null), /^\(export\): must be a map, not null/);
  assert.match(
    await refused({ ...base(), gateways: [{ address: "1.2.3.4", port: 1 }] }, { ...EXPECT, private: true }),
    /^private: false is not what the peer announced/,
  );
  const priv = { ...base(), private: true, gateways: [{ address: "1.2.3.4", port: 15443 }] };
  assert.match(
    await refused(priv, { ...EXPECT, private: true }),
    /^gateways: must be empty: a private cluster cannot be dialled/,
  );
  assert.match(
    await refused({ ...base(), tunnelAcceptors: "x" }),
    /^tunnelAcceptors: must be a list, not string "x"/,
  );
  assert.match(
    await refused({ ...base(), locality: "a/b/c/d" }),
    /^locality: "a\/b\/c\/d" is not a locality/,
  );
  const many = base();
  (many as { gateways: unknown }).gateways = Array.from({ length: PEERING_LIMITS.maxGateways + 1 }, () => ({
    address: "1.2.3.4",
    port: 1,
  }));
  assert.match(await refused(many), /^gateways: 65 entries; at most 64/);
  const w = base();
  (w.instances[0] as unknown as Record<string, unknown>).weight = 2 ** 32;
  assert.match(await refused(w), /^instances\[0\]\.weight: must be an integer 0\.\.4294967295/);
  const h = base();
  (h.instances[0] as unknown as Record<string, unknown>).healthy = "yes";
  assert.match(await refused(h), /^instances\[0\]\.healthy: must be a boolean/);
  const host = base();
  (host.instances[0] as unknown as Record<string, unknown>).host = "bad host";
  assert.match(await refused(host), /^instances\[0\]\.host: /);
  const proto = JSON.parse('{"__proto__": {"polluted": true}}');
  assert.match(await refused({ ...base(), ...proto }), /^__proto__: unknown field/);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const twice = base();
  (twice.services as object[]).push(twice.services[0]!);
  assert.match(await refused(twice), /^services\[1\]: Service shop\/reviews is exported twice/);
  const noNs = base();
  delete (noNs.services[0] as { metadata: Record<string, unknown> }).metadata.namespace;
  assert.match(await refused(noNs), /^services\[0\]\.metadata\.namespace: must be a string/);
  const se = base();
  (se.services as object[])[0] = {
    apiVersion: "networking.istio.io/v1",
    kind: "ServiceEntry",
    metadata: { name: "ext", namespace: "shop" },
    spec: {
      hosts: ["ext.example.com"],
      ports: [{ number: 443, name: "tls", protocol: "TLS" }],
      resolution: "BOGUS",
    },
  };
  assert.match(await refused(se), /^services\[0\]\.spec\.resolution: /);
});

test("services accepted once are not validated again while unchanged", async () => {
  const cache = new ServiceCheckCache();
  const e = clone(exportOf(B, ["10.0.0.1"]));
  assert.ok((await checkPeerExport(e, EXPECT, cache)).ok);
  assert.ok(cache.has(JSON.stringify(e.services[0])));
  // A later export with one more service: the new one is validated (and refused), the old one is not redone.
  const next = clone(e);
  (next.services as object[]).push({
    ...(e.services[0] as object),
    metadata: { name: "r2", namespace: "shop" },
    spec: { ports: "x" },
  });
  const r = await checkPeerExport(next, EXPECT, cache);
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.field, /^services\[1\]\.spec\.ports/);
});

test("snapshots: JSON below 64 KiB, deflated above; equal exports, equal versions; too large refused", async () => {
  const small = await encodeSnapshot(exportOf(B, ["10.0.0.1"]));
  assert.equal(small.message.encoding, "");
  assert.equal((await encodeSnapshot(exportOf(B, ["10.0.0.1"]))).message.version, small.message.version);
  const addrs = Array.from({ length: 2000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`);
  const large = await encodeSnapshot(exportOf(B, addrs));
  assert.equal(large.message.encoding, "deflate");
  assert.equal(large.instances, 2000);
  const back = await decodeSnapshot(large.message);
  assert.ok(back.ok);
  if (back.ok) assert.deepEqual(back.value, JSON.parse(JSON.stringify(exportOf(B, addrs))));
  assert.notEqual(large.message.version, small.message.version);
  // Incompressible and over 16 MiB: refused before sending.
  const huge = exportOf(B, ["10.0.0.1"]);
  const noise = (await import("node:crypto")).randomBytes(18 * 1024 * 1024).toString("base64");
  (huge.services[0] as { metadata: { annotations?: Record<string, string> } }).metadata.annotations = {
    noise,
  };
  await assert.rejects(encodeSnapshot(huge), SnapshotTooLargeError);
});

test("identities, links and addresses are checked with the field named", () => {
  assert.throws(
    () => assertIdentity({ ...identity("a"), cluster: "-bad" }),
    /peering identity: cluster: "-bad" is not a name/,
  );
  assert.throws(() => assertIdentity({ ...identity("a"), trustDomain: "Bad Domain" }), /trustDomain/);
  const self = identity("a");
  assert.throws(
    () => assertLinks(self, [{ name: "x", cluster: "b", address: "nohost" }]),
    /links\[0\] \(x\): address: "nohost" is not HOST:PORT/,
  );
  assert.throws(
    () => assertLinks(self, [{ name: "x", cluster: "b", address: "h:70000" }]),
    /port 70000 is out of range/,
  );
  assert.throws(
    () =>
      assertLinks(self, [
        { name: "x", cluster: "b" },
        { name: "y", cluster: "b" },
      ]),
    /links\[1\] \(y\): cluster: link "x" already names cluster "b"/,
  );
  assert.throws(
    () => assertLinks(self, [{ name: "x", cluster: "b", extra: 1 } as never]),
    /links\[0\] \(x\): extra: unknown field/,
  );
  assert.deepEqual(parseHostPort("[::1]:15012"), { host: "::1", port: 15012 });
  assert.deepEqual(parseHostPort("cp.west.example:15012"), { host: "cp.west.example", port: 15012 });
  assert.deepEqual(parseHostPort("0.0.0.0:0", true), { host: "0.0.0.0", port: 0 });
  assert.equal(typeof parseHostPort("0.0.0.0:0"), "string");
});
