// Analyzers over Gateways: selectors that match no gateway workload, two gateways claiming one
// port and host, and ports the gateway's Service does not expose.
import type { Resource } from "../../resource.ts";
import { arr, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import {
  formatLabels,
  hostsOverlap,
  type ServicePort,
  selectorMatches,
  stringMap,
  type Workload,
} from "../context.ts";

function selectorOf(gw: Resource): Record<string, string> {
  return stringMap(obj(gw.object.spec)?.selector);
}

interface Server {
  port: number;
  hosts: string[];
  bind: string;
  index: number;
}

function serversOf(gw: Resource): Server[] {
  return arr(obj(gw.object.spec)?.servers).flatMap((s, index) => {
    const o = obj(s);
    const port = obj(o?.port)?.number;
    if (!o || typeof port !== "number") return [];
    const hosts = arr(o.hosts)
      .filter((h): h is string => typeof h === "string")
      .map((h) => (h.includes("/") ? h.slice(h.indexOf("/") + 1) : h));
    return [{ port, hosts, bind: str(o.bind) ?? "", index }];
  });
}

export const gatewaySelectorAnalyzer: Analyzer = {
  name: "gateway.selector",
  codes: ["IST0101"],
  description: "Gateway selectors that match no workload",
  run(ctx, report) {
    if (!ctx.workloadsKnown) return;
    for (const gw of ctx.of("Gateway")) {
      const selector = selectorOf(gw);
      if (Object.keys(selector).length === 0) continue;
      if (ctx.workloadsMatching(undefined, selector).length === 0) {
        const text = formatLabels(selector);
        report(gw, "IST0101", "error", ["spec", "selector"], `Referenced selector not found: "${text}"`);
      }
    }
  },
};

export const conflictingGatewaysAnalyzer: Analyzer = {
  name: "gateway.conflictinggateways",
  codes: ["IST0145"],
  description: "Gateways on the same workloads with the same port and overlapping hosts",
  run(ctx, report) {
    const gateways = ctx.of("Gateway");
    for (const a of gateways) {
      const conflicts: string[] = [];
      let detail = "";
      for (const b of gateways) {
        if (a === b) continue;
        const sa = selectorOf(a);
        const sb = selectorOf(b);
        const sameWorkloads =
          JSON.stringify(sa) === JSON.stringify(sb) ||
          (ctx.workloadsKnown &&
            ctx.workloads.some((w) => selectorMatches(sa, w.labels) && selectorMatches(sb, w.labels)));
        if (!sameWorkloads) continue;
        for (const x of serversOf(a)) {
          for (const y of serversOf(b)) {
            if (x.port !== y.port || x.bind !== y.bind) continue;
            const clash = x.hosts.filter((h) => y.hosts.some((k) => hostsOverlap(h, k)));
            if (clash.length > 0) {
              conflicts.push(`${b.namespace}/${b.name}`);
              detail = `workload selector ${formatLabels(sa)}, port ${x.port}, hosts ${clash.join(",")}`;
            }
          }
        }
      }
      if (conflicts.length > 0)
        report(
          a,
          "IST0145",
          "error",
          ["spec", "servers"],
          `Conflict with gateways ${[...new Set(conflicts)].join(",")} (${detail}).`,
        );
    }
  },
};

export const gatewayPortAnalyzer: Analyzer = {
  name: "gateway.port",
  codes: ["IST0162"],
  description: "Gateway ports that the Service in front of the gateway workload does not expose",
  run(ctx, report) {
    if (!ctx.workloadsKnown) return;
    for (const gw of ctx.of("Gateway")) {
      const selector = selectorOf(gw);
      const pods = ctx.workloadsMatching(undefined, selector);
      if (pods.length === 0 || Object.keys(selector).length === 0) continue;
      const services = ctx.services.filter(
        (s) =>
          s.resource.kind === "Service" &&
          s.selector &&
          Object.keys(s.selector).length > 0 &&
          pods.some((p) => p.namespace === s.namespace && selectorMatches(s.selector!, p.labels)),
      );
      if (services.length === 0) continue;
      // The ports the gateway proxy is reached on: a Service port's targetPort when it has one (the proxy
      // listens there, as in Istio's IngressGatewayPortAnalyzer), else the port itself. A named targetPort is
      // resolved through the selected pods' container port names; when no pod names it, it is ignored and the
      // Service port counts instead (as Istio does, whose IntValue() of a name is 0), so that an unresolvable
      // name never causes a report.
      const exposed = new Set<number>();
      for (const s of services) {
        const selected = pods.filter(
          (p) => p.namespace === s.namespace && selectorMatches(s.selector!, p.labels),
        );
        for (const p of s.ports) {
          for (const n of listeningPorts(p, selected)) exposed.add(n);
        }
      }
      for (const server of serversOf(gw)) {
        if (!exposed.has(server.port))
          report(
            gw,
            "IST0162",
            "warning",
            ["spec", "servers", server.index, "port", "number"],
            `The gateway is listening on a target port (port ${server.port}) that is not defined in the Service associated with its workload instances (Pod selector ${formatLabels(selector)}). If you need to access the gateway port through the gateway Service, it will not be available.`,
          );
      }
    }
  },
};

/** Where the pods behind a Service port listen: its targetPort (number, or name resolved in the pods). */
function listeningPorts(p: ServicePort, pods: readonly Workload[]): number[] {
  const target = p.targetPort;
  if (typeof target === "number") return [target];
  if (typeof target === "string") {
    // Kubernetes reads a targetPort of digits given as a string as that number.
    if (/^\d+$/.test(target)) return [Number(target)];
    const named = [...new Set(pods.flatMap((w) => w.portNames.get(target) ?? []))];
    if (named.length > 0) return named;
  }
  return [p.number];
}
