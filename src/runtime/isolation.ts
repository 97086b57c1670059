// Network isolation for `isthmus up --isolate` (Linux, root): each cluster of a mesh runs in its own network
// namespace, and the Mesh file's `private: true` is enforced by the kernel rather than by convention.
//
// Why this shape:
// - 127/8 cannot be routed between namespaces (the kernel drops loopback addresses that arrive on any other
//   interface), so isolated clusters use 198.18.0.0/15 (RFC 2544's benchmarking range, never a real network):
//   cluster i of the mesh on address block 127.B owns 198.18.(16k+i).0/24 with k = (B-20)/16
//   (isolation-layout.ts). The block is what address-blocks.ts already makes unique per running mesh, so the
//   names and addresses below need no other lock, and two meshes never meet.
// - In a cluster's namespace the whole /24 is a `local` route on lo, as 127/8 is: every pod address is bound
//   without an interface of its own. `eth0` (a veth pair to the hub) carries everything else.
// - A hub namespace per mesh (`isthmus-B`) routes between its clusters (`isthmus-B-CLUSTER`) and the root
//   namespace; IP forwarding is switched on in the hub only, and the rules live in the hub's own nftables
//   ruleset: the host's sysctls and ruleset are never touched. The hub has no default route, so a cluster
//   dialling anything outside its mesh (another mesh, the internet) fails at once with "network unreachable".
// - The root namespace (the runtime's supervisor: registrations, readiness probes, ingress forwarding from
//   127.0.0.1) has one veth pair to the hub (`isthmus-B`, the only name this module adds to the host) and routes
//   for this mesh's addresses only. Clusters reach the host at `hostAddress`, as pods reach their node.
// - A veth pair is created with each end directly in its namespace, so its names exist only there (`cI` in the
//   hub, `eth0` in the cluster); deleting a namespace deletes its pairs, and the root end's routes go with it.
// - The Mesh file is enforced in the hub's forward chain (hubRuleset in isolation-layout.ts): a new connection
//   out of the hub's link to a private cluster is refused unless it comes from the root namespace; replies of
//   connections a private cluster opened pass as established. TCP is refused with a reset, which the kernel
//   does not rate-limit as it does ICMP errors, so a dial fails at once (ECONNREFUSED) however often it is tried.
// - Processes join a cluster with `ip netns exec NS ARGV...`, which calls setns and then execs: the supervisor's
//   pid and process group are the program's own. ARGV[0] should be absolute (ip looks it up in the child's PATH).
// Limits: a cluster has one /24 (hosts 1..254); clusters reach nothing outside their mesh but the host
// (no NAT: the host's ruleset is not ours); a connection leaving a cluster has its link address (198.19.k.x) as
// source unless the program binds a pod address.
import { type ChildProcess, execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import {
  belongsToBlock,
  type ClusterLayout,
  clusterNamespaceCommands,
  hubNamespaceCommands,
  hubNamespaceName,
  hubRuleset,
  type IsolationLayout,
  type IsolationSpec,
  isolatedAddress,
  layoutIsolation,
  rootInterfaceName,
  rootNamespaceCommands,
} from "./isolation-layout.ts";

export type { IsolatedClusterSpec, IsolationLayout, IsolationSpec } from "./isolation-layout.ts";
export {
  ISOLATED_RANGE,
  isolatedAddress,
  isolatedClusterCidr,
  isolatedClusterIndex,
} from "./isolation-layout.ts";

export type IsolationSupport = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface Isolation {
  readonly layout: IsolationLayout;
  /** The root namespace's address as the clusters see it (the node's address: hostNetwork pods, the host). */
  readonly hostAddress: string;
  /** The network namespace a cluster's processes run in. */
  namespace(cluster: string): string;
  /** The cluster's 198.18.g.0/24. */
  cidr(cluster: string): string;
  /** Host `host` (1..254) of the cluster's /24. */
  address(cluster: string, host: number): string;
  /** `argv` run inside the cluster's namespace (same pid and process group: `ip netns exec` execs). */
  command(cluster: string, argv: readonly string[]): string[];
  /** Removes the namespaces, veth pairs and routes; processes still inside are killed. Idempotent. */
  destroy(): Promise<void>;
}

const INSTALL_HINT = "install them with: apt-get install -y iproute2 nftables";
const COMMAND_TIMEOUT_MS = 15_000;
const MAX_OUTPUT = 4 * 1024 * 1024;
// Where Debian and others keep ip and nft, in case the runtime's PATH lacks the sbin directories.
const SYSTEM_PATH = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"];

interface Tools {
  readonly ip: string;
  readonly nft: string;
}

/** Whether this machine can isolate clusters; the reason says what is missing and how to get it. */
export async function isolationSupport(): Promise<IsolationSupport> {
  if (process.platform !== "linux") {
    return { ok: false, reason: `--isolate needs Linux network namespaces (this is ${process.platform})` };
  }
  if (process.getuid?.() !== 0) {
    return {
      ok: false,
      reason: "--isolate needs root: it creates network namespaces, veth pairs and nftables rules",
    };
  }
  let tools: Tools;
  try {
    tools = findTools();
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  // Root is not enough in a container without CAP_NET_ADMIN and CAP_SYS_ADMIN, nor on a kernel without veth or
  // nf_tables: a throwaway namespace tries each thing create needs.
  const probe = `isthmus-probe-${process.pid}`;
  try {
    await run([tools.ip, "netns", "add", probe]);
    try {
      await run([tools.ip, "-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"]);
      // The very rules create loads (the interfaces they name need not exist).
      const rules = hubRuleset(
        layoutIsolation({ base: 20, clusters: [{ name: "p", index: 0, private: true }] }),
      );
      await run([tools.ip, "netns", "exec", probe, tools.nft, "-f", "-"], rules);
    } finally {
      await run([tools.ip, "netns", "del", probe]);
    }
  } catch (e) {
    return {
      ok: false,
      reason: `--isolate cannot create network namespaces, veth pairs or nftables rules here: ${(e as Error).message}`,
    };
  }
  return { ok: true };
}

/**
 * Creates the namespaces, veth pairs, routes and rules of one mesh (its block `spec.base` must be held by the
 * caller: address-blocks.ts). Refuses if namespaces of that block exist (see cleanupLeftovers); on any failure
 * removes everything it made before throwing.
 */
export async function createIsolation(spec: IsolationSpec): Promise<Isolation> {
  const layout = layoutIsolation(spec);
  const tools = findTools();
  const leftovers = await blockNamespaces(tools, layout.base);
  if (await linkExists(tools, layout.rootInterface)) leftovers.push(`link ${layout.rootInterface}`);
  if (leftovers.length > 0) {
    throw new Error(
      `the network namespaces of address block ${layout.base} exist already (${leftovers.join(", ")}): ` +
        `left by a runtime that was killed? cleanupLeftovers(${layout.base}) removes them`,
    );
  }
  const created: string[] = [];
  try {
    await addNamespace(tools, layout.hubNamespace, created);
    await enableForwarding(tools, layout.hubNamespace);
    for (const c of layout.clusters) {
      await addNamespace(tools, c.namespace, created);
      await run([
        tools.ip,
        "link",
        "add",
        "name",
        c.hubInterface,
        "netns",
        layout.hubNamespace,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        c.namespace,
      ]);
      await batch(tools, c.namespace, clusterNamespaceCommands(c));
    }
    await run([
      tools.ip,
      "link",
      "add",
      "name",
      layout.rootInterface,
      "type",
      "veth",
      "peer",
      "name",
      layout.hubRootInterface,
      "netns",
      layout.hubNamespace,
    ]);
    await batch(tools, layout.hubNamespace, hubNamespaceCommands(layout));
    await run([tools.ip, "netns", "exec", layout.hubNamespace, tools.nft, "-f", "-"], hubRuleset(layout));
    await batch(tools, undefined, rootNamespaceCommands(layout));
  } catch (e) {
    try {
      await remove(tools, created, layout.rootInterface);
    } catch (undo) {
      throw new Error(
        `${(e as Error).message} (and removing what was made failed: ${(undo as Error).message})`,
        {
          cause: e,
        },
      );
    }
    throw e;
  }
  return isolationOf(layout, tools);
}

/**
 * Removes what a runtime on block `base` left when it was killed before destroy(): its namespaces (processes
 * still inside are killed) and its veth pair. The caller must hold the block (address-blocks.ts), which makes
 * everything of that block its own. Returns the namespaces removed.
 */
export async function cleanupLeftovers(base: number): Promise<string[]> {
  const tools = findTools();
  const namespaces = await blockNamespaces(tools, base);
  await remove(tools, namespaces, rootInterfaceName(base));
  return namespaces;
}

function isolationOf(layout: IsolationLayout, tools: Tools): Isolation {
  const byName = new Map(layout.clusters.map((c) => [c.name, c]));
  const cluster = (name: string): ClusterLayout => {
    const c = byName.get(name);
    if (c === undefined) throw new Error(`no cluster "${name}" in this isolated mesh`);
    return c;
  };
  let destroying: Promise<void> | undefined;
  return {
    layout,
    hostAddress: layout.rootAddress,
    namespace: (name) => cluster(name).namespace,
    cidr: (name) => cluster(name).cidr,
    address: (name, host) => isolatedAddress(layout.base, cluster(name).index, host),
    command: (name, argv) => {
      if (argv.length === 0) throw new Error("an empty command");
      return [tools.ip, "netns", "exec", cluster(name).namespace, ...argv];
    },
    destroy: () => {
      destroying ??= remove(
        tools,
        [...layout.clusters.map((c) => c.namespace), layout.hubNamespace],
        layout.rootInterface,
      ).catch((e) => {
        destroying = undefined; // a later call tries again
        throw e;
      });
      return destroying;
    },
  };
}

/**
 * Deletes the root end of the hub's pair first (its peer and its routes go with it, at once: a namespace's
 * devices are freed asynchronously), then each namespace that exists. Keeps going past a failure and reports
 * them all.
 */
async function remove(tools: Tools, namespaces: readonly string[], rootInterface: string): Promise<void> {
  const failures: string[] = [];
  const attempt = async (step: () => Promise<unknown>) => {
    try {
      await step();
    } catch (e) {
      failures.push((e as Error).message);
    }
  };
  if (await linkExists(tools, rootInterface))
    await attempt(() => run([tools.ip, "link", "del", rootInterface]));
  const existing = new Set(await listNamespaces(tools));
  for (const ns of namespaces) {
    if (!existing.has(ns)) continue;
    await attempt(() => killProcessesIn(tools, ns));
    await attempt(() => run([tools.ip, "netns", "del", ns]));
  }
  if (failures.length > 0) throw new Error(failures.join("; "));
}

/** A process left inside would keep the namespace, and its addresses, alive after its name is gone. */
async function killProcessesIn(tools: Tools, namespace: string): Promise<void> {
  const out = await run([tools.ip, "netns", "pids", namespace]);
  for (const pid of out.split("\n").map(Number)) {
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
}

async function addNamespace(tools: Tools, name: string, created: string[]): Promise<void> {
  await run([tools.ip, "netns", "add", name]);
  created.push(name);
}

/** The hub's own sysctl (a new namespace starts with forwarding off); the host's stays as it is. */
async function enableForwarding(tools: Tools, namespace: string): Promise<void> {
  // /proc/sys/net is the writer's namespace's: written from inside, by the one program sure to be there.
  const script = 'require("node:fs").writeFileSync("/proc/sys/net/ipv4/ip_forward", "1")';
  await run([tools.ip, "netns", "exec", namespace, process.execPath, "--input-type=commonjs", "-e", script]);
}

async function batch(tools: Tools, namespace: string | undefined, lines: readonly string[]): Promise<void> {
  const argv =
    namespace === undefined ? [tools.ip, "-batch", "-"] : [tools.ip, "-n", namespace, "-batch", "-"];
  try {
    await run(argv, `${lines.join("\n")}\n`);
  } catch (e) {
    // ip names the failed line by number only.
    const line = /Command failed -:(\d+)/.exec((e as Error).message)?.[1];
    const text = line === undefined ? undefined : lines[Number(line) - 1];
    throw text === undefined ? e : new Error(`${(e as Error).message} (ip ${text})`);
  }
}

async function listNamespaces(tools: Tools): Promise<string[]> {
  const out = (await run([tools.ip, "-j", "netns", "list"])).trim();
  if (out === "") return [];
  return (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

async function blockNamespaces(tools: Tools, base: number): Promise<string[]> {
  hubNamespaceName(base); // checks the base
  return (await listNamespaces(tools)).filter((n) => belongsToBlock(n, base));
}

async function linkExists(tools: Tools, name: string): Promise<boolean> {
  const links = JSON.parse((await run([tools.ip, "-j", "link", "show"])).trim() || "[]") as {
    ifname: string;
  }[];
  return links.some((l) => l.ifname === name);
}

function findTools(): Tools {
  const ip = findExecutable("ip");
  const nft = findExecutable("nft");
  const missing = [ip === undefined ? "ip (iproute2)" : "", nft === undefined ? "nft (nftables)" : ""].filter(
    Boolean,
  );
  if (missing.length > 0) throw new Error(`--isolate needs ${missing.join(" and ")}; ${INSTALL_HINT}`);
  return { ip: ip!, nft: nft! };
}

function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...SYSTEM_PATH];
  for (const dir of dirs) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Runs argv (no shell) with `input` on its stdin; the error names the command and its stderr. */
function run(argv: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = execFile(
      argv[0]!,
      argv.slice(1),
      { encoding: "utf8", timeout: COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT },
      (error, stdout, stderr) => {
        if (error === null) resolve(stdout);
        else reject(new Error(`${argv.join(" ")}: ${stderr.trim() || error.message}`));
      },
    );
    // A command that exits without reading its input reports through the callback, not here.
    child.stdin!.on("error", () => {});
    child.stdin!.end(input ?? "");
  });
}
