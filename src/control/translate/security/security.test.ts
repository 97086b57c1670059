// Istio's authz samples load and translate to configs the proxy accepts; RequestAuthentication through a real
// proxy (valid, expired, wrong key, alg none, oversized, missing token, payload header, token removal, params
// and cookies, a jwksUri served by a local server and refetched when the issuer rotates its key); the TCP
// caveat (a TCP chain's network RBAC); CUSTOM through a local authorization server; a gateway's policies.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { loadPaths } from "../../../api/load/index.ts";
import { validateResources } from "../../../api/validate/index.ts";
import { validateProxyConfig } from "../../../proxy/config/validate.ts";
import { closeAll, echo, httpBackend, netBackend, onClose, sleep } from "../../../proxy/test-support.ts";
import { ServiceRegistry } from "../../registry/registry.ts";
import { SidecarRenderer } from "../sidecar-renderer.ts";
import { assertValid, resources, runProxy, withHost } from "../translate-test-support.ts";
import { applicablePolicies, httpSecurity, tcpSecurity } from "./index.ts";
import { call, ISSUER, securedProxy, testKeys } from "./security-test-support.ts";

after(closeAll);

const SAMPLES = join(import.meta.dirname, "..", "..", "..", "..", "..", "shared", "istio-samples", "authz");

test("every authz sample loads and translates into configs the proxy accepts", async () => {
  const files = readdirSync(SAMPLES).filter((f) => f.endsWith(".yaml"));
  assert.ok(files.length >= 20);
  for (const f of files) {
    const loaded = await loadPaths([join(SAMPLES, f)]);
    const { valid, diagnostics } = await validateResources(loaded.resources);
    const errors = [...loaded.diagnostics, ...diagnostics].filter((d) => d.severity === "error");
    assert.deepEqual(
      errors.map((d) => d.message),
      [],
      f,
    );
    const registry = new ServiceRegistry(valid);
    const labelSets: Record<string, string>[] = [{ app: "httpbin", version: "v1" }, { app: "other" }];
    for (const labels of labelSets) {
      const node = { namespace: "foo", labels };
      assert.ok(applicablePolicies(registry, node).authorization.length >= 0);
      const h = httpSecurity(registry, node, 8080, {
        providers: { default: { cluster: "ext-authz" } },
      });
      const t = tcpSecurity(registry, node, 8080);
      const cfg = {
        listeners: [
          {
            name: "l",
            port: 0,
            filterChains: [
              { name: "h", filter: { type: "http" as const, routeConfigName: "r", ...h } },
              {
                name: "t",
                match: { destinationPort: 9 },
                filter: { type: "tcp" as const, cluster: "c", ...t },
              },
            ],
          },
        ],
        routeConfigs: [{ name: "r", virtualHosts: [] }],
        clusters: [
          { name: "c", endpoints: [] },
          { name: "ext-authz", endpoints: [] },
        ],
      };
      assert.deepEqual(
        validateProxyConfig(cfg).filter((p) => p.severity === "error"),
        [],
        f,
      );
    }
  }
});

test("the TCP caveat: ALLOW rules with HTTP-only fields are dropped, DENY rules ignore them", async () => {
  const backend = await netBackend((s) => s.end("hello"));
  const run = async (yaml: string) => {
    const registry = new ServiceRegistry(await resources(yaml));
    const rbac = tcpSecurity(registry, { namespace: "foo", labels: { app: "db" } }, 9000);
    const ports = await runProxy({
      listeners: [
        { name: "tcp", port: 9000, filterChains: [{ filter: { type: "tcp", cluster: "db", ...rbac } }] },
      ],
      clusters: [{ name: "db", endpoints: [{ address: "127.0.0.1", port: backend.port }] }],
    });
    const socket = net.connect(ports.tcp!, "127.0.0.1");
    socket.setTimeout(5000, () => socket.destroy());
    let got = "";
    socket.on("data", (d: Buffer) => {
      got += d.toString();
    });
    await new Promise<void>((resolve) => {
      socket.on("error", () => resolve());
      socket.on("close", () => resolve());
    });
    return got;
  };
  const ap = (spec: string) =>
    `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: p, namespace: foo }\nspec: ${spec}\n`;
  // ALLOW methods: the only rule is dropped, so nothing is allowed.
  assert.equal(await run(ap("{ rules: [{ to: [{ operation: { methods: [GET] } }] }] }")), "");
  // ALLOW by port and source address: TCP fields work.
  assert.equal(
    await run(
      ap(
        '{ rules: [{ to: [{ operation: { ports: ["9000"] } }], from: [{ source: { ipBlocks: ["127.0.0.1"] } }] }] }',
      ),
    ),
    "hello",
  );
  // DENY methods GET: the field is ignored, the rule denies everything.
  assert.equal(await run(ap("{ action: DENY, rules: [{ to: [{ operation: { methods: [GET] } }] }] }")), "");
  // DENY from another address: allowed.
  assert.equal(
    await run(ap('{ action: DENY, rules: [{ from: [{ source: { ipBlocks: ["10.0.0.1"] } }] }] }')),
    "hello",
  );
  // DENY with requestPrincipals and a TCP port: the port alone decides.
  assert.equal(
    await run(
      ap(
        '{ action: DENY, rules: [{ from: [{ source: { requestPrincipals: ["*"] } }], to: [{ operation: { ports: ["9001"] } }] }] }',
      ),
    ),
    "hello",
  );
});

test("JWT: valid, expired, wrong key, alg none, oversized, missing; payload header and token removal", async () => {
  const keys = await testKeys();
  const backend = await httpBackend(echo);
  const port = await securedProxy(
    {
      jwtAuthn: {
        providers: [
          {
            name: "p",
            issuer: ISSUER,
            audiences: ["httpbin"],
            localJwks: keys.jwks,
            forwardPayloadHeader: "x-jwt-payload",
            maxTokenBytes: 2048,
          },
        ],
      },
    },
    { backend: backend.port },
  );
  const good = await keys.sign({ sub: "alice", aud: "httpbin" });
  const ok = await call(port, { headers: { authorization: `Bearer ${good}`, "x-jwt-payload": "forged" } });
  assert.equal(ok.status, 200, ok.body);
  const seen = JSON.parse(ok.body) as { headers: Record<string, string> };
  assert.equal(seen.headers.authorization, undefined, "the token is not forwarded");
  const payload = JSON.parse(Buffer.from(seen.headers["x-jwt-payload"]!, "base64url").toString()) as {
    sub: string;
  };
  assert.equal(payload.sub, "alice");

  const denied = async (token: string, message: string) => {
    const a = await call(port, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(a.status, 401, `${message}: ${a.body}`);
    assert.equal(a.body, message);
    assert.match(a.head, /www-authenticate: Bearer realm="http:\/\/httpbin\.foo\/", error="invalid_token"/);
  };
  await denied(await keys.sign({ sub: "a", aud: "httpbin" }, { expiresIn: 1 }), "Jwt is expired");
  await denied(await keys.signWrong({ sub: "a", aud: "httpbin" }), "Jwt verification fails");
  await denied(await keys.sign({ sub: "a", aud: "other" }), "Jwt audiences are not allowed");
  await denied(
    await keys.sign({ sub: "a", aud: "httpbin", iss: "someone-else" }),
    "Jwt issuer is not configured",
  );
  const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
    JSON.stringify({ iss: ISSUER, sub: "a", aud: "httpbin" }),
  ).toString("base64url")}.`;
  await denied(none, "Jwt header [alg] is not supported");
  await denied(
    "not-a-jwt",
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
  );
  await denied(
    await keys.sign({ sub: "a", aud: "httpbin", pad: "x".repeat(3000) }),
    "Jwt exceeds the size limit",
  );
  const missing = await call(port);
  assert.equal(missing.status, 200, "no token: passes unauthenticated");
});

test("JWT: fromParams, fromCookies, fromHeaders with a prefix, forwardOriginalToken", async () => {
  const keys = await testKeys();
  const backend = await httpBackend(echo);
  const port = await securedProxy(
    {
      jwtAuthn: {
        providers: [
          {
            name: "p",
            issuer: ISSUER,
            localJwks: keys.jwks,
            fromHeaders: [{ name: "x-token", valuePrefix: "Token " }],
            fromParams: ["jwt"],
            fromCookies: ["session"],
            forward: true,
          },
        ],
      },
      rbac: [
        {
          rules: {
            action: "ALLOW",
            policies: {
              p: {
                permissions: [{ any: true }],
                principals: [{ requestPrincipal: { exact: `${ISSUER}/alice` } }],
              },
            },
          },
        },
      ],
    },
    { backend: backend.port },
  );
  const t = await keys.sign({ sub: "alice" });
  const viaHeader = await call(port, { headers: { "x-token": `Token ${t}` } });
  assert.equal(viaHeader.status, 200, viaHeader.body);
  assert.equal(
    (JSON.parse(viaHeader.body) as { headers: Record<string, string> }).headers["x-token"],
    `Token ${t}`,
  );
  assert.equal((await call(port, { path: `/?jwt=${t}` })).status, 200);
  assert.equal((await call(port, { headers: { cookie: `a=b; session=${t}` } })).status, 200);
  // Authorization: Bearer is not a location of this provider: the request is unauthenticated, then denied.
  assert.equal((await call(port, { headers: { authorization: `Bearer ${t}` } })).status, 403);
});

test("JWT: a jwksUri is fetched from a real server, cached, and refetched when the issuer rotates its key", async () => {
  const first = await generateKeyPair("ES256");
  const second = await generateKeyPair("ES256");
  let current = [{ ...(await exportJWK(first.publicKey)), kid: "one", alg: "ES256" }];
  let fetches = 0;
  const jwksServer = http.createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: current }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, "127.0.0.1", r));
  onClose(() => new Promise<void>((r) => jwksServer.close(() => r())));
  const jwksPort = (jwksServer.address() as { port: number }).port;
  const port = await securedProxy(
    {
      jwtAuthn: {
        providers: [
          {
            name: "remote",
            issuer: "https://issuer.test",
            remoteJwks: { uri: `http://issuer.test:${jwksPort}/jwks.json`, cluster: "jwks" },
          },
        ],
      },
      rbac: [
        {
          rules: {
            action: "ALLOW",
            policies: {
              any: { permissions: [{ any: true }], principals: [{ requestPrincipal: { regex: ".+" } }] },
            },
          },
        },
      ],
    },
    { clusters: [{ name: "jwks", endpoints: [{ address: "127.0.0.1", port: jwksPort }] }] },
  );
  const sign = (key: Parameters<SignJWT["sign"]>[0], kid: string) =>
    new SignJWT({ sub: "u" })
      .setProtectedHeader({ alg: "ES256", kid })
      .setIssuer("https://issuer.test")
      .setExpirationTime("1h")
      .sign(key);
  const t1 = await sign(first.privateKey, "one");
  assert.equal((await call(port, { headers: { authorization: `Bearer ${t1}` } })).status, 200);
  assert.equal((await call(port, { headers: { authorization: `Bearer ${t1}` } })).status, 200);
  assert.equal(fetches, 1, "cached");
  current = [{ ...(await exportJWK(second.publicKey)), kid: "two", alg: "ES256" }];
  const t2 = await sign(second.privateKey, "two");
  // An unknown kid refetches at most once a second.
  await sleep(1100);
  const rotated = await call(port, { headers: { authorization: `Bearer ${t2}` } });
  assert.equal(rotated.status, 200, rotated.body);
  assert.equal(fetches, 2, "refetched for an unknown kid");
  // Within the refetch interval an unknown kid does not make the proxy hammer the issuer.
  const bogus = await sign((await generateKeyPair("ES256")).privateKey, "three");
  assert.equal((await call(port, { headers: { authorization: `Bearer ${bogus}` } })).status, 401);
  assert.equal(fetches, 2);
});

test("CUSTOM: a local HTTP authorizer decides the requests its rules select", async () => {
  const authz = await httpBackend((req, res) => {
    if (req.headers["x-allow"] === "yes") {
      res.writeHead(200, { "x-user": "checked" });
      res.end();
    } else {
      res.writeHead(401, { "x-reason": "nope" });
      res.end("denied by authz");
    }
  });
  const backend = await httpBackend(echo);
  const yaml = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: foo }
spec:
  action: CUSTOM
  provider: { name: my-authz }
  rules: [{ to: [{ operation: { paths: ["/secure*"] } }] }]
`;
  const registry = new ServiceRegistry(await resources(yaml));
  const sec = httpSecurity(registry, { namespace: "foo", labels: {} }, 8080, {
    providers: { "my-authz": { cluster: "authz", headersToUpstreamOnAllow: ["x-user"] } },
  });
  const port = await securedProxy(sec, {
    backend: backend.port,
    clusters: [{ name: "authz", endpoints: [{ address: "127.0.0.1", port: authz.port }] }],
  });
  assert.equal((await call(port, { path: "/public" })).status, 200, "not selected: not checked");
  const ok = await call(port, { path: "/secure", headers: { "x-allow": "yes", "x-user": "spoofed" } });
  assert.equal(ok.status, 200);
  assert.equal((JSON.parse(ok.body) as { headers: Record<string, string> }).headers["x-user"], "checked");
  const no = await call(port, { path: "/secure" });
  assert.equal(no.status, 401);
  assert.equal(no.body, "denied by authz");
  assert.match(no.head, /x-reason: nope/);
  // The authorizer down: fail closed (403) unless failOpen.
  await authz.close();
  assert.equal((await call(port, { path: "/secure", headers: { "x-allow": "yes" } })).status, 403);
});

test("gateway: the gateway workload's policies guard its listeners, and the render cache keys on them", async () => {
  const backend = await httpBackend(echo);
  const base = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs, namespace: istio-system }
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: backend.example } }] }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: backend, namespace: istio-system }
spec:
  hosts: [backend.example]
  ports: [{ number: 80, name: http, protocol: HTTP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { http: ${backend.port} } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: gw-deny-admin, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin*"] } }] }]
`;
  const gw = { id: "gw-1", namespace: "istio-system", labels: { istio: "ingressgateway" } };
  const renderer = new SidecarRenderer(new ServiceRegistry(await resources(base)));
  const cfg = renderer.render(gw);
  assertValid(cfg);
  const filter = cfg.listeners[0]!.filterChains[0]!.filter;
  assert.equal(filter.type, "http");
  assert.equal(filter.rbac?.length, 1);
  const ports = await runProxy(cfg);
  const port = ports[cfg.listeners[0]!.name]!;
  assert.equal((await withHost(port, "backend.example", "/data")).status, 200);
  const denied = await withHost(port, "backend.example", "/admin/x");
  assert.equal(denied.status, 403);
  assert.equal(denied.body.toString(), "RBAC: access denied");
  // Another pod of the gateway (more labels, the same selector match) renders under its own key, policy included.
  const other = renderer.render({
    id: "gw-2",
    namespace: "istio-system",
    labels: { istio: "ingressgateway", x: "y" },
  });
  assert.equal((other.listeners[0]!.filterChains[0]!.filter as { rbac?: unknown[] }).rbac?.length, 1);
});

test("HTTP/2 (h2c): RBAC and jwt_authn answer before routing, the token is removed upstream", async () => {
  const keys = await testKeys();
  const backend = await httpBackend(echo);
  const port = await securedProxy(
    {
      jwtAuthn: { providers: [{ name: "p", issuer: ISSUER, localJwks: keys.jwks }] },
      rbac: [
        {
          rules: {
            action: "DENY",
            policies: {
              admin: { permissions: [{ urlPath: { prefix: "/admin" } }], principals: [{ any: true }] },
            },
          },
        },
      ],
    },
    { backend: backend.port },
  );
  const { connect } = await import("node:http2");
  const session = connect(`http://127.0.0.1:${port}`);
  onClose(() => session.close());
  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = session.request({ ":path": path, ":authority": "httpbin.foo", ...headers });
      let status = 0;
      let body = "";
      req.on("response", (h) => {
        status = Number(h[":status"]);
      });
      req.on("data", (d: Buffer) => {
        body += d.toString();
      });
      req.on("end", () => resolve({ status, body }));
      req.on("error", reject);
      req.end();
    });
  assert.deepEqual(await get("/admin/x"), { status: 403, body: "RBAC: access denied" });
  assert.deepEqual(await get("/x", { authorization: "Bearer a.b.c" }), {
    status: 401,
    body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
  });
  const ok = await get("/x", { authorization: `Bearer ${await keys.sign({ sub: "a" })}` });
  assert.equal(ok.status, 200);
  assert.equal((JSON.parse(ok.body) as { headers: Record<string, string> }).headers.authorization, undefined);
});
