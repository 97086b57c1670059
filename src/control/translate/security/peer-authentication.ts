// PeerAuthentication: which mutual-TLS mode a workload's port accepts, with Istio's precedence — a
// workload-specific policy (a selector, in the workload's namespace) over the namespace-wide one (no selector)
// over the mesh-wide one (the root namespace, no selector); `portLevelMtls` (workload-specific policies only,
// keyed by the workload's port) over the policy's `mtls`; UNSET inherits from the next level; the mesh
// default is PERMISSIVE. Where several policies share a level, the first (Istio: the oldest) decides.
// The sidecar's inbound side and the clients' auto mTLS will read this; it knows no proxy config.
import { selectorMatches } from "../../../api/analyze/context.ts";
import type { Resource } from "../../../api/resource.ts";
import { obj, str } from "../../../api/validate/checker.ts";

export type MtlsMode = "STRICT" | "PERMISSIVE" | "DISABLE";

const MODES = new Set<string>(["STRICT", "PERMISSIVE", "DISABLE"]);

/** The mode the workload (its namespace and labels) accepts on `port`. */
export function peerAuthenticationMode(
  policies: readonly Resource[],
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  port: number,
  rootNamespace = "istio-system",
): MtlsMode {
  return peerAuthenticationDecision(policies, workload, port, rootNamespace).mode;
}

/** The mode and the policy that decided it (none: the mesh default, PERMISSIVE). */
export function peerAuthenticationDecision(
  policies: readonly Resource[],
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  port: number,
  rootNamespace = "istio-system",
): { readonly mode: MtlsMode; readonly policy?: Resource } {
  const selectorOf = (r: Resource) => obj(obj(obj(r.object.spec)?.selector)?.matchLabels);
  const hasSelector = (r: Resource) => Object.keys(selectorOf(r) ?? {}).length > 0;
  const workloadPolicy = policies.find(
    (r) =>
      r.namespace === workload.namespace &&
      hasSelector(r) &&
      selectorMatches(selectorOf(r) as Record<string, string>, workload.labels),
  );
  const namespacePolicy = policies.find((r) => r.namespace === workload.namespace && !hasSelector(r));
  const meshPolicy = policies.find((r) => r.namespace === rootNamespace && !hasSelector(r));
  const levels: Array<[MtlsMode | undefined, Resource | undefined]> = [
    [
      workloadPolicy
        ? (portMode(workloadPolicy, port) ?? modeOf(obj(workloadPolicy.object.spec)?.mtls))
        : undefined,
      workloadPolicy,
    ],
    [namespacePolicy ? modeOf(obj(namespacePolicy.object.spec)?.mtls) : undefined, namespacePolicy],
    [meshPolicy ? modeOf(obj(meshPolicy.object.spec)?.mtls) : undefined, meshPolicy],
  ];
  const decided = levels.find(([m]) => m !== undefined);
  return decided ? { mode: decided[0]!, policy: decided[1]! } : { mode: "PERMISSIVE" };
}

/** A policy's mode, or undefined for UNSET or no `mtls` (inherit). */
function modeOf(mtls: unknown): MtlsMode | undefined {
  const mode = str(obj(mtls)?.mode);
  return mode !== undefined && MODES.has(mode) ? (mode as MtlsMode) : undefined;
}

function portMode(policy: Resource, port: number): MtlsMode | undefined {
  const levels = obj(obj(policy.object.spec)?.portLevelMtls);
  return levels ? modeOf(levels[String(port)]) : undefined;
}
