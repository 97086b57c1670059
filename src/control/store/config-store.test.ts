// The config store on its own: applies are all or none, concurrent applies do not lose each other's changes,
// deletes report what they removed; the files layer wins over the API's; the bounds of one apply.
import assert from "node:assert/strict";
import { test } from "node:test";
import { APPLY_LIMITS, ConfigStore, countShape } from "./config-store.ts";

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

// ------------------------------------------------------------------------------------------------- layers

/** The resources of `text`, validated, as FileSource would hand them over for one file. */
async function fileResources(file: string, text: string) {
  const { parseResources } = await import("../../api/load/parse-documents.ts");
  const { validateResources } = await import("../../api/validate/index.ts");
  const checked = await validateResources(parseResources(file, text).resources);
  assert.equal(checked.valid.length > 0, true);
  return checked.valid;
}

test("files win: an apply or delete of a resource a file defines is refused with the file's name", async () => {
  const store = new ConfigStore();
  store.replaceFiles(new Map([["/etc/mesh/a.yaml", await fileResources("/etc/mesh/a.yaml", se("a"))]]));
  assert.equal(store.ownerOf({ kind: "ServiceEntry", namespace: "default", name: "a" }), "/etc/mesh/a.yaml");
  let changes = 0;
  store.onChange(() => changes++);
  const r = await store.apply("req.yaml", `${se("b")}---\n${se("a", 81)}`);
  assert.equal(r.ok, false);
  assert.equal(r.reason, "conflict");
  assert.match(r.diagnostics[0]!.message, /ServiceEntry default\/a is defined in \/etc\/mesh\/a\.yaml/);
  assert.equal(r.diagnostics[0]!.file, "req.yaml");
  assert.equal(r.diagnostics[0]!.line, 11, "positioned at the conflicting resource's name");
  const d = store.delete("ServiceEntry", "default", "a");
  assert.equal(d.reason, "conflict");
  assert.match(d.diagnostics[0]!.message, /remove it there/);
  assert.equal(changes, 0, "nothing changed, nothing pushed");
  assert.deepEqual(
    store.all().map((x) => x.name),
    ["a"],
  );
});

test("a file that starts defining an applied resource takes it over; removing the file removes it", async () => {
  const store = new ConfigStore();
  assert.equal((await store.apply("req.yaml", `${se("a")}---\n${se("b")}`)).ok, true);
  const report = store.replaceFiles(new Map([["a.yaml", await fileResources("a.yaml", se("a", 8080))]]));
  assert.deepEqual(report.takenOver, [{ key: "ServiceEntry/default/a", file: "a.yaml" }]);
  assert.equal(
    (store.get("ServiceEntry", "default", "a")[0]!.object.spec as { ports: [{ number: number }] }).ports[0]
      .number,
    8080,
  );
  store.replaceFiles(new Map());
  assert.deepEqual(
    store.all().map((x) => x.name),
    ["b"],
    "the applied copy was dropped when the file took it over, so it does not come back",
  );
  assert.equal(
    store.delete("ServiceEntry", "default", "b").ok,
    true,
    "applied resources are the API's to delete",
  );
});

test("a resource in two files: the later file in load order is served, and the duplicate is reported", async () => {
  const store = new ConfigStore();
  const report = store.replaceFiles(
    new Map([
      ["1.yaml", await fileResources("1.yaml", se("a", 81))],
      ["2.yaml", await fileResources("2.yaml", se("a", 82))],
    ]),
  );
  assert.deepEqual(report.duplicates, [{ key: "ServiceEntry/default/a", files: ["1.yaml", "2.yaml"] }]);
  assert.equal(store.ownerOf({ kind: "ServiceEntry", namespace: "default", name: "a" }), "2.yaml");
  assert.equal(store.size, 1);
});

// ------------------------------------------------------------------------------------------------- limits

test("apply bounds: too many documents or lines are refused before parsing, with the limit named", async () => {
  const store = new ConfigStore();
  const docs = "---\na: 1\n".repeat(APPLY_LIMITS.maxResources + 1);
  let started = performance.now();
  const tooMany = await store.apply("many.yaml", docs);
  assert.equal(tooMany.reason, "too-large");
  assert.match(tooMany.diagnostics[0]!.message, /one apply takes at most 20000 resources, split it/);
  assert.ok(performance.now() - started < 1000, "refused without parsing");
  // One List of tiny items: 2 MB that would cost the YAML parser about 800 MB.
  const list = `kind: List\nitems:\n${"- a: 1\n".repeat(APPLY_LIMITS.maxLines)}`;
  started = performance.now();
  const tooLong = await store.apply("list.yaml", list);
  assert.equal(tooLong.reason, "too-large");
  assert.match(tooLong.diagnostics[0]!.message, /at most 400000, split it/);
  assert.ok(performance.now() - started < 1000, "refused without parsing");
  assert.equal(store.size, 0);
});

test("countShape counts document starts and lines plus flow items", () => {
  assert.deepEqual(countShape("a: 1"), { documents: 1, lines: 1 });
  assert.deepEqual(countShape("a: [1, 2]\n---\nb: 1\n"), { documents: 2, lines: 5 });
});

test("the store's own bound: an apply that would make it hold too many resources is refused", async () => {
  const store = new ConfigStore(2);
  assert.equal((await store.apply("a.yaml", `${se("a")}---\n${se("b")}`)).ok, true);
  const r = await store.apply("c.yaml", se("c"));
  assert.equal(r.reason, "too-large");
  assert.match(r.diagnostics[0]!.message, /at most 2 resources; this apply would make 3/);
  assert.equal((await store.apply("a2.yaml", se("a", 81))).ok, true, "replacing one is not growing");
});

test("config API: 409 for a file's resource, 413 for a streamed body over the limit (an answer, not a reset)", async () => {
  const { ConfigApi } = await import("./config-api.ts");
  const store = new ConfigStore();
  store.replaceFiles(new Map([["mesh/a.yaml", await fileResources("mesh/a.yaml", se("a"))]]));
  const token = "store-test-token-0123456789";
  const api = new ConfigApi(store, token);
  const port = await api.listen("127.0.0.1", 0);
  try {
    const base = `http://127.0.0.1:${port}/apis/resources`;
    const headers = { authorization: `Bearer ${token}` };
    const conflict = await fetch(base, { method: "POST", headers, body: se("a", 81) });
    assert.equal(conflict.status, 409);
    assert.match(JSON.stringify(await conflict.json()), /defined in mesh\/a\.yaml/);
    const del = await fetch(`${base}/ServiceEntry/default/a`, { method: "DELETE", headers });
    assert.equal(del.status, 409);
    await del.body?.cancel();
    // No content-length: the bound is found while the body streams in.
    const chunk = new TextEncoder().encode(`${"#".repeat(1023)}\n`.repeat(1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ < 20) c.enqueue(chunk);
        else c.close();
      },
    });
    const big = await fetch(base, { method: "POST", headers, body, duplex: "half" } as RequestInit);
    assert.equal(big.status, 413);
    assert.match(((await big.json()) as { error: string }).error, /larger than 16777216 bytes \(16 MiB\)/);
    assert.equal(store.size, 1);
  } finally {
    await api.close();
  }
});
