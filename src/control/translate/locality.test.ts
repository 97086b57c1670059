// Locality load balancing against Istio's own cases. "Istio: X" names the subtest of TestApplyLocalitySetting
// in istio/istio pilot/pkg/networking/core/loadbalancer/loadbalancer_test.go whose endpoints, proxy and
// setting a row reproduces (its LocalityLbEndpoints become endpoints with that locality; its IstioEndpoints'
// network/cluster labels become the endpoints' network and cluster); other rows cite the code they follow.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type LocalityEndpoint,
  type LocalityLbSetting,
  type LocalityProxy,
  localityLb,
  readLocalityLbSetting,
  topologyLabels,
} from "./locality.ts";

const R1Z1S1 = "region1/zone1/subzone1";

/** Istio's buildFakeCluster: one endpoint per LocalityLbEndpoints, in its order. */
const fakeCluster: LocalityEndpoint[] = [
  R1Z1S1,
  R1Z1S1,
  "region1/zone1/subzone2",
  "region1/zone1/subzone3",
  "region1/zone2",
  "region2",
  "region3",
].map((locality) => ({ locality }));

/** Istio's buildWrappedLocalityLbEndpoints (addresses in comments). */
const wrapped: LocalityEndpoint[] = [
  { locality: R1Z1S1, network: "n1", cluster: "c1" }, // 1.1.1.1
  { locality: R1Z1S1, network: "n2", cluster: "c2", labels: { key: "value" } }, // 2.2.2.2
  { locality: "region2/zone2/subzone2", network: "n1", cluster: "c3", labels: { key: "value" } }, // 3.3.3.3
  { locality: "region2/zone2/subzone2", network: "n2", cluster: "c4", labels: { key: "value" } }, // 4.4.4.4
  { locality: "region3/zone3/subzone3", network: "n1", cluster: "c1", labels: { key: "value" } }, // 1.2.3.4
  { locality: "region3/zone3/subzone3", network: "n2", cluster: "c2", labels: { key: "value" } }, // 2.3.4.5
];

/** Istio's buildWrappedLocalityLbEndpointsForFailoverPriorityWithFailover, 1.1.1.1 ... 6.6.6.6. */
const withFailover: LocalityEndpoint[] = [
  { locality: R1Z1S1, network: "n1", cluster: "c1" },
  { locality: "region1/zone2/subzone2", network: "n2", cluster: "c2", labels: { key: "value" } },
  { locality: "region2/zone2/subzone2", network: "n1", cluster: "c3", labels: { key: "value" } },
  { locality: "region3/zone3/subzone3", network: "n2", cluster: "c4", labels: { key: "value" } },
  { locality: "region2/zone2/subzone2", network: "n2", cluster: "c2" },
  { locality: "region3/zone3/subzone3", network: "n1", cluster: "c6", labels: { key: "value" } },
];

const NETWORK = "topology.istio.io/network";
const CLUSTER = "topology.istio.io/cluster";

interface PriorityRow {
  readonly name: string;
  readonly proxy: LocalityProxy;
  readonly endpoints: readonly LocalityEndpoint[];
  readonly setting: LocalityLbSetting | undefined;
  readonly outlier: boolean;
  readonly priorities: readonly number[];
}

const priorityRows: PriorityRow[] = [
  {
    name: "Istio: Failover: all priorities",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: { failover: [{ from: "region1", to: "region2" }] },
    outlier: true,
    priorities: [0, 0, 1, 1, 2, 3, 4],
  },
  {
    name: "Istio: Failover: priorities with gaps (renumbered without gaps)",
    proxy: { locality: R1Z1S1 },
    endpoints: ["region1/zone1/subzone2", "region2/zone1/subzone2", "region2/zone1/subzone2"].map(
      (locality) => ({
        locality,
      }),
    ),
    setting: { failover: [{ from: "region1", to: "region2" }] },
    outlier: true,
    priorities: [0, 1, 1],
  },
  {
    name: "Istio: Failover: priorities with some nil localities",
    proxy: { locality: R1Z1S1 },
    endpoints: [{ locality: "region1/zone1/subzone2" }, {}, { locality: "region2/zone1/subzone2" }],
    setting: { failover: [{ from: "region1", to: "region2" }] },
    outlier: true,
    priorities: [0, 2, 1],
  },
  {
    name: "Istio: Failover: with locality lb disabled",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: { enabled: false, failover: [{ from: "region1", to: "region2" }] },
    outlier: true,
    priorities: [0, 0, 0, 0, 0, 0, 0],
  },
  {
    // pkg/config/mesh/mesh.go DefaultMeshConfig: LocalityLbSetting{Enabled: true}; endpoint_builder.go: "enabling
    // outlier detection in a DestinationRule will automatically activate locality LB failover".
    name: "no setting: Istio's default mesh setting gives the locality levels with outlier detection",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: undefined,
    outlier: true,
    priorities: [0, 0, 1, 1, 2, 3, 3],
  },
  {
    name: "enabled unset and nothing else: the same locality levels",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: {},
    outlier: true,
    priorities: [0, 0, 1, 1, 2, 3, 3],
  },
  {
    // ApplyLocalityLoadBalancer: failover only `else if enableFailover` (outlier detection set).
    name: "no outlier detection: no failover levels",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: { failover: [{ from: "region1", to: "region2" }] },
    outlier: false,
    priorities: [0, 0, 0, 0, 0, 0, 0],
  },
  {
    name: "no outlier detection: no failoverPriority levels either",
    proxy: { network: "n1", cluster: "test" },
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK, CLUSTER] },
    outlier: false,
    priorities: [0, 0, 0, 0, 0, 0],
  },
  {
    // applyLocalityFailover compares strings: an empty proxy locality matches only empty endpoint localities.
    name: "a proxy without locality: endpoints without locality first",
    proxy: {},
    endpoints: [{ locality: "region1" }, {}, { locality: "region2/zone1" }],
    setting: undefined,
    outlier: true,
    priorities: [1, 0, 1],
  },
  {
    name: "Istio: FailoverPriority: match none label",
    proxy: { locality: R1Z1S1, network: "test", cluster: "test" },
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK, CLUSTER] },
    outlier: true,
    priorities: [0, 0, 0, 0, 0, 0],
  },
  {
    name: "Istio: FailoverPriority: match network label",
    proxy: { locality: R1Z1S1, network: "n1", cluster: "test" },
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK, CLUSTER] },
    outlier: true,
    priorities: [0, 1, 0, 1, 0, 1],
  },
  {
    name: "Istio: FailoverPriority: not match the first n label (network preferred, not required)",
    proxy: { locality: R1Z1S1, network: "test", cluster: "c1" },
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK, CLUSTER] },
    outlier: true,
    priorities: [0, 1, 1, 1, 0, 1],
  },
  {
    name: "Istio: FailoverPriority: match all labels",
    proxy: { locality: R1Z1S1, network: "n2", cluster: "c2", labels: { key: "value" } },
    endpoints: wrapped,
    setting: { failoverPriority: ["key", NETWORK, CLUSTER] },
    outlier: true,
    priorities: [3, 0, 2, 1, 2, 0],
  },
  {
    name: "Istio: FailoverPriority: priority assignment as per the overridden value",
    proxy: { locality: R1Z1S1, network: "n2", cluster: "test" },
    endpoints: wrapped,
    setting: { failoverPriority: [`${NETWORK}=n1`] },
    outlier: true,
    priorities: [0, 1, 0, 1, 0, 1],
  },
  {
    name: "Istio: FailoverPriority: no endpoints with overridden value",
    proxy: { locality: R1Z1S1, network: "n1", cluster: "test" },
    endpoints: wrapped,
    setting: { failoverPriority: [`${NETWORK}=n3`] },
    outlier: true,
    priorities: [0, 0, 0, 0, 0, 0],
  },
  {
    // Istio's row uses plain "region"/"zone" labels; the topology labels from the endpoints' localities
    // (AugmentLabels) give the same levels.
    name: "Istio: FailoverPriority including locality",
    proxy: { locality: "region2/zone2", network: "n1" },
    endpoints: withFailover,
    setting: { failoverPriority: [NETWORK, "topology.kubernetes.io/region", "topology.kubernetes.io/zone"] },
    outlier: true,
    priorities: [1, 3, 0, 3, 2, 1],
  },
  {
    name: "Istio: FailoverPriority with Failover: match all labels",
    proxy: { locality: R1Z1S1, network: "n2", cluster: "c2" },
    endpoints: withFailover,
    setting: { failoverPriority: [NETWORK, CLUSTER], failover: [{ from: "region1", to: "region2" }] },
    outlier: true,
    priorities: [3, 0, 4, 2, 1, 5],
  },
  {
    // applyFailoverPriorities returns at once when the proxy has no labels (nor topology to add).
    name: "failoverPriority with a proxy that has no labels at all: no levels",
    proxy: {},
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK, CLUSTER] },
    outlier: true,
    priorities: [0, 0, 0, 0, 0, 0],
  },
  {
    // ApplyLocalityLoadBalancer: "one of Distribute or Failover settings can be applied".
    name: "distribute wins over failoverPriority: no levels",
    proxy: { locality: R1Z1S1, network: "n1" },
    endpoints: wrapped,
    setting: { failoverPriority: [NETWORK], distribute: [{ from: "*", to: { "*": 100 } }] },
    outlier: true,
    priorities: [0, 0, 0, 0, 0, 0],
  },
];

for (const row of priorityRows) {
  test(`priorities: ${row.name}`, () => {
    const result = localityLb(row.proxy, row.endpoints, row.setting, row.outlier);
    assert.deepEqual(
      result.map((r) => r.priority),
      row.priorities,
    );
    assert.deepEqual(
      result.map((r) => r.weight),
      row.endpoints.map((e) => e.weight ?? 1),
      "failover leaves weights alone",
    );
  });
}

interface WeightRow {
  readonly name: string;
  readonly proxy: LocalityProxy;
  readonly endpoints: readonly LocalityEndpoint[];
  readonly setting: LocalityLbSetting;
  readonly outlier: boolean;
  /** Each endpoint's expected share of the traffic, in percent (Envoy: locality weight, then endpoint weight). */
  readonly shares: readonly number[];
}

const weightRows: WeightRow[] = [
  {
    // Locality weights [40, 40, 15, 5, 0, 0, 0] for Istio's per-locality entries; the two subzone1 entries are
    // one locality here, weight 80 over its two endpoints.
    name: "Istio: Distribute: distribution between subzones",
    proxy: { locality: R1Z1S1 },
    endpoints: fakeCluster,
    setting: {
      distribute: [
        {
          from: R1Z1S1,
          to: { [R1Z1S1]: 80, "region1/zone1/subzone2": 15, "region1/zone1/subzone3": 5 },
        },
      ],
    },
    outlier: true,
    shares: [40, 40, 15, 5, 0, 0, 0],
  },
  {
    // applyLocalityWeights: "in case wildcard dest matching multi groups of endpoints the load balancing weight
    // for a locality is divided by the sum of the weights of all localities": zone1 (total 2) gets
    // ceil(2 × 80 / 8) = 20, zone2 (total 6) ceil(6 × 80 / 8) = 60; within zone1 by endpoint weight.
    name: "a wildcard `to` splits its weight over the localities it matches, by their weights",
    proxy: { locality: "region1/zone1" },
    endpoints: [
      { locality: "region1/zone1" },
      { locality: "region1/zone1" },
      { locality: "region1/zone2", weight: 6 },
      { locality: "region2/zone9", weight: 4 },
    ],
    setting: { distribute: [{ from: "region1/*", to: { "region1/*": 80, "region2/*": 20 } }] },
    outlier: false,
    shares: [10, 10, 60, 20],
  },
  {
    // The first `from` matching the proxy wins; later entries are not read.
    name: "the first matching `from` applies",
    proxy: { locality: "region2/zoneA" },
    endpoints: [{ locality: "region1/z" }, { locality: "region2/zoneA" }, { locality: "region2/zoneB" }],
    setting: {
      distribute: [
        { from: "region1/*", to: { "region1/*": 100 } },
        { from: "region2/zoneA", to: { "region2/zoneA": 75, "region1/*": 25 } },
        { from: "*", to: { "region2/zoneB": 100 } },
      ],
    },
    outlier: true,
    shares: [25, 75, 0],
  },
  {
    // Distribute is applied whatever the outlier detection (only failover needs it).
    name: "distribute without outlier detection; unnamed localities get nothing",
    proxy: { locality: "us-east/a" },
    endpoints: [
      { locality: "us-east/a", weight: 3 },
      { locality: "us-east/a", weight: 1 },
      { locality: "us-west/b" },
      { locality: "eu/c" },
    ],
    setting: { distribute: [{ from: "us-east/*", to: { "us-east/a": 90, "us-west/*": 10 } }] },
    outlier: false,
    shares: [67.5, 22.5, 10, 0],
  },
  {
    name: "no `from` matches the proxy: weights unchanged",
    proxy: { locality: "eu/c" },
    endpoints: [{ locality: "us-east/a", weight: 3 }, { locality: "eu/c" }],
    setting: { distribute: [{ from: "us-east/*", to: { "us-east/*": 100 } }] },
    outlier: true,
    shares: [75, 25],
  },
  {
    name: "enabled: false: weights unchanged",
    proxy: { locality: "us-east/a" },
    endpoints: [{ locality: "us-east/a", weight: 3 }, { locality: "eu/c" }],
    setting: { enabled: false, distribute: [{ from: "*", to: { "us-east/*": 100 } }] },
    outlier: true,
    shares: [75, 25],
  },
];

for (const row of weightRows) {
  test(`weights: ${row.name}`, () => {
    const result = localityLb(row.proxy, row.endpoints, row.setting, row.outlier);
    const total = result.reduce((s, r) => s + r.weight, 0);
    for (const [i, r] of result.entries()) {
      assert.equal(r.priority, 0);
      assert.ok(Number.isInteger(r.weight) && r.weight >= 0 && r.weight <= 1_000_000, `weight ${r.weight}`);
      assert.ok(
        Math.abs((r.weight / total) * 100 - row.shares[i]!) < 1e-9,
        `endpoint ${i}: ${(r.weight / total) * 100}% (weights ${result.map((x) => x.weight)})`,
      );
    }
  });
}

test("weights: exact integers are kept small (divided by their common factor)", () => {
  const r = localityLb(
    { locality: R1Z1S1 },
    fakeCluster,
    {
      distribute: [
        { from: R1Z1S1, to: { [R1Z1S1]: 80, "region1/zone1/subzone2": 15, "region1/zone1/subzone3": 5 } },
      ],
    },
    true,
  );
  assert.deepEqual(
    r.map((x) => x.weight),
    [8, 8, 3, 1, 0, 0, 0],
  );
});

test("weights: shares that need more than 1,000,000 are scaled and rounded, every kept endpoint >= 1", () => {
  // Locality a: weights 999983 and 1 (total 999984); b: 999979 and 1 (total 999980). Exact integers would need
  // the product of the totals.
  const endpoints: LocalityEndpoint[] = [
    { locality: "a", weight: 999_983 },
    { locality: "a", weight: 1 },
    { locality: "b", weight: 999_979 },
    { locality: "b", weight: 1 },
  ];
  const r = localityLb(
    { locality: "a" },
    endpoints,
    { distribute: [{ from: "*", to: { a: 50, b: 50 } }] },
    true,
  );
  const weights = r.map((x) => x.weight);
  assert.equal(Math.max(...weights), 1_000_000);
  assert.ok(weights.every((w) => w >= 1));
  const total = weights.reduce((s, w) => s + w, 0);
  const expected = [(50 * 999_983) / 999_984, 50 / 999_984, (50 * 999_979) / 999_980, 50 / 999_980];
  for (const [i, w] of weights.entries())
    assert.ok(Math.abs((w / total) * 100 - expected[i]!) < 1e-4, `endpoint ${i}: ${(w / total) * 100}%`);
});

test("levels beyond the proxy's 31 are merged into 31", () => {
  const labels = Array.from({ length: 40 }, (_, i) => `l${i}`);
  const proxyLabels = Object.fromEntries(labels.map((l) => [l, "x"]));
  // Endpoint k matches the first k labels: priority 40 - k, 41 distinct levels.
  const endpoints = Array.from({ length: 41 }, (_, k) => ({
    labels: Object.fromEntries(labels.slice(0, k).map((l) => [l, "x"])),
  }));
  const r = localityLb({ labels: proxyLabels }, endpoints, { failoverPriority: labels }, true);
  assert.deepEqual(
    r.map((x) => x.priority),
    endpoints.map((_, k) => Math.min(40 - k, 31)),
  );
});

test("topology labels: locality and cluster override, the network only fills in (Istio's AugmentLabels)", () => {
  assert.deepEqual(
    topologyLabels({
      locality: "r/z/s",
      cluster: "c1",
      network: "n1",
      labels: {
        app: "a",
        "topology.kubernetes.io/region": "old",
        "topology.istio.io/cluster": "old",
        "topology.istio.io/network": "own",
      },
    }),
    {
      app: "a",
      "topology.kubernetes.io/region": "r",
      "topology.kubernetes.io/zone": "z",
      "topology.istio.io/subzone": "s",
      "topology.istio.io/cluster": "c1",
      "topology.istio.io/network": "own",
    },
  );
  assert.deepEqual(topologyLabels({ locality: "r", network: "n1" }), {
    "topology.kubernetes.io/region": "r",
    "topology.istio.io/network": "n1",
  });
});

test("bad endpoint or distribute weights are refused with a clear error", () => {
  for (const weight of [0, -1, 1.5, Number.NaN]) {
    assert.throws(
      () => localityLb({}, [{}, { weight }], undefined, true),
      /endpoint 1: weight must be an integer >= 1/,
    );
  }
  assert.throws(
    () => localityLb({}, [{ locality: "a" }], { distribute: [{ from: "*", to: { a: -5 } }] }, true),
    /distribute weight for a must be an integer >= 0/,
  );
});

test("readLocalityLbSetting reads a DestinationRule's localityLbSetting, skipping fields of the wrong type", () => {
  assert.equal(readLocalityLbSetting(undefined), undefined);
  assert.equal(readLocalityLbSetting([]), undefined);
  assert.deepEqual(
    readLocalityLbSetting({
      enabled: true,
      distribute: [{ from: "us/*", to: { "us/a": 60, "us/b": 40, bad: "x" } }, "junk"],
      failover: [{ from: "us", to: "eu" }],
      failoverPriority: [NETWORK, 7],
    }),
    {
      enabled: true,
      distribute: [{ from: "us/*", to: { "us/a": 60, "us/b": 40 } }],
      failover: [{ from: "us", to: "eu" }],
      failoverPriority: [NETWORK],
    },
  );
  assert.deepEqual(readLocalityLbSetting({ enabled: "no" }), {
    distribute: [],
    failover: [],
    failoverPriority: [],
  });
});
