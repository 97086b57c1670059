// What `isthmus up` will run, decided before anything starts: per cluster its address range, control plane and
// resources; per Deployment replica a pod with its own loopback address, labels, service account and
// containers (command and args with Kubernetes' $(VAR) expansion, the environment of the runtime's contract).
// Every problem in the manifests is a Diagnostic with FILE:LINE:COL, and any error means nothing starts.
import { relative } from "node:path";
import { AnalysisContext, type MeshService } from "../api/analyze/context.ts";
import type { Diagnostic } from "../api/diagnostic.ts";
import { loadPaths } from "../api/load/index.ts";
import { diagnosticAt, type Resource } from "../api/resource.ts";
import { arr, num, type Obj, obj, type Path, str } from "../api/validate/checker.ts";
import { validateResources } from "../api/validate/index.ts";
import { isHttpPort } from "../control/translate/sidecar.ts";
import type { MeshCluster, MeshSpec } from "./mesh-file.ts";

/** The sidecar's outbound (HTTP_PROXY) port on the pod's address. */
export const SIDECAR_OUTBOUND_PORT = 15001;
/** Ports the sidecar takes on the pod's address: an app may not listen on them. */
const SIDECAR_PORTS = new Set([15001, 15006, 15090]);
const MAX_PODS_PER_CLUSTER = 2000;
const MAX_REPLICAS = 100;

export interface ContainerPlan {
  readonly name: string;
  /** Command and args, $(VAR) expanded; argv[0] "node" is the runtime's own Node. */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly ports: readonly number[];
}

/** A TCP service port a pod reaches through its sidecar: POD_IP:localPort tunnels to host:port. */
export interface TcpOutbound {
  readonly host: string;
  readonly port: number;
  readonly localPort: number;
}

export interface PodPlan {
  readonly name: string;
  /** False for pods Istio would not inject (sidecar.istio.io/inject: "false", hostNetwork). */
  readonly sidecar: boolean;
  /** Runs on the host's network (the host's address; outside any cluster's namespace when isolated). */
  readonly hostNetwork?: boolean;
  /** TCP service ports of its namespace, each on a local port of the pod's address (service env vars). */
  readonly tcpOutbound: readonly TcpOutbound[];
  readonly namespace: string;
  readonly deployment: string;
  readonly address: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  readonly containers: readonly ContainerPlan[];
}

export interface ClusterPlan {
  readonly cluster: MeshCluster;
  readonly index: number;
  /** The second octet of the cluster's 127.OCTET.0.0/16. */
  readonly octet: number;
  /** The control plane's address (push stream :15010, config API :15011). */
  readonly controlPlaneAddress: string;
  readonly ingressAddress: string;
  readonly eastWestAddress: string;
  readonly resources: readonly Resource[];
  readonly pods: readonly PodPlan[];
}

export interface MeshPlan {
  readonly mesh: MeshSpec;
  readonly clusters: readonly ClusterPlan[];
}

export type PlanResult =
  | { readonly ok: true; readonly plan: MeshPlan; readonly warnings: Diagnostic[] }
  | { readonly ok: false; readonly diagnostics: Diagnostic[] };

/**
 * A cluster owns 127.OCTET.0.0/16: .0.1 its control plane, .0.2 its ingress gateway, pods from .1.1. A mesh's
 * clusters take consecutive octets from its block's base (address-blocks.ts), 20 unless told otherwise.
 */
export function clusterAddress(octet: number, host: number): string {
  return `127.${octet}.${Math.floor(host / 254)}.${(host % 254) + 1}`;
}

/**
 * Which address each host of a cluster gets: host 0 its control plane, 1 its ingress gateway, 2 its east-west
 * gateway, firstPodHost onwards its pods; hostNetwork pods get hostAddress.
 */
export interface Addressing {
  address(clusterIndex: number, host: number): string;
  readonly firstPodHost: number;
  readonly maxPods: number;
  readonly hostAddress: string;
}

/** Loopback addressing: cluster i owns 127.(base+i).0.0/16, pods from .1.1. */
export function loopbackAddressing(base = 20): Addressing {
  return {
    address: (i, host) => clusterAddress(base + i, host),
    firstPodHost: 254,
    maxPods: MAX_PODS_PER_CLUSTER,
    hostAddress: "127.0.0.1",
  };
}

export async function planMesh(
  mesh: MeshSpec,
  base = 20,
  addressing: Addressing = loopbackAddressing(base),
): Promise<PlanResult> {
  const diagnostics: Diagnostic[] = [];
  const clusters: ClusterPlan[] = [];
  for (const [index, cluster] of mesh.clusters.entries()) {
    const loaded = await loadPaths(cluster.manifests.map((p) => relative(process.cwd(), p) || p));
    diagnostics.push(...loaded.diagnostics);
    const validated = await validateResources(loaded.resources);
    diagnostics.push(...validated.diagnostics);
    const pods = podsOf(validated.valid, (host) => addressing.address(index, host), addressing, diagnostics);
    clusters.push({
      cluster,
      index,
      octet: base + index,
      controlPlaneAddress: addressing.address(index, 0),
      ingressAddress: addressing.address(index, 1),
      eastWestAddress: addressing.address(index, 2),
      resources: validated.valid,
      pods,
    });
  }
  // The same file in two clusters is reported once.
  const unique = dedupe(diagnostics);
  if (unique.some((d) => d.severity === "error")) return { ok: false, diagnostics: unique };
  return { ok: true, plan: { mesh, clusters }, warnings: unique };
}

function podsOf(
  resources: readonly Resource[],
  hostAddress: (host: number) => string,
  addressing: Addressing,
  diagnostics: Diagnostic[],
): PodPlan[] {
  const services = new AnalysisContext(resources).services.filter((s) => s.resource.kind === "Service");
  const configMaps = byName(resources, "ConfigMap");
  const secrets = byName(resources, "Secret");
  const pods: PodPlan[] = [];
  let host = addressing.firstPodHost;
  for (const d of resources.filter((r) => r.kind === "Deployment")) {
    const spec = obj(d.object.spec) ?? {};
    const replicas = num(spec.replicas) ?? 1;
    if (replicas > MAX_REPLICAS) {
      diagnostics.push(
        diagnosticAt(d, "error", ["spec", "replicas"], `at most ${MAX_REPLICAS} replicas run locally`),
      );
      continue;
    }
    const template = obj(spec.template) ?? {};
    const labels = stringMap(obj(template.metadata)?.labels);
    const annotations = stringMap(obj(template.metadata)?.annotations);
    // Istio's opt-out of injection: a pod without a sidecar (plain text in and out, outside the mesh's identity).
    const sidecar =
      annotations["sidecar.istio.io/inject"] !== "false" && labels["sidecar.istio.io/inject"] !== "false";
    const podSpec = obj(template.spec) ?? {};
    const serviceAccount = str(podSpec.serviceAccountName) ?? str(podSpec.serviceAccount) ?? "default";
    const containers = arr(podSpec.containers);
    const seenPorts = new Map<number, string>();
    let ok = true;
    containers.forEach((c, i) => {
      const at: Path = ["spec", "template", "spec", "containers", i];
      const co = obj(c) ?? {};
      if (arr(co.command).length === 0) {
        diagnostics.push(
          diagnosticAt(
            d,
            "error",
            co.image !== undefined ? [...at, "image"] : at,
            `container "${str(co.name) ?? i}" has no command: images are not run locally; give the command that starts it (e.g. [node, server.mjs])`,
          ),
        );
        ok = false;
      }
      arr(co.ports).forEach((p, j) => {
        const port = num(obj(p)?.containerPort);
        if (port === undefined) return;
        if (SIDECAR_PORTS.has(port)) {
          diagnostics.push(
            diagnosticAt(
              d,
              "error",
              [...at, "ports", j, "containerPort"],
              `port ${port} is the sidecar's on the pod's address`,
            ),
          );
          ok = false;
        } else if (seenPorts.has(port)) {
          diagnostics.push(
            diagnosticAt(
              d,
              "error",
              [...at, "ports", j, "containerPort"],
              `port ${port} is also container ${seenPorts.get(port)}'s`,
            ),
          );
          ok = false;
        } else seenPorts.set(port, str(co.name) ?? String(i));
      });
    });
    if (!ok) continue;
    for (let r = 0; r < replicas; r++) {
      if (pods.length >= addressing.maxPods) {
        diagnostics.push(
          diagnosticAt(
            d,
            "error",
            ["spec", "replicas"],
            `more than ${addressing.maxPods} pods in one cluster`,
          ),
        );
        return pods;
      }
      const name = `${d.name}-${r}`;
      // hostNetwork: the host's own address (127.0.0.1), as Kubernetes gives such pods the node's; a pod
      // outside the mesh reached through a ServiceEntry (the demos' "external" APIs) runs this way.
      const hostNetwork = (obj(template.spec)?.hostNetwork ?? false) === true;
      const address = hostNetwork ? addressing.hostAddress : hostAddress(host++);
      const base: Record<string, string> = {
        POD_IP: address,
        POD_NAME: name,
        POD_NAMESPACE: d.namespace,
        HOST: address,
        ...(sidecar && !hostNetwork
          ? {
              HTTP_PROXY: `http://${address}:${SIDECAR_OUTBOUND_PORT}`,
              http_proxy: `http://${address}:${SIDECAR_OUTBOUND_PORT}`,
              NO_PROXY: "localhost,127.0.0.1,::1",
              no_proxy: "localhost,127.0.0.1,::1",
            }
          : {}),
      };
      const taken = new Set([...seenPorts.keys(), ...SIDECAR_PORTS]);
      const { env: serviceEnv, tcpOutbound } =
        sidecar && !hostNetwork
          ? serviceLinks(services, d.namespace, address, taken)
          : { env: {}, tcpOutbound: [] };
      Object.assign(base, serviceEnv);
      const built: ContainerPlan[] = [];
      containers.forEach((c, i) => {
        const co = obj(c) ?? {};
        const at: Path = ["spec", "template", "spec", "containers", i];
        const env: Record<string, string> = { ...base };
        arr(co.env).forEach((e, j) => {
          const eo = obj(e) ?? {};
          const key = str(eo.name);
          if (!key) return;
          const value = envValue(d, eo, [...at, "env", j], configMaps, secrets, env, diagnostics);
          if (value !== undefined) env[key] = value;
        });
        built.push({
          name: str(co.name) ?? `container-${i}`,
          argv: [...arr(co.command), ...arr(co.args)].map((x) => expand(String(x), env)),
          env,
          ports: arr(co.ports)
            .map((p) => num(obj(p)?.containerPort))
            .filter((p): p is number => p !== undefined),
        });
      });
      pods.push({
        name,
        sidecar: sidecar && !hostNetwork,
        ...(hostNetwork ? { hostNetwork: true } : {}),
        tcpOutbound,
        namespace: d.namespace,
        deployment: d.name,
        address,
        labels,
        serviceAccount,
        containers: built,
      });
    }
  }
  return pods;
}

const FIRST_LOCAL_PORT = 20000;

/**
 * Kubernetes' service environment variables for the Services of the pod's namespace: NAME_SERVICE_HOST,
 * NAME_SERVICE_PORT and NAME_SERVICE_PORT_PORTNAME. An HTTP service names its FQDN and port (apps reach it
 * through HTTP_PROXY); a service with a TCP port (Redis, PostgreSQL) gets a local port on the pod's own
 * address for each, which the runtime tunnels through the pod's sidecar (CONNECT, mutual TLS to the server's
 * sidecar): NAME_SERVICE_HOST is then the pod's address.
 */
function serviceLinks(
  services: readonly MeshService[],
  namespace: string,
  address: string,
  taken: ReadonlySet<number>,
): { env: Record<string, string>; tcpOutbound: TcpOutbound[] } {
  const env: Record<string, string> = {};
  const tcpOutbound: TcpOutbound[] = [];
  let next = FIRST_LOCAL_PORT;
  const allocate = () => {
    while (taken.has(next)) next++;
    return next++;
  };
  for (const s of [...services].sort((a, b) => a.host.localeCompare(b.host))) {
    if (s.namespace !== namespace || s.ports.length === 0) continue;
    const prefix = s.resource.name.toUpperCase().replace(/-/g, "_");
    const tcp = s.ports.some((p) => !isHttpPort(p));
    env[`${prefix}_SERVICE_HOST`] = tcp ? address : s.host;
    s.ports.forEach((p, i) => {
      let port = p.number;
      if (!isHttpPort(p)) {
        port = allocate();
        tcpOutbound.push({ host: s.host, port: p.number, localPort: port });
      }
      if (i === 0) env[`${prefix}_SERVICE_PORT`] = String(port);
      if (p.name) env[`${prefix}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, "_")}`] = String(port);
    });
  }
  return { env, tcpOutbound };
}

/** An env entry's value: `value` ($(VAR) expanded), or from a ConfigMap, a Secret or the pod's own fields. */
function envValue(
  d: Resource,
  e: Obj,
  at: Path,
  configMaps: ReadonlyMap<string, Resource>,
  secrets: ReadonlyMap<string, Resource>,
  env: Readonly<Record<string, string>>,
  diagnostics: Diagnostic[],
): string | undefined {
  if (typeof e.value === "string") return expand(e.value, env);
  const from = obj(e.valueFrom);
  if (from === undefined) return "";
  const ref = (kind: "configMapKeyRef" | "secretKeyRef", index: ReadonlyMap<string, Resource>) => {
    const r = obj(from[kind]);
    const name = str(r?.name) ?? "";
    const key = str(r?.key) ?? "";
    const source = index.get(`${d.namespace}/${name}`);
    const data = source ? obj(source.object.data) : undefined;
    let value = data ? str(data[key]) : undefined;
    if (value !== undefined && kind === "secretKeyRef") value = Buffer.from(value, "base64").toString("utf8");
    if (value === undefined && kind === "secretKeyRef" && source)
      value = str(obj(source.object.stringData)?.[key]);
    if (value === undefined && r?.optional !== true)
      diagnostics.push(
        diagnosticAt(
          d,
          "error",
          [...at, "valueFrom", kind],
          `${kind === "secretKeyRef" ? "Secret" : "ConfigMap"} ${d.namespace}/${name} has no key "${key}"`,
        ),
      );
    return value;
  };
  if (from.configMapKeyRef !== undefined) return ref("configMapKeyRef", configMaps);
  if (from.secretKeyRef !== undefined) return ref("secretKeyRef", secrets);
  const field = str(obj(from.fieldRef)?.fieldPath);
  if (field === "status.podIP") return env.POD_IP;
  if (field === "metadata.name") return env.POD_NAME;
  if (field === "metadata.namespace") return env.POD_NAMESPACE;
  diagnostics.push(
    diagnosticAt(
      d,
      "error",
      [...at, "valueFrom"],
      "only value, configMapKeyRef, secretKeyRef and fieldRef (status.podIP, metadata.name, metadata.namespace) are supported locally",
    ),
  );
  return undefined;
}

/** Kubernetes' $(VAR) expansion: a defined variable is replaced, an undefined one kept, $$ escapes. */
export function expand(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === "$$") return "$";
    return name !== undefined && env[name] !== undefined ? env[name] : m;
  });
}

function byName(resources: readonly Resource[], kind: string): Map<string, Resource> {
  return new Map(resources.filter((r) => r.kind === kind).map((r) => [`${r.namespace}/${r.name}`, r]));
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(obj(v) ?? {})) if (typeof x === "string") out[k] = x;
  return out;
}

function dedupe(ds: readonly Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return ds.filter((d) => {
    const k = JSON.stringify([d.file, d.line, d.col, d.message]);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
