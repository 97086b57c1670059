// Analyzers over ServiceEntries.
import type { Resource } from "../../resource.ts";
import { arr, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";
import { type ExportScope, exportScope, scopesOverlap } from "../context.ts";

export const addressesRequiredAnalyzer: Analyzer = {
  name: "serviceentry.addresses",
  codes: ["IST0134"],
  description: "TCP ServiceEntries without addresses (the proxy cannot tell their traffic apart)",
  run(ctx, report) {
    for (const se of ctx.of("ServiceEntry")) {
      const spec = obj(se.object.spec);
      if (arr(spec?.addresses).length > 0) continue;
      arr(spec?.ports).forEach((p, i) => {
        const proto = (str(obj(p)?.protocol) ?? "").toUpperCase();
        if (proto === "" || proto === "TCP")
          report(
            se,
            "IST0134",
            "warning",
            ["spec", "ports", i],
            "ServiceEntry addresses are required for this protocol.",
          );
      });
    }
  },
};

/**
 * ServiceEntries giving one host and port different protocols, where some namespace sees them both: as
 * Istio's ConflictingServiceEntryProtocolAnalyzer keys on exportTo scope + host + port, entries exported only
 * to their own namespaces ("." or the namespace's name) conflict only with those visible there, and one
 * exported everywhere (exportTo unset or "*") with every other.
 */
export const conflictingProtocolAnalyzer: Analyzer = {
  name: "serviceentry.conflictingprotocol",
  codes: ["IST0177"],
  description: "ServiceEntries visible in one namespace giving one host and port different protocols",
  run(ctx, report) {
    interface Entry {
      readonly se: Resource;
      readonly protocol: string;
      readonly scope: ExportScope;
    }
    const seen = new Map<string, Entry[]>();
    for (const se of ctx.of("ServiceEntry")) {
      const spec = obj(se.object.spec);
      const scope = exportScope(spec?.exportTo, se.namespace);
      for (const h of arr(spec?.hosts)) {
        for (const p of arr(spec?.ports)) {
          const n = obj(p)?.number;
          if (typeof h !== "string" || typeof n !== "number") continue;
          const key = `${h}|${n}`;
          const protocol = (str(obj(p)?.protocol) ?? "TCP").toUpperCase();
          seen.set(key, [...(seen.get(key) ?? []), { se, protocol, scope }]);
        }
      }
    }
    for (const [key, list] of seen) {
      if (new Set(list.map((x) => x.protocol)).size < 2) continue;
      const [host, port] = key.split("|");
      const reported = new Set<Resource>();
      for (const entry of list) {
        if (reported.has(entry.se)) continue;
        const group = list.filter((o) => o === entry || scopesOverlap(o.scope, entry.scope));
        if (!group.some((o) => o.protocol !== entry.protocol)) continue;
        reported.add(entry.se);
        // Sorted, as Istio prints them.
        const protocols = [...new Set(group.map((x) => x.protocol))].sort();
        const names = [...new Set(group.map((x) => `${x.se.namespace}/${x.se.name}`))].sort().join(", ");
        report(
          entry.se,
          "IST0177",
          "warning",
          ["spec", "ports"],
          `Multiple ServiceEntries (${names}) define the same host "${host}" and port ${port} with conflicting protocols (${protocols.join(", ")}).`,
        );
      }
    }
  },
};
