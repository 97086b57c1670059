// Analyzers over VirtualServices: what they reference (gateways, hosts, subsets, ports) and how their hosts
// and rules interact.
import type { Resource } from "../../resource.ts";
import { arr, obj, type Path, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import {
  type AnalysisContext,
  type ExportScope,
  exportScope,
  hostMatches,
  hostsOverlap,
  resolveHost,
  scopesOverlap,
} from "../context.ts";

interface DestinationRef {
  readonly host: string;
  readonly subset?: string;
  readonly port?: number;
  readonly path: Path;
  readonly mirror: boolean;
}

/** Every destination a VirtualService sends traffic or mirrors to. */
export function destinationsOf(vs: Resource): DestinationRef[] {
  const spec = obj(vs.object.spec);
  const out: DestinationRef[] = [];
  const add = (d: unknown, path: Path, mirror: boolean) => {
    const o = obj(d);
    const host = str(o?.host);
    if (!o || !host) return;
    const port = obj(o.port)?.number;
    out.push({
      host,
      path,
      mirror,
      ...(str(o.subset) ? { subset: str(o.subset)! } : {}),
      ...(typeof port === "number" ? { port } : {}),
    });
  };
  for (const section of ["http", "tcp", "tls"]) {
    arr(spec?.[section]).forEach((route, i) => {
      const r = obj(route);
      arr(r?.route).forEach((dst, j) => {
        add(obj(dst)?.destination, ["spec", section, i, "route", j, "destination"], false);
      });
      if (section === "http") {
        add(r?.mirror, ["spec", section, i, "mirror"], true);
        arr(r?.mirrors).forEach((m, j) => {
          add(obj(m)?.destination, ["spec", section, i, "mirrors", j, "destination"], true);
        });
      }
    });
  }
  return out;
}

export function gatewaysOf(vs: Resource): string[] {
  return arr(obj(vs.object.spec)?.gateways).filter((g): g is string => typeof g === "string");
}

export function hostsOf(r: Resource): string[] {
  return arr(obj(r.object.spec)?.hosts).filter((h): h is string => typeof h === "string");
}

/** "ns/name", "name" (in the rule's namespace); legacy "name.ns.svc..." is read as name + namespace. */
function gatewayKey(ref: string, namespace: string): string {
  if (ref.includes("/")) return ref;
  const [name, ns] = ref.split(".");
  return `${ns ?? namespace}/${name}`;
}

export const gatewayReferenceAnalyzer: Analyzer = {
  name: "virtualservice.gateway",
  codes: ["IST0101"],
  description: "VirtualService gateways that do not exist",
  run(ctx, report) {
    const gateways = new Set(ctx.of("Gateway").map((g) => `${g.namespace}/${g.name}`));
    for (const vs of ctx.of("VirtualService")) {
      gatewaysOf(vs).forEach((g, i) => {
        if (g !== "mesh" && !gateways.has(gatewayKey(g, vs.namespace)))
          report(vs, "IST0101", "error", ["spec", "gateways", i], `Referenced gateway not found: "${g}"`);
      });
      arr(obj(vs.object.spec)?.http).forEach((route, i) => {
        arr(obj(route)?.match).forEach((m, j) => {
          arr(obj(m)?.gateways).forEach((g, k) => {
            if (typeof g === "string" && g !== "mesh" && !gateways.has(gatewayKey(g, vs.namespace)))
              report(
                vs,
                "IST0101",
                "error",
                ["spec", "http", i, "match", j, "gateways", k],
                `Referenced gateway not found: "${g}"`,
              );
          });
        });
      });
    }
  },
};

export const destinationHostAnalyzer: Analyzer = {
  name: "virtualservice.destinationhost",
  codes: ["IST0101", "IST0112"],
  description: "route destinations whose host or port is not a known service; ports needed to disambiguate",
  run(ctx, report) {
    if (!ctx.servicesKnown) return;
    for (const vs of ctx.of("VirtualService")) {
      for (const d of destinationsOf(vs)) {
        const services = ctx.findServices(d.host, vs.namespace);
        const what = d.mirror ? "mirror host" : "host";
        if (services.length === 0) {
          report(vs, "IST0101", "error", [...d.path, "host"], `Referenced ${what} not found: "${d.host}"`);
          continue;
        }
        const ports = [...new Set(services.flatMap((s) => s.ports.map((p) => p.number)))];
        if (d.port !== undefined) {
          if (ports.length > 0 && !ports.includes(d.port))
            report(
              vs,
              "IST0101",
              "error",
              [...d.path, "port"],
              `Referenced ${what}:port not found: "${d.host}:${d.port}"`,
            );
        } else if (ports.length > 1) {
          // As Istio's checkServiceEntryPorts: any service with several ports, a ServiceEntry as much as a
          // Kubernetes Service (Istio sees both as ServiceEntries).
          report(
            vs,
            "IST0112",
            "error",
            d.path,
            `This VirtualService routes to a service "${d.host}" that exposes multiple ports [${ports.join(" ")}]. Specifying a port in the destination is required to disambiguate.`,
          );
        }
      }
    }
  },
};

/** The subsets defined for a host by DestinationRules visible from `namespace`. */
export function subsetsFor(ctx: AnalysisContext, host: string, namespace: string): Set<string> | undefined {
  const fqdn = resolveHost(host, namespace);
  let found: Set<string> | undefined;
  for (const dr of ctx.of("DestinationRule")) {
    const drHost = str(obj(dr.object.spec)?.host);
    if (!drHost || !hostMatches(resolveHost(drHost, dr.namespace), fqdn)) continue;
    found ??= new Set();
    for (const s of arr(obj(dr.object.spec)?.subsets)) {
      const name = str(obj(s)?.name);
      if (name) found.add(name);
    }
  }
  return found;
}

export const subsetAnalyzer: Analyzer = {
  name: "virtualservice.subset",
  codes: ["IST0101"],
  description: "route destinations naming a subset that no DestinationRule defines",
  run(ctx, report) {
    for (const vs of ctx.of("VirtualService")) {
      for (const d of destinationsOf(vs)) {
        if (!d.subset) continue;
        const subsets = subsetsFor(ctx, d.host, vs.namespace);
        if (!subsets?.has(d.subset)) {
          const what = d.mirror ? "mirror+subset in destinationrule" : "host+subset in destinationrule";
          const why = subsets ? "" : " (no DestinationRule for this host)";
          report(
            vs,
            "IST0101",
            "error",
            [...d.path, "subset"],
            `Referenced ${what} not found: "${d.host}+${d.subset}"${why}`,
          );
        }
      }
    }
  },
};

/**
 * Mesh VirtualServices for one host conflict when some namespace sees both of them: Istio keys the hosts on
 * exportTo scope + FQDN, so VirtualServices exported only to their own namespaces ("." or the namespace's
 * name) conflict only with those visible there, and one exported everywhere (exportTo unset or "*") with
 * every other. Hosts are compared as resolved FQDNs, not by wildcard matching.
 */
export const conflictingMeshHostsAnalyzer: Analyzer = {
  name: "virtualservice.conflictingmeshgatewayhosts",
  codes: ["IST0109"],
  description: "several mesh VirtualServices for one host, visible in one namespace",
  run(ctx, report) {
    const byHost = new Map<string, Array<{ vs: Resource; scope: ExportScope }>>();
    for (const vs of ctx.of("VirtualService")) {
      const gws = gatewaysOf(vs);
      if (gws.length > 0 && !gws.includes("mesh")) continue;
      const scope = exportScope(obj(vs.object.spec)?.exportTo, vs.namespace);
      for (const h of new Set(hostsOf(vs).map((h) => resolveHost(h, vs.namespace)))) {
        const list = byHost.get(h) ?? [];
        list.push({ vs, scope });
        byHost.set(h, list);
      }
    }
    for (const [host, list] of byHost) {
      if (list.length < 2) continue;
      for (const entry of list) {
        const group = list.filter((o) => o === entry || scopesOverlap(o.scope, entry.scope));
        if (group.length < 2) continue;
        const names = group.map((o) => `${o.vs.namespace}/${o.vs.name}`).join(",");
        const { vs } = entry;
        const i = hostsOf(vs).findIndex((h) => resolveHost(h, vs.namespace) === host);
        report(
          vs,
          "IST0109",
          "error",
          ["spec", "hosts", Math.max(i, 0)],
          `The VirtualServices ${names} associated with mesh gateway define the same host ${host} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
        );
      }
    }
  },
};

export const unreachableRulesAnalyzer: Analyzer = {
  name: "virtualservice.unreachablerules",
  codes: ["IST0130", "IST0131"],
  description: "HTTP and TCP rules after a catch-all, and matches that repeat an earlier one",
  run(ctx, report) {
    for (const vs of ctx.of("VirtualService")) {
      for (const section of ["http", "tcp", "tls"]) {
        const routes = arr(obj(vs.object.spec)?.[section]);
        const seen = new Map<string, number>();
        let catchAll = -1;
        routes.forEach((route, i) => {
          const matches = arr(obj(route)?.match);
          // As Istio's analyzeUnreachableHTTPRules and analyzeUnreachableTCPRules (TLS rules cannot be
          // match-less: validation requires their matches).
          if (catchAll !== -1) {
            report(
              vs,
              "IST0130",
              "warning",
              ["spec", section, i],
              `VirtualService rule #${i} not used (route without matches defined before).`,
            );
            return;
          }
          if (matches.length === 0) {
            if (i < routes.length - 1) catchAll = i;
            return;
          }
          let dupes = 0;
          matches.forEach((m, j) => {
            const key = JSON.stringify(withoutName(m));
            const earlier = seen.get(key);
            if (earlier !== undefined) {
              dupes++;
              report(
                vs,
                "IST0131",
                "info",
                ["spec", section, i, "match", j],
                `VirtualService rule #${i} match #${j} is not used (duplicate/overlapping match in rule #${earlier}).`,
              );
            } else seen.set(key, i);
          });
          if (dupes === matches.length && dupes > 0)
            report(
              vs,
              "IST0130",
              "warning",
              ["spec", section, i],
              `VirtualService rule #${i} not used (all matches used by prior rules).`,
            );
        });
      }
    }
  },
};

function withoutName(m: unknown): unknown {
  const o = obj(m);
  if (!o) return m;
  const { name: _name, ...rest } = o;
  return sortKeys(rest);
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  const o = obj(v);
  if (!o) return v;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, sortKeys(o[k])]),
  );
}

export const hostInGatewayAnalyzer: Analyzer = {
  name: "virtualservice.hostingateway",
  codes: ["IST0132"],
  description: "VirtualService hosts that the referenced Gateway does not serve",
  run(ctx, report) {
    const gateways = new Map(ctx.of("Gateway").map((g) => [`${g.namespace}/${g.name}`, g]));
    for (const vs of ctx.of("VirtualService")) {
      const hosts = hostsOf(vs);
      gatewaysOf(vs).forEach((ref, i) => {
        if (ref === "mesh") return;
        const gw = gateways.get(gatewayKey(ref, vs.namespace));
        if (!gw) return;
        const served = arr(obj(gw.object.spec)?.servers).flatMap((s) =>
          arr(obj(s)?.hosts).flatMap((h) => {
            if (typeof h !== "string") return [];
            const [ns, name] = h.includes("/") ? (h.split("/") as [string, string]) : ["*", h];
            const visible = ns === "*" || (ns === "." ? gw.namespace === vs.namespace : ns === vs.namespace);
            return visible ? [name] : [];
          }),
        );
        const missing = hosts.filter((h) => !served.some((s) => hostsOverlap(s, h)));
        if (missing.length > 0 && missing.length === hosts.length)
          report(
            vs,
            "IST0132",
            "warning",
            ["spec", "gateways", i],
            `one or more host [${missing.join(" ")}] defined in VirtualService ${vs.namespace}/${vs.name} not found in Gateway ${gw.namespace}/${gw.name}.`,
          );
      });
    }
  },
};
