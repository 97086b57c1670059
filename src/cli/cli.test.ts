// The isthmus binary as users run it: a real process, its output and its exit status.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const bin = join(import.meta.dirname, "..", "..", "bin", "isthmus.js");
const dir = mkdtempSync(join(tmpdir(), "isthmus-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const good = join(dir, "good.yaml");
writeFileSync(
  good,
  `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
`,
);
const bad = join(dir, "bad.yaml");
writeFileSync(
  bad,
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
      weight: -1
`,
);

test("validate: a valid file exits 0", () => {
  const r = run("validate", good);
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.err, /1 file\(s\), 1 resource\(s\): 0 error\(s\)/);
});

test("validate: errors print FILE:LINE:COL Kind namespace/name field: message and exit 1", () => {
  const r = run("validate", bad);
  assert.equal(r.code, 1);
  assert.equal(
    r.out.trim(),
    `${bad}:11:15 VirtualService bookinfo/reviews spec.http[0].route[0].weight: weight -1 < 0`,
  );
});

test("validate -o json is machine-readable", () => {
  const r = run("validate", "-o", "json", bad, good);
  assert.equal(r.code, 1);
  const j = JSON.parse(r.out);
  assert.equal(j.resources, 2);
  assert.equal(j.errors, 1);
  assert.deepEqual(
    {
      line: j.diagnostics[0].line,
      col: j.diagnostics[0].col,
      field: j.diagnostics[0].field,
      kind: j.diagnostics[0].kind,
    },
    { line: 11, col: 15, field: "spec.http[0].route[0].weight", kind: "VirtualService" },
  );
});

test("analyze: IST0101 for a subset no DestinationRule defines, exit 1", () => {
  const r = run("analyze", good, join(dir, "vs.yaml"));
  assert.equal(r.code, 1); // vs.yaml does not exist: an error naming it
  assert.match(r.out, /vs\.yaml Error IST0106 cannot read: no such file or directory/);
  const fixed = join(dir, "vs-ok.yaml");
  writeFileSync(
    fixed,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
`,
  );
  const r2 = run("analyze", good, fixed);
  assert.equal(r2.code, 1, r2.out + r2.err);
  assert.match(
    r2.out,
    /vs-ok\.yaml:8:44 Error IST0101 VirtualService bookinfo\/reviews spec\.http\[0\]\.route\[0\]\.destination\.subset: Referenced host\+subset in destinationrule not found: "reviews\+v2"/,
  );
});

test("analyze: warnings fail only with --fail-on warning", () => {
  const unused = join(dir, "unused.yaml");
  writeFileSync(
    unused,
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: bookinfo}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: DNS
`,
  );
  const r = run("analyze", unused);
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /Warning IST0134/);
  assert.equal(run("analyze", "--fail-on", "warning", unused).code, 1);
  assert.equal(run("analyze", "--fail-on", "error", unused).code, 0);
});

test("analyze --list-analyzers lists at least 12 analyzers with their codes", () => {
  const r = run("analyze", "--list-analyzers");
  assert.equal(r.code, 0);
  const lines = r.out.trim().split("\n");
  assert.ok(lines.length >= 12, r.out);
  assert.match(r.out, /IST0101/);
  assert.match(r.out, /IST0109/);
});

test("usage errors exit 2 with a hint, never a stack trace", () => {
  for (const args of [
    ["validate"],
    ["validate", "-o", "xml", good],
    ["analyze", "--fail-on", "panic", good],
    ["frobnicate"],
    ["validate", "--nope"],
    ["proxy-config", "listeners", "p", "--nope"],
    ["proxy-config", "listeners", "p", "--admin", "http://127.0.0.1:15000"],
    ["x"],
    ["x", "authz", "check"],
    ["x", "authz", "check", "p", "--file", good],
  ]) {
    const r = run(...args);
    assert.equal(r.code, 2, args.join(" "));
    assert.doesNotMatch(r.err, /\n\s+at /, "stack trace");
  }
});

test("--help and version", () => {
  assert.equal(run("--help").code, 0);
  assert.match(run("validate", "--help").out, /FILE:LINE:COL Kind namespace\/name field.path: message/);
  assert.match(run("version").out, /^\d+\.\d+\.\d+/);
  assert.match(run("--help").out, /^ {2}x {14}experimental: 'x authz check'/m);
  assert.match(run("proxy-config", "--help").out, /isthmus proxy-config secret \[PROXY\] \[--admin URL\]/);
  assert.match(run("x", "authz", "check", "--help").out, /CUSTOM \(ext_authz\), DENY, ALLOW, then AUDIT/);
});

test("bad input files give clear errors, not crashes", () => {
  const binary = join(dir, "bin.yaml");
  writeFileSync(binary, Buffer.from([0, 1, 2, 3, 255]));
  const r = run("validate", binary);
  assert.equal(r.code, 1);
  assert.equal(r.out.trim(), `${binary} binary file (NUL byte at offset 0); expected YAML or JSON text`);
});
