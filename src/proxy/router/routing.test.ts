// Routing as Istio means it, observed through the proxy on real sockets: virtual hosts by authority, the
// first matching route, path / header / query / method matches, weighted clusters, redirects, direct
// responses, rewrites as the backend sees them, header operations both ways, and 404 NR.
import assert from "node:assert/strict";
import type http from "node:http";
import { after, before, test } from "node:test";
import type { RouteConfig, RouteConfiguration } from "../config/types.ts";
import {
  closeAll,
  cluster,
  config,
  get,
  type HttpBackend,
  httpBackend,
  json,
  keepAliveClient,
  type RawResponse,
  type RunningProxy,
  send,
  startProxy,
} from "../test-support.ts";

/** A backend that says who it is and what it received; /hdr also sends headers for the route to edit. */
function named(name: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    req.on("end", () => {
      const body = JSON.stringify({ name, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders });
      const headers: Array<[string, string]> = [["content-length", String(Buffer.byteLength(body))]];
      if (req.url?.startsWith("/hdr")) {
        headers.push(["x-resp-remove", "gone"], ["x-resp-replace", "old"], ["x-resp-append", "first"]);
      }
      res.writeHead(200, headers.flat());
      res.end(body);
    });
  };
}

const direct = (body: string) => ({ directResponse: { status: 200, body } });

function vh(
  name: string,
  domains: string[],
  routes: RouteConfig[] = [{ match: { prefix: "/" }, ...direct(`vh:${name}`) }],
) {
  return { name, domains, routes };
}

const ROUTES: RouteConfiguration = {
  name: "routing",
  responseHeadersToAdd: [{ name: "x-table", value: "t" }],
  virtualHosts: [
    vh("exact", ["exact.example", "exact.suffix.example"]),
    vh("port", ["port.example:8080"]),
    vh("suffix", ["*.suffix.example"]),
    vh("deep", ["*.deep.suffix.example"]),
    vh("suffix-port", ["*.ported.example:8080"]),
    vh("prefix", ["prefix.*"]),
    vh("longer-prefix", ["prefix.longer.*"]),
    vh(
      "default",
      ["*"],
      [
        { match: { path: "/vh" }, ...direct("vh:default") },
        { name: "first-a", match: { prefix: "/first" }, ...direct("first-a") },
        { name: "first-b", match: { prefix: "/first" }, ...direct("first-b") },
        { match: { path: "/exact" }, ...direct("path") },
        { match: { prefix: "/exact" }, ...direct("prefix-after-path") },
        { match: { regex: "/re/[0-9]+" }, ...direct("regex") },
        { match: { path: "/CaSe", caseSensitive: false }, ...direct("path-ci") },
        { match: { prefix: "/Upper" }, ...direct("prefix-cs") },
        { match: { prefix: "/MiXeD", caseSensitive: false }, ...direct("prefix-ci") },
        { match: { regex: "/ci/[a-z]+", caseSensitive: false }, ...direct("regex-ci") },
        { match: { prefix: "/hm/", headers: [{ name: "x-user", exact: "jason" }] }, ...direct("h-exact") },
        { match: { prefix: "/hm/", headers: [{ name: "x-user", prefix: "ja" }] }, ...direct("h-prefix") },
        { match: { prefix: "/hm/", headers: [{ name: "x-user", suffix: "son" }] }, ...direct("h-suffix") },
        {
          match: { prefix: "/hm/", headers: [{ name: "x-user", regex: "u[0-9]{3}" }] },
          ...direct("h-regex"),
        },
        { match: { prefix: "/hm/", headers: [{ name: "x-flag", present: true }] }, ...direct("h-present") },
        {
          match: {
            prefix: "/hm/",
            headers: [
              { name: "x-team", exact: "red", invert: true },
              { name: "x-team", present: true },
            ],
          },
          ...direct("h-invert"),
        },
        { match: { prefix: "/hm/", headers: [{ name: "x-debug", present: false }] }, ...direct("h-absent") },
        {
          match: {
            prefix: "/hall",
            headers: [
              { name: "x-a", exact: "1" },
              { name: "X-B", exact: "2" },
            ],
          },
          ...direct("h-all"),
        },
        { match: { prefix: "/qp", queryParameters: [{ name: "v", exact: "1" }] }, ...direct("q-exact") },
        { match: { prefix: "/qp", queryParameters: [{ name: "v", prefix: "be" }] }, ...direct("q-prefix") },
        { match: { prefix: "/qp", queryParameters: [{ name: "v", regex: "[0-9]+" }] }, ...direct("q-regex") },
        {
          match: { prefix: "/qp", queryParameters: [{ name: "flag", present: true }] },
          ...direct("q-present"),
        },
        {
          match: { prefix: "/qp", queryParameters: [{ name: "nope", present: false }] },
          ...direct("q-absent"),
        },
        { match: { prefix: "/method", headers: [{ name: ":method", exact: "POST" }] }, ...direct("m-post") },
        {
          match: { prefix: "/method", headers: [{ name: ":method", regex: "GET|HEAD" }] },
          ...direct("m-get"),
        },
        {
          match: { prefix: "/weighted" },
          route: {
            weightedClusters: [
              { name: "a", weight: 80 },
              { name: "b", weight: 20 },
            ],
          },
        },
        {
          match: { prefix: "/wc-headers" },
          route: {
            weightedClusters: [
              { name: "a", weight: 1, requestHeadersToAdd: [{ name: "x-wc", value: "to-a" }] },
              { name: "b", weight: 0 },
            ],
          },
        },
        { match: { prefix: "/old/" }, redirect: { prefixRewrite: "/new/", responseCode: 302 } },
        { match: { path: "/moved" }, redirect: { scheme: "https", host: "new.example", path: "/landing" } },
        { match: { path: "/port-redirect" }, redirect: { port: 8443 } },
        { match: { path: "/keep-query" }, redirect: { path: "/kept" } },
        { match: { path: "/own-query" }, redirect: { path: "/own?a=b" } },
        { match: { path: "/direct" }, directResponse: { status: 503, body: "maintenance" } },
        { match: { path: "/direct-empty" }, directResponse: { status: 200 } },
        { match: { prefix: "/api/" }, route: { cluster: "a", prefixRewrite: "/v1/" } },
        { match: { prefix: "/root-rewrite" }, route: { cluster: "a", prefixRewrite: "/" } },
        {
          match: { prefix: "/rx/" },
          route: {
            cluster: "a",
            regexRewrite: { pattern: "^/rx/([a-z]+)/([0-9]+)$", substitution: "/\\2/\\1" },
          },
        },
        { match: { prefix: "/host" }, route: { cluster: "a", hostRewrite: "internal.svc" } },
        {
          match: { prefix: "/hdr" },
          route: { cluster: "a" },
          requestHeadersToAdd: [
            { name: "x-added", value: "1" },
            { name: "X-Replace", value: "new" },
            { name: "x-append", value: "two", append: true },
          ],
          requestHeadersToRemove: ["X-Remove"],
          responseHeadersToAdd: [
            { name: "x-resp-added", value: "r" },
            { name: "x-resp-replace", value: "new" },
            { name: "x-resp-append", value: "second", append: true },
          ],
          responseHeadersToRemove: ["X-Resp-Remove"],
        },
        { match: { prefix: "/backend" }, route: { cluster: "a" } },
      ],
    ),
  ],
};

let a: HttpBackend;
let b: HttpBackend;
let proxy: RunningProxy;

before(async () => {
  a = await httpBackend(named("a"));
  b = await httpBackend(named("b"));
  proxy = await startProxy(
    config({
      routes: ROUTES,
      clusters: [cluster("a", [a.port]), cluster("b", [b.port])],
      statPrefix: "routing",
    }),
  );
});
after(closeAll);

const text = (r: RawResponse) => r.body.toString();

async function which(
  path: string,
  host = "any.example",
  headers: Record<string, string> = {},
): Promise<string> {
  const r = await get(proxy.port, path, host, headers);
  if (r.status === 404) return "404";
  assert.equal(r.status, 200, `${host}${path}: ${r.status} ${text(r)}`);
  return text(r);
}

test("virtual hosts by authority: exact, with and without port, case-insensitive", async () => {
  assert.equal(await which("/vh", "exact.example"), "vh:exact");
  assert.equal(
    await which("/vh", "exact.example:9999"),
    "vh:exact",
    "a domain without port matches any port",
  );
  assert.equal(await which("/vh", "EXACT.Example"), "vh:exact");
  assert.equal(await which("/vh", "port.example:8080"), "vh:port");
  assert.equal(await which("/vh", "port.example"), "vh:default", "a domain with a port needs that port");
  assert.equal(await which("/vh", "port.example:9090"), "vh:default");
});

test("virtual hosts: *.suffix (longest first, not the bare suffix), prefix.*, exact before wildcards, * last", async () => {
  assert.equal(await which("/vh", "a.suffix.example"), "vh:suffix");
  assert.equal(await which("/vh", "a.b.suffix.example:81"), "vh:suffix");
  assert.equal(
    await which("/vh", "suffix.example"),
    "vh:default",
    "*.suffix.example does not match suffix.example",
  );
  assert.equal(await which("/vh", "x.deep.suffix.example"), "vh:deep", "the longest suffix wins");
  assert.equal(await which("/vh", "a.ported.example:8080"), "vh:suffix-port", "a wildcard with a port");
  assert.equal(await which("/vh", "a.ported.example:9090"), "vh:default", "... needs that port");
  assert.equal(await which("/vh", "a.ported.example"), "vh:default");
  assert.equal(await which("/vh", "exact.suffix.example"), "vh:exact", "an exact domain beats a wildcard");
  assert.equal(await which("/vh", "prefix.anything"), "vh:prefix");
  assert.equal(await which("/vh", "prefix.anything:8080"), "vh:prefix");
  assert.equal(await which("/vh", "prefix.longer.x"), "vh:longer-prefix", "the longest prefix wins");
  assert.equal(await which("/vh", "unknown.example"), "vh:default");
});

test("routes: the first match wins", async () => {
  assert.equal(await which("/first"), "first-a");
  assert.equal(await which("/first/deeper"), "first-a");
});

test("path, prefix and regex matches (the query is not part of the path)", async () => {
  assert.equal(await which("/exact"), "path");
  assert.equal(await which("/exact?x=1"), "path");
  assert.equal(await which("/exact/more"), "prefix-after-path");
  assert.equal(await which("/exactly"), "prefix-after-path", "prefix is a string prefix, as in Envoy");
  assert.equal(await which("/re/123"), "regex");
  assert.equal(await which("/re/123?q=a"), "regex");
  assert.equal(await which("/re/12a"), "404", "regex must match the whole path");
  assert.equal(await which("/re/123/x"), "404");
});

test("caseSensitive: false for path, prefix and regex; true by default", async () => {
  assert.equal(await which("/case"), "path-ci");
  assert.equal(await which("/CASE"), "path-ci");
  assert.equal(await which("/Upper/x"), "prefix-cs");
  assert.equal(await which("/upper/x"), "404");
  assert.equal(await which("/mixed/x"), "prefix-ci");
  assert.equal(await which("/CI/ABC"), "regex-ci");
});

test("header matches: exact, prefix, suffix, regex, present, absent, invert; all must hold", async () => {
  assert.equal(await which("/hm/", "x", { "x-user": "jason" }), "h-exact");
  assert.equal(await which("/hm/", "x", { "x-user": "jane" }), "h-prefix");
  assert.equal(await which("/hm/", "x", { "x-user": "mason" }), "h-suffix");
  assert.equal(await which("/hm/", "x", { "x-user": "u123" }), "h-regex");
  assert.equal(
    await which("/hm/", "x", { "x-user": "u1234", "x-flag": "" }),
    "h-present",
    "regex is whole-value",
  );
  assert.equal(await which("/hm/", "x", { "x-team": "blue", "x-debug": "1" }), "h-invert");
  assert.equal(await which("/hm/", "x", { "x-team": "red", "x-debug": "1" }), "404");
  assert.equal(
    await which("/hm/", "x", { "x-debug": "1" }),
    "404",
    "invert does not match an absent header here",
  );
  assert.equal(await which("/hm/"), "h-absent");
  assert.equal(
    await which("/hm/", "x", { "X-USER": "jason" }),
    "h-exact",
    "header names are case-insensitive",
  );
  assert.equal(await which("/hall", "x", { "x-a": "1", "x-b": "2", "x-debug": "1" }), "h-all");
  assert.equal(await which("/hall", "x", { "x-a": "1", "x-debug": "1" }), "404");
});

test("query parameter matches: exact, prefix, regex, present, absent", async () => {
  assert.equal(await which("/qp?v=1"), "q-exact");
  assert.equal(await which("/qp?a=b&v=beta"), "q-prefix");
  assert.equal(await which("/qp?v=42"), "q-regex");
  assert.equal(await which("/qp?v=4x2&flag"), "q-present");
  assert.equal(await which("/qp?v=%31"), "q-exact", "values are percent-decoded");
  assert.equal(await which("/qp?x=y"), "q-absent");
  assert.equal(await which("/qp?nope=1"), "404");
});

test("method through :method", async () => {
  const post = await send(proxy.port, "POST /method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  assert.equal(text(post), "m-post");
  assert.equal(await which("/method"), "m-get");
  const put = await send(proxy.port, "PUT /method HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  assert.equal(put.status, 404);
});

test("weighted clusters 80/20 over 2,000 requests, within ±5%", async () => {
  const counts = { a: 0, b: 0 };
  const clients = await Promise.all(Array.from({ length: 8 }, () => keepAliveClient(proxy.port)));
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < 250; i++) {
        const r = await c.get("/weighted");
        counts[json(r).name as "a" | "b"]++;
      }
      c.client.destroy();
    }),
  );
  assert.equal(counts.a + counts.b, 2000);
  assert.ok(Math.abs(counts.a / 2000 - 0.8) <= 0.05, `a got ${counts.a} of 2000`);
  // Per-cluster header operations of the chosen weighted cluster; a weight of 0 is never picked.
  for (let i = 0; i < 10; i++) {
    const r = json(await get(proxy.port, "/wc-headers"));
    assert.equal(r.name, "a");
    assert.equal(r.headers["x-wc"], "to-a");
  }
});

test("redirects: Location and code as Envoy builds them", async () => {
  const r = await get(proxy.port, "/old/page?x=1", "www.example:8080");
  assert.equal(r.status, 302);
  assert.equal(r.header("location"), "http://www.example:8080/new/page?x=1");
  assert.equal(r.body.length, 0);
  const m = await get(proxy.port, "/moved", "www.example:8080");
  assert.equal(m.status, 301, "301 by default");
  assert.equal(m.header("location"), "https://new.example/landing");
  const p = await get(proxy.port, "/port-redirect", "www.example");
  assert.equal(p.header("location"), "http://www.example:8443/port-redirect");
  const kq = await get(proxy.port, "/keep-query?x=1&y=2", "www.example");
  assert.equal(kq.header("location"), "http://www.example/kept?x=1&y=2", "a new path keeps the query");
  const oq = await get(proxy.port, "/own-query?x=1", "www.example");
  assert.equal(oq.header("location"), "http://www.example/own?a=b", "a path with its own query replaces it");
  assert.equal(r.header("x-table"), "t", "the route table's response headers apply to redirects too");
});

test("direct responses: status, body, and the connection kept", async () => {
  const c = await keepAliveClient(proxy.port);
  const r = await c.get("/direct");
  assert.equal(r.status, 503);
  assert.equal(text(r), "maintenance");
  assert.equal(r.header("x-table"), "t");
  const e = await c.get("/direct-empty");
  assert.equal(e.status, 200);
  assert.equal(e.header("content-length"), "0");
  assert.equal(json(await c.get("/backend")).name, "a", "the same connection then reaches a backend");
  c.client.destroy();
});

test("prefixRewrite, regexRewrite and hostRewrite, as the backend sees them", async () => {
  const api = json(await get(proxy.port, "/api/users/7?full=1", "svc.example"));
  assert.equal(api.url, "/v1/users/7?full=1");
  assert.equal(api.headers.host, "svc.example", "Host is kept without hostRewrite");
  assert.equal(json(await get(proxy.port, "/root-rewrite/x")).url, "/x", "no double slash");
  assert.equal(json(await get(proxy.port, "/root-rewrite")).url, "/");
  assert.equal(json(await get(proxy.port, "/rx/abc/123?q=1")).url, "/123/abc?q=1");
  assert.equal(json(await get(proxy.port, "/rx/abc/x")).url, "/rx/abc/x", "no match: unchanged");
  const host = json(await get(proxy.port, "/host/x", "public.example"));
  assert.equal(host.headers.host, "internal.svc");
  assert.equal(host.url, "/host/x");
  assert.equal(
    host.rawHeaders.filter((h: string) => h.toLowerCase() === "host").length,
    1,
    "exactly one Host upstream",
  );
});

test("request and response header add / replace / append / remove", async () => {
  const r = await get(proxy.port, "/hdr", "x", {
    "x-replace": "old",
    "x-append": "one",
    "x-remove": "gone",
    "x-keep": "k",
  });
  assert.equal(r.status, 200);
  const seen = json(r).headers;
  assert.equal(seen["x-added"], "1");
  assert.equal(seen["x-replace"], "new", "a non-append option replaces the client's value");
  assert.equal(seen["x-append"], "one, two", "append adds a second value");
  assert.equal(seen["x-remove"], undefined);
  assert.equal(seen["x-keep"], "k");
  assert.equal(r.header("x-resp-added"), "r");
  assert.deepEqual(r.headers.get("x-resp-replace"), ["new"]);
  assert.deepEqual(r.headers.get("x-resp-append"), ["first", "second"]);
  assert.equal(r.header("x-resp-remove"), undefined);
  assert.equal(r.header("x-table"), "t");
});

test("no matching route: 404 with an empty body, flag NR counted; no virtual host likewise", async () => {
  const nr = proxy.proxy.stats.counter("http.routing.response_flag.NR");
  const before = nr.value;
  const r = await get(proxy.port, "/no/such/route");
  assert.equal(r.status, 404);
  assert.equal(r.body.length, 0);
  assert.equal(r.header("content-length"), "0");
  assert.equal(nr.value, before + 1);

  const noDefault = await startProxy(
    config({
      routes: { name: "r", virtualHosts: [vh("only", ["only.example"])] },
      statPrefix: "nodefault",
    }),
  );
  const miss = await get(noDefault.port, "/", "other.example");
  assert.equal(miss.status, 404);
  assert.equal(miss.body.length, 0);
  assert.equal(noDefault.proxy.stats.counter("http.nodefault.response_flag.NR").value, 1);
  assert.equal(text(await get(noDefault.port, "/", "only.example")), "vh:only");
});

test("a pipelined request after a local reply is still answered", async () => {
  const c = await keepAliveClient(proxy.port);
  c.client.write(
    "GET /no/route HTTP/1.1\r\nHost: x\r\n\r\nGET /direct HTTP/1.1\r\nHost: x\r\n\r\nGET /backend HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  assert.equal((await c.client.read()).status, 404);
  assert.equal((await c.client.read()).status, 503);
  assert.equal(json(await c.client.read()).name, "a");
  c.client.destroy();
});
