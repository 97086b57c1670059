import assert from "node:assert/strict";
import { test } from "node:test";
import {
  belongsToBlock,
  hubRuleset,
  isolatedAddress,
  isolatedClusterCidr,
  isolatedClusterIndex,
  layoutIsolation,
} from "./isolation-layout.ts";

test("cluster i of block 127.B owns 198.18.(16k+i).0/24, k = (B-20)/16", () => {
  assert.equal(isolatedClusterCidr(20, 0), "198.18.0.0/24");
  assert.equal(isolatedClusterCidr(20, 15), "198.18.15.0/24");
  assert.equal(isolatedClusterCidr(36, 0), "198.18.16.0/24");
  assert.equal(isolatedClusterCidr(228, 3), "198.18.211.0/24");
  assert.equal(isolatedClusterIndex(244, 15), 239);
  assert.equal(isolatedAddress(36, 2, 7), "198.18.18.7");
});

test("every /24 of every block is distinct", () => {
  const seen = new Set<string>();
  for (let base = 20; base <= 244; base += 16) {
    for (let i = 0; i < 16; i++) seen.add(isolatedClusterCidr(base, i));
  }
  assert.equal(seen.size, 15 * 16);
});

test("bad bases, indexes and hosts are errors naming them", () => {
  assert.throws(() => isolatedClusterCidr(21, 0), /base 21 is not one of 20, 36, \.\.\., 244/);
  assert.throws(() => isolatedClusterCidr(4, 0), /base 4/);
  assert.throws(() => isolatedClusterCidr(260, 0), /base 260/);
  assert.throws(() => isolatedClusterCidr(20, 16), /cluster index 16 is not 0\.\.15/);
  assert.throws(() => isolatedClusterCidr(20, 1.5), /cluster index 1.5/);
  assert.throws(() => isolatedAddress(20, 0, 0), /host 0 is not 1\.\.254/);
  assert.throws(() => isolatedAddress(20, 0, 255), /host 255/);
});

test("the layout: namespaces, link addresses and ranges of one block", () => {
  const layout = layoutIsolation({
    base: 36,
    clusters: [
      { name: "iks", index: 0, private: false },
      { name: "icp", index: 1, private: true },
    ],
  });
  assert.equal(layout.hubNamespace, "isthmus-36");
  assert.equal(layout.rootInterface, "isthmus-36");
  assert.equal(layout.podRange, "198.18.16.0/20");
  assert.equal(layout.linkRange, "198.19.1.0/24");
  assert.equal(layout.rootAddress, "198.19.1.254");
  assert.deepEqual(
    layout.clusters.map((c) => [c.namespace, c.cidr, c.hubInterface, c.hubAddress, c.linkAddress]),
    [
      ["isthmus-36-iks", "198.18.16.0/24", "c0", "198.19.1.1", "198.19.1.2"],
      ["isthmus-36-icp", "198.18.17.0/24", "c1", "198.19.1.5", "198.19.1.6"],
    ],
  );
  assert.ok(layout.rootInterface.length <= 15);
  assert.ok(belongsToBlock("isthmus-36-iks", 36));
  assert.ok(belongsToBlock("isthmus-36", 36));
  assert.ok(!belongsToBlock("isthmus-3", 36));
  assert.ok(!belongsToBlock("isthmus-36-iks", 20));
});

test("bad specs are refused", () => {
  const c = (name: string, index: number, priv = false) => ({ name, index, private: priv });
  assert.throws(() => layoutIsolation({ base: 20, clusters: [] }), /1\.\.16 clusters, not 0/);
  assert.throws(
    () => layoutIsolation({ base: 20, clusters: Array.from({ length: 17 }, (_, i) => c(`c${i}`, i % 16)) }),
    /not 17/,
  );
  assert.throws(() => layoutIsolation({ base: 20, clusters: [c("a", 0), c("a", 1)] }), /"a" appears twice/);
  assert.throws(
    () => layoutIsolation({ base: 20, clusters: [c("a", 0), c("b", 0)] }),
    /index 0 appears twice/,
  );
  assert.throws(() => layoutIsolation({ base: 20, clusters: [c("A_b", 0)] }), /"A_b" is not a DNS label/);
  assert.throws(() => layoutIsolation({ base: 20, clusters: [c("a/../x", 0)] }), /not a DNS label/);
});

test("the hub refuses new connections toward private clusters unless they come from the root namespace", () => {
  const rules = hubRuleset(
    layoutIsolation({
      base: 20,
      clusters: [
        { name: "a", index: 0, private: false },
        { name: "p", index: 1, private: true },
        { name: "q", index: 2, private: true },
      ],
    }),
  );
  const lines = rules.split("\n").map((l) => l.trim());
  const at = (rule: string) => {
    const i = lines.indexOf(rule);
    assert.ok(i >= 0, `missing: ${rule}\n${rules}`);
    return i;
  };
  assert.ok(at("type filter hook forward priority filter; policy drop;") >= 0);
  const established = at("ct state established,related accept");
  const root = at('iifname "root" accept');
  const reset = at('oifname { "c1", "c2" } meta l4proto tcp reject with tcp reset');
  const reject = at('oifname { "c1", "c2" } reject with icmpx type admin-prohibited');
  const clusters = at('iifname { "c0", "c1", "c2" } accept');
  assert.ok(established < root && root < reset && reset < reject && reject < clusters);

  const open = hubRuleset(layoutIsolation({ base: 20, clusters: [{ name: "a", index: 0, private: false }] }));
  assert.doesNotMatch(open, /reject/);
});
