// Which kinds isthmus understands, in which apiVersions.
import { KIND_MODULES, type KindModule } from "./kind-modules.ts";

export const CLUSTER_SCOPED_KINDS: ReadonlySet<string> = new Set(["Namespace"]);

const byKey = new Map<string, KindModule>(KIND_MODULES.map((k) => [`${k.apiVersion}/${k.kind}`, k]));
const versionsByKind = new Map<string, string[]>();
for (const k of KIND_MODULES) {
  const group = groupOf(k.apiVersion);
  const key = `${group}/${k.kind}`;
  versionsByKind.set(key, [...(versionsByKind.get(key) ?? []), k.apiVersion]);
}

export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf("/");
  return slash === -1 ? "" : apiVersion.slice(0, slash);
}

export type KindLookup =
  | { readonly status: "supported"; readonly module: KindModule }
  /** A kind we know in another apiVersion of the same group: almost always a typo. */
  | { readonly status: "wrong-version"; readonly served: readonly string[] }
  | { readonly status: "unknown" };

export function lookupKind(apiVersion: string, kind: string): KindLookup {
  const module = byKey.get(`${apiVersion}/${kind}`);
  if (module) return { status: "supported", module };
  const served = versionsByKind.get(`${groupOf(apiVersion)}/${kind}`);
  if (served) return { status: "wrong-version", served };
  return { status: "unknown" };
}
