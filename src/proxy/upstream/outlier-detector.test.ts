// Outlier detection: the detector's rules on a fake clock, then through the proxy with real backends (an
// endpoint that keeps failing is ejected, traffic moves to the others, and it comes back after its time).
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { StatsStore } from "../stats/stats.ts";
import {
  closeAll,
  config,
  get,
  httpBackend,
  sleep,
  startAdmin,
  startProxy,
  waitFor,
} from "../test-support.ts";
import { OutlierDetector, type OutlierEndpoint } from "./outlier-detector.ts";

after(closeAll);

function endpoints(n: number): OutlierEndpoint[] {
  return Array.from({ length: n }, (_, i) => ({ key: `10.0.0.${i}:80`, healthy: true, outlier: null }));
}

function detector(
  eps: OutlierEndpoint[],
  cfg: ConstructorParameters<typeof OutlierDetector>[0],
  clock: { t: number },
) {
  const store = new StatsStore();
  const d = new OutlierDetector({ intervalMs: 3_600_000, ...cfg }, eps, store, "cluster.c.", () => clock.t);
  return { d, store };
}

test("consecutive 5xx eject at the threshold; a success in between resets the count", () => {
  const clock = { t: 1_000 };
  const eps = endpoints(4);
  const { d, store } = detector(eps, { consecutive5xxErrors: 3, maxEjectionPercent: 100 }, clock);
  try {
    const e = eps[0]!;
    d.report(e, 500);
    d.report(e, 500);
    d.report(e, 200);
    d.report(e, 500);
    d.report(e, 500);
    assert.equal(e.healthy, true, "the success reset the run");
    d.report(e, 503);
    assert.equal(e.healthy, false);
    assert.equal(store.counter("cluster.c.outlier_detection.ejections_consecutive_5xx").value, 1);
    assert.equal(store.gauge("cluster.c.outlier_detection.ejections_active").value, 1);
  } finally {
    d.stop();
  }
});

test("gateway errors count separately; a 500 breaks their run", () => {
  const clock = { t: 0 };
  const eps = endpoints(2);
  const { d } = detector(
    eps,
    { consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, maxEjectionPercent: 100 },
    clock,
  );
  try {
    const e = eps[0]!;
    d.report(e, 502);
    d.report(e, 500);
    d.report(e, 504);
    assert.equal(e.healthy, true);
    d.report(e, 503);
    assert.equal(e.healthy, false);
  } finally {
    d.stop();
  }
});

test("ejection time is base x number of ejections; the endpoint returns on the interval after it", () => {
  const clock = { t: 0 };
  const eps = endpoints(2);
  const { d } = detector(
    eps,
    { consecutive5xxErrors: 1, baseEjectionTimeMs: 1000, maxEjectionPercent: 100 },
    clock,
  );
  try {
    const e = eps[0]!;
    d.report(e, 500);
    assert.equal(e.healthy, false);
    clock.t = 999;
    d.tick();
    assert.equal(e.healthy, false);
    clock.t = 1000;
    d.tick();
    assert.equal(e.healthy, true);
    d.report(e, 500); // second ejection: twice as long
    clock.t = 2999;
    d.tick();
    assert.equal(e.healthy, false);
    clock.t = 3000;
    d.tick();
    assert.equal(e.healthy, true);
  } finally {
    d.stop();
  }
});

test("maxEjectionPercent caps ejections (but one is always allowed); minHealthPercent stops them", () => {
  const clock = { t: 0 };
  const eps = endpoints(10);
  const { d, store } = detector(eps, { consecutive5xxErrors: 1, maxEjectionPercent: 20 }, clock);
  try {
    for (const e of eps) d.report(e, 500);
    assert.equal(eps.filter((e) => !e.healthy).length, 2);
    assert.equal(store.counter("cluster.c.outlier_detection.ejections_overflow").value, 8);
  } finally {
    d.stop();
  }
  const few = endpoints(3);
  const one = detector(few, { consecutive5xxErrors: 1, maxEjectionPercent: 1 }, clock);
  try {
    for (const e of few) one.d.report(e, 500);
    assert.equal(few.filter((e) => !e.healthy).length, 1, "1% of 3 rounds down to 0, yet one may go");
  } finally {
    one.d.stop();
  }
  const guarded = endpoints(4);
  const g = detector(
    guarded,
    { consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 75 },
    clock,
  );
  try {
    for (const e of guarded) g.d.report(e, 500);
    assert.equal(guarded.filter((e) => !e.healthy).length, 1, "a second ejection would leave 50% < 75%");
  } finally {
    g.d.stop();
  }
});

test("through the proxy: a failing endpoint is ejected, traffic moves, /clusters shows it, it returns", async () => {
  const bad = await httpBackend((_req, res) => {
    res.writeHead(500);
    res.end("bad");
  });
  const good = await httpBackend((_req, res) => res.end("good"));
  const p = await startProxy(
    config({
      routes: {
        name: "r",
        virtualHosts: [
          {
            name: "all",
            domains: ["*"],
            routes: [{ match: { prefix: "/" }, route: { cluster: "up", retryPolicy: { numRetries: 0 } } }],
          },
        ],
      },
      clusters: [
        {
          name: "up",
          endpoints: [
            { address: "127.0.0.1", port: bad.port },
            { address: "127.0.0.1", port: good.port },
          ],
          outlierDetection: {
            consecutive5xxErrors: 2,
            intervalMs: 50,
            baseEjectionTimeMs: 400,
            maxEjectionPercent: 100,
          },
        },
      ],
    }),
  );
  const admin = await startAdmin(p.proxy);
  for (let i = 0; i < 4; i++) await get(p.port, "/");
  assert.equal(bad.requests, 2, "round robin: two failures, then ejected");
  const before = bad.requests;
  for (let i = 0; i < 10; i++) assert.equal((await get(p.port, "/")).body.toString(), "good");
  assert.equal(bad.requests, before, "no request reached the ejected endpoint");
  const cj = JSON.parse((await get(admin, "/clusters?format=json")).body.toString());
  const hosts = cj.cluster_statuses[0].host_statuses;
  const ejected = hosts.find((h: { address: string }) => h.address.endsWith(`:${bad.port}`));
  assert.equal(ejected.health_status, "UNHEALTHY");
  assert.equal(ejected.outlier_detection.ejected, true);
  await waitFor(() => p.proxy.clusters.get("up")!.endpoints[0]!.healthy, 3000, "the ejection to end");
  await sleep(0);
  await get(p.port, "/");
  await get(p.port, "/");
  assert.ok(bad.requests > before, "back in rotation after the ejection time");
});
