// Keeps a sidecar's heap near its live size, as Envoy's overload manager shrinks its heap under pressure.
//
// Per-request garbage that outlives a couple of young-generation collections is promoted to the old
// generation, and V8 lets the old generation grow to several times its live size before it marks: measured
// under load (npm run bench:proxy), about 5 MB live grew to 25 MB committed before the first full collection,
// and the freed pages then stayed pooled — 10 MB of resident memory in every pod for garbage. A full
// collection of a small heap takes a few milliseconds, so once a second the governor compares the heap's used
// size with what was live after the last collection and forces one when the difference exceeds the headroom.
// A heap whose live data really grows (more connections) just moves the baseline up after each collection.
import v8 from "node:v8";
import vm from "node:vm";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";

export interface HeapGovernorOptions {
  /** Growth over the live size that triggers a full collection, in bytes. */
  readonly headroomBytes: number;
  /** Where server.memory_heap_size and server.memory_forced_gc are kept. */
  readonly stats: StatsStore;
  /** How often the heap is looked at. Default 1000 ms. */
  readonly intervalMs?: number;
}

export class HeapGovernor {
  private readonly headroom: number;
  private readonly timer: NodeJS.Timeout;
  private readonly collect: () => void;
  /** Heap used after the last collection we saw (forced, or natural when used drops below it). */
  private baseline: number;
  private readonly heapSize: Gauge;
  private readonly forcedGc: Counter;
  private readonly forcedGcMs: Counter;

  constructor(options: HeapGovernorOptions) {
    this.headroom = options.headroomBytes;
    this.heapSize = options.stats.gauge("server.memory_heap_size");
    this.forcedGc = options.stats.counter("server.memory_forced_gc");
    this.forcedGcMs = options.stats.counter("server.memory_forced_gc_ms");
    this.collect = garbageCollector();
    this.baseline = usedHeap();
    this.timer = setInterval(() => this.check(), options.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Looks at the heap now; forces a collection when it grew more than the headroom. */
  check(): void {
    const used = usedHeap();
    this.heapSize.value = used;
    if (used < this.baseline) {
      this.baseline = used;
      return;
    }
    if (used - this.baseline <= this.headroom) return;
    const t0 = performance.now();
    this.collect();
    this.forcedGcMs.inc(Math.round(performance.now() - t0));
    this.forcedGc.inc();
    this.baseline = usedHeap();
    this.heapSize.value = this.baseline;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function usedHeap(): number {
  return v8.getHeapStatistics().used_heap_size;
}

/**
 * V8's full collection. Node exposes it only behind --expose-gc; setting the flag at run time and reading `gc`
 * from a fresh context is the way Node documents for flags (v8.setFlagsFromString) and needs no command line.
 */
function garbageCollector(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === "function") return existing;
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}
