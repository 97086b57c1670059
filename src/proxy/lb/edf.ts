// Earliest-deadline-first scheduler, as Envoy's EdfScheduler: each entry comes due every `period` (= 1 / weight,
// here scaled so the heaviest entry has period 1), the entry with the earliest deadline is served next, ties go
// to the entry queued first. Weighted round robin is this with fixed periods; weighted least request is this
// with the period recomputed from the endpoint's active requests each time it is served.
//
// A binary min-heap over typed arrays: top() is O(1), advance() and park() are O(log n), nothing allocates.
// Entries are never removed (endpoints are fixed for the balancer's life); an entry that cannot be served now
// (unhealthy, or avoided by a retry) is parked: sent behind every other entry. Because a parked entry is queued
// behind all others, n consecutive park() calls visit every entry exactly once, which bounds a balancer's search.

/** "Now" is rebased to 0 beyond this, keeping ulp(deadline) far below the smallest period (1). */
const REBASE_AT = 2 ** 40;

export class EdfScheduler {
  readonly size: number;
  private readonly heap: Int32Array;
  private readonly deadline: Float64Array;
  private readonly order: Float64Array;
  private seq = 0;
  private maxDeadline = 0;

  constructor(periods: ArrayLike<number>) {
    const n = periods.length;
    this.size = n;
    this.heap = new Int32Array(n);
    this.deadline = new Float64Array(n);
    this.order = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.heap[i] = i;
      this.deadline[i] = periods[i]!;
      this.order[i] = this.seq++;
      if (periods[i]! > this.maxDeadline) this.maxDeadline = periods[i]!;
    }
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  /** The entry due next. Requires size > 0. */
  top(): number {
    return this.heap[0]!;
  }

  /** The top entry was served: it comes due again `period` after its deadline (the scheduler's "now"). */
  advance(period: number): void {
    this.requeueTop(this.deadline[this.heap[0]!]! + period);
  }

  /** The top entry could not be served: queue it behind every other entry. */
  park(): void {
    this.requeueTop(this.maxDeadline);
  }

  private requeueTop(deadline: number): void {
    const e = this.heap[0]!;
    this.deadline[e] = deadline;
    this.order[e] = this.seq++;
    if (deadline > this.maxDeadline) this.maxDeadline = deadline;
    this.siftDown(0);
    if (this.deadline[this.heap[0]!]! > REBASE_AT) this.rebase();
  }

  /** O(n), about once every 2^40 periods: subtract "now" from every deadline. Order is unchanged. */
  private rebase(): void {
    const now = this.deadline[this.heap[0]!]!;
    for (let i = 0; i < this.size; i++) this.deadline[i] = this.deadline[i]! - now;
    this.maxDeadline -= now;
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline[a]!;
    const db = this.deadline[b]!;
    return da < db || (da === db && this.order[a]! < this.order[b]!);
  }

  private siftDown(pos: number): void {
    const heap = this.heap;
    const n = this.size;
    const e = heap[pos]!;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && this.less(heap[child + 1]!, heap[child]!)) child++;
      if (!this.less(heap[child]!, e)) break;
      heap[pos] = heap[child]!;
      pos = child;
    }
    heap[pos] = e;
  }
}
