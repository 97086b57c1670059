// isthmus remote-clusters — istioctl's remote-clusters: the clusters a control plane peers with, each link's
// direction, state, last syncs both ways, what it received, and why a link is refused. From one control plane
// (--server) or from every cluster of a local mesh (--mesh DIR, isthmus up's).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatRemoteClusters, type RemoteClustersJson } from "../../control/peering/index.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";
import { call, connection, report } from "./config-client.ts";
import { outputFormat } from "./debug-views.ts";

const HELP = `Usage: isthmus remote-clusters [--server URL | --mesh DIR] [-o table|json]

The clusters a control plane peers with (MeshLink resources, or the Mesh file for a local mesh):
  CLUSTER, NETWORK   the peer
  DIRECTION          dial (this control plane dials it) or accept (the peer dials: it is private, or later
                     in the Mesh file)
  STATE              connecting, connected, refused (the reason follows the table), down (the link dropped;
                     its endpoints are kept while its gateways answer), withdrawn (past the grace period)
  SENT, RECEIVED     how long ago the last snapshot went out and came in
  SERVICES, ENDPOINTS
                     what the peer exports, as this cluster holds it
  --server URL   one control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN
  --mesh DIR     every cluster of the local mesh that 'isthmus up DIR' runs
  -o json        as JSON
`;

export async function runRemoteClusters(args: string[], io: CommandIO): Promise<number> {
  let values: { server?: string; mesh?: string; output?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        server: { type: "string" },
        mesh: { type: "string" },
        output: { type: "string", short: "o" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  const output = outputFormat(values.output, ["table", "json"]);
  if (values.server !== undefined && values.mesh !== undefined)
    throw new UsageError("--server and --mesh exclude each other");
  const targets =
    values.mesh !== undefined ? meshTargets(values.mesh) : [{ name: "", ...connection(values.server) }];
  const results: RemoteClustersJson[] = [];
  let failed = false;
  for (const t of targets) {
    const r = await call(io, `${t.base}/debug/remote_clusters`, { headers: t.headers });
    if (r === undefined || r.status !== 200) {
      if (r) report(io, r.body);
      failed = true;
      continue;
    }
    results.push(r.body as unknown as RemoteClustersJson);
  }
  if (output === "json")
    io.out(`${JSON.stringify(values.mesh !== undefined ? results : results[0], null, 2)}\n`);
  else
    for (const j of results) {
      if (values.mesh !== undefined) io.out(`${targets.length > 1 ? "\n" : ""}# from cluster ${j.cluster}\n`);
      io.out(formatRemoteClusters(j));
    }
  return failed ? 1 : 0;
}

/** The config APIs of a running local mesh's clusters, with the runtime's token. */
function meshTargets(dir: string): Array<{ name: string; base: string; headers: Record<string, string> }> {
  const stateDir = join(dir, ".isthmus");
  let state: { status?: { clusters?: Record<string, { configApi: string }> } };
  let token: string;
  try {
    state = JSON.parse(readFileSync(join(stateDir, "runtime.json"), "utf8"));
    token = readFileSync(join(stateDir, "api-token"), "utf8").trim();
  } catch {
    throw new UsageError(`${dir} is not running (isthmus up ${dir} starts it)`);
  }
  return Object.entries(state.status?.clusters ?? {}).map(([name, c]) => ({
    name,
    base: c.configApi,
    headers: { authorization: `Bearer ${token}` },
  }));
}
