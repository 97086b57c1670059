// The heap governor in this process' own V8 heap: garbage beyond the headroom is collected by a forced full
// collection, growth within it is left to V8, and live data that grows raises the baseline instead of causing a
// collection every second.
import assert from "node:assert/strict";
import { test } from "node:test";
import v8 from "node:v8";
import { StatsStore } from "../stats/stats.ts";
import { HeapGovernor } from "./heap-governor.ts";

const MB = 1024 * 1024;
const used = () => v8.getHeapStatistics().used_heap_size;

/** About `mb` MB of small old-generation-sized objects, returned so the caller decides whether they stay live. */
function allocate(mb: number): object[] {
  const out: object[] = [];
  for (let i = 0; i < (mb * MB) / 64; i++) out.push({ a: i, b: `${i}`, c: null });
  return out;
}

test("garbage beyond the headroom is collected; counted in server.memory_forced_gc", () => {
  const stats = new StatsStore();
  const g = new HeapGovernor({ headroomBytes: 2 * MB, stats, intervalMs: 3_600_000 });
  try {
    let garbage: object[] | null = allocate(16);
    const before = used();
    garbage = null;
    assert.equal(garbage, null);
    g.check();
    assert.equal(stats.counter("server.memory_forced_gc").value, 1);
    assert.ok(used() < before - 8 * MB, `the garbage is gone: ${before} -> ${used()}`);
    assert.ok(stats.gauge("server.memory_heap_size").value > 0);
  } finally {
    g.stop();
  }
});

test("growth within the headroom is left to V8", () => {
  const stats = new StatsStore();
  const g = new HeapGovernor({ headroomBytes: 512 * MB, stats, intervalMs: 3_600_000 });
  try {
    const keep = allocate(8);
    g.check();
    assert.equal(stats.counter("server.memory_forced_gc").value, 0);
    assert.ok(keep.length > 0);
  } finally {
    g.stop();
  }
});

test("live data that grows moves the baseline: one collection, not one per check", () => {
  const stats = new StatsStore();
  const g = new HeapGovernor({ headroomBytes: 4 * MB, stats, intervalMs: 3_600_000 });
  try {
    const live = allocate(16);
    g.check();
    g.check();
    g.check();
    assert.equal(stats.counter("server.memory_forced_gc").value, 1, "the live 16 MB cost one collection");
    assert.ok(live.length > 0);
  } finally {
    g.stop();
  }
});
