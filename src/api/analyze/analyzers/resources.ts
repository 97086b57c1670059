// Analyzers over resources in general: annotations and duplicates.
import { locate, type Resource } from "../../resource.ts";
import type { Analyzer } from "../analyzer.ts";

/**
 * Every annotation Istio defines: the names in istio.io/api's annotation/annotations.gen.go (the
 * `Name:` of each annotation.Instance; istio/api commit b8f8791d9653, July 2026), which is the list Istio's
 * annotations analyzer looks names up in. Refresh it from that file when Istio adds annotations.
 */
const ISTIO_ANNOTATIONS: readonly string[] = [
  "alpha.istio.io/canonical-serviceaccounts",
  "alpha.istio.io/kubernetes-serviceaccounts",
  "ambient.istio.io/bypass-inbound-capture",
  "ambient.istio.io/dns-capture",
  "ambient.istio.io/redirection",
  "ambient.istio.io/waypoint-inbound-binding",
  "galley.istio.io/analyze-suppress",
  "gateway.istio.io/controller-version",
  "gateway.istio.io/name-override",
  "gateway.istio.io/service-account",
  "inject.istio.io/templates",
  "istio.io/autoRegistrationGroup",
  "istio.io/connectedAt",
  "istio.io/disconnectedAt",
  "istio.io/dry-run",
  "istio.io/reroute-virtual-interfaces",
  "istio.io/rev",
  "istio.io/use-waypoint-canary-weight",
  "istio.io/workloadController",
  "kubernetes.io/ingress.class",
  "networking.istio.io/exportTo",
  "networking.istio.io/service-type",
  "networking.istio.io/traffic-distribution",
  "prometheus.istio.io/merge-metrics",
  "proxy.istio.io/config",
  "proxy.istio.io/overrides",
  "readiness.status.sidecar.istio.io/applicationPorts",
  "readiness.status.sidecar.istio.io/failureThreshold",
  "readiness.status.sidecar.istio.io/initialDelaySeconds",
  "readiness.status.sidecar.istio.io/periodSeconds",
  "sidecar.istio.io/agentLogLevel",
  "sidecar.istio.io/bootstrapOverride",
  "sidecar.istio.io/componentLogLevel",
  "sidecar.istio.io/discoveryAddress",
  "sidecar.istio.io/extraStatTags",
  "sidecar.istio.io/inject",
  "sidecar.istio.io/interceptionMode",
  "sidecar.istio.io/logLevel",
  "sidecar.istio.io/nativeSidecar",
  "sidecar.istio.io/proxyCPU",
  "sidecar.istio.io/proxyCPULimit",
  "sidecar.istio.io/proxyImage",
  "sidecar.istio.io/proxyImageType",
  "sidecar.istio.io/proxyMemory",
  "sidecar.istio.io/proxyMemoryLimit",
  "sidecar.istio.io/rewriteAppHTTPProbers",
  "sidecar.istio.io/statsCompression",
  "sidecar.istio.io/statsEvictionInterval",
  "sidecar.istio.io/statsFlushInterval",
  "sidecar.istio.io/statsHistogramBins",
  "sidecar.istio.io/statsHistogramBuckets",
  "sidecar.istio.io/statsInclusionPrefixes",
  "sidecar.istio.io/statsInclusionRegexps",
  "sidecar.istio.io/statsInclusionSuffixes",
  "sidecar.istio.io/status",
  "sidecar.istio.io/userVolume",
  "sidecar.istio.io/userVolumeMount",
  "status.sidecar.istio.io/port",
  "topology.istio.io/controlPlaneClusters",
  "traffic.istio.io/nodeSelector",
  "traffic.sidecar.istio.io/excludeInboundPorts",
  "traffic.sidecar.istio.io/excludeInterfaces",
  "traffic.sidecar.istio.io/excludeOutboundIPRanges",
  "traffic.sidecar.istio.io/excludeOutboundPorts",
  "traffic.sidecar.istio.io/includeInboundPorts",
  "traffic.sidecar.istio.io/includeOutboundIPRanges",
  "traffic.sidecar.istio.io/includeOutboundPorts",
  "traffic.sidecar.istio.io/kubevirtInterfaces",
];
/**
 * Istio labels (istio.io/api label/labels.gen.go) that isthmus has always let through as annotations too;
 * Istio's analyzer would report them, but people do write them as annotations and isthmus stays quiet.
 */
const LABELS_ALSO_ACCEPTED = [
  "istio.io/dataplane-mode",
  "istio.io/use-waypoint",
  "security.istio.io/tlsMode",
  "topology.istio.io/cluster",
  "topology.istio.io/network",
  "topology.istio.io/subzone",
];
const KNOWN_ANNOTATIONS = new Set([...ISTIO_ANNOTATIONS, ...LABELS_ALSO_ACCEPTED]);
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
