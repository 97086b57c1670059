// The control plane's config store: the Istio and Kubernetes resources it serves, keyed by kind, namespace and
// name. Changes are all-or-nothing: a batch (one `isthmus apply -f`) is validated together with what the store
// holds, and if any resource of the batch has an error nothing changes and the errors come back (Caddy's
// validate -> swap; an invalid resource never replaces a valid one).
import type { Diagnostic } from "../../api/diagnostic.ts";
import { parseResources } from "../../api/load/parse-documents.ts";
import type { Resource } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";

export interface ChangeResult {
  readonly ok: boolean;
  /** Errors (and warnings) as FILE:LINE:COL Kind ns/name: message. */
  readonly diagnostics: Diagnostic[];
  /** kind/namespace/name of the resources created, changed or deleted. */
  readonly changed: string[];
}

const key = (r: { kind: string; namespace: string; name: string }) => `${r.kind}/${r.namespace}/${r.name}`;

export class ConfigStore {
  private resources = new Map<string, Resource>();
  private readonly listeners: Array<() => void> = [];
  /** Resources at most (the api layer's load limit applies per batch too). */
  readonly maxResources: number;

  constructor(maxResources = 50_000) {
    this.maxResources = maxResources;
  }

  all(): Resource[] {
    return [...this.resources.values()];
  }

  get(kind: string, namespace?: string, name?: string): Resource[] {
    return this.all().filter(
      (r) =>
        r.kind.toLowerCase() === kind.toLowerCase() &&
        (namespace === undefined || r.namespace === namespace) &&
        (name === undefined || r.name === name),
    );
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** Replaces everything with resources already validated (files loaded at start-up or on SIGHUP). */
  replaceAll(valid: readonly Resource[]): void {
    this.resources = new Map(valid.map((r) => [key(r), r]));
    this.changed();
  }

  /** Applies run one after another: each validates against, and replaces, what the previous one left. */
  private last: Promise<unknown> = Promise.resolve();

  /** Parses YAML/JSON text (one or many documents) and creates or replaces its resources, all or none. */
  apply(source: string, text: string): Promise<ChangeResult> {
    const run = this.last.then(() => this.applyNow(source, text));
    this.last = run.catch(() => {});
    return run;
  }

  private async applyNow(source: string, text: string): Promise<ChangeResult> {
    const parsed = parseResources(source, text);
    if (parsed.diagnostics.some((d) => d.severity === "error"))
      return { ok: false, diagnostics: parsed.diagnostics, changed: [] };
    if (parsed.resources.length === 0)
      return {
        ok: false,
        diagnostics: [{ severity: "error", file: source, message: "no resources" }],
        changed: [],
      };
    const next = new Map(this.resources);
    for (const r of parsed.resources) next.set(key(r), r);
    if (next.size > this.maxResources)
      return {
        ok: false,
        diagnostics: [
          {
            severity: "error",
            file: source,
            message: `the store holds at most ${this.maxResources} resources`,
          },
        ],
        changed: [],
      };
    // Only the batch's own problems refuse it; what the store already held was accepted before.
    const checked = await validateResources(parsed.resources);
    const errors = checked.diagnostics.filter((d) => d.severity === "error");
    if (errors.length > 0) return { ok: false, diagnostics: checked.diagnostics, changed: [] };
    this.resources = next;
    this.changed();
    return { ok: true, diagnostics: checked.diagnostics, changed: parsed.resources.map(key) };
  }

  delete(kind: string, namespace: string, name: string): ChangeResult {
    const found = this.get(kind, namespace, name);
    if (found.length === 0)
      return {
        ok: false,
        diagnostics: [{ severity: "error", file: "", message: `${kind} ${namespace}/${name} not found` }],
        changed: [],
      };
    for (const r of found) this.resources.delete(key(r));
    this.changed();
    return { ok: true, diagnostics: [], changed: found.map(key) };
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }
}
