// Counters and gauges the proxy keeps, named as Envoy names them (cluster.NAME.upstream_rq_total, ...).
// Components get their counter objects once, at config time, and increment fields on the hot path:
// no map lookups or string building per request.

export class Counter {
  value = 0;
  /** The name it was registered under ("" for one made outside a store). */
  readonly name: string;
  constructor(name = "") {
    this.name = name;
  }
  inc(n = 1): void {
    this.value += n;
  }
}

export class Gauge {
  value = 0;
  readonly name: string;
  constructor(name = "") {
    this.name = name;
  }
}

export class StatsStore {
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();
  /** Every store alive, for ownerOf(); weakly, so that a dropped store (tests make many) is collected. */
  private static readonly live = new Set<WeakRef<StatsStore>>();

  constructor() {
    StatsStore.live.add(new WeakRef(this));
  }

  /**
   * The store that registered `metric`, for code handed a counter or gauge but not its store (a connection pool
   * holds its cluster's limits, and counts a rare event, a TLS failure, under the cluster's name). A lookup per
   * live store (one per proxy): never on the hot path.
   */
  static ownerOf(metric: Counter | Gauge): StatsStore | undefined {
    for (const ref of StatsStore.live) {
      const store = ref.deref();
      if (store === undefined) {
        StatsStore.live.delete(ref);
        continue;
      }
      const own = metric instanceof Counter ? store.counters.get(metric.name) : store.gauges.get(metric.name);
      if (own === metric) return store;
    }
    return undefined;
  }

  counter(name: string): Counter {
    let c = this.counters.get(name);
    if (!c) {
      c = new Counter(name);
      this.counters.set(name, c);
    }
    return c;
  }

  gauge(name: string): Gauge {
    let g = this.gauges.get(name);
    if (!g) {
      g = new Gauge(name);
      this.gauges.set(name, g);
    }
    return g;
  }

  /** Names of the gauges (the rest of snapshot() are counters). */
  gaugeNames(): ReadonlySet<string> {
    return new Set(this.gauges.keys());
  }

  /** name -> value, sorted by name; counters and gauges together. */
  snapshot(): Array<[string, number]> {
    const out: Array<[string, number]> = [];
    for (const [k, c] of this.counters) out.push([k, c.value]);
    for (const [k, g] of this.gauges) out.push([k, g.value]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
}
