// `isthmus x authz check` against real processes: a control plane serving an ingress gateway (an HTTP and a TCP
// server), a gateway proxy connected to it, AuthorizationPolicies applied with `isthmus apply`, and the CLI
// reading what the control plane renders for that proxy. Also --file with a hand-written ProxyConfig (ext_authz,
// filters out of order, unnamed chains) and a saved /config_dump, and the errors.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { isthmus, runIsthmus, startControlPlane, waitSynced } from "../control/e2e-support.ts";
import type { ProxyConfig } from "../proxy/config/types.ts";
import { closeAll, onClose, spawnProxy } from "../proxy/test-support.ts";
import { authzRows } from "./commands/authz-check.ts";

after(closeAll);

const TOKEN = "authz-check-admin-token";
const GATEWAY_IP = "127.0.0.133";

/** A port free on `ip` now (bound, then closed). */
async function freePort(ip: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.listen(0, ip, () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The table's rows as cells: columns are separated by at least three spaces, and no cell has two. */
function cells(out: string): string[][] {
  return out
    .trimEnd()
    .split("\n")
    .map((l) => l.split(/ {3,}/));
}

const gateway = (httpPort: number, tcpPort: number) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: ${httpPort}, name: http, protocol: HTTP }
      hosts: ["*"]
    - port: { number: ${tcpPort}, name: tcp, protocol: TCP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: backend, namespace: istio-system }
spec:
  hosts: [backend.example]
  ports: [{ number: 80, name: http, protocol: HTTP }, { number: 5432, name: tcp, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: istio-system }
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: backend.example, port: { number: 80 } } }] }]
  tcp: [{ route: [{ destination: { host: backend.example, port: { number: 5432 } } }] }]
`;

// Written in another order than the proxy applies them; dry-run, AUDIT, a DENY rule with an HTTP-only field
// (kept on TCP, the field ignored), an ALLOW rule with one (dropped on TCP), and a policy of another namespace
// (not the gateway's: it does not apply).
const POLICIES = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: audit-all, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-get, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  rules: [{ to: [{ operation: { methods: [GET] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-dry, namespace: istio-system, annotations: { istio.io/dry-run: "true" } }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  rules: [{ from: [{ source: { namespaces: [shop] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-local, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  rules: [{ from: [{ source: { ipBlocks: [127.0.0.1] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/admin*"] } }]
    - from: [{ source: { ipBlocks: [10.0.0.0/8] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: elsewhere, namespace: shop }
spec:
  action: DENY
  rules: [{}]
`;

test("x authz check: a gateway's policies per listener and chain, CUSTOM, DENY, ALLOW, AUDIT", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-authz-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const httpPort = await freePort(GATEWAY_IP);
  const tcpPort = await freePort(GATEWAY_IP);
  writeFileSync(join(dir, "gateway.yaml"), gateway(httpPort, tcpPort));
  const cp = await startControlPlane([join(dir, "gateway.yaml")], TOKEN);
  const cli = (...args: string[]) => isthmus(cp.server, TOKEN, ...args);
  const proxy = await spawnProxy(
    [
      ...["--control-plane", `127.0.0.1:${cp.pushPort}`, "--node-id", "ingress-1"],
      ...["--namespace", "istio-system", "--label", "istio=ingressgateway"],
      ...["--ip", GATEWAY_IP, "--admin-port", "0"],
    ],
    [],
  );
  await proxy.waitForStderr(/control plane applied/, 15_000);
  let versions = await waitSynced(cp.server, TOKEN, ["ingress-1"]);

  const none = await cli("x", "authz", "check", "ingress-1");
  assert.equal(none.status, 0, none.stderr);
  assert.equal(none.stdout, "no authorization policies apply to ingress-1\n");
  const noneJson = await cli("x", "authz", "check", "ingress-1", "-o", "json");
  assert.deepEqual(JSON.parse(noneJson.stdout), []);

  writeFileSync(join(dir, "policies.yaml"), POLICIES);
  const applied = await cli("apply", "-f", join(dir, "policies.yaml"));
  assert.equal(applied.status, 0, applied.stderr);
  versions = await waitSynced(cp.server, TOKEN, ["ingress-1"], versions);

  const r = await cli("x", "authz", "check", "ingress-1");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", "synced: no note about an unacknowledged version");
  const http = [`0.0.0.0_${httpPort}`, `http.${httpPort}`];
  const tcp = [`0.0.0.0_${tcpPort}`, `tcp.${tcpPort}.tcp.gw.istio-system`];
  const expected = [
    ["LISTENER", "CHAIN", "ACTION", "AuthorizationPolicy", "RULES"],
    [...http, "DENY", "deny-admin.istio-system", "2"],
    [...http, "ALLOW", "allow-get.istio-system", "1"],
    [...http, "ALLOW", "allow-local.istio-system", "1"],
    [...http, "ALLOW (dry-run)", "allow-dry.istio-system", "1"],
    [...http, "AUDIT", "audit-all.istio-system", "1"],
    // TCP: the DENY rule on paths keeps its other conditions (none: it denies every connection); the ALLOW
    // rule on methods is dropped.
    [...tcp, "DENY", "deny-admin.istio-system", "2"],
    [...tcp, "ALLOW", "allow-local.istio-system", "1"],
    [...tcp, "ALLOW (dry-run)", "allow-dry.istio-system", "1"],
    [...tcp, "AUDIT", "audit-all.istio-system", "1"],
  ];
  // The listeners come in port order.
  if (tcpPort < httpPort) expected.splice(1, 9, ...expected.slice(6), ...expected.slice(1, 6));
  assert.deepEqual(cells(r.stdout), expected);

  const j = await cli("x", "authz", "check", "ingress-1", "-o", "json");
  assert.equal(j.status, 0, j.stderr);
  assert.deepEqual(
    JSON.parse(j.stdout).map((row: Record<string, unknown>) => [
      row.listener,
      row.chain,
      row.dryRun ? `${row.action} (dry-run)` : row.action,
      row.policy,
      String(row.rules),
    ]),
    expected.slice(1),
  );
  assert.equal(typeof JSON.parse(j.stdout)[0].rules, "number");

  // A CUSTOM policy whose provider the control plane does not know: the HTTP chain denies everything, as Istio
  // does, with a filter policy whose name is not a policy's (shown as it is). CUSTOM does not apply to TCP
  // chains (no gRPC ext_authz network filter), which keep their policies.
  writeFileSync(
    join(dir, "custom.yaml"),
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: CUSTOM
  provider: { name: my-authz }
  rules: [{ to: [{ operation: { paths: ["/secure*"] } }] }]
`,
  );
  assert.equal((await cli("apply", "-f", join(dir, "custom.yaml"))).status, 0);
  await waitSynced(cp.server, TOKEN, ["ingress-1"], versions);
  const denyAll = await cli("x", "authz", "check", "ingress-1");
  assert.equal(denyAll.status, 0, denyAll.stderr);
  const httpRows = [[...http, "DENY", "istio-ext-authz-deny-all", "1"]];
  const tcpRows = expected.filter((row) => row[0] === tcp[0]);
  assert.deepEqual(cells(denyAll.stdout), [
    expected[0],
    ...(httpPort < tcpPort ? [...httpRows, ...tcpRows] : [...tcpRows, ...httpRows]),
  ]);

  // A proxy that is not connected.
  const nobody = await cli("x", "authz", "check", "nobody");
  assert.equal(nobody.status, 1);
  assert.match(nobody.stderr, /no proxy "nobody" is connected/);
});

/** A config with every kind of authorization filter, by hand: ext_authz, RBAC out of order, TCP, no names. */
const HANDMADE: ProxyConfig = {
  node: { id: "hand-1" },
  listeners: [
    {
      name: "web",
      port: 0,
      filterChains: [
        {
          name: "web-http",
          filter: {
            type: "http",
            routeConfigName: "r",
            extAuthz: [
              {
                cluster: "authz",
                policies: {
                  "ns[foo]-policy[ext]-rule[0]": {
                    permissions: [{ any: true }],
                    principals: [{ any: true }],
                  },
                  "ns[foo]-policy[ext]-rule[1]": {
                    permissions: [{ any: true }],
                    principals: [{ any: true }],
                  },
                },
              },
            ],
            rbac: [
              {
                rules: {
                  action: "LOG",
                  policies: {
                    "ns[foo]-policy[audit]-rule[0]": {
                      permissions: [{ any: true }],
                      principals: [{ any: true }],
                    },
                  },
                },
              },
              { rules: { action: "ALLOW", policies: {} } },
              {
                rules: {
                  action: "DENY",
                  policies: {
                    "hand-written": { permissions: [{ any: true }], principals: [{ any: true }] },
                  },
                },
                shadowRules: {
                  action: "DENY",
                  policies: {
                    "ns[bar]-policy[try]-rule[0]": {
                      permissions: [{ any: true }],
                      principals: [{ any: true }],
                    },
                  },
                },
              },
            ],
          },
        },
        {
          match: { destinationPort: 9 },
          filter: {
            type: "tcp",
            cluster: "db",
            rbac: [
              {
                rules: {
                  action: "ALLOW",
                  policies: {
                    "ns[foo]-policy[db]-rule[0]": {
                      permissions: [{ any: true }],
                      principals: [{ any: true }],
                    },
                    "ns[foo]-policy[db]-rule[2]": {
                      permissions: [{ any: true }],
                      principals: [{ any: true }],
                    },
                    "ns[foo]-policy[app]-rule[0]": {
                      permissions: [{ any: true }],
                      principals: [{ any: true }],
                    },
                  },
                },
              },
            ],
          },
        },
      ],
    },
    { name: "plain", port: 0, filterChains: [{ filter: { type: "tcp", cluster: "db" } }] },
  ],
  routeConfigs: [{ name: "r", virtualHosts: [] }],
  clusters: [
    { name: "db", endpoints: [] },
    { name: "authz", endpoints: [] },
  ],
};

const HANDMADE_ROWS = [
  ["LISTENER", "CHAIN", "ACTION", "AuthorizationPolicy", "RULES"],
  ["web", "web-http", "CUSTOM", "ext.foo", "2"],
  ["web", "web-http", "DENY", "hand-written", "1"],
  ["web", "web-http", "DENY (dry-run)", "try.bar", "1"],
  ["web", "web-http", "ALLOW", "_anonymous_match_nothing_", "0"],
  ["web", "web-http", "AUDIT", "audit.foo", "1"],
  ["web", "#1", "ALLOW", "app.foo", "1"],
  ["web", "#1", "ALLOW", "db.foo", "2"],
];

test("x authz check --file: a ProxyConfig in JSON or YAML, a saved /config_dump; errors", async () => {
  const dir = mkdtempSync(join(tmpdir(), "isthmus-authz-file-"));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  const check = (...args: string[]) => runIsthmus(["x", "authz", "check", ...args], TOKEN);

  const json = join(dir, "config.json");
  writeFileSync(json, JSON.stringify(HANDMADE));
  const r = await check("--file", json);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(cells(r.stdout), HANDMADE_ROWS);

  // The proxy admin's /config_dump, saved as YAML: its `config` is read.
  const { stringify } = await import("yaml");
  const dump = join(dir, "dump.yaml");
  writeFileSync(dump, stringify({ version: "v1", appliedAt: null, lastRejected: null, config: HANDMADE }));
  const d = await check("-f", dump, "-o", "json");
  assert.equal(d.status, 0, d.stderr);
  assert.deepEqual(JSON.parse(d.stdout), authzRows(HANDMADE));
  assert.equal(JSON.parse(d.stdout)[0].action, "CUSTOM");

  const empty = join(dir, "empty.yaml");
  writeFileSync(
    empty,
    "listeners:\n  - { name: l, port: 0, filterChains: [{ filter: { type: tcp, cluster: c } }] }\nclusters: [{ name: c, endpoints: [] }]\n",
  );
  const e = await check("--file", empty);
  assert.equal(e.status, 0, e.stderr);
  assert.equal(e.stdout, `no authorization policies apply to the config in ${empty}\n`);

  // An invalid config: the file, line and field.
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, "listeners:\n  - name: l\n    port: -1\n    filterChains: []\n");
  const b = await check("--file", bad);
  assert.equal(b.status, 1);
  assert.match(b.stderr, new RegExp(`^${bad.replaceAll(".", "\\.")}:3:\\d+ listeners\\[0\\]\\.port`, "m"));
  const missing = await check("--file", join(dir, "nope.json"));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /nope\.json: cannot read: ENOENT/);

  // Usage: neither or both of PROXY and --file, a bad -o, an unknown subcommand.
  for (const args of [
    [],
    ["p", "--file", json],
    ["--file", json, "-o", "yaml"],
    ["--file", json, "--nope"],
  ]) {
    const u = await check(...args);
    assert.equal(u.status, 2, `${args.join(" ")}: ${u.stderr}`);
    assert.match(u.stderr, /^isthmus x: .*\nRun 'isthmus x --help' for usage\.\n$/);
  }
  assert.equal((await runIsthmus(["x", "authz", "list"], TOKEN)).status, 2);
  assert.equal((await runIsthmus(["x", "nope"], TOKEN)).status, 2);
  const help = await runIsthmus(["x", "authz", "check", "--help"], TOKEN);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: isthmus x authz check PROXY/);
});
