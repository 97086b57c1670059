// MeshLink (isthmus.io/v1alpha1): a peering link from this cluster's control plane to another cluster's, for
// clusters run by hand or by GitOps (the local runtime derives its links from the Mesh file).
//
//   apiVersion: isthmus.io/v1alpha1
//   kind: MeshLink
//   metadata: { name: icp, namespace: istio-system }
//   spec:
//     cluster: icp                 # the peer's cluster name (its control plane's --cluster)
//     address: 10.0.0.5:15012      # dial the peer's peering port; absent: the peer dials this cluster
//
// A private cluster's links name addresses (it only dials out); a public cluster's link to a private one has
// none (it waits to be dialled). Checked strictly: unknown fields are errors.
import type { Resource } from "../resource.ts";
import { Checker, obj } from "./checker.ts";
import { unknownFields } from "./unknown-fields.ts";

export const MESH_LINK_API_VERSION = "isthmus.io/v1alpha1";
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?):(\d{1,5})$/;

export interface MeshLinkSpec {
  readonly name: string;
  readonly cluster: string;
  readonly address?: string;
}

export function isMeshLink(r: Pick<Resource, "apiVersion" | "kind">): boolean {
  return r.apiVersion === MESH_LINK_API_VERSION && r.kind === "MeshLink";
}

export function validateMeshLink(c: Checker): void {
  const o = c.resource.object;
  unknownFields(c, o, [], ["apiVersion", "kind", "metadata", "spec"]);
  const spec = obj(o.spec);
  if (spec === undefined) {
    c.error(["spec"], "is required (spec.cluster)");
    return;
  }
  unknownFields(c, spec, ["spec"], ["cluster", "address"]);
  if (typeof spec.cluster !== "string" || !DNS_LABEL.test(spec.cluster))
    c.error(
      ["spec", "cluster"],
      "must be the peer's cluster name, a DNS label (lower case letters, digits, '-')",
    );
  if (spec.address !== undefined) {
    const m = typeof spec.address === "string" ? HOST_PORT.exec(spec.address) : null;
    if (m === null || Number(m[3]) < 1 || Number(m[3]) > 65535)
      c.error(["spec", "address"], "must be HOST:PORT (the peer control plane's peering address)");
  }
}

/** A valid MeshLink's spec (validateMeshLink passed). */
export function meshLinkSpec(r: Resource): MeshLinkSpec {
  const spec = obj(r.object.spec)!;
  return {
    name: r.name,
    cluster: spec.cluster as string,
    ...(typeof spec.address === "string" ? { address: spec.address } : {}),
  };
}

/** Checks a MeshLink as the API server would; its diagnostics. */
export function checkMeshLink(r: Resource): Checker {
  const c = new Checker(r);
  validateMeshLink(c);
  return c;
}
