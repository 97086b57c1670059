// The resource kinds isthmus loads and the generated model module that describes each one.
// Used at run time (structural validators) and by scripts/gen-known-fields.ts (field names).

export interface KindModule {
  readonly apiVersion: string;
  readonly kind: string;
  readonly module: string;
}

const ISTIO = "@kubernetes-models/istio";

const istio = (group: string, versions: string[], kinds: string[]): KindModule[] =>
  versions.flatMap((v) =>
    kinds.map((kind) => ({ apiVersion: `${group}/${v}`, kind, module: `${ISTIO}/${group}/${v}/${kind}` })),
  );

export const KIND_MODULES: readonly KindModule[] = [
  ...istio(
    "networking.istio.io",
    ["v1", "v1beta1", "v1alpha3"],
    [
      "Gateway",
      "VirtualService",
      "DestinationRule",
      "ServiceEntry",
      "WorkloadEntry",
      "WorkloadGroup",
      "Sidecar",
    ],
  ),
  // EnvoyFilter is served in v1alpha3 only; isthmus translates its local rate limit patches (see
  // src/api/analyze/analyzers/envoy-filter.ts) and reports the rest.
  ...istio("networking.istio.io", ["v1alpha3"], ["EnvoyFilter"]),
  ...istio(
    "security.istio.io",
    ["v1", "v1beta1"],
    ["AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"],
  ),
  ...["Namespace", "Service", "ServiceAccount", "Secret", "ConfigMap"].map((kind) => ({
    apiVersion: "v1",
    kind,
    module: `kubernetes-models/v1/${kind}`,
  })),
  { apiVersion: "apps/v1", kind: "Deployment", module: "kubernetes-models/apps/v1/Deployment" },
];
