import assert from "node:assert/strict";
import { test } from "node:test";
import { formatRemoteClusters, remoteClustersJson } from "./status-json.ts";

test("remote-clusters JSON: ISO dates, nulls for absent values; and its table", () => {
  const now = Date.parse("2026-01-01T12:00:00Z");
  const json = remoteClustersJson(
    { cluster: "east", network: "n1", private: false, trustDomain: "cluster.local" },
    [
      {
        link: "to-west",
        cluster: "west",
        network: "n2",
        direction: "dial",
        address: "10.0.0.1:15012",
        state: "connected",
        since: new Date(now - 90_000),
        lastSyncSent: new Date(now - 5000),
        lastSyncReceived: new Date(now - 3000),
        services: 4,
        endpoints: 12,
      },
      {
        link: "to-dc",
        cluster: "dc",
        network: "",
        direction: "accept",
        state: "refused",
        since: new Date(now - 7_200_000),
        lastError: "certificate signed by unknown authority",
        services: 0,
        endpoints: 0,
      },
    ],
    [{ at: new Date(now - 1000), address: "10.9.9.9", cluster: "evil", reason: "no MeshLink", count: 3 }],
  );
  assert.deepEqual(json.remoteClusters[1], {
    link: "to-dc",
    cluster: "dc",
    network: "",
    direction: "accept",
    address: null,
    state: "refused",
    since: "2026-01-01T10:00:00.000Z",
    lastSyncSent: null,
    lastSyncReceived: null,
    lastError: "certificate signed by unknown authority",
    services: 0,
    endpoints: 0,
  });
  assert.deepEqual(JSON.parse(JSON.stringify(json)), json, "plain JSON");
  assert.equal(
    formatRemoteClusters(json, now),
    [
      "CLUSTER  NETWORK  DIRECTION  ADDRESS         STATE      SINCE  SENT  RECEIVED  SERVICES  ENDPOINTS",
      "west     n2       dial       10.0.0.1:15012  connected  90s    5s    3s        4         12",
      "dc       -        accept     -               refused    2h     -     -         0         0",
      "dc: certificate signed by unknown authority",
      "refused 10.9.9.9 (claiming evil) 3 times, last 1s ago: no MeshLink",
      "",
    ].join("\n"),
  );
});
