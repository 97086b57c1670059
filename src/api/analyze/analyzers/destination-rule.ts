// Analyzers over DestinationRules: TLS without server verification, subsets that select nothing or are
// never used, hosts that match no service.
import { arr, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import { hostMatches, resolveHost, stringMap } from "../context.ts";
import { destinationsOf } from "./virtual-service.ts";

export const tlsVerificationAnalyzer: Analyzer = {
  name: "destinationrule.caCertificates",
  codes: ["IST0128", "IST0129"],
  description: "SIMPLE/MUTUAL TLS to a destination without caCertificates to verify the server",
  run(ctx, report) {
    for (const dr of ctx.of("DestinationRule")) {
      const spec = obj(dr.object.spec);
      const host = str(spec?.host) ?? "";
      const hasSelector = obj(spec?.workloadSelector) !== undefined;
      const check = (tlsValue: unknown, path: (string | number)[], port?: number) => {
        const tls = obj(tlsValue);
        const mode = str(tls?.mode);
        if (!tls || (mode !== "SIMPLE" && mode !== "MUTUAL")) return;
        if (
          str(tls.caCertificates) ||
          (str(tls.credentialName) && hasSelector) ||
          tls.insecureSkipVerify === true
        )
          return;
        const base = `DestinationRule ${dr.name} in namespace ${dr.namespace} has TLS mode set to ${mode} but no caCertificates are set to validate server identity for host: ${host}`;
        if (port === undefined) report(dr, "IST0128", "warning", path, base);
        else report(dr, "IST0129", "warning", path, `${base} at port ${port}`);
      };
      const tp = obj(spec?.trafficPolicy);
      check(tp?.tls, ["spec", "trafficPolicy", "tls"]);
      arr(tp?.portLevelSettings).forEach((pl, i) => {
        const n = obj(obj(pl)?.port)?.number;
        check(
          obj(pl)?.tls,
          ["spec", "trafficPolicy", "portLevelSettings", i, "tls"],
          typeof n === "number" ? n : 0,
        );
      });
    }
  },
};

export const subsetSelectsPodsAnalyzer: Analyzer = {
  name: "destinationrule.subsetselectspods",
  codes: ["IST0173"],
  description: "DestinationRule subsets whose labels match no pod of the host's service",
  run(ctx, report) {
    if (!ctx.workloadsKnown) return;
    for (const dr of ctx.of("DestinationRule")) {
      const spec = obj(dr.object.spec);
      const host = str(spec?.host);
      if (!host) continue;
      const services = ctx
        .findServices(host, dr.namespace)
        .filter((s) => s.selector && Object.keys(s.selector).length > 0);
      if (services.length === 0) continue;
      arr(spec?.subsets).forEach((s, i) => {
        const subset = obj(s);
        const labels = stringMap(subset?.labels);
        const selects = services.some(
          (svc) =>
            ctx.workloadsMatching(svc.resource.kind === "Service" ? svc.namespace : undefined, {
              ...svc.selector,
              ...labels,
            }).length > 0,
        );
        if (!selects)
          report(
            dr,
            "IST0173",
            "error",
            ["spec", "subsets", i, "labels"],
            `The Subset ${str(subset?.name) ?? i} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
          );
      });
    }
  },
};

export const unknownHostAnalyzer: Analyzer = {
  name: "destinationrule.unknownhost",
  codes: ["IST0174"],
  description: "DestinationRule hosts that match no service",
  run(ctx, report) {
    if (!ctx.servicesKnown) return;
    for (const dr of ctx.of("DestinationRule")) {
      const host = str(obj(dr.object.spec)?.host);
      if (!host || host.startsWith("*")) continue;
      if (ctx.findServices(host, dr.namespace).length === 0)
        report(
          dr,
          "IST0174",
          "warning",
          ["spec", "host"],
          `The host ${host} defined in the DestinationRule does not match any services in the mesh.`,
        );
    }
  },
};

export const unusedSubsetAnalyzer: Analyzer = {
  name: "destinationrule.unusedsubset",
  codes: ["ISM0001"],
  description: "DestinationRule subsets that no VirtualService routes to",
  run(ctx, report) {
    // Every (host, subset) a route names, its host resolved in the route's namespace; exact pairs in a set,
    // for the common case where neither host is a wildcard.
    const used: Array<{ host: string; subset: string }> = [];
    const usedExact = new Set<string>();
    for (const vs of ctx.of("VirtualService")) {
      for (const d of destinationsOf(vs)) {
        if (!d.subset) continue;
        const host = resolveHost(d.host, vs.namespace);
        used.push({ host, subset: d.subset });
        usedExact.add(`${host}|${d.subset}`);
      }
    }
    const wildcardUsed = used.filter((u) => u.host.startsWith("*"));
    const isUsed = (fqdn: string, subset: string): boolean =>
      usedExact.has(`${fqdn}|${subset}`) ||
      (fqdn.startsWith("*") ? used : wildcardUsed).some(
        (u) => u.subset === subset && hostMatches(fqdn, u.host),
      );
    for (const dr of ctx.of("DestinationRule")) {
      const host = str(obj(dr.object.spec)?.host);
      if (!host) continue;
      const fqdn = resolveHost(host, dr.namespace);
      arr(obj(dr.object.spec)?.subsets).forEach((s, i) => {
        const name = str(obj(s)?.name);
        // The same host matching as virtualservice.subset (subsetsFor): a wildcard rule's subset is used by a
        // route to any host the wildcard covers.
        if (name && !isUsed(fqdn, name))
          report(
            dr,
            "ISM0001",
            "info",
            ["spec", "subsets", i, "name"],
            `Subset ${name} of ${host} is not used by any VirtualService route.`,
          );
      });
    }
  },
};
