// Analyzers over ServiceEntries.
import type { Resource } from "../../resource.ts";
import { arr, obj, str } from "../../validate/checker.ts";
import type { Analyzer } from "../analyzer.ts";

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

export const conflictingProtocolAnalyzer: Analyzer = {
  name: "serviceentry.conflictingprotocol",
  codes: ["IST0177"],
  description: "ServiceEntries giving one host and port different protocols",
  run(ctx, report) {
    const seen = new Map<string, Array<{ se: Resource; protocol: string }>>();
    for (const se of ctx.of("ServiceEntry")) {
      const spec = obj(se.object.spec);
      for (const h of arr(spec?.hosts)) {
        for (const p of arr(spec?.ports)) {
          const n = obj(p)?.number;
          if (typeof h !== "string" || typeof n !== "number") continue;
          const key = `${h}|${n}`;
          seen.set(key, [
            ...(seen.get(key) ?? []),
            { se, protocol: (str(obj(p)?.protocol) ?? "TCP").toUpperCase() },
          ]);
        }
      }
    }
    for (const [key, list] of seen) {
      const protocols = [...new Set(list.map((x) => x.protocol))];
      if (protocols.length < 2) continue;
      const [host, port] = key.split("|");
      const names = list.map((x) => `${x.se.namespace}/${x.se.name}`).join(", ");
      for (const { se } of list)
        report(
          se,
          "IST0177",
          "warning",
          ["spec", "ports"],
          `Multiple ServiceEntries (${names}) define the same host "${host}" and port ${port} with conflicting protocols (${protocols.join(", ")}).`,
        );
    }
  },
};
