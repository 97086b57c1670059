// isthmus x authz check — istioctl's `x authz check`: the authorization filters of a proxy's config, per
// listener and filter chain, as the proxy evaluates them: CUSTOM (ext_authz), DENY, ALLOW, then AUDIT (RBAC's
// LOG), each with the AuthorizationPolicies its RBAC policy names come from (ns[NS]-policy[NAME]-rule[I], as
// src/control/translate/security/authorization.ts names them) and how many of their rules it holds.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { ProxyConfig, RbacPolicy, RbacRules } from "../../proxy/config/types.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";
import { outputFormat, renderedConfig, table } from "./debug-views.ts";

export const AUTHZ_CHECK_HELP = `Usage: isthmus x authz check PROXY [--server URL] [-o table|json]
       isthmus x authz check --file FILE [-o table|json]

The authorization filters in the config the control plane renders now for the proxy PROXY (as 'isthmus
proxy-status' names it), or in FILE (a ProxyConfig, JSON or YAML, or a saved /config_dump of the proxy's admin
or the control plane): for every listener and filter chain, each AuthorizationPolicy in the order the proxy
applies them, CUSTOM (ext_authz), DENY, ALLOW, then AUDIT (RBAC's LOG action, which never denies). A dry-run
policy (annotation istio.io/dry-run: "true") is evaluated without being enforced and shows as "(dry-run)".

Columns: LISTENER, CHAIN (the filter chain's name, else #INDEX), ACTION, AuthorizationPolicy (NAME.NAMESPACE;
a filter policy whose name is not one the control plane generates is shown as it is, such as
istio-ext-authz-deny-all, the deny-everything rule of a CUSTOM policy whose provider is unknown; an ALLOW
filter with no policy at all, from 'spec: {}', denies every request and shows as _anonymous_match_nothing_;
an ext_authz filter without policies checks every request and shows as "(every request)"),
RULES (how many of the policy's rules the filter holds: a rule the chain cannot express is dropped).
A gateway's policies are on its listeners' chains, a sidecar's on its inbound chains (virtualInbound).
  --server URL   the control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN
  -f, --file F   read the config from F instead of the control plane
  -o json        the same rows as JSON: {listener, chain, action, dryRun, policy, rules}
`;

export type AuthzAction = "CUSTOM" | "DENY" | "ALLOW" | "AUDIT";

export interface AuthzRow {
  readonly listener: string;
  readonly chain: string;
  readonly action: AuthzAction;
  /** From shadow rules: evaluated and counted, never enforced. */
  readonly dryRun: boolean;
  /** NAME.NAMESPACE, or the filter's policy name when it is not one the control plane generates. */
  readonly policy: string;
  readonly rules: number;
}

/** The order the proxy applies them in: ext_authz, then RBAC DENY, ALLOW, LOG. */
const RANK: Record<AuthzAction, number> = { CUSTOM: 0, DENY: 1, ALLOW: 2, AUDIT: 3 };

const POLICY_NAME = /^ns\[(.+)\]-policy\[(.+)\]-rule\[(\d+)\]$/;

/** istioctl's name for an RBAC filter without policies (an ALLOW filter then denies every request). */
export const MATCH_NOTHING = "_anonymous_match_nothing_";

/** Policies of one filter grouped by AuthorizationPolicy, in the filter's name order: [policy, rules]. */
function byPolicy(policies: Readonly<Record<string, RbacPolicy>> | undefined): Array<[string, number]> {
  const names = Object.keys(policies ?? {}).sort();
  if (names.length === 0) return [[MATCH_NOTHING, 0]];
  const rules = new Map<string, Set<string>>();
  for (const name of names) {
    const m = POLICY_NAME.exec(name);
    const policy = m ? `${m[2]}.${m[1]}` : name;
    const set = rules.get(policy) ?? new Set<string>();
    set.add(m ? m[3]! : name);
    rules.set(policy, set);
  }
  return [...rules].map(([policy, set]) => [policy, set.size]);
}

function rbacAction(r: RbacRules): AuthzAction {
  return r.action === "LOG" ? "AUDIT" : r.action;
}

/** Every authorization filter on every chain of `config`, CUSTOM, DENY, ALLOW then AUDIT within a chain. */
export function authzRows(config: ProxyConfig): AuthzRow[] {
  const rows: AuthzRow[] = [];
  for (const l of config.listeners ?? []) {
    (l.filterChains ?? []).forEach((fc, i) => {
      const chain = fc.name ?? `#${i}`;
      const found: Array<Omit<AuthzRow, "listener" | "chain">> = [];
      const f = fc.filter;
      if (f.type === "http")
        for (const ext of f.extAuthz ?? [])
          for (const [policy, rules] of ext.policies === undefined
            ? ([["(every request)", 0]] as Array<[string, number]>)
            : byPolicy(ext.policies))
            found.push({ action: "CUSTOM", dryRun: false, policy, rules });
      for (const r of f.type === "reverse_tunnel_acceptor" ? [] : (f.rbac ?? [])) {
        if (r.rules)
          for (const [policy, rules] of byPolicy(r.rules.policies))
            found.push({ action: rbacAction(r.rules), dryRun: false, policy, rules });
        if (r.shadowRules)
          for (const [policy, rules] of byPolicy(r.shadowRules.policies))
            found.push({ action: rbacAction(r.shadowRules), dryRun: true, policy, rules });
      }
      // Stable: filters of one action keep their order in the chain.
      found.sort((a, b) => RANK[a.action] - RANK[b.action] || Number(a.dryRun) - Number(b.dryRun));
      for (const r of found) rows.push({ listener: l.name, chain, ...r });
    });
  }
  return rows;
}

export function authzTable(rows: readonly AuthzRow[]): string {
  return table(
    ["LISTENER", "CHAIN", "ACTION", "AuthorizationPolicy", "RULES"],
    rows.map((r) => [
      r.listener,
      r.chain,
      r.dryRun ? `${r.action} (dry-run)` : r.action,
      r.policy,
      String(r.rules),
    ]),
  );
}

/**
 * A ProxyConfig from FILE: the config itself, or a saved /config_dump (the proxy admin's or the control
 * plane's), whose `config` it is. Errors name the file, line and field.
 */
async function configFromFile(io: CommandIO, file: string): Promise<ProxyConfig | undefined> {
  const { checkProxyConfig, loadProxyConfigFile } = await import("../../proxy/config/load.ts");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    io.err(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return undefined;
  }
  let value: unknown;
  try {
    value = (await import("yaml")).parse(text, { logLevel: "silent" });
  } catch {
    value = undefined; // loadProxyConfigFile says where
  }
  const dump = value as { config?: unknown; listeners?: unknown } | null;
  const loaded =
    dump !== null && typeof dump === "object" && dump.listeners === undefined && dump.config !== undefined
      ? checkProxyConfig(dump.config, (p) => `${file} config.${p.path.join(".")}: ${p.message}`)
      : await loadProxyConfigFile(file);
  if (!loaded.ok) {
    for (const e of loaded.errors) io.err(`${e}\n`);
    return undefined;
  }
  return loaded.config;
}

const OPTIONS = {
  server: { type: "string" },
  file: { type: "string", short: "f" },
  output: { type: "string", short: "o" },
  help: { type: "boolean", short: "h" },
} as const;

export async function runAuthzCheck(args: string[], io: CommandIO): Promise<number> {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; allowPositionals: true; options: typeof OPTIONS }>
  >;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(AUTHZ_CHECK_HELP);
    return 0;
  }
  const output = outputFormat(values.output, ["table", "json"]);
  const [proxy, extra] = positionals;
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
  if ((proxy === undefined) === (values.file === undefined))
    throw new UsageError("give either PROXY (read from the control plane) or --file FILE");
  if (values.file !== undefined && values.server !== undefined)
    throw new UsageError("--server is not used with --file");
  let config: ProxyConfig | undefined;
  if (values.file !== undefined) config = await configFromFile(io, values.file);
  else config = (await renderedConfig(io, values.server, proxy!))?.config;
  if (config === undefined) return 1;
  const rows = authzRows(config);
  if (output === "json") io.out(`${JSON.stringify(rows, null, 2)}\n`);
  else if (rows.length === 0)
    io.out(
      `no authorization policies apply to ${proxy !== undefined ? proxy : `the config in ${values.file}`}\n`,
    );
  else io.out(authzTable(rows));
  return 0;
}
