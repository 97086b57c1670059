// `isthmus analyze`: validation of every resource, then the cross-resource analyzers.
import type { Diagnostic } from "../diagnostic.ts";
import type { Resource } from "../resource.ts";
import { validateResources } from "../validate/index.ts";
import { type Analyzer, collector } from "./analyzer.ts";
import {
  subsetSelectsPodsAnalyzer,
  tlsVerificationAnalyzer,
  unknownHostAnalyzer,
  unusedSubsetAnalyzer,
} from "./analyzers/destination-rule.ts";
import { envoyFilterAnalyzer } from "./analyzers/envoy-filter.ts";
import {
  conflictingGatewaysAnalyzer,
  gatewayPortAnalyzer,
  gatewaySelectorAnalyzer,
} from "./analyzers/gateway.ts";
import { duplicateResourceAnalyzer, unknownAnnotationAnalyzer } from "./analyzers/resources.ts";
import { addressesRequiredAnalyzer, conflictingProtocolAnalyzer } from "./analyzers/service-entry.ts";
import {
  conflictingMeshHostsAnalyzer,
  destinationHostAnalyzer,
  gatewayReferenceAnalyzer,
  hostInGatewayAnalyzer,
  subsetAnalyzer,
  unreachableRulesAnalyzer,
} from "./analyzers/virtual-service.ts";
import {
  authorizationWorkloadsAnalyzer,
  portNameAnalyzer,
  sidecarSelectorAnalyzer,
} from "./analyzers/workloads.ts";
import { AnalysisContext } from "./context.ts";

export const ANALYZERS: readonly Analyzer[] = [
  gatewayReferenceAnalyzer,
  destinationHostAnalyzer,
  subsetAnalyzer,
  conflictingMeshHostsAnalyzer,
  unreachableRulesAnalyzer,
  hostInGatewayAnalyzer,
  tlsVerificationAnalyzer,
  subsetSelectsPodsAnalyzer,
  unknownHostAnalyzer,
  unusedSubsetAnalyzer,
  gatewaySelectorAnalyzer,
  conflictingGatewaysAnalyzer,
  gatewayPortAnalyzer,
  sidecarSelectorAnalyzer,
  authorizationWorkloadsAnalyzer,
  portNameAnalyzer,
  addressesRequiredAnalyzer,
  conflictingProtocolAnalyzer,
  unknownAnnotationAnalyzer,
  duplicateResourceAnalyzer,
  envoyFilterAnalyzer,
];

export interface AnalysisResult {
  readonly diagnostics: Diagnostic[];
  readonly analyzed: number;
}

/**
 * Validation errors come out as IST0106 (SchemaValidationError) and warnings as IST0133, as istioctl does;
 * the analyzers then look only at resources that are valid, so that one broken field is reported once.
 */
export async function analyzeResources(
  resources: readonly Resource[],
  only?: ReadonlySet<string>,
): Promise<AnalysisResult> {
  const validated = await validateResources(resources);
  const diagnostics: Diagnostic[] = validated.diagnostics.map((d) =>
    d.code ? d : { ...d, code: d.severity === "error" ? "IST0106" : "IST0133" },
  );
  const ctx = new AnalysisContext(validated.valid);
  const { report, diagnostics: found } = collector();
  for (const a of ANALYZERS) {
    if (only && !only.has(a.name)) continue;
    a.run(ctx, report);
  }
  diagnostics.push(...found);
  return { diagnostics, analyzed: validated.valid.length };
}
