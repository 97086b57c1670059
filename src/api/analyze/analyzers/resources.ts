// Analyzers over resources in general: annotations and duplicates.
import { locate, type Resource } from "../../resource.ts";
import type { Analyzer } from "../analyzer.ts";

/** Istio's annotations that isthmus knows; any other under Istio's prefixes is probably a typo. */
const KNOWN_ANNOTATIONS = new Set([
  "istio.io/dry-run",
  "istio.io/rev",
  "istio.io/use-waypoint",
  "istio.io/dataplane-mode",
  "networking.istio.io/exportTo",
  "networking.istio.io/traffic-distribution",
  "sidecar.istio.io/inject",
  "sidecar.istio.io/proxyCPU",
  "sidecar.istio.io/proxyMemory",
  "sidecar.istio.io/logLevel",
  "sidecar.istio.io/statsInclusionPrefixes",
  "sidecar.istio.io/userVolume",
  "sidecar.istio.io/userVolumeMount",
  "sidecar.istio.io/interceptionMode",
  "sidecar.istio.io/rewriteAppHTTPProbers",
  "sidecar.istio.io/componentLogLevel",
  "sidecar.istio.io/agentLogLevel",
  "proxy.istio.io/config",
  "traffic.sidecar.istio.io/includeOutboundIPRanges",
  "traffic.sidecar.istio.io/excludeOutboundIPRanges",
  "traffic.sidecar.istio.io/includeInboundPorts",
  "traffic.sidecar.istio.io/excludeInboundPorts",
  "traffic.sidecar.istio.io/excludeOutboundPorts",
  "traffic.sidecar.istio.io/includeOutboundPorts",
  "topology.istio.io/network",
  "topology.istio.io/cluster",
  "topology.istio.io/subzone",
  "security.istio.io/tlsMode",
  "prometheus.istio.io/merge-metrics",
  "readiness.status.sidecar.istio.io/applicationPorts",
  "status.sidecar.istio.io/port",
  "kubectl.kubernetes.io/default-container",
]);
const ISTIO_PREFIX = /(^|\.)istio\.io\//;

export const unknownAnnotationAnalyzer: Analyzer = {
  name: "annotations",
  codes: ["IST0108"],
  description: "annotations under Istio's prefixes that Istio does not define",
  run(ctx, report) {
    for (const r of ctx.resources) {
      for (const key of Object.keys(r.annotations)) {
        if (ISTIO_PREFIX.test(key) && !KNOWN_ANNOTATIONS.has(key))
          report(r, "IST0108", "warning", ["metadata", "annotations", key], `Unknown annotation: ${key}`);
      }
    }
  },
};

export const duplicateResourceAnalyzer: Analyzer = {
  name: "resources.duplicate",
  codes: ["ISM0002"],
  description: "the same kind, namespace and name defined more than once (the later one replaces the first)",
  run(ctx, report) {
    const first = new Map<string, Resource>();
    for (const r of ctx.all) {
      const key = `${r.kind}/${r.namespace}/${r.name}`;
      const earlier = first.get(key);
      if (!earlier) {
        first.set(key, r);
        continue;
      }
      const pos = locate(earlier.origin, []);
      report(
        r,
        "ISM0002",
        "warning",
        ["metadata", "name"],
        `${r.kind} ${r.namespace ? `${r.namespace}/` : ""}${r.name} is also defined at ${earlier.origin.file}:${pos.line}; this later definition replaces it`,
      );
    }
  },
};
