// isthmus tls-check PROXY [HOST] — istioctl's former `authn tls-check`: for each service port the proxy can
// call, the client's mode (its DestinationRule's tls, or AUTO) against the server's (the PeerAuthentication of
// the service's workloads), and CONFLICT where they cannot meet. Read from the control plane's debug API.
import { parseArgs } from "node:util";
import type { TlsCheckRow } from "../../control/translate/tls-check.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";
import { call, connection, report } from "./config-client.ts";
import { outputFormat, table } from "./debug-views.ts";

const HELP = `Usage: isthmus tls-check PROXY [HOST] [--server URL] [-o table|json]

For each service port PROXY can call (or those of HOST: a name, a FQDN, or HOST:PORT's host), how its
sidecar connects and what the server side accepts, as the control plane translated them:
  STATUS            OK, or CONFLICT when the client's mode cannot reach the server's (the call fails)
  SERVER            the PeerAuthentication mode of the service's workloads that have a sidecar: STRICT,
                    PERMISSIVE, DISABLE, MIXED (they differ), or - (no sidecar: plain text only)
  CLIENT            the DestinationRule's tls mode (ISTIO_MUTUAL, DISABLE, SIMPLE, MUTUAL), or AUTO: mutual
                    TLS to workloads with a sidecar whose port is not DISABLEd, plain text to the others
  AUTHN POLICY      NAMESPACE/NAME of the PeerAuthentication that decided SERVER (- : the mesh default)
  DESTINATION RULE  NAME.NAMESPACE of the DestinationRule applied (-: none)
  --server URL   the control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN
  -o json        the rows as JSON
Exit status: 0 when every row is OK, 3 when one is a CONFLICT, 1 when the control plane cannot answer.
`;

export async function runTlsCheck(args: string[], io: CommandIO): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  const [proxy, host, ...extra] = positionals;
  if (proxy === undefined) throw new UsageError("PROXY is required");
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const output = outputFormat(values.output, ["table", "json"]);
  const { base, headers } = connection(values.server);
  const q = new URLSearchParams({ proxyID: proxy, ...(host !== undefined ? { host } : {}) });
  const r = await call(io, `${base}/debug/tls_check?${q}`, { headers });
  if (!r) return 1;
  if (r.status !== 200) {
    report(io, r.body);
    return 1;
  }
  const rows = (r.body as unknown as { items: TlsCheckRow[] }).items;
  if (output === "json") {
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
    return rows.some((x) => x.status === "CONFLICT") ? 3 : 0;
  }
  if (rows.length === 0) {
    io.out(
      host === undefined ? `${proxy} calls no service\n` : `no service of ${proxy}'s matches "${host}"\n`,
    );
    return 0;
  }
  io.out(
    table(
      ["HOST:PORT", "STATUS", "SERVER", "CLIENT", "AUTHN POLICY", "DESTINATION RULE"],
      rows.map((x) => [x.host, x.status, x.server, x.client, x.authnPolicy, x.destinationRule]),
    ),
  );
  // Scripts can tell a conflict from a clean check (and both from a failure to ask: 1).
  return rows.some((x) => x.status === "CONFLICT") ? 3 : 0;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    options: {
      server: { type: "string" },
      output: { type: "string", short: "o" },
      help: { type: "boolean", short: "h" },
    },
  });
}
