// The config store on its own: applies are all or none, concurrent applies do not lose each other's changes,
// and deletes report what they removed.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigStore } from "./config-store.ts";

const se = (name: string, port = 80) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${name}.example.internal]
  resolution: DNS
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
`;

test("a batch with one invalid resource changes nothing", async () => {
  const store = new ConfigStore();
  assert.equal((await store.apply("a.yaml", se("a"))).ok, true);
  const r = await store.apply("b.yaml", `${se("b")}---\n${se("c", 70000)}`);
  assert.equal(r.ok, false);
  assert.ok(r.diagnostics.some((d) => d.severity === "error" && d.file === "b.yaml" && d.line !== undefined));
  assert.deepEqual(
    store.all().map((x) => x.name),
    ["a"],
  );
});

test("concurrent applies are serialized: none is lost", async () => {
  const store = new ConfigStore();
  let changes = 0;
  store.onChange(() => changes++);
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => store.apply(`${i}.yaml`, se(`s${i}`))),
  );
  assert.ok(results.every((r) => r.ok));
  assert.equal(store.all().length, 20);
  assert.equal(changes, 20);
});

test("delete removes and reports; a missing resource is an error", async () => {
  const store = new ConfigStore();
  await store.apply("a.yaml", se("a"));
  assert.deepEqual(store.delete("ServiceEntry", "default", "a").changed, ["ServiceEntry/default/a"]);
  assert.equal(store.delete("ServiceEntry", "default", "a").ok, false);
  assert.equal((await store.apply("e.yaml", "")).ok, false, "an empty apply is refused");
});
