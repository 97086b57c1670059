// Analyzers over what selects workloads: Sidecars, AuthorizationPolicies, and Services' port names.
import type { Resource } from "../../resource.ts";
import { arr, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import { formatLabels, stringMap } from "../context.ts";

const ROOT_NAMESPACE = "istio-system";

function sidecarSelector(r: Resource): Record<string, string> {
  return stringMap(obj(obj(r.object.spec)?.workloadSelector)?.labels);
}

export const sidecarSelectorAnalyzer: Analyzer = {
  name: "sidecar.selector",
  codes: ["IST0101", "IST0110", "IST0111"],
  description: "Sidecars that select nothing, or several Sidecars for one workload or namespace",
  run(ctx, report) {
    const byNamespace = new Map<string, Resource[]>();
    for (const sc of ctx.of("Sidecar"))
      byNamespace.set(sc.namespace, [...(byNamespace.get(sc.namespace) ?? []), sc]);
    for (const [ns, sidecars] of byNamespace) {
      const unselected = sidecars.filter((s) => Object.keys(sidecarSelector(s)).length === 0);
      if (unselected.length > 1) {
        const names = unselected.map((s) => s.name).join(" ");
        for (const s of unselected)
          report(
            s,
            "IST0111",
            "error",
            ["spec"],
            `The Sidecars [${names}] in namespace "${ns}" have no workload selector, which can lead to undefined behavior.`,
          );
      }
      if (!ctx.workloadsKnown) continue;
      const selecting = new Map<Resource, Resource[]>();
      for (const s of sidecars) {
        const sel = sidecarSelector(s);
        if (Object.keys(sel).length === 0) continue;
        const pods = ctx.workloadsMatching(ns, sel);
        if (pods.length === 0) {
          const text = formatLabels(sel);
          report(
            s,
            "IST0101",
            "error",
            ["spec", "workloadSelector"],
            `Referenced selector not found: "${text}"`,
          );
        }
        for (const p of pods) selecting.set(p.resource, [...(selecting.get(p.resource) ?? []), s]);
      }
      for (const [pod, list] of selecting) {
        if (list.length < 2) continue;
        const names = list.map((s) => s.name).join(" ");
        for (const s of list)
          report(
            s,
            "IST0110",
            "error",
            ["spec", "workloadSelector"],
            `The Sidecars [${names}] in namespace "${ns}" select the same workload pod "${pod.name}", which can lead to undefined behavior.`,
          );
      }
    }
  },
};

export const authorizationWorkloadsAnalyzer: Analyzer = {
  name: "auth.authorizationpolicies",
  codes: ["IST0127", "IST0101"],
  description: "AuthorizationPolicies that select no workload or name namespaces that do not exist",
  run(ctx, report) {
    if (!ctx.workloadsKnown) return;
    for (const ap of ctx.of("AuthorizationPolicy")) {
      const spec = obj(ap.object.spec);
      const sel = stringMap(obj(spec?.selector)?.matchLabels);
      const root = ap.namespace === ROOT_NAMESPACE;
      if (Object.keys(sel).length > 0) {
        if (ctx.workloadsMatching(root ? undefined : ap.namespace, sel).length === 0) {
          const text = formatLabels(sel);
          report(
            ap,
            "IST0127",
            "warning",
            ["spec", "selector"],
            `No matching workloads for this resource with the following labels: ${text}`,
          );
        }
      } else if (!root && !ctx.workloads.some((w) => w.namespace === ap.namespace)) {
        report(
          ap,
          "IST0127",
          "warning",
          ["spec"],
          "No matching workloads for this resource with the following labels: ",
        );
      }
      arr(spec?.rules).forEach((rule, i) => {
        arr(obj(rule)?.from).forEach((from, j) => {
          const source = obj(obj(from)?.source);
          for (const field of ["namespaces", "notNamespaces"]) {
            arr(source?.[field]).forEach((ns, k) => {
              if (typeof ns === "string" && !ns.includes("*") && !ctx.namespaces.has(ns))
                report(
                  ap,
                  "IST0101",
                  "error",
                  ["spec", "rules", i, "from", j, "source", field, k],
                  `Referenced namespace not found: "${ns}"`,
                );
            });
          }
        });
      });
    }
  },
};

/** Istio's protocol names (protocol.Parse), as a port name's prefix or an appProtocol. */
const PROTOCOLS = new Set([
  "tcp",
  "udp",
  "grpc",
  "grpc-web",
  "http",
  "http_proxy",
  "http2",
  "https",
  "tls",
  "mongo",
  "redis",
  "mysql",
]);
/** appProtocol values Istio maps from Kubernetes' own protocol names (HTTP/2 cleartext, WebSocket). */
const KUBERNETES_APP_PROTOCOLS = new Set(["kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"]);
/**
 * Ports that Istio's ConvertProtocol treats as TCP when nothing names a protocol: SMTP, DNS, MySQL, MongoDB
 * (pkg/config/kube/conversion.go, wellKnownPorts).
 */
const WELL_KNOWN_PORTS = new Set([25, 53, 3306, 27017]);

/**
 * Whether Istio can tell a Service port's protocol, as its ConvertProtocol: UDP ports are UDP; otherwise the
 * appProtocol if set, else the name, read as "grpc-web..." or "<protocol>[-suffix]"; failing that, the
 * well-known ports are TCP.
 */
function protocolKnown(port: Readonly<Record<string, unknown>>): boolean {
  if (str(port.protocol) === "UDP") return true;
  const appProtocol = str(port.appProtocol);
  const name = (appProtocol ?? str(port.name) ?? "").toLowerCase();
  if (appProtocol !== undefined && KUBERNETES_APP_PROTOCOLS.has(name)) return true;
  const prefix = name.startsWith("grpc-web") ? "grpc-web" : name.split("-")[0]!;
  if (PROTOCOLS.has(prefix)) return true;
  return typeof port.port === "number" && WELL_KNOWN_PORTS.has(port.port);
}

export const portNameAnalyzer: Analyzer = {
  name: "service.portname",
  codes: ["IST0118"],
  description: "Service ports whose protocol Istio cannot tell from appProtocol or name",
  run(ctx, report) {
    for (const svc of ctx.of("Service")) {
      const spec = obj(svc.object.spec);
      if (str(spec?.type) === "ExternalName") continue;
      arr(spec?.ports).forEach((p, i) => {
        const port = obj(p);
        if (!port || protocolKnown(port)) return;
        const appProtocol = str(port.appProtocol);
        const why =
          appProtocol !== undefined
            ? ` Its appProtocol "${appProtocol}", which Istio reads in place of the name, names no protocol Istio supports.`
            : "";
        report(
          svc,
          "IST0118",
          "info",
          ["spec", "ports", i, "name"],
          `Port name ${str(port.name) ?? ""} (port: ${String(port.port)}, targetPort: ${String(port.targetPort ?? port.port)}) doesn't follow the naming convention of Istio port.${why}`,
        );
      });
    }
  },
};
