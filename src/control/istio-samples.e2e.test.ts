// Issue 5's "done when", end to end with real processes: `isthmus control-plane` serving Bookinfo
// (platform/kube/bookinfo.yaml + destination-rule-all.yaml from ../shared/istio-samples, unchanged), whose
// reviews v1/v2/v3 and ratings v1 workloads are WorkloadEntries pointing at real HTTP backends, and two
// `isthmus proxy` sidecars on its push stream (productpage-v1, which calls reviews, and reviews-v2, which
// calls ratings). Istio's own task samples, applied with `isthmus apply -f`, change live traffic as Istio's
// traffic-management tasks document (request routing: all-v1, 80/20, end-user jason; fault injection: abort
// and delay for jason). While all-v1 is in force and traffic flows through both sidecars, the control plane
// (with --state-dir) is SIGKILLed and restarted with the same files and state: no request fails, every one
// keeps going to v1, and the proxies are SYNCED on the version they had (the applied resources were restored
// before the push stream served, so nothing is resent). The later samples go to the restarted control plane.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAll, httpBackend, onClose, spawnProxy } from "../proxy/test-support.ts";
import {
  type ControlPlaneProcess,
  isthmus,
  SidecarClient,
  startControlPlane,
  waitSynced,
} from "./e2e-support.ts";

after(closeAll);

const BOOKINFO = join(import.meta.dirname, "..", "..", "..", "shared", "istio-samples", "bookinfo");
const PLATFORM = join(BOOKINFO, "platform", "kube", "bookinfo.yaml");
const sample = (file: string) => join(BOOKINFO, "networking", file);
const TOKEN = "e2e-token-for-istio-samples";
const REVIEWS = "reviews:9080";
const RATINGS = "ratings:9080";
const JASON = { "end-user": "jason" };
/** Workload addresses of the two sidecars (their outbound listeners bind there; other tests use 127.0.0.x). */
const PRODUCTPAGE_IP = "127.0.77.1";
const REVIEWS_V2_IP = "127.0.77.2";
const PRODUCTPAGE_ID = "productpage-v1-e2e";
const REVIEWS_V2_ID = "reviews-v2-e2e";
const PROXIES = [PRODUCTPAGE_ID, REVIEWS_V2_ID];

/** WorkloadEntries for Bookinfo's Services (selected by app, subsets by version) at local backends. */
function workloadEntries(ports: Record<string, number>): string {
  return Object.entries(ports)
    .map(([name, port]) => {
      const [app, version] = name.split("-");
      return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: default }
spec:
  address: 127.0.0.1
  labels: { app: ${app}, version: ${version} }
  ports: { http: ${port} }
`;
    })
    .join("---\n");
}

/** Sends `n` requests in a row, counting the bodies. */
async function tally(client: SidecarClient, authority: string, n: number, headers = {}) {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await client.get(authority, "/", headers);
    const key = r.status === 200 ? r.body.toString() : `HTTP ${r.status}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return Object.fromEntries(seen);
}

test("Istio's Bookinfo task samples change live traffic; a control plane killed mid-traffic loses no request", async (t) => {
  const started = Date.now();
  const backends: Record<string, { port: number; requests: number }> = {};
  for (const name of ["reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"])
    backends[name] = await httpBackend((_req, res) => res.end(name));
  const dir = mkdtempSync(join(tmpdir(), "isthmus-e2e-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const workloads = join(dir, "workloads.yaml");
  writeFileSync(
    workloads,
    workloadEntries(Object.fromEntries(Object.entries(backends).map(([n, b]) => [n, b.port]))),
  );
  const baseConfig = [PLATFORM, sample("destination-rule-all.yaml"), workloads];
  const stateArgs = ["--state-dir", join(dir, "state")];

  let cp: ControlPlaneProcess = await startControlPlane(baseConfig, TOKEN, "127.0.0.1:0", stateArgs);
  const diag = () => `\ncontrol plane:\n${cp.stderr()}`;
  const sidecar = async (id: string, ip: string, app: string, version: string) => {
    const p = await spawnProxy(
      [
        ...["--control-plane", `127.0.0.1:${cp.pushPort}`, "--node-id", id, "--namespace", "default"],
        ...["--label", `app=${app}`, "--label", `version=${version}`, "--ip", ip, "--admin-port", "0"],
      ],
      [],
    );
    await p.waitForStderr(/control plane applied/, 15_000);
    return p;
  };
  const productpageProxy = await sidecar(PRODUCTPAGE_ID, PRODUCTPAGE_IP, "productpage", "v1");
  const reviewsProxy = await sidecar(REVIEWS_V2_ID, REVIEWS_V2_IP, "reviews", "v2");
  const productpage = new SidecarClient(PRODUCTPAGE_IP);
  const reviews = new SidecarClient(REVIEWS_V2_IP);
  onClose(() => {
    productpage.close();
    reviews.close();
  });
  let synced = await waitSynced(cp.server, TOKEN, PROXIES);

  /** `isthmus apply -f SAMPLE`, then waits until both sidecars run the new config (proxy-status SYNCED). */
  const apply = async (file: string) => {
    const r = await isthmus(cp.server, TOKEN, "apply", "-f", file);
    assert.equal(r.status, 0, `isthmus apply -f ${file}: ${r.stderr}${diag()}`);
    assert.match(r.stdout, /^VirtualService\/default\/\w+ applied$/m);
    synced = await waitSynced(cp.server, TOKEN, PROXIES, synced);
  };

  // Without a VirtualService, reviews balances over all three versions (Istio's default).
  const unrouted = await tally(productpage, REVIEWS, 30);
  assert.deepEqual(
    Object.keys(unrouted).sort(),
    ["reviews-v1", "reviews-v2", "reviews-v3"],
    JSON.stringify(unrouted),
  );

  // Request routing task, first step: everything to v1.
  await apply(sample("virtual-service-all-v1.yaml"));
  assert.deepEqual(await tally(productpage, REVIEWS, 20), { "reviews-v1": 20 });

  // Static stability with an applied VirtualService in force: traffic through both sidecars without pause
  // while the control plane is SIGKILLed and restarted with the same files and state directory (on the same
  // push address, as a supervisor would). Every request must succeed and still follow all-v1; meanwhile the
  // proxies serve their last config, and on reconnecting they announce its version, which the restarted
  // control plane renders again from its files and restored state: nothing is resent.
  const counts = { productpage: 0, reviews: 0, failed: 0 };
  const failures: string[] = [];
  let running = true;
  const loop = async (name: "productpage" | "reviews", client: SidecarClient, check: () => Promise<void>) => {
    while (running) {
      try {
        await check();
        counts[name]++;
      } catch (e) {
        counts.failed++;
        if (failures.length < 10) failures.push(`${name}: ${(e as Error).message}`);
        client.close();
      }
    }
  };
  const traffic = Promise.all([
    loop("productpage", productpage, async () => {
      const r = await productpage.get(REVIEWS, "/", {}, 2000);
      assert.equal(`${r.status} ${r.body}`, "200 reviews-v1");
    }),
    loop("reviews", reviews, async () => {
      const r = await reviews.get(RATINGS, "/", counts.reviews % 2 === 0 ? JASON : {}, 2000);
      assert.equal(`${r.status} ${r.body}`, "200 ratings-v1");
    }),
  ]);
  try {
    /** Resolves once both loops have completed `n` more requests (or one failed). */
    const requests = async (n: number) => {
      const target = { p: counts.productpage + n, r: counts.reviews + n };
      while ((counts.productpage < target.p || counts.reviews < target.r) && counts.failed === 0)
        await new Promise((r) => setTimeout(r, 10));
    };
    await requests(50);
    const pushPort = cp.pushPort;
    await cp.kill();
    const atKill = { ...counts };
    await requests(200); // served with no control plane at all
    const whileDown = { p: counts.productpage - atKill.productpage, r: counts.reviews - atKill.reviews };
    cp = await startControlPlane(baseConfig, TOKEN, `127.0.0.1:${pushPort}`, stateArgs);
    const resynced = await waitSynced(cp.server, TOKEN, PROXIES, undefined, 20_000);
    await requests(50);
    running = false;
    await traffic;
    t.diagnostic(
      `requests across the restart: ${JSON.stringify(counts)}, with no control plane: ${JSON.stringify(whileDown)}`,
    );
    assert.deepEqual(failures, [], `failed requests${diag()}`);
    assert.equal(counts.failed, 0);
    assert.ok(
      whileDown.p >= 200 && whileDown.r >= 200,
      `served while the control plane was down: ${JSON.stringify(whileDown)}`,
    );
    assert.deepEqual(
      resynced,
      synced,
      "the restored config renders the same version: the proxies are in sync",
    );
    synced = resynced;
  } finally {
    running = false;
    await traffic;
  }
  assert.match(productpageProxy.stderr(), /control plane disconnected[\s\S]*control plane connected/);
  assert.match(reviewsProxy.stderr(), /control plane disconnected[\s\S]*control plane connected/);

  assert.match(cp.stderr(), /restored \d+ applied resources/);
  const restored = await isthmus(cp.server, TOKEN, "get", "virtualservice", "reviews");
  assert.equal(restored.status, 0, `${restored.stderr}${diag()}`);
  assert.equal(
    (JSON.parse(restored.stdout) as unknown[]).length,
    1,
    "all-v1's reviews VirtualService is back",
  );
  assert.deepEqual(
    await tally(productpage, REVIEWS, 20),
    { "reviews-v1": 20 },
    "routing holds after the restart",
  );

  // From here on every change goes to the restarted control plane: its applies change live traffic.
  // Request routing task, next step: 80/20 between v1 and v2.
  await apply(sample("virtual-service-reviews-80-20.yaml"));
  const split = await tally(productpage, REVIEWS, 500);
  assert.deepEqual(Object.keys(split).sort(), ["reviews-v1", "reviews-v2"], JSON.stringify(split));
  t.diagnostic(`reviews-80-20 over 500 requests: ${JSON.stringify(split)}`);
  // Expected 100 of 500 to v2 (standard deviation ~9): bounds at about 4 deviations.
  assert.ok(
    split["reviews-v2"]! >= 65 && split["reviews-v2"]! <= 135,
    `80/20 split: ${JSON.stringify(split)}`,
  );

  // User identity: end-user jason -> v2, everyone else -> v3.
  await apply(sample("virtual-service-reviews-jason-v2-v3.yaml"));
  assert.deepEqual(await tally(productpage, REVIEWS, 20, JASON), { "reviews-v2": 20 });
  assert.deepEqual(await tally(productpage, REVIEWS, 20), { "reviews-v3": 20 });
  assert.deepEqual(await tally(productpage, REVIEWS, 5, { "end-user": "jasonx" }), { "reviews-v3": 5 });

  // Fault injection task, from reviews-v2's sidecar: an abort for jason (never reaching ratings), ...
  await apply(sample("virtual-service-ratings-test-abort.yaml"));
  const ratingsBefore = backends["ratings-v1"]!.requests;
  assert.deepEqual(await tally(reviews, RATINGS, 10, JASON), { "HTTP 500": 10 });
  assert.equal(backends["ratings-v1"]!.requests, ratingsBefore, "aborted requests never reach ratings");
  assert.deepEqual(await tally(reviews, RATINGS, 10), { "ratings-v1": 10 });
  assert.equal(backends["ratings-v1"]!.requests, ratingsBefore + 10);
  // ... and a 7 s delay for jason only (others are served at once meanwhile).
  await apply(sample("virtual-service-ratings-test-delay.yaml"));
  const delayStart = performance.now();
  const delayed = new SidecarClient(REVIEWS_V2_IP);
  onClose(() => delayed.close());
  const jasonDelayed = delayed.get(RATINGS, "/", JASON, 15_000);
  const otherStart = performance.now();
  assert.deepEqual(await tally(reviews, RATINGS, 5), { "ratings-v1": 5 });
  assert.ok(performance.now() - otherStart < 2000, "others are not delayed");
  const slow = await jasonDelayed;
  const delayMs = performance.now() - delayStart;
  assert.equal(slow.status, 200);
  assert.equal(slow.body.toString(), "ratings-v1");
  t.diagnostic(`jason's delayed request: ${Math.round(delayMs)} ms`);
  assert.ok(delayMs >= 6500 && delayMs < 10_000, `jason's request took ${delayMs} ms, fixedDelay is 7s`);
  delayed.close();

  assert.doesNotMatch(productpageProxy.stderr() + reviewsProxy.stderr(), /control plane rejected/);
  t.diagnostic(`the whole run took ${Date.now() - started} ms`);
});
