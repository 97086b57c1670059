import assert from "node:assert/strict";
import { test } from "node:test";
import { RenderMemo } from "./render-memo.ts";

test("a value is reused while its inputs are the same objects, and rebuilt when one changes", () => {
  const a = { id: "a" };
  const b = { id: "b" };
  let builds = 0;
  const build = () => ({ built: ++builds });
  const first = new RenderMemo();
  const x = first.get("k", [a, b], build);
  assert.equal(first.get("k", [a, b], build), x, "same render, same inputs");
  const second = new RenderMemo(first);
  assert.equal(second.get("k", [a, b], build), x, "next render, same inputs");
  const y = second.get("k", [a, { id: "b" }], build);
  assert.notEqual(y, x, "an equal but new object is a change");
  assert.equal(builds, 2);
});

test("entries not used by a render are gone after the next", () => {
  const a = {};
  let builds = 0;
  const first = new RenderMemo();
  first.get("k", [a], () => ++builds);
  const second = new RenderMemo(first); // "k" not asked for
  const third = new RenderMemo(second);
  third.get("k", [a], () => ++builds);
  assert.equal(builds, 2);
});

test("a list keeps its identity while it holds the same objects", () => {
  const a = {};
  const b = {};
  const first = new RenderMemo();
  const l1 = first.list("clusters", [a, b]);
  const second = new RenderMemo(first);
  assert.equal(second.list("clusters", [a, b]), l1);
  assert.notEqual(second.list("clusters", [b, a]), l1, "order matters");
});

test("by content: a value rebuilt from new inputs that serializes the same stays the kept object", () => {
  const first = new RenderMemo();
  const v1 = first.get("k", [{}], () => ({ route: "a" }), true);
  const second = new RenderMemo(first);
  assert.equal(
    second.get("k", [{}], () => ({ route: "a" }), true),
    v1,
    "same content, new inputs",
  );
  const third = new RenderMemo(second);
  assert.notEqual(
    third.get("k", [{}], () => ({ route: "b" }), true),
    v1,
    "new content",
  );
});
