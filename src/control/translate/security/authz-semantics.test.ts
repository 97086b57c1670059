// Istio's documented AuthorizationPolicy semantics, case by case, through real proxies: each distinct set of
// policies is translated for the workload httpbin (namespace foo) by httpSecurity(), run in a ProxyServer
// whose listener has a plain-text chain and an mTLS chain (client certificates carry SPIFFE identities), and
// each case's request must get the answer Istio's sidecar would give.
import { after, test } from "node:test";
import { closeAll } from "../../../proxy/test-support.ts";
import { ServiceRegistry } from "../../registry/registry.ts";
import { resources } from "../translate-test-support.ts";
import { httpSecurity } from "./index.ts";
import { assertStatus, type Call, call, ISSUER, securedProxy, testKeys } from "./security-test-support.ts";

after(closeAll);

const keys = await testKeys();
const alice = await keys.sign({
  sub: "alice",
  aud: ["httpbin.foo"],
  azp: "frontend",
  groups: ["admin", "dev"],
  nested: { role: "owner" },
});
const bob = await keys.sign({ sub: "bob", aud: "other", groups: "dev" });
const expired = await keys.sign({ sub: "alice" }, { expiresIn: Math.floor(Date.now() / 1000) - 3600 });
const forged = await keys.signWrong({ sub: "alice" });

const RA = `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: foo }
spec:
  jwtRules:
  - issuer: "${ISSUER}"
    jwks: '${keys.jwks}'
`;

/** An AuthorizationPolicy document. */
function ap(name: string, spec: string, o: { ns?: string; dryRun?: boolean } = {}): string {
  const annotations = o.dryRun ? `, annotations: { "istio.io/dry-run": "true" }` : "";
  return `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${o.ns ?? "foo"}${annotations} }
spec: ${spec}
`;
}

const allow = (rules: string) => ap("allow", `{ action: ALLOW, rules: ${rules} }`);
const deny = (rules: string) => ap("deny", `{ action: DENY, rules: ${rules} }`);
const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

interface Case {
  readonly name: string;
  readonly policies: string;
  readonly req?: Call;
  readonly want: number;
}

const ALLOW_ALL = allow("[{}]");
const SELF = "foo/sleep";
const CASES: Case[] = [
  // Scope and the basic actions.
  { name: "no policy: allowed", policies: "", want: 200 },
  { name: "spec {} denies everything", policies: ap("deny-all", "{}"), want: 403 },
  { name: "spec {} denies POST too", policies: ap("deny-all", "{}"), req: { method: "POST" }, want: 403 },
  { name: "spec {} denies mTLS peers", policies: ap("deny-all", "{}"), req: { peer: SELF }, want: 403 },
  { name: "rules [{}] allows everything", policies: ALLOW_ALL, want: 200 },
  { name: "rules [{}] allows DELETE", policies: ALLOW_ALL, req: { method: "DELETE" }, want: 200 },
  { name: "DENY rules [{}] denies everything", policies: deny("[{}]"), want: 403 },
  { name: "DENY wins over ALLOW", policies: ALLOW_ALL + deny("[{}]"), want: 403 },
  {
    name: "DENY of DELETE leaves GET to ALLOW",
    policies: ALLOW_ALL + deny("[{ to: [{ operation: { methods: [DELETE] } }] }]"),
    want: 200,
  },
  {
    name: "DENY of DELETE denies DELETE",
    policies: ALLOW_ALL + deny("[{ to: [{ operation: { methods: [DELETE] } }] }]"),
    req: { method: "DELETE" },
    want: 403,
  },
  {
    name: "a DENY that does not match and no ALLOW: allowed",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    want: 200,
  },
  {
    name: "ALLOW policies are OR'ed: first",
    policies:
      ap("a", "{ rules: [{ to: [{ operation: { methods: [GET], paths: [/a] } }] }] }") +
      ap("b", "{ rules: [{ to: [{ operation: { methods: [POST], paths: [/b] } }] }] }"),
    req: { path: "/a" },
    want: 200,
  },
  {
    name: "ALLOW policies are OR'ed: second",
    policies:
      ap("a", "{ rules: [{ to: [{ operation: { methods: [GET], paths: [/a] } }] }] }") +
      ap("b", "{ rules: [{ to: [{ operation: { methods: [POST], paths: [/b] } }] }] }"),
    req: { method: "POST", path: "/b" },
    want: 200,
  },
  {
    name: "ALLOW policies are OR'ed: fields of one operation are AND'ed",
    policies:
      ap("a", "{ rules: [{ to: [{ operation: { methods: [GET], paths: [/a] } }] }] }") +
      ap("b", "{ rules: [{ to: [{ operation: { methods: [POST], paths: [/b] } }] }] }"),
    req: { path: "/b" },
    want: 403,
  },
  {
    name: "selector of another workload: not applied",
    policies: ap("x", "{ selector: { matchLabels: { app: other } } }"),
    want: 200,
  },
  {
    name: "selector of this workload: applied",
    policies: ap("x", "{ selector: { matchLabels: { app: httpbin } } }"),
    want: 403,
  },
  { name: "policy of another namespace: not applied", policies: ap("x", "{}", { ns: "bar" }), want: 200 },
  { name: "root namespace policy: mesh-wide", policies: ap("x", "{}", { ns: "istio-system" }), want: 403 },
  {
    name: "root namespace selector matches workloads of every namespace",
    policies: ap("x", "{ selector: { matchLabels: { app: httpbin } } }", { ns: "istio-system" }),
    want: 403,
  },
  {
    name: "root namespace selector of another workload: not applied",
    policies: ap("x", "{ selector: { matchLabels: { app: other } } }", { ns: "istio-system" }),
    want: 200,
  },
  {
    name: "mesh ALLOW and namespace ALLOW combine (OR)",
    policies:
      ap("mesh", "{ rules: [{ to: [{ operation: { paths: [/health] } }] }] }", { ns: "istio-system" }) +
      ap("ns", "{ rules: [{ to: [{ operation: { paths: [/data] } }] }] }"),
    req: { path: "/health" },
    want: 200,
  },
  {
    name: "mesh DENY applies under a namespace ALLOW all",
    policies:
      ap("mesh", "{ action: DENY, rules: [{ to: [{ operation: { paths: [/debug] } }] }] }", {
        ns: "istio-system",
      }) + ALLOW_ALL,
    req: { path: "/debug" },
    want: 403,
  },
  // Dry run and audit never change the answer.
  { name: "dry-run deny-all: allowed", policies: ap("x", "{}", { dryRun: true }), want: 200 },
  {
    name: "dry-run DENY: allowed",
    policies: ap("x", "{ action: DENY, rules: [{}] }", { dryRun: true }),
    want: 200,
  },
  {
    name: "dry-run ALLOW next to enforced ALLOW: the enforced decides",
    policies: ap("x", "{}", { dryRun: true }) + ALLOW_ALL,
    want: 200,
  },
  { name: "AUDIT: allowed", policies: ap("x", "{ action: AUDIT, rules: [{}] }"), want: 200 },
  {
    name: "AUDIT with spec {} ALLOW: denied by the ALLOW",
    policies: ap("x", "{ action: AUDIT, rules: [{}] }") + ap("y", "{}"),
    want: 403,
  },
  // Methods.
  { name: "methods GET: GET", policies: allow("[{ to: [{ operation: { methods: [GET] } }] }]"), want: 200 },
  {
    name: "methods GET: POST",
    policies: allow("[{ to: [{ operation: { methods: [GET] } }] }]"),
    req: { method: "POST" },
    want: 403,
  },
  {
    name: "methods GET: HEAD is another method",
    policies: allow("[{ to: [{ operation: { methods: [GET] } }] }]"),
    req: { method: "HEAD" },
    want: 403,
  },
  {
    name: "notMethods DELETE: GET",
    policies: allow("[{ to: [{ operation: { notMethods: [DELETE] } }] }]"),
    want: 200,
  },
  {
    name: "notMethods DELETE: DELETE",
    policies: allow("[{ to: [{ operation: { notMethods: [DELETE] } }] }]"),
    req: { method: "DELETE" },
    want: 403,
  },
  // Paths.
  {
    name: "exact path",
    policies: allow("[{ to: [{ operation: { paths: [/ip] } }] }]"),
    req: { path: "/ip" },
    want: 200,
  },
  {
    name: "exact path ignores the query",
    policies: allow("[{ to: [{ operation: { paths: [/ip] } }] }]"),
    req: { path: "/ip?x=1" },
    want: 200,
  },
  {
    name: "exact path: trailing slash differs",
    policies: allow("[{ to: [{ operation: { paths: [/ip] } }] }]"),
    req: { path: "/ip/" },
    want: 403,
  },
  {
    name: "exact path is case-sensitive",
    policies: allow("[{ to: [{ operation: { paths: [/ip] } }] }]"),
    req: { path: "/IP" },
    want: 403,
  },
  {
    name: "prefix path",
    policies: allow('[{ to: [{ operation: { paths: ["/api/*"] } }] }]'),
    req: { path: "/api/v1/x" },
    want: 200,
  },
  {
    name: "prefix path: the bare prefix without its slash",
    policies: allow('[{ to: [{ operation: { paths: ["/api/*"] } }] }]'),
    req: { path: "/api" },
    want: 403,
  },
  {
    name: "prefix path: a longer word",
    policies: allow('[{ to: [{ operation: { paths: ["/api/*"] } }] }]'),
    req: { path: "/apix/1" },
    want: 403,
  },
  {
    name: "suffix path",
    policies: allow('[{ to: [{ operation: { paths: ["*.html"] } }] }]'),
    req: { path: "/a/b.html" },
    want: 200,
  },
  {
    name: "suffix path: other suffix",
    policies: allow('[{ to: [{ operation: { paths: ["*.html"] } }] }]'),
    req: { path: "/a/b.htm" },
    want: 403,
  },
  {
    name: "path *: any path",
    policies: allow('[{ to: [{ operation: { paths: ["*"] } }] }]'),
    req: { path: "/x/y" },
    want: 200,
  },
  {
    name: "template {*}: one segment",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{*}/bar"] } }] }]'),
    req: { path: "/foo/x/bar" },
    want: 200,
  },
  {
    name: "template {*}: two segments do not match",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{*}/bar"] } }] }]'),
    req: { path: "/foo/x/y/bar" },
    want: 403,
  },
  {
    name: "template {*}: an empty segment does not match",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{*}/bar"] } }] }]'),
    req: { path: "/foo//bar" },
    want: 403,
  },
  {
    name: "template {**}: the rest",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{**}"] } }] }]'),
    req: { path: "/foo/a/b/c" },
    want: 200,
  },
  {
    name: "template {**}: not the parent",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{**}"] } }] }]'),
    req: { path: "/foo" },
    want: 403,
  },
  {
    name: "template {*} then {**}",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{*}/bar/{**}"] } }] }]'),
    req: { path: "/foo/x/bar/a/b" },
    want: 200,
  },
  {
    name: "template {*} then {**}: literal differs",
    policies: allow('[{ to: [{ operation: { paths: ["/foo/{*}/bar/{**}"] } }] }]'),
    req: { path: "/foo/x/baz/a" },
    want: 403,
  },
  {
    name: "template {**} before literal segments",
    policies: allow('[{ to: [{ operation: { paths: ["/{**}/path/template"] } }] }]'),
    req: { path: "/a/b/path/template" },
    want: 200,
  },
  {
    name: "template {**} before literal segments: other ending",
    policies: allow('[{ to: [{ operation: { paths: ["/{**}/path/template"] } }] }]'),
    req: { path: "/a/b/path/other" },
    want: 403,
  },
  {
    name: "notPaths",
    policies: allow('[{ to: [{ operation: { notPaths: ["/admin*"] } }] }]'),
    req: { path: "/public" },
    want: 200,
  },
  {
    name: "notPaths: the excluded path",
    policies: allow('[{ to: [{ operation: { notPaths: ["/admin*"] } }] }]'),
    req: { path: "/admin/x" },
    want: 403,
  },
  // Normalization: a DENY on /admin cannot be walked around.
  {
    name: "DENY /admin",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    req: { path: "/admin" },
    want: 403,
  },
  {
    name: "DENY /admin: dot segments",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    req: { path: "/public/../admin" },
    want: 403,
  },
  {
    name: "DENY /admin: percent-encoded letter",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    req: { path: "/%61dmin" },
    want: 403,
  },
  {
    name: "DENY /admin: a query",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    req: { path: "/admin?debug=1" },
    want: 403,
  },
  {
    name: "DENY /admin: another path",
    policies: deny("[{ to: [{ operation: { paths: [/admin] } }] }]"),
    req: { path: "/public" },
    want: 200,
  },
  // Hosts.
  {
    name: "hosts exact",
    policies: allow("[{ to: [{ operation: { hosts: [httpbin.foo] } }] }]"),
    req: { host: "httpbin.foo" },
    want: 200,
  },
  {
    name: "hosts are case-insensitive",
    policies: allow("[{ to: [{ operation: { hosts: [httpbin.foo] } }] }]"),
    req: { host: "HTTPBIN.Foo" },
    want: 200,
  },
  {
    name: "hosts match with a port",
    policies: allow("[{ to: [{ operation: { hosts: [httpbin.foo] } }] }]"),
    req: { host: "httpbin.foo:8000" },
    want: 200,
  },
  {
    name: "hosts: another host",
    policies: allow("[{ to: [{ operation: { hosts: [httpbin.foo] } }] }]"),
    req: { host: "other.foo" },
    want: 403,
  },
  {
    name: "hosts wildcard suffix",
    policies: allow('[{ to: [{ operation: { hosts: ["*.example.com"] } }] }]'),
    req: { host: "a.example.com" },
    want: 200,
  },
  {
    name: "hosts wildcard suffix: the bare domain",
    policies: allow('[{ to: [{ operation: { hosts: ["*.example.com"] } }] }]'),
    req: { host: "example.com" },
    want: 403,
  },
  {
    name: "notHosts",
    policies: allow("[{ to: [{ operation: { notHosts: [evil.foo] } }] }]"),
    req: { host: "evil.foo" },
    want: 403,
  },
  // Ports: the chain serves 8080.
  { name: "ports: this port", policies: allow('[{ to: [{ operation: { ports: ["8080"] } }] }]'), want: 200 },
  {
    name: "ports: another port",
    policies: allow('[{ to: [{ operation: { ports: ["9090"] } }] }]'),
    want: 403,
  },
  {
    name: "notPorts: this port",
    policies: allow('[{ to: [{ operation: { notPorts: ["8080"] } }] }]'),
    want: 403,
  },
  {
    name: "when destination.port",
    policies: allow('[{ when: [{ key: destination.port, values: ["8080"] }] }]'),
    want: 200,
  },
  {
    name: "when destination.port notValues",
    policies: allow('[{ when: [{ key: destination.port, notValues: ["8080"] }] }]'),
    want: 403,
  },
  // Request headers.
  {
    name: "when request.headers: value",
    policies: allow("[{ when: [{ key: 'request.headers[x-user]', values: [alice] }] }]"),
    req: { headers: { "x-user": "alice" } },
    want: 200,
  },
  {
    name: "when request.headers: other value",
    policies: allow("[{ when: [{ key: 'request.headers[x-user]', values: [alice] }] }]"),
    req: { headers: { "x-user": "bob" } },
    want: 403,
  },
  {
    name: "when request.headers: absent",
    policies: allow("[{ when: [{ key: 'request.headers[x-user]', values: [alice] }] }]"),
    want: 403,
  },
  {
    name: "when request.headers: prefix",
    policies: allow('[{ when: [{ key: "request.headers[x-user]", values: ["ali*"] }] }]'),
    req: { headers: { "x-user": "alicia" } },
    want: 200,
  },
  {
    name: "when request.headers notValues: absent header passes",
    policies: allow("[{ when: [{ key: 'request.headers[x-user]', notValues: [bob] }] }]"),
    want: 200,
  },
  {
    name: "when request.headers notValues: the excluded value",
    policies: allow("[{ when: [{ key: 'request.headers[x-user]', notValues: [bob] }] }]"),
    req: { headers: { "x-user": "bob" } },
    want: 403,
  },
  {
    name: "when conditions are AND'ed",
    policies: allow(
      "[{ when: [{ key: 'request.headers[x-a]', values: ['1'] }, { key: 'request.headers[x-b]', values: ['2'] }] }]",
    ),
    req: { headers: { "x-a": "1" } },
    want: 403,
  },
  // Source addresses.
  {
    name: "ipBlocks: the client's address",
    policies: allow('[{ from: [{ source: { ipBlocks: ["127.0.0.1"] } }] }]'),
    want: 200,
  },
  {
    name: "ipBlocks: another address",
    policies: allow('[{ from: [{ source: { ipBlocks: ["127.0.0.1"] } }] }]'),
    req: { from: "127.0.0.2" },
    want: 403,
  },
  {
    name: "ipBlocks: a CIDR",
    policies: allow('[{ from: [{ source: { ipBlocks: ["127.0.0.0/30"] } }] }]'),
    req: { from: "127.0.0.3" },
    want: 200,
  },
  {
    name: "notIpBlocks",
    policies: allow('[{ from: [{ source: { notIpBlocks: ["127.0.0.2"] } }] }]'),
    req: { from: "127.0.0.2" },
    want: 403,
  },
  {
    name: "remoteIpBlocks",
    policies: allow('[{ from: [{ source: { remoteIpBlocks: ["10.0.0.0/8"] } }] }]'),
    want: 403,
  },
  {
    name: "when source.ip",
    policies: allow('[{ when: [{ key: source.ip, values: ["127.0.0.1/32"] }] }]'),
    want: 200,
  },
  {
    name: "when remote.ip notValues",
    policies: allow('[{ when: [{ key: remote.ip, notValues: ["127.0.0.4"] }] }]'),
    req: { from: "127.0.0.4" },
    want: 403,
  },
  {
    name: "DENY by ipBlocks",
    policies: deny('[{ from: [{ source: { ipBlocks: ["127.0.0.5"] } }] }]'),
    req: { from: "127.0.0.5" },
    want: 403,
  },
  // Peer identities (mTLS).
  {
    name: "principals: the peer",
    policies: allow('[{ from: [{ source: { principals: ["cluster.local/ns/foo/sa/sleep"] } }] }]'),
    req: { peer: SELF },
    want: 200,
  },
  {
    name: "principals: another peer",
    policies: allow('[{ from: [{ source: { principals: ["cluster.local/ns/foo/sa/sleep"] } }] }]'),
    req: { peer: "foo/curl" },
    want: 403,
  },
  {
    name: "principals: plain text has none",
    policies: allow('[{ from: [{ source: { principals: ["cluster.local/ns/foo/sa/sleep"] } }] }]'),
    want: 403,
  },
  {
    name: 'principals "*": any mTLS peer',
    policies: allow('[{ from: [{ source: { principals: ["*"] } }] }]'),
    req: { peer: "bar/x" },
    want: 200,
  },
  {
    name: 'principals "*": not plain text',
    policies: allow('[{ from: [{ source: { principals: ["*"] } }] }]'),
    want: 403,
  },
  {
    name: "principals prefix",
    policies: allow('[{ from: [{ source: { principals: ["cluster.local/ns/foo/*"] } }] }]'),
    req: { peer: "foo/any" },
    want: 200,
  },
  {
    name: "principals suffix",
    policies: allow('[{ from: [{ source: { principals: ["*/sa/sleep"] } }] }]'),
    req: { peer: "bar/sleep" },
    want: 200,
  },
  {
    name: "notPrincipals",
    policies: allow('[{ from: [{ source: { notPrincipals: ["cluster.local/ns/foo/sa/sleep"] } }] }]'),
    req: { peer: SELF },
    want: 403,
  },
  {
    name: "DENY plain text: notPrincipals *",
    policies: deny('[{ from: [{ source: { notPrincipals: ["*"] } }] }]'),
    want: 403,
  },
  {
    name: "DENY plain text: mTLS passes",
    policies: deny('[{ from: [{ source: { notPrincipals: ["*"] } }] }]'),
    req: { peer: SELF },
    want: 200,
  },
  {
    name: "namespaces",
    policies: allow("[{ from: [{ source: { namespaces: [foo] } }] }]"),
    req: { peer: "foo/a" },
    want: 200,
  },
  {
    name: "namespaces: another namespace",
    policies: allow("[{ from: [{ source: { namespaces: [foo] } }] }]"),
    req: { peer: "bar/a" },
    want: 403,
  },
  {
    name: "namespaces prefix",
    policies: allow('[{ from: [{ source: { namespaces: ["team-*"] } }] }]'),
    req: { peer: "team-a/x" },
    want: 200,
  },
  {
    name: "notNamespaces",
    policies: allow("[{ from: [{ source: { notNamespaces: [bar] } }] }]"),
    req: { peer: "bar/a" },
    want: 403,
  },
  {
    name: "serviceAccounts in the policy's namespace",
    policies: allow("[{ from: [{ source: { serviceAccounts: [sleep] } }] }]"),
    req: { peer: SELF },
    want: 200,
  },
  {
    name: "serviceAccounts ns/name",
    policies: allow("[{ from: [{ source: { serviceAccounts: [bar/sleep] } }] }]"),
    req: { peer: SELF },
    want: 403,
  },
  {
    name: "when source.namespace",
    policies: allow("[{ when: [{ key: source.namespace, values: [bar] }] }]"),
    req: { peer: "bar/x" },
    want: 200,
  },
  {
    name: "when source.principal",
    policies: allow('[{ when: [{ key: source.principal, values: ["cluster.local/ns/foo/sa/sleep"] }] }]'),
    req: { peer: "foo/other" },
    want: 403,
  },
  {
    name: "from sources are OR'ed",
    policies: allow(
      '[{ from: [{ source: { namespaces: [bar] } }, { source: { ipBlocks: ["127.0.0.1"] } }] }]',
    ),
    want: 200,
  },
  {
    name: "from and to are AND'ed",
    policies: allow(
      "[{ from: [{ source: { namespaces: [foo] } }], to: [{ operation: { methods: [POST] } }] }]",
    ),
    req: { peer: SELF },
    want: 403,
  },
  {
    name: "connection.sni",
    policies: allow("[{ when: [{ key: connection.sni, values: [httpbin.foo.svc.cluster.local] }] }]"),
    req: { peer: SELF },
    want: 200,
  },
  {
    name: "connection.sni: another name",
    policies: allow("[{ when: [{ key: connection.sni, values: [httpbin.foo.svc.cluster.local] }] }]"),
    req: { peer: SELF, sni: "x.example" },
    want: 403,
  },
  // Request principals and claims (RequestAuthentication with a test key).
  {
    name: "requestPrincipals *: a valid token",
    policies: RA + allow('[{ from: [{ source: { requestPrincipals: ["*"] } }] }]'),
    req: bearer(alice),
    want: 200,
  },
  {
    name: "requestPrincipals *: no token",
    policies: RA + allow('[{ from: [{ source: { requestPrincipals: ["*"] } }] }]'),
    want: 403,
  },
  {
    name: "requestPrincipals *: an expired token is 401",
    policies: RA + allow('[{ from: [{ source: { requestPrincipals: ["*"] } }] }]'),
    req: bearer(expired),
    want: 401,
  },
  {
    name: "requestPrincipals *: a token signed by another key is 401",
    policies: RA + allow('[{ from: [{ source: { requestPrincipals: ["*"] } }] }]'),
    req: bearer(forged),
    want: 401,
  },
  {
    name: "requestPrincipals iss/sub",
    policies: RA + allow(`[{ from: [{ source: { requestPrincipals: ["${ISSUER}/alice"] } }] }]`),
    req: bearer(alice),
    want: 200,
  },
  {
    name: "requestPrincipals iss/sub: another subject",
    policies: RA + allow(`[{ from: [{ source: { requestPrincipals: ["${ISSUER}/alice"] } }] }]`),
    req: bearer(bob),
    want: 403,
  },
  {
    name: "DENY notRequestPrincipals *: no token",
    policies: RA + deny('[{ from: [{ source: { notRequestPrincipals: ["*"] } }] }]'),
    want: 403,
  },
  {
    name: "DENY notRequestPrincipals *: a token",
    policies: RA + deny('[{ from: [{ source: { notRequestPrincipals: ["*"] } }] }]'),
    req: bearer(bob),
    want: 200,
  },
  {
    name: "when request.auth.claims[groups]: in the list",
    policies: RA + allow("[{ when: [{ key: 'request.auth.claims[groups]', values: [admin] }] }]"),
    req: bearer(alice),
    want: 200,
  },
  {
    name: "when request.auth.claims[groups]: a string claim",
    policies: RA + allow("[{ when: [{ key: 'request.auth.claims[groups]', values: [admin] }] }]"),
    req: bearer(bob),
    want: 403,
  },
  {
    name: "when request.auth.claims nested",
    policies: RA + allow("[{ when: [{ key: 'request.auth.claims[nested][role]', values: [owner] }] }]"),
    req: bearer(alice),
    want: 200,
  },
  {
    name: "when request.auth.audiences",
    policies: RA + allow("[{ when: [{ key: request.auth.audiences, values: [httpbin.foo] }] }]"),
    req: bearer(alice),
    want: 200,
  },
  {
    name: "when request.auth.presenter",
    policies: RA + allow("[{ when: [{ key: request.auth.presenter, values: [frontend] }] }]"),
    req: bearer(bob),
    want: 403,
  },
  {
    name: "when request.auth.principal",
    policies: RA + allow(`[{ when: [{ key: request.auth.principal, values: ["${ISSUER}/bob"] }] }]`),
    req: bearer(bob),
    want: 200,
  },
  // Keys this translator cannot express: never an open door.
  {
    name: "ALLOW with an unsupported key: the rule is dropped",
    policies: allow(
      '[{ when: [{ key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [x] }] }]',
    ),
    want: 403,
  },
  {
    name: "DENY with an unsupported key: the key is ignored",
    policies: deny(
      '[{ when: [{ key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: [x] }] }]',
    ),
    want: 403,
  },
  // CUSTOM with a provider the mesh does not define: deny all (Istio).
  {
    name: "CUSTOM with an unknown provider denies",
    policies: ap("ext", "{ action: CUSTOM, provider: { name: nowhere }, rules: [{}] }") + ALLOW_ALL,
    want: 403,
  },
];

test(`${CASES.length} authorization cases through real proxies`, async () => {
  const proxies = new Map<string, Promise<number>>();
  const proxyFor = (policies: string) => {
    let p = proxies.get(policies);
    if (p === undefined) {
      p = (async () => {
        const registry = new ServiceRegistry(policies === "" ? [] : await resources(policies));
        return securedProxy(httpSecurity(registry, { namespace: "foo", labels: { app: "httpbin" } }, 8080));
      })();
      proxies.set(policies, p);
    }
    return p;
  };
  const failures: string[] = [];
  await Promise.all(
    CASES.map(async (c) => {
      const port = await proxyFor(c.policies);
      const a = await call(port, c.req);
      try {
        assertStatus(a, c.want, c.name);
        if (c.want === 403 && c.req?.method !== "HEAD") {
          if (a.body !== "RBAC: access denied") throw new Error(`${c.name}: body ${a.body}`);
        }
      } catch (e) {
        failures.push((e as Error).message);
      }
    }),
  );
  if (failures.length > 0) throw new Error(`${failures.length} failed:\n${failures.join("\n")}`);
});
