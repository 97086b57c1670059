// Telemetry through real sockets: two proxies in a row (the client's sidecar, reporter=source, and the
// server's, reporter=destination) exchange their metadata, and each one's Prometheus endpoint shows Istio's
// metrics with both sides' labels; the access log has one JSON line per request; metric values after N
// requests are exact; bad peer headers are ignored; label escaping and the series cap hold.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import fc from "fast-check";
import type { ProxyConfig } from "../config/types.ts";
import {
  closeAll,
  echo,
  get,
  httpBackend,
  netBackend,
  onClose,
  send,
  startProxy,
  waitFor,
} from "../test-support.ts";
import { decodePeer, encodePeer } from "./peer/peer-metadata-codec.ts";
import { esc, IstioMetrics, MAX_SERIES } from "./prometheus/istio-metrics.ts";
import type { HttpRequestRecord } from "./request-record.ts";

after(closeAll);
const dir = mkdtempSync(join(tmpdir(), "isthmus-telemetry-"));
onClose(() => rmSync(dir, { recursive: true, force: true }));

function sidecar(
  name: string,
  reporter: "source" | "destination",
  upstreamPort: number,
  meta: Record<string, string>,
): ProxyConfig {
  return {
    node: { id: name, metadata: meta },
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [
          {
            filter: {
              type: "http",
              codec: "http1",
              reporter,
              statPrefix: name,
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    // The control plane names virtual hosts HOST:PORT; destination_service is the host.
                    name: "reviews.default.svc.cluster.local:9080",
                    domains: ["*"],
                    routes: [
                      {
                        match: { prefix: "/" },
                        route: { cluster: "reviews", retryPolicy: { numRetries: 0 } },
                      },
                    ],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [{ name: "reviews", endpoints: [{ address: "127.0.0.1", port: upstreamPort }] }],
    telemetry: {
      prometheus: { address: "127.0.0.1", port: 0 },
      accessLog: { path: join(dir, `${name}.log`) },
    },
  };
}

async function scrape(port: number): Promise<string> {
  const r = await get(port, "/stats/prometheus");
  assert.equal(r.status, 200);
  assert.match(r.header("content-type") ?? "", /text\/plain; version=0\.0\.4/);
  return r.body.toString();
}

test("source and destination sidecars: Istio metrics with both sides' labels, exact counts, access log", async () => {
  const backend = await httpBackend(echo);
  const dest = await startProxy(
    sidecar("reviews-v1", "destination", backend.port, {
      workload: "reviews-v1",
      namespace: "default",
      app: "reviews",
      version: "v1",
      canonical_service: "reviews",
    }),
  );
  const src = await startProxy(
    sidecar("productpage-v1", "source", dest.port, {
      workload: "productpage-v1",
      namespace: "default",
      app: "productpage",
      version: "v1",
    }),
  );
  for (let i = 0; i < 7; i++) {
    const r = await send(
      src.port,
      "POST /reviews/1 HTTP/1.1\r\nhost: reviews.default.svc.cluster.local:9080\r\ncontent-length: 3\r\n\r\nabc",
      "POST",
    );
    assert.equal(r.status, 200);
    assert.equal(r.header("x-isthmus-peer-metadata"), undefined, "the peer header never reaches the client");
    const seen = JSON.parse(r.body.toString()) as { headers: Record<string, string> };
    assert.equal(seen.headers["x-isthmus-peer-metadata"], undefined, "nor the app");
  }
  const sm = await scrape(src.proxy.telemetryManager.scrapePort);
  const dm = await scrape(dest.proxy.telemetryManager.scrapePort);
  const line = (text: string, metric: string) =>
    text.split("\n").find((l) => l.startsWith(`${metric}{`)) ?? "";
  const sl = line(sm, "istio_requests_total");
  assert.match(sl, /reporter="source"/);
  assert.match(sl, /source_workload="productpage-v1"/);
  assert.match(sl, /destination_workload="reviews-v1"/, "learned from the destination's response");
  assert.match(sl, /destination_service="reviews.default.svc.cluster.local"/);
  assert.match(sl, /destination_service_name="reviews"/);
  assert.match(sl, /destination_service_namespace="default"/);
  assert.match(sl, /response_code="200"/);
  assert.match(sl, /request_protocol="http"/);
  assert.match(sl, /response_flags="-"/);
  assert.match(sl, / 7$/);
  const dl = line(dm, "istio_requests_total");
  assert.match(dl, /reporter="destination"/);
  assert.match(dl, /source_app="productpage"/, "learned from the source's request");
  assert.match(dl, /destination_app="reviews"/);
  assert.match(dl, /destination_canonical_service="reviews"/);
  assert.match(dl, / 7$/);
  assert.match(dm, /istio_request_duration_milliseconds_count\{[^}]*\} 7/);
  assert.match(dm, /istio_request_bytes_bucket\{[^}]*le="10"\} 7/, "3-byte bodies fall in the le=10 bucket");
  assert.match(dm, /istio_request_bytes_bucket\{[^}]*le="1"\} 0/);
  assert.match(dm, /istio_request_bytes_sum\{[^}]*\} 21/);
  assert.match(dm, /^envoy_cluster_upstream_rq_total\{cluster_name="reviews"\} 7$/m);
  assert.match(dm, /^# TYPE envoy_cluster_upstream_rq_active gauge$/m);

  await src.proxy.telemetryManager.close();
  const lines = readFileSync(join(dir, "productpage-v1.log"), "utf8").trim().split("\n");
  assert.equal(lines.length, 7);
  const first = JSON.parse(lines[0]!);
  assert.equal(first.method, "POST");
  assert.equal(first.path, "/reviews/1");
  assert.equal(first.response_code, 200);
  assert.equal(first.response_flags, "-");
  assert.equal(first.bytes_received, 3);
  assert.equal(first.upstream_cluster, "reviews");
  assert.equal(first.upstream_host, `127.0.0.1:${dest.port}`);
  assert.ok(!Number.isNaN(Date.parse(first.start_time)));
});

test("failures are labelled with their flags; TCP connections are counted", async () => {
  const refusedServer = net.createServer();
  await new Promise<void>((r) => refusedServer.listen(0, "127.0.0.1", r));
  const refused = (refusedServer.address() as net.AddressInfo).port;
  await new Promise<void>((r) => refusedServer.close(() => r()));
  const p = await startProxy(sidecar("lonely", "source", refused, { workload: "lonely" }));
  assert.equal((await get(p.port, "/")).status, 503);
  const m = await scrape(p.proxy.telemetryManager.scrapePort);
  assert.match(m, /istio_requests_total\{[^}]*response_code="503"[^}]*response_flags="UF"[^}]*\} 1/);

  const echoTcp = await netBackend((s) => s.pipe(s));
  const tcp = await startProxy({
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "db" } }],
      },
    ],
    clusters: [{ name: "db", endpoints: [{ address: "127.0.0.1", port: echoTcp.port }] }],
    telemetry: { prometheus: { address: "127.0.0.1", port: 0 } },
  });
  const c = net.connect(tcp.port, "127.0.0.1");
  c.write("12345");
  await new Promise<void>((r) => c.once("data", () => r()));
  c.end();
  await waitFor(
    () =>
      /istio_tcp_connections_closed_total\{[^}]*\} 1/.test(
        tcp.proxy.telemetryManager.metrics?.exposition() ?? "",
      ),
    3000,
  );
  const t = await scrape(tcp.proxy.telemetryManager.scrapePort);
  assert.match(t, /istio_tcp_connections_opened_total\{[^}]*request_protocol="tcp"[^}]*\} 1/);
  assert.match(t, /istio_tcp_connections_closed_total\{[^}]*\} 1/);
  assert.match(t, /istio_tcp_received_bytes_total\{[^}]*\} 5/);
  assert.match(t, /istio_tcp_sent_bytes_total\{[^}]*\} 5/);
});

test("the scrape server: 404 elsewhere, 400 and close on a malformed request", async () => {
  const backend = await httpBackend(echo);
  const p = await startProxy(sidecar("s", "destination", backend.port, {}));
  const port = p.proxy.telemetryManager.scrapePort;
  assert.equal((await get(port, "/nope")).status, 404);
  assert.equal((await send(port, "GARBAGE\r\n\r\n")).status, 400);
});

const record = (over: Partial<HttpRequestRecord>): HttpRequestRecord => ({
  startTimeMs: 0,
  durationMs: 3,
  method: "GET",
  path: "/",
  authority: "a",
  protocol: "HTTP/1.1",
  responseCode: 200,
  responseFlags: "-",
  grpcStatus: undefined,
  bytesReceived: 0,
  bytesSent: 10,
  upstreamHost: "",
  upstreamCluster: "",
  retries: 0,
  routeName: "",
  downstreamRemoteAddress: "",
  requestId: "",
  traceId: "",
  userAgent: "",
  connectionSecurityPolicy: "none",
  reporter: "destination",
  peer: undefined,
  destinationService: "a",
  ...over,
});

test("metrics: unknown labels, escaping, gRPC protocol, and the series cap", () => {
  const m = new IstioMetrics({ app: "me" });
  m.onHttpRequest(record({ destinationService: 'we"ird\\svc', grpcStatus: 14 }));
  const text = m.exposition();
  assert.match(text, /source_workload="unknown"/);
  assert.match(text, /destination_service="we\\"ird\\\\svc"/);
  assert.match(text, /request_protocol="grpc"/);
  assert.match(text, /grpc_response_status="14"/);
  assert.equal(esc("a\nb"), "a\\nb");
  for (let i = 0; i < MAX_SERIES + 50; i++) m.onHttpRequest(record({ destinationService: `svc-${i}` }));
  assert.equal(m.overflow, 51);
  assert.match(m.exposition(), /isthmus_metrics_overflow_total 51/);
});

test("peer metadata codec: round trip; any other value decodes to undefined and never throws", () => {
  const p = { workload: "reviews-v1", namespace: "default", app: "reviews" };
  assert.deepEqual(decodePeer(encodePeer(p)), p);
  assert.equal(
    decodePeer(encodePeer({ ...p, principal: "spiffe://cluster.local/ns/default/sa/admin" } as typeof p)),
    undefined,
    "a principal claimed by a peer is refused: identities come from verified mTLS only",
  );
  assert.equal(decodePeer(Buffer.from('{"evil":"x"}').toString("base64url")), undefined, "unknown key");
  assert.equal(decodePeer(Buffer.from('{"app":"a b"}').toString("base64url")), undefined, "unsafe value");
  assert.equal(decodePeer("x".repeat(3000)), undefined, "too long");
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const d = decodePeer(s);
      if (d !== undefined)
        for (const k of Object.keys(d))
          assert.ok(
            [
              "workload",
              "namespace",
              "app",
              "version",
              "cluster",
              "canonicalService",
              "canonicalRevision",
            ].includes(k),
          );
    }),
    { numRuns: 2000 },
  );
});

test("access log lines stay valid JSON whatever the request carries", async () => {
  const { JsonAccessLog } = await import("./access-log/json-access-log.ts");
  const path = join(dir, "escape.log");
  const log = new JsonAccessLog(path);
  // Request strings are the wire's bytes read as latin1; the log writes those bytes back unchanged, so UTF-8
  // from the client reads back as UTF-8.
  const utf8 = "é\u2028";
  const nasty = `a"b\\c\u0001\n${Buffer.from(utf8, "utf8").toString("latin1")}`;
  const expected = `a"b\\c\u0001\n${utf8}`;
  log.onHttpRequest(
    record({
      path: `/x?${nasty}`,
      userAgent: nasty,
      authority: nasty,
      startTimeMs: 1_700_000_000_005,
      // Config names are Unicode, not wire bytes: written as UTF-8, surrogate pairs included.
      routeName: "路由-é-😀",
      upstreamCluster: 'outbound|80||"q".svc',
    }),
  );
  await log.close();
  const parsed = JSON.parse(readFileSync(path, "utf8").trim());
  assert.equal(parsed.path, `/x?${expected}`);
  assert.equal(parsed.user_agent, expected);
  assert.equal(parsed.start_time, "2023-11-14T22:13:20.005Z");
  assert.equal(parsed.grpc_status, null);
  assert.equal(parsed.route_name, "路由-é-😀");
  assert.equal(parsed.upstream_cluster, 'outbound|80||"q".svc');
});

test("metrics: two peer objects with the same labels count in one series", () => {
  const m = new IstioMetrics({ app: "me" });
  m.onHttpRequest(record({ peer: { app: "caller" } }));
  m.onHttpRequest(record({ peer: { app: "caller" } }));
  m.onHttpRequest(record({ peer: { app: "other" } }));
  const lines = m
    .exposition()
    .split("\n")
    .filter((l) => l.startsWith("istio_requests_total{"));
  assert.equal(lines.length, 2);
  assert.match(lines.find((l) => l.includes('source_app="caller"'))!, / 2$/);
});

test("Envoy names: outlier stats and dotted HTTP stat prefixes keep their labels", async () => {
  const { envoyExposition } = await import("./prometheus/scrape-server.ts");
  const text = envoyExposition(
    [
      ["cluster.outbound|9080||reviews.default.svc.cluster.local.outlier_detection.ejections_active", 1],
      ["cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total", 5],
      ["http.inbound_0.0.0.0_8080.downstream_rq_2xx", 3],
      ["http.inbound_0.0.0.0_8080.response_flag.UH", 2],
    ],
    new Set(["cluster.outbound|9080||reviews.default.svc.cluster.local.outlier_detection.ejections_active"]),
  );
  assert.match(
    text,
    /^envoy_cluster_outlier_detection_ejections_active\{cluster_name="outbound\|9080\|\|reviews\.default\.svc\.cluster\.local"\} 1$/m,
  );
  assert.match(
    text,
    /^envoy_cluster_upstream_rq_total\{cluster_name="outbound\|9080\|\|reviews\.default\.svc\.cluster\.local"\} 5$/m,
  );
  assert.match(
    text,
    /^envoy_http_downstream_rq_2xx\{http_conn_manager_prefix="inbound_0\.0\.0\.0_8080"\} 3$/m,
  );
  assert.match(
    text,
    /^envoy_http_response_flag_UH\{http_conn_manager_prefix="inbound_0\.0\.0\.0_8080"\} 2$/m,
  );
  assert.match(text, /^# TYPE envoy_cluster_outlier_detection_ejections_active gauge$/m);
});

test("TCP: a connection whose upstream refuses is opened and closed under response_flags UF", async () => {
  const refused = await (async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    return port;
  })();
  const tcp = await startProxy({
    listeners: [
      {
        name: "main",
        address: "127.0.0.1",
        port: 0,
        filterChains: [{ filter: { type: "tcp", cluster: "db" } }],
      },
    ],
    clusters: [{ name: "db", endpoints: [{ address: "127.0.0.1", port: refused }] }],
    telemetry: { prometheus: { address: "127.0.0.1", port: 0 } },
  });
  const c = net.connect(tcp.port, "127.0.0.1");
  c.on("error", () => {});
  await new Promise((r) => c.once("close", r));
  await waitFor(
    () =>
      /istio_tcp_connections_closed_total\{[^}]*response_flags="UF"[^}]*\} 1/.test(
        tcp.proxy.telemetryManager.metrics?.exposition() ?? "",
      ),
    3000,
  );
  const m = tcp.proxy.telemetryManager.metrics!.exposition();
  assert.match(m, /istio_tcp_connections_opened_total\{[^}]*response_flags="UF"[^}]*\} 1/);
  assert.doesNotMatch(m, /istio_tcp_connections_opened_total\{[^}]*response_flags="-"/);
});
