// Counters and gauges the proxy keeps, named as Envoy names them (cluster.NAME.upstream_rq_total, ...).
// Components get their counter objects once, at config time, and increment fields on the hot path:
// no map lookups or string building per request.

export class Counter {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

export class Gauge {
  value = 0;
}

export class StatsStore {
  private readonly counters = new Map<string, Counter>();
  private readonly gauges = new Map<string, Gauge>();

  counter(name: string): Counter {
    let c = this.counters.get(name);
    if (!c) {
      c = new Counter();
      this.counters.set(name, c);
    }
    return c;
  }

  gauge(name: string): Gauge {
    let g = this.gauges.get(name);
    if (!g) {
      g = new Gauge();
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
