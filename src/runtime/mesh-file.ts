// DIR/mesh.yaml, the local runtime's public format (kind: Mesh): which clusters to run and which manifests
// each gets. Read with positions, checked field by field (unknown fields refused with a "did you mean"), every
// problem a Diagnostic with FILE:LINE:COL, and nothing started unless the whole file is right.
import { existsSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import type { Diagnostic } from "../api/diagnostic.ts";
import { parseResources } from "../api/load/parse-documents.ts";
import type { Resource } from "../api/resource.ts";
import { arr, Checker, obj, type Path } from "../api/validate/checker.ts";
import { unknownFields } from "../api/validate/unknown-fields.ts";

export const MESH_FILE = "mesh.yaml";
const MAX_MESH_BYTES = 256 * 1024;
const MAX_CLUSTERS = 16;

export interface MeshCluster {
  readonly name: string;
  /** Clusters on one network reach each other's pods directly. Default: the cluster's name. */
  readonly network: string;
  /** region/zone[/subzone]; "" when not given. */
  readonly locality: string;
  /** Absolute paths: the mesh's common manifests, then the cluster's own. */
  readonly manifests: readonly string[];
  /** Host port of this cluster's ingress gateway on 127.0.0.1. */
  readonly ingressPort?: number;
  /** Can dial out to other clusters; nothing dials in. */
  readonly private: boolean;
}

export interface MeshSpec {
  readonly name: string;
  readonly dir: string;
  readonly trustDomain: string;
  readonly clusters: readonly MeshCluster[];
}

export type MeshFileResult =
  | { readonly ok: true; readonly mesh: MeshSpec }
  | { readonly ok: false; readonly diagnostics: Diagnostic[] };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LOCALITY = /^[^/\s]+(\/[^/\s]+){1,2}$/;

const TOP_FIELDS = ["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS = ["name", "labels", "annotations"];
const SPEC_FIELDS = ["trustDomain", "manifests", "clusters"];
const CLUSTER_FIELDS = ["name", "network", "locality", "manifests", "ingress", "private"];
const INGRESS_FIELDS = ["port"];

/** Reads and checks DIR/mesh.yaml. */
export function readMeshFile(dir: string): MeshFileResult {
  const root = resolve(dir);
  const file = join(root, MESH_FILE);
  const shown = relative(process.cwd(), file) || file;
  const fail = (message: string): MeshFileResult => ({
    ok: false,
    diagnostics: [{ severity: "error", file: shown, message }],
  });
  if (!existsSync(root) || !statSync(root).isDirectory()) return fail(`${dir} is not a directory`);
  if (!existsSync(file)) return fail(`no ${MESH_FILE} in ${dir} (the local runtime's mesh file: kind Mesh)`);
  const st = statSync(file);
  if (!st.isFile()) return fail("not a regular file");
  if (st.size > MAX_MESH_BYTES) return fail(`larger than ${MAX_MESH_BYTES} bytes`);
  const parsed = parseResources(shown, readFileSync(file, "utf8"), 3);
  if (parsed.diagnostics.some((d) => d.severity === "error"))
    return { ok: false, diagnostics: parsed.diagnostics };
  if (parsed.resources.length !== 1)
    return fail(`must hold exactly one document (kind: Mesh), not ${parsed.resources.length}`);
  return checkMesh(parsed.resources[0]!, root);
}

/** Checks a parsed Mesh resource; manifests are resolved against `root` and must exist. */
export function checkMesh(r: Resource, root: string): MeshFileResult {
  const c = new Checker(r);
  const o = r.object;
  unknownFields(c, o, [], TOP_FIELDS);
  if (o.apiVersion !== "isthmus.io/v1alpha1")
    c.error(["apiVersion"], `must be isthmus.io/v1alpha1, not ${JSON.stringify(o.apiVersion ?? null)}`);
  if (o.kind !== "Mesh") c.error(["kind"], `must be Mesh, not ${JSON.stringify(o.kind ?? null)}`);
  const metadata = obj(o.metadata);
  if (metadata === undefined) c.error(["metadata"], "is required (metadata.name)");
  else {
    unknownFields(c, metadata, ["metadata"], METADATA_FIELDS);
    if (typeof metadata.name !== "string" || !DNS_LABEL.test(metadata.name))
      c.error(["metadata", "name"], "must be a DNS label (lower case letters, digits, '-')");
  }
  const spec = obj(o.spec);
  if (spec === undefined) {
    c.error(["spec"], "is required (spec.clusters)");
    return result(c, r, root, []);
  }
  unknownFields(c, spec, ["spec"], SPEC_FIELDS);
  if (
    spec.trustDomain !== undefined &&
    (typeof spec.trustDomain !== "string" || !TRUST_DOMAIN.test(spec.trustDomain))
  )
    c.error(["spec", "trustDomain"], "must be a DNS name in lower case");
  const common = manifestList(c, spec.manifests, ["spec", "manifests"], root);
  const clusters: MeshCluster[] = [];
  if (!Array.isArray(spec.clusters) || spec.clusters.length === 0)
    c.error(["spec", "clusters"], "must list at least one cluster");
  else if (spec.clusters.length > MAX_CLUSTERS)
    c.error(["spec", "clusters"], `at most ${MAX_CLUSTERS} clusters run on one machine`);
  else {
    const names = new Set<string>();
    const ports = new Map<number, string>();
    arr(spec.clusters).forEach((item, i) => {
      const at: Path = ["spec", "clusters", i];
      const cl = obj(item);
      if (cl === undefined) {
        c.error(at, "must be an object (name, manifests, ...)");
        return;
      }
      unknownFields(c, cl, at, CLUSTER_FIELDS);
      const name = typeof cl.name === "string" ? cl.name : "";
      if (!DNS_LABEL.test(name))
        c.error([...at, "name"], "must be a DNS label (lower case letters, digits, '-')");
      else if (names.has(name)) c.error([...at, "name"], `cluster "${name}" is defined twice`);
      names.add(name);
      if (cl.network !== undefined && (typeof cl.network !== "string" || !DNS_LABEL.test(cl.network)))
        c.error([...at, "network"], "must be a DNS label");
      if (cl.locality !== undefined && (typeof cl.locality !== "string" || !LOCALITY.test(cl.locality)))
        c.error([...at, "locality"], "must be region/zone or region/zone/subzone");
      if (cl.private !== undefined && typeof cl.private !== "boolean")
        c.error([...at, "private"], "must be true or false");
      const own = manifestList(c, cl.manifests, [...at, "manifests"], root);
      let ingressPort: number | undefined;
      if (cl.ingress !== undefined) {
        const ingress = obj(cl.ingress);
        if (ingress === undefined) c.error([...at, "ingress"], "must be an object ({port: N})");
        else {
          unknownFields(c, ingress, [...at, "ingress"], INGRESS_FIELDS);
          const p = ingress.port;
          if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535)
            c.error([...at, "ingress", "port"], "must be a port number (1-65535)");
          else if (ports.has(p))
            c.error([...at, "ingress", "port"], `port ${p} is also cluster ${ports.get(p)}'s`);
          else {
            ports.set(p, name);
            ingressPort = p;
          }
        }
      }
      if (common.length + own.length === 0)
        c.error([...at, "manifests"], "the cluster has no manifests (here or in spec.manifests)");
      clusters.push({
        name,
        network: typeof cl.network === "string" ? cl.network : name,
        locality: typeof cl.locality === "string" ? cl.locality : "",
        manifests: [...common, ...own],
        ...(ingressPort !== undefined ? { ingressPort } : {}),
        private: cl.private === true,
      });
    });
  }
  return result(c, r, root, clusters);
}

function result(c: Checker, r: Resource, root: string, clusters: MeshCluster[]): MeshFileResult {
  if (c.diagnostics.some((d) => d.severity === "error"))
    // A Mesh has no namespace (the loader's "default" would only mislead).
    return { ok: false, diagnostics: c.diagnostics.map(({ namespace: _, ...d }) => d) };
  const spec = obj(r.object.spec)!;
  return {
    ok: true,
    mesh: {
      name: String(obj(r.object.metadata)!.name),
      dir: root,
      trustDomain: typeof spec.trustDomain === "string" ? spec.trustDomain : "cluster.local",
      clusters,
    },
  };
}

/** A list of files or directories relative to the mesh's directory, each of which must exist inside it. */
function manifestList(c: Checker, v: unknown, at: Path, root: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    c.error(at, "must be a list of files or directories, relative to the mesh file");
    return [];
  }
  const out: string[] = [];
  v.forEach((p, i) => {
    if (typeof p !== "string" || p === "") {
      c.error([...at, i], "must be a path");
      return;
    }
    const full = resolve(root, p);
    const rel = relative(root, full);
    if (isAbsolute(p) || rel.startsWith("..")) c.error([...at, i], `${p} is outside the mesh's directory`);
    else if (!existsSync(full)) c.error([...at, i], `${p} does not exist`);
    else out.push(full);
  });
  return out;
}
