// Tracing through real sockets: a real HTTP server stands in the collector's place and receives OTLP/HTTP
// (JSON) from OpenTelemetry's exporter; the backend sees the propagated headers. Also: the trace-context
// parsers are fuzzed, and OpenTelemetry is not even loaded by a proxy that does not trace.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import http from "node:http";
import type net from "node:net";
import { after, test } from "node:test";
import fc from "fast-check";
import type { ProxyConfig } from "../../config/types.ts";
import { closeAll, get, httpBackend, onClose, RawClient, startProxy, waitFor } from "../../test-support.ts";
import { parseB3, parseTraceparent } from "./trace-context.ts";

after(closeAll);

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}

/** An OTLP/HTTP receiver: collects the spans of every POST /v1/traces. */
async function collector() {
  const spans: OtlpSpan[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      body += d;
    });
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const msg = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
        };
        for (const rs of msg.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  return { spans, url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/traces` };
}

async function setup(samplingPercent: number) {
  const seen: http.IncomingHttpHeaders[] = [];
  const backend = await httpBackend((req, res) => {
    seen.push(req.headers);
    res.end("ok");
  });
  const col = await collector();
  const cfg: ProxyConfig = {
    node: { metadata: { workload: "productpage-v1" } },
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
              routeConfig: {
                name: "r",
                virtualHosts: [
                  {
                    name: "v",
                    domains: ["*"],
                    routes: [{ match: { prefix: "/" }, route: { cluster: "up" } }],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    clusters: [{ name: "up", endpoints: [{ address: "127.0.0.1", port: backend.port }] }],
    telemetry: { tracing: { otlpEndpoint: col.url, samplingPercent } },
  };
  const p = await startProxy(cfg);
  return { p, seen, col };
}

const flush = async (p: Awaited<ReturnType<typeof startProxy>>) => p.proxy.telemetry.tracer?.shutdown();

test("a request without context starts a sampled trace: traceparent and x-request-id upstream, one span exported", async () => {
  const { p, seen, col } = await setup(100);
  assert.equal((await get(p.port, "/items")).status, 200);
  const tp = parseTraceparent(seen[0]!.traceparent as string)!;
  assert.ok(tp, `traceparent sent upstream: ${seen[0]!.traceparent}`);
  assert.equal(tp.sampled, true);
  assert.match(String(seen[0]!["x-request-id"]), /^[0-9a-f-]{36}$/);
  await flush(p);
  await waitFor(() => col.spans.length === 1, 5000, "the span at the collector");
  const span = col.spans[0]!;
  assert.equal(span.traceId, tp.traceId);
  assert.equal(span.spanId, tp.parentSpanId, "the upstream's parent is this hop's span");
  assert.ok(!span.parentSpanId, "a root span");
  const attr = (k: string) => col.spans[0]!.attributes.find((a) => a.key === k)?.value;
  assert.deepEqual(attr("http.response.status_code"), { intValue: 200 });
  assert.deepEqual(attr("guid:x-request-id"), { stringValue: seen[0]!["x-request-id"] });
});

test("an incoming W3C trace is continued; B3 is continued and answered in B3 too", async () => {
  const { p, seen, col } = await setup(0);
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  await get(p.port, "/", "x", { traceparent: `00-${trace}-00f067aa0ba902b7-01`, "x-request-id": "keep-me" });
  const up = parseTraceparent(seen[0]!.traceparent as string)!;
  assert.equal(up.traceId, trace);
  assert.notEqual(up.parentSpanId, "00f067aa0ba902b7", "a new span for this hop");
  assert.equal(seen[0]!["x-request-id"], "keep-me");
  await get(p.port, "/", "x", {
    "x-b3-traceid": "463ac35c9f6413ad",
    "x-b3-spanid": "a2fb4a1d1a96d312",
    "x-b3-sampled": "1",
  });
  assert.equal(seen[1]!["x-b3-traceid"], "0000000000000000463ac35c9f6413ad");
  assert.equal(seen[1]!["x-b3-parentspanid"], "a2fb4a1d1a96d312");
  assert.equal(seen[1]!["x-b3-sampled"], "1");
  await flush(p);
  await waitFor(
    () => col.spans.length === 2,
    5000,
    "both sampled spans (sampling 0 only applies without a decision)",
  );
  assert.equal(col.spans[0]!.parentSpanId, "00f067aa0ba902b7");
});

test("sampling 0 with no incoming decision exports nothing, and still propagates", async () => {
  const { p, seen, col } = await setup(0);
  for (let i = 0; i < 5; i++) await get(p.port, "/");
  await flush(p);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(col.spans.length, 0);
  assert.equal(parseTraceparent(seen[0]!.traceparent as string)?.sampled, false);
});

test("trace-context parsers: strict, and never throw", () => {
  assert.equal(parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), undefined);
  assert.equal(parseTraceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), undefined);
  assert.equal(
    parseB3((n) => (n === "b3" ? "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1" : undefined))?.sampled,
    true,
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 40 }), (a, b) => {
      parseTraceparent(a);
      parseB3((n) => (n === "b3" ? a : n === "x-b3-traceid" ? a : n === "x-b3-spanid" ? b : undefined));
    }),
    { numRuns: 3000 },
  );
});

test("OpenTelemetry is loaded only by a proxy that traces", () => {
  const script = `
    import { registerHooks } from "node:module";
    const seen = [];
    registerHooks({ resolve(spec, ctx, next) { if (spec.includes("@opentelemetry")) seen.push(spec); return next(spec, ctx); } });
    const { ProxyServer } = await import(${JSON.stringify(new URL("../../proxy.ts", import.meta.url).href)});
    const base = { listeners: [{ name: "l", address: "127.0.0.1", port: 0, filterChains: [{ filter: { type: "http", routeConfig: { name: "r", virtualHosts: [] } } }] }] };
    const p = new ProxyServer();
    await p.apply(base);
    const before = seen.length;
    await p.apply({ ...base, telemetry: { tracing: { otlpEndpoint: "http://127.0.0.1:1/v1/traces" } } });
    console.log(JSON.stringify({ before, after: seen.length }));
    await p.shutdown(0);
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const { before, after: afterCount } = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
    before: number;
    after: number;
  };
  assert.equal(before, 0, "nothing of OpenTelemetry before tracing is configured");
  assert.ok(afterCount > 0, "loaded once it is");
});

test("a bare B3 sampling decision is kept; tracestate follows a continued trace; one x-request-id", async () => {
  const { p, seen, col } = await setup(100);
  await get(p.port, "/", "x", { b3: "0" });
  assert.equal(parseTraceparent(seen[0]!.traceparent as string)?.sampled, false, "b3: 0 means do not sample");
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  await get(p.port, "/", "x", { traceparent: `00-${trace}-00f067aa0ba902b7-00`, tracestate: "vendor=abc" });
  assert.equal(seen[1]!.tracestate, "vendor=abc");
  await get(p.port, "/", "x", { traceparent: "garbage", tracestate: "vendor=abc" });
  assert.equal(seen[2]!.tracestate, undefined, "a new trace does not inherit another's state");
  const c = await RawClient.connect(p.port);
  c.write("GET / HTTP/1.1\r\nhost: x\r\nx-request-id: one\r\nx-request-id: two\r\n\r\n");
  await c.read("GET");
  c.destroy();
  assert.equal(seen[3]!["x-request-id"], "one");
  await flush(p);
  assert.equal(
    col.spans.filter((s) => s.traceId === trace).length,
    0,
    "an unsampled incoming trace is not exported",
  );
});
