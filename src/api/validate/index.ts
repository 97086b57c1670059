// Validation of loaded resources: structural (schema) first, then Istio's and Kubernetes' semantic rules.
// A resource with any error is invalid as a whole, as the API server would refuse it.
import type { Diagnostic } from "../diagnostic.ts";
import { LIMITS } from "../load/limits.ts";
import { diagnosticAt, type Resource } from "../resource.ts";
import { nonJsonValues } from "../schema/json-data.ts";
import type { KindModule } from "../schema/kind-modules.ts";
import { lookupKind } from "../schema/kinds.ts";
import { conflictDiagnostic, prepareStructural, validateStructure } from "../schema/structural.ts";
import { validatePeerAuthentication, validateRequestAuthentication } from "./authentication.ts";
import { DRY_RUN_ANNOTATION, validateAuthorizationPolicy } from "./authorization-policy.ts";
import { Checker, type Obj, obj } from "./checker.ts";
import { validateDestinationRule } from "./destination-rule.ts";
import { validateGateway } from "./gateway.ts";
import {
  validateConfigOrSecret,
  validateDeployment,
  validateObjectMeta,
  validateService,
} from "./kubernetes.ts";
import { checkMeshLink, isMeshLink } from "./mesh-link.ts";
import { validateServiceEntry, validateWorkloadEntry, validateWorkloadGroup } from "./service-entry.ts";
import { validateSidecar } from "./sidecar.ts";
import { validateVirtualService } from "./virtual-service.ts";

type SpecValidator = (c: Checker, spec: Obj) => void;

const SEMANTIC: Record<string, SpecValidator> = {
  Gateway: validateGateway,
  VirtualService: validateVirtualService,
  DestinationRule: validateDestinationRule,
  ServiceEntry: validateServiceEntry,
  WorkloadEntry: validateWorkloadEntry,
  WorkloadGroup: validateWorkloadGroup,
  Sidecar: validateSidecar,
  AuthorizationPolicy: validateAuthorizationPolicy,
  PeerAuthentication: validatePeerAuthentication,
  RequestAuthentication: validateRequestAuthentication,
  Service: validateService,
  Deployment: validateDeployment,
};

export interface ValidationResult {
  readonly diagnostics: Diagnostic[];
  /** Resources of supported kinds without errors: what the rest of the system may use. */
  readonly valid: Resource[];
  /** Resources of kinds isthmus does not know (reported as warnings, otherwise ignored). */
  readonly ignored: Resource[];
}

export async function validateResources(resources: readonly Resource[]): Promise<ValidationResult> {
  const diagnostics: Diagnostic[] = [];
  const valid: Resource[] = [];
  const ignored: Resource[] = [];
  // The loader refuses resources that are not JSON data; resources made in code are checked here too, since
  // the validators below take any object for a map and would misreport, or throw on, the rest.
  const notJson = new Map<Resource, Diagnostic[]>();
  for (const r of resources) {
    const found = nonJsonValues(r.object, LIMITS.maxNestingDepth);
    if (found.length > 0)
      notJson.set(
        r,
        found.map((v) => diagnosticAt(r, "error", v.path, v.message)),
      );
  }
  const modules = new Map<string, KindModule>();
  for (const r of resources) {
    const k = lookupKind(r.apiVersion, r.kind);
    if (k.status === "supported" && !notJson.has(r)) modules.set(`${r.apiVersion}/${r.kind}`, k.module);
  }
  const models = await prepareStructural(modules.values());

  for (const r of resources) {
    const refused = notJson.get(r);
    if (refused) {
      diagnostics.push(...refused);
      continue;
    }
    const k = lookupKind(r.apiVersion, r.kind);
    if (k.status === "unknown" && isMeshLink(r)) {
      const c = checkMeshLink(r);
      validateObjectMeta(c);
      diagnostics.push(...c.diagnostics);
      if (!c.diagnostics.some((d) => d.severity === "error")) valid.push(r);
      continue;
    }
    if (k.status === "unknown" && r.apiVersion === "isthmus.io/v1alpha1" && r.kind === "Mesh") {
      // The local runtime's mesh file, beside the manifests it names: `isthmus up` checks it.
      ignored.push(r);
      continue;
    }
    if (k.status === "unknown") {
      diagnostics.push(
        diagnosticAt(
          r,
          "warning",
          ["kind"],
          `kind ${r.kind} (${r.apiVersion}) is not supported by isthmus; ignored`,
        ),
      );
      ignored.push(r);
      continue;
    }
    if (k.status === "wrong-version") {
      diagnostics.push(
        diagnosticAt(
          r,
          "error",
          ["apiVersion"],
          `${r.kind} is not served in ${r.apiVersion}; use ${k.served.join(", ")}`,
        ),
      );
      continue;
    }
    const found = validateOne(r, models.get(`${r.apiVersion}/${r.kind}`)!);
    diagnostics.push(...found);
    if (!found.some((d) => d.severity === "error")) valid.push(r);
  }
  return { diagnostics, valid, ignored };
}

function validateOne(r: Resource, model: Parameters<typeof validateStructure>[1]): Diagnostic[] {
  const structural = validateStructure(r, model);
  const c = new Checker(r);
  validateObjectMeta(c);
  if (r.kind !== "AuthorizationPolicy" && r.annotations[DRY_RUN_ANNOTATION] !== undefined)
    c.error(
      ["metadata", "annotations", DRY_RUN_ANNOTATION],
      `${r.namespace}/${r.name} has unsupported annotation ${DRY_RUN_ANNOTATION}, please remove the annotation`,
    );
  // Semantic rules read fields by type and skip what is malformed, so they run even after schema errors
  // and a user sees every problem in one pass.
  const semantic = SEMANTIC[r.kind];
  const spec = obj(r.object.spec);
  if (semantic && spec) semantic(c, spec);
  if (r.kind === "ConfigMap" || r.kind === "Secret") validateConfigOrSecret(c);
  const out = [...structural.diagnostics, ...c.diagnostics];
  for (const path of structural.exclusivePaths) {
    if (!c.reportedAt(path)) out.push(conflictDiagnostic(r, path));
  }
  return out;
}
