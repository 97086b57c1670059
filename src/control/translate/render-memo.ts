// What one render of the mesh made, kept for the next render: an object whose inputs are the very same
// objects as last time (the same Resource, the same DestinationRule, the same instance list) is returned as it
// was instead of being built again. A change to one ServiceEntry then rebuilds that service's clusters and
// nothing else, and because the push side serializes, versions and diffs by object identity, everything
// reused costs nothing downstream either (npm run bench:control-plane: one endpoint change at 1,000 services
// re-rendered and re-encoded every cluster of every scope before this).
//
// Entries live for two generations: those used by the current render, and those of the previous render not
// yet asked for. A memo therefore holds at most what two consecutive renders made.

interface Entry {
  readonly inputs: readonly unknown[];
  readonly value: unknown;
  /** The value serialized, for entries also compared by content. */
  readonly json?: string;
}

export class RenderMemo {
  private readonly previous: Map<string, Entry>;
  private readonly current = new Map<string, Entry>();

  constructor(previous?: RenderMemo) {
    this.previous = previous ? previous.current : new Map();
  }

  /**
   * The value built for `key` from `inputs` (compared by identity, in order): the one kept from the previous
   * render or built earlier in this one if every input is the same object, else `build()`'s. With
   * `byContent`, a value built anew that serializes like the kept one is replaced by the kept one (inputs that
   * changed in ways that do not matter, such as a ServiceEntry whose endpoints alone changed, for its route).
   */
  get<T>(key: string, inputs: readonly unknown[], build: () => T, byContent = false): T {
    const kept = this.current.get(key) ?? this.previous.get(key);
    if (kept !== undefined && sameInputs(kept.inputs, inputs)) {
      this.current.set(key, kept);
      return kept.value as T;
    }
    const value = build();
    if (!byContent) {
      this.current.set(key, { inputs, value });
      return value;
    }
    const json = JSON.stringify(value);
    const same = kept !== undefined && kept.json === json;
    this.current.set(key, { inputs, value: same ? kept.value : value, json });
    return (same ? kept.value : value) as T;
  }

  /**
   * `value`, or the object kept under `key` if that serialized the same: for objects whose inputs are too many
   * to name, rebuilt each time but kept as one object while they come out the same.
   */
  same<T>(key: string, value: T): T {
    const kept = this.current.get(key) ?? this.previous.get(key);
    const json = JSON.stringify(value);
    if (kept !== undefined && kept.json === json) {
      this.current.set(key, kept);
      return kept.value as T;
    }
    this.current.set(key, { inputs: [], value, json });
    return value;
  }

  /** The list itself if it holds the same objects as the one kept under `key`, so that it keeps its identity. */
  list<T>(key: string, items: readonly T[]): readonly T[] {
    return this.get(key, items, () => items);
  }
}

function sameInputs(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
