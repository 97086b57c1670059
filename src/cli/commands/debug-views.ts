// isthmus proxy-status / proxy-config — istioctl's debugging views, read from the control plane's config API
// (/debug/syncz, /debug/config_dump) with the same --server and token as apply and get; `proxy-config secret`
// reads the proxy's own admin endpoint instead (proxy-secret.ts).
import { parseArgs } from "node:util";
import { stringify } from "yaml";
import type { SyncStatus } from "../../control/store/config-api.ts";
import type {
  ClusterConfig,
  FilterChainConfig,
  ProxyConfig,
  RouteConfig,
  RouteMatch,
} from "../../proxy/config/types.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";
import { call, connection, report } from "./config-client.ts";

/** Columns padded to their widest cell, separated by three spaces, as istioctl prints. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("   ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

const STATUS_HELP = `Usage: isthmus proxy-status [PROXY] [--server URL] [-o json]

Every proxy connected to the control plane, with the state of its config: SYNCED (the proxy acknowledged
what was sent), STALE (sent, not acknowledged yet), NOT SENT (nothing sent yet), NACKED (refused; the error is
shown, and the proxy keeps running its previous config). isthmus pushes one resource type, the whole
ProxyConfig, so there is one state per proxy where istioctl shows one per xDS type.
  --server URL   the control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN
`;

const DEBUG_OPTIONS = {
  server: { type: "string" },
  admin: { type: "string" },
  output: { type: "string", short: "o" },
  help: { type: "boolean", short: "h" },
} as const;

/** The options both views take (--admin: proxy-config secret only); undefined once --help is printed. */
function parseDebugArgs(args: string[], help: string, io: CommandIO) {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof DEBUG_OPTIONS }>
  >;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: DEBUG_OPTIONS });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (!parsed.values.help) return parsed;
  io.out(help);
  return undefined;
}

export async function runProxyStatus(args: string[], io: CommandIO): Promise<number> {
  const parsed = parseDebugArgs(args, STATUS_HELP, io);
  if (parsed === undefined) return 0;
  const { values, positionals } = parsed;
  if (values.admin !== undefined) throw new UsageError("--admin is an option of 'proxy-config secret'");
  const output = outputFormat(values.output, ["table", "json"]);
  const { base, headers } = connection(values.server);
  const r = await call(io, `${base}/debug/syncz`, { headers });
  if (!r) return 1;
  if (r.status !== 200) {
    report(io, r.body);
    return 1;
  }
  let items = (r.body.items ?? []) as SyncStatus[];
  const [only] = positionals;
  if (only !== undefined) {
    items = items.filter((s) => s.id === only);
    if (items.length === 0) {
      io.err(`no proxy "${only}" is connected\n`);
      return 1;
    }
  }
  if (output === "json") {
    io.out(`${JSON.stringify(items, null, 2)}\n`);
    return 0;
  }
  io.out(
    table(
      ["NAME", "CLUSTER", "NAMESPACE", "CONFIG", "VERSION", "ERROR"],
      items.map((s) => [
        s.id,
        s.cluster || "-",
        s.namespace || "-",
        s.state,
        s.acked || "-",
        s.nack.split("\n")[0] ?? "",
      ]),
    ),
  );
  return 0;
}

const CONFIG_HELP = `Usage: isthmus proxy-config listeners|routes|clusters|endpoints|all PROXY [--server URL] [-o table|json|yaml]
       isthmus proxy-config secret [PROXY] [--admin URL] [-o table|json]

listeners, routes, clusters, endpoints, all: the config the control plane serves the proxy PROXY (as
'isthmus proxy-status' names it), rendered now. When the proxy has not acknowledged this version yet, a note on
stderr says which version it runs.
  --server URL   the control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN

secret: the certificates the proxy holds, read from its admin endpoint (/certs): its workload certificate
(secret "default", TYPE Cert Chain) and the roots it trusts ("ROOTCA", TYPE CA), with STATUS ACTIVE, or WARMING
while the proxy has not received it yet (a proxy without --identity-token never does), VALID CERT (true
while now is between NOT BEFORE and NOT AFTER), the serial number (hex) and the validity in UTC. Every root
of the trust bundle is a row. -o json prints the admin's report as it is (subjects and SANs included).
  --admin URL    the proxy's admin listener, e.g. http://127.0.0.1:15000 (default: $ISTHMUS_PROXY_ADMIN)
  PROXY          when given, the node id the proxy reports (admin /config_dump) must be PROXY: a guard
                 against reading another proxy's admin
`;

const VIEWS = ["listeners", "routes", "clusters", "endpoints", "all"] as const;
type View = (typeof VIEWS)[number];

/** What GET /debug/config_dump answers: the config rendered now, its version and the proxy's sync state. */
export interface RenderedConfig {
  readonly version: string;
  readonly config: ProxyConfig;
  readonly status: SyncStatus;
}

/**
 * The config the control plane renders now for the connected proxy `proxy`, with a note on stderr when the
 * proxy has not acknowledged that version; undefined (the error printed) when it cannot be had.
 */
export async function renderedConfig(
  io: CommandIO,
  server: string | undefined,
  proxy: string,
): Promise<RenderedConfig | undefined> {
  const { base, headers } = connection(server);
  const r = await call(io, `${base}/debug/config_dump?proxyID=${encodeURIComponent(proxy)}`, { headers });
  if (!r) return undefined;
  if (r.status !== 200) {
    report(io, r.body);
    return undefined;
  }
  const dump = r.body as unknown as RenderedConfig;
  if (dump.status.acked !== dump.version)
    io.err(
      `note: ${proxy} runs version ${dump.status.acked || "(none)"}; shown: version ${dump.version}, not acknowledged yet\n`,
    );
  return dump;
}

export async function runProxyConfig(args: string[], io: CommandIO): Promise<number> {
  const parsed = parseDebugArgs(args, CONFIG_HELP, io);
  if (parsed === undefined) return 0;
  const { values, positionals } = parsed;
  const [view, proxy, extra] = positionals;
  if (view === "secret") {
    if (values.server !== undefined)
      throw new UsageError("secret reads the proxy's admin endpoint: give --admin URL, not --server");
    if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
    const { runProxySecret } = await import("./proxy-secret.ts");
    return runProxySecret({ admin: values.admin, output: values.output, proxy }, io);
  }
  if (!VIEWS.includes(view as View) || proxy === undefined)
    throw new UsageError(
      `usage: isthmus proxy-config ${VIEWS.join("|")} PROXY [-o table|json|yaml], or proxy-config secret [PROXY] --admin URL`,
    );
  if (values.admin !== undefined) throw new UsageError("--admin is an option of 'proxy-config secret'");
  const output = outputFormat(values.output, ["table", "json", "yaml"]);
  const dump = await renderedConfig(io, values.server, proxy);
  if (dump === undefined) return 1;
  const parts = selectView(dump.config, view as View);
  if (output === "json")
    io.out(`${JSON.stringify(view === "all" ? parts : Object.values(parts)[0], null, 2)}\n`);
  else if (output === "yaml") io.out(stringify(view === "all" ? parts : Object.values(parts)[0]));
  else {
    const sections = Object.keys(parts).map((k) => TABLES[k as Exclude<View, "all">](dump.config));
    io.out(sections.join("\n"));
  }
  return 0;
}

export function outputFormat<T extends string>(given: string | undefined, allowed: readonly T[]): T {
  const o = (given ?? "table") as T;
  if (!allowed.includes(o)) throw new UsageError(`-o must be one of ${allowed.join(", ")}, not "${given}"`);
  return o;
}

function endpointsOf(c: ProxyConfig) {
  return (c.clusters ?? []).flatMap((cl) => cl.endpoints.map((e) => ({ cluster: cl.name, ...e })));
}

function selectView(c: ProxyConfig, view: View): Record<string, unknown> {
  const all: Record<Exclude<View, "all">, unknown> = {
    listeners: c.listeners,
    routes: c.routeConfigs ?? [],
    clusters: (c.clusters ?? []).map(({ endpoints: _, ...rest }) => rest),
    endpoints: endpointsOf(c),
  };
  return view === "all" ? all : { [view]: all[view] };
}

function chainSummary(fc: FilterChainConfig): string {
  const match = [
    fc.match?.destinationPort !== undefined ? `port=${fc.match.destinationPort}` : "",
    fc.match?.serverNames ? `sni=${fc.match.serverNames.join(",")}` : "",
    fc.match?.applicationProtocols ? `alpn=${fc.match.applicationProtocols.join(",")}` : "",
  ]
    .filter(Boolean)
    .join(" ");
  const f = fc.filter;
  const dest =
    f.type === "tcp"
      ? `Cluster: ${f.cluster}`
      : f.type === "reverse_tunnel_acceptor"
        ? "Reverse tunnels"
        : `Route: ${f.routeConfigName ?? "(inline)"}`;
  return `${match || "ALL"} -> ${dest}${fc.tls ? " (TLS)" : ""}`;
}

function matchSummary(m: RouteMatch): string {
  const path = m.path !== undefined ? m.path : m.regex !== undefined ? `~${m.regex}` : `${m.prefix ?? "/"}*`;
  const extra = (m.headers?.length ?? 0) + (m.queryParameters?.length ?? 0);
  return extra > 0 ? `${path} (+${extra} conditions)` : path;
}

function routeTarget(r: RouteConfig): string {
  if (r.directResponse) return `direct ${r.directResponse.status}`;
  if (r.redirect) return "redirect";
  const a = r.route;
  if (a?.cluster) return a.cluster;
  return (a?.weightedClusters ?? []).map((w) => `${w.name} (${w.weight})`).join(", ");
}

/** Istio's cluster names are DIRECTION|PORT|SUBSET|HOST; other names show whole. */
function clusterParts(c: ClusterConfig): string[] {
  const p = c.name.split("|");
  return p.length === 4 ? [p[3]!, p[1]!, p[2]! || "-", p[0]!.toUpperCase()] : [c.name, "-", "-", "-"];
}

const TABLES: Record<Exclude<View, "all">, (c: ProxyConfig) => string> = {
  listeners: (c) =>
    table(
      ["NAME", "ADDRESS", "PORT", "MATCH -> DESTINATION"],
      c.listeners.flatMap((l) =>
        l.filterChains.map((fc, i) => [
          i === 0 ? l.name : "",
          l.address ?? "0.0.0.0",
          String(l.port),
          chainSummary(fc),
        ]),
      ),
    ),
  routes: (c) =>
    table(
      ["ROUTE CONFIG", "VIRTUAL HOST", "DOMAINS", "MATCH", "ROUTE", "TO"],
      (c.routeConfigs ?? []).flatMap((rc) =>
        rc.virtualHosts.flatMap((vh) =>
          vh.routes.map((r) => [
            rc.name,
            vh.name,
            vh.domains.length > 2
              ? `${vh.domains.slice(0, 2).join(",")} +${vh.domains.length - 2} more`
              : vh.domains.join(","),
            matchSummary(r.match),
            r.name ?? "-",
            routeTarget(r),
          ]),
        ),
      ),
    ),
  clusters: (c) =>
    table(
      ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "LB", "ENDPOINTS"],
      (c.clusters ?? []).map((cl) => [
        ...clusterParts(cl),
        cl.lbPolicy ?? "ROUND_ROBIN",
        String(cl.endpoints.length),
      ]),
    ),
  endpoints: (c) =>
    table(
      ["ENDPOINT", "WEIGHT", "PRIORITY", "LOCALITY", "NETWORK", "K8S CLUSTER", "VIA", "CLUSTER"],
      endpointsOf(c).map((e) => [
        `${e.address}:${e.port}`,
        String(e.weight ?? 1),
        String(e.priority ?? 0),
        e.locality ?? "-",
        e.labels?.["topology.istio.io/network"] ?? "-",
        e.labels?.["topology.istio.io/cluster"] ?? "-",
        e.tunnel !== undefined
          ? `tunnel ${e.tunnel}`
          : e.labels?.["isthmus.io/via"] === "gateway"
            ? "east-west gateway"
            : "direct",
        e.cluster,
      ]),
    ),
};
