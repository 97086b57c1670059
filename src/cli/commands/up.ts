// isthmus up / down / status / logs — the local runtime (src/runtime/): a mesh of one or more clusters as local
// processes, from DIR/mesh.yaml and ordinary Kubernetes manifests plus Istio resources.
import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Diagnostic } from "../../api/diagnostic.ts";
import { cleanupLeftovers } from "../../runtime/isolation.ts";
import { launchMesh } from "../../runtime/launch.ts";
import { readMeshFile } from "../../runtime/mesh-file.ts";
import type { RuntimeStatus } from "../../runtime/mesh-runtime.ts";
import { planMesh } from "../../runtime/plan.ts";
import { ProcessLedger } from "../../runtime/process-ledger.ts";
import type { CommandIO } from "../main.ts";
import { printDiagnostics } from "../output.ts";
import { UsageError } from "../usage-error.ts";
import { table } from "./debug-views.ts";

const BIN = new URL("../../../bin/isthmus.js", import.meta.url).pathname;
const STATE_DIR = ".isthmus";
const STATE_FILE = "runtime.json";
const DETACH_TIMEOUT_MS = 180_000;

const UP_HELP = `Usage: isthmus up DIR [--detach] [--isolate] [-o table|json]

Runs the mesh described by DIR/mesh.yaml (kind: Mesh, docs/runtime.md) as local processes: per cluster a
control plane with its CA (one root shared by the clusters), per Deployment replica a pod with its own
loopback address, a sidecar (isthmus proxy, with a SPIFFE certificate) and its containers run from their
command and args. Everything is validated first (errors with file and line, nothing started); then it starts,
waits until every pod is ready and prints the clusters and pods. Ctrl-C stops everything.
  --detach       return once ready, leaving the mesh running (isthmus down DIR stops it)
  --isolate      each cluster in its own network namespace (Linux, root; iproute2 and nftables), joined
                 through a hub namespace whose nftables rules enforce the Mesh file: a private cluster
                 cannot be dialled by the others at all. Clusters then use 198.18.0.0/15 addresses.
                 Without root (or the tools) the mesh runs unisolated, and says so.
  -o json        print the ready mesh as JSON
State, certificates, tokens and logs are kept in DIR/.isthmus/.
`;

const DOWN_HELP = `Usage: isthmus down DIR

Stops the mesh 'isthmus up DIR --detach' started: every app, sidecar and control plane.
`;

const STATUS_HELP = `Usage: isthmus status DIR [-o json]

The running mesh of DIR: clusters, pods, their addresses, identities, readiness and restarts.
`;

const LOGS_HELP = `Usage: isthmus logs DIR POD [-c CONTAINER | --sidecar]

A pod's logs as kept by the runtime (DIR/.isthmus/logs/CLUSTER/NAMESPACE/POD/): every container's, or one
container's (-c), or its sidecar's (--sidecar).
`;

interface StateFile {
  readonly pid: number;
  /** The address block's base when isolated: its namespaces are removed by down after a killed runtime. */
  readonly isolatedBase?: number;
  readonly ready: boolean;
  readonly error?: string;
  readonly status?: RuntimeStatus;
}

export async function runUp(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parse(args, {
    detach: { type: "boolean" },
    isolate: { type: "boolean" },
    output: { type: "string", short: "o" },
    supervise: { type: "boolean" },
  });
  if (values.help) {
    io.out(UP_HELP);
    return 0;
  }
  const dir = oneDir(positionals);
  const output = values.output ?? "table";
  if (output !== "table" && output !== "json")
    throw new UsageError(`-o must be table or json, not "${output}"`);
  const mesh = readMeshFile(dir);
  if (!mesh.ok) return refuse(io, mesh.diagnostics);
  const planned = await planMesh(mesh.mesh);
  if (!planned.ok) return refuse(io, planned.diagnostics);
  printDiagnostics(io, planned.warnings, { quiet: false, withSeverity: false });
  const stateDir = join(mesh.mesh.dir, STATE_DIR);
  const running = liveState(stateDir);
  if (running !== undefined && running.pid !== process.pid) {
    io.err(`isthmus up: ${dir} is already up (pid ${running.pid}); 'isthmus down ${dir}' stops it\n`);
    return 1;
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (values.detach && !values.supervise) return detach(dir, stateDir, output, io, values.isolate === true);

  // The mesh's own block of addresses (another mesh may be running), its namespaces, then the plan on them.
  const launched = await launchMesh(mesh.mesh, stateDir, {
    isolate: values.isolate === true,
    log: (line) => io.err(`isthmus up: ${line}\n`),
  });
  if (!launched.ok) {
    if (launched.message) io.err(`isthmus up: ${launched.message}\n`);
    return launched.diagnostics.length > 0 ? refuse(io, [...launched.diagnostics]) : 1;
  }
  const { runtime, isolation, base } = launched.mesh;
  const save = (extra: Partial<StateFile> = {}) =>
    writeState(stateDir, {
      pid: process.pid,
      ready: runtime.ready,
      status: runtime.status(),
      ...(isolation ? { isolatedBase: base } : {}),
      ...extra,
    });
  save();
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= launched.mesh.stop().finally(() => rmSync(join(stateDir, STATE_FILE), { force: true }));
    return stopping;
  };
  const done = new Promise<void>((resolveDone) => {
    const onSignal = () => void stop().then(resolveDone);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
  try {
    await runtime.start();
  } catch (e) {
    save({ error: (e as Error).message });
    io.err(`isthmus up: ${(e as Error).message}\n`);
    // The state file tells a detaching parent why; it goes when this process does.
    await stop();
    return 1;
  }
  save();
  const refresh = setInterval(() => save(), 1000);
  refresh.unref();
  if (!values.supervise) {
    io.out(
      output === "json"
        ? `${JSON.stringify(summary(runtime.status()), null, 2)}\n`
        : render(runtime.status()),
    );
    io.err("isthmus up: ready; Ctrl-C stops the mesh\n");
  }
  await done;
  clearInterval(refresh);
  return 0;
}

/** Starts this command again as a background supervisor and waits until it says ready (or why not). */
async function detach(
  dir: string,
  stateDir: string,
  output: string,
  io: CommandIO,
  isolate: boolean,
): Promise<number> {
  rmSync(join(stateDir, STATE_FILE), { force: true });
  const logFile = join(stateDir, "runtime.log");
  const fd = openSync(logFile, "a", 0o600);
  const child = spawn(
    process.execPath,
    [BIN, "up", dir, "--detach", "--supervise", ...(isolate ? ["--isolate"] : [])],
    {
      detached: true,
      stdio: ["ignore", fd, fd],
      cwd: process.cwd(),
      env: process.env,
    },
  );
  closeSync(fd);
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  child.unref();
  const deadline = Date.now() + DETACH_TIMEOUT_MS;
  for (;;) {
    const state = readState(stateDir);
    if (state?.ready && state.status) {
      io.out(
        output === "json" ? `${JSON.stringify(summary(state.status), null, 2)}\n` : render(state.status),
      );
      return 0;
    }
    if (state?.error !== undefined || exited || Date.now() > deadline) {
      io.err(
        `isthmus up: ${state?.error ?? (exited ? "the runtime exited" : "not ready in time")}; its log:\n`,
      );
      io.err(tail(logFile, 40));
      if (!exited) process.kill(child.pid!, "SIGTERM");
      return 1;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runDown(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) {
    io.out(DOWN_HELP);
    return 0;
  }
  const dir = oneDir(positionals);
  const stateDir = join(resolve(dir), STATE_DIR);
  const state = liveState(stateDir);
  if (state === undefined) {
    // A runtime that was killed leaves its processes running: they are found by their directory and stopped;
    // and its network namespaces, when it was isolated.
    const left = await stopLeftovers(resolve(dir), stateDir);
    const base = readState(stateDir)?.isolatedBase;
    if (base !== undefined) await cleanupLeftovers(base).catch(() => []);
    io.out(
      left > 0
        ? `${dir}: the runtime was gone; stopped ${left} processes it left\n`
        : `${dir}: not running\n`,
    );
    rmSync(join(stateDir, STATE_FILE), { force: true });
    return 0;
  }
  process.kill(state.pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (alive(state.pid)) {
    if (Date.now() > deadline) {
      io.err(`isthmus down: pid ${state.pid} did not stop in 30 s; killing it\n`);
      process.kill(state.pid, "SIGKILL");
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopLeftovers(resolve(dir), stateDir);
  rmSync(join(stateDir, STATE_FILE), { force: true });
  io.out(`${dir}: stopped\n`);
  return 0;
}

/**
 * Processes of the mesh of `dir` that outlived their runtime: apps run in `dir` with the runtime's
 * environment (ISTHMUS_CLUSTER), sidecars, gateways and control planes name files under its state directory. SIGTERM, then SIGKILL after 5 s. Returns how many.
 */
async function stopLeftovers(dir: string, stateDir: string): Promise<number> {
  const pids: number[] = [];
  for (const p of list("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "latin1");
      // An app: started by the runtime in `dir` with its environment (never a user's shell that is just there).
      const app =
        readlinkSync(`/proc/${p}/cwd`) === dir &&
        readFileSync(`/proc/${p}/environ`, "latin1")
          .split("\0")
          .some((e) => e.startsWith("ISTHMUS_CLUSTER="));
      if (app || cmd.includes(stateDir)) pids.push(Number(p));
    } catch {
      // Gone, or not ours to read.
    }
  }
  // And whatever the ledger names that is still alive (a process that changed its directory and environment).
  for (const pid of new ProcessLedger(join(stateDir, "processes")).alive())
    if (!pids.includes(pid) && pid !== process.pid) pids.push(pid);
  for (const pid of pids) signal(pid, "SIGTERM");
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids) if (alive(pid)) signal(pid, "SIGKILL");
  return pids.length;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone.
  }
}

export async function runStatus(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } });
  if (values.help) {
    io.out(STATUS_HELP);
    return 0;
  }
  const dir = oneDir(positionals);
  const state = liveState(join(resolve(dir), STATE_DIR));
  if (state?.status === undefined) {
    io.out(`${dir}: not running\n`);
    return 3;
  }
  io.out(values.output === "json" ? `${JSON.stringify(state.status, null, 2)}\n` : render(state.status));
  return 0;
}

export async function runLogs(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parse(args, {
    container: { type: "string", short: "c" },
    sidecar: { type: "boolean" },
  });
  if (values.help) {
    io.out(LOGS_HELP);
    return 0;
  }
  const [dir, pod, ...rest] = positionals;
  if (dir === undefined || pod === undefined || rest.length > 0)
    throw new UsageError("DIR and POD are required");
  const root = join(resolve(dir), STATE_DIR, "logs");
  const podDirs: string[] = [];
  for (const cluster of list(root)) {
    if (cluster === "control-planes") continue;
    for (const ns of list(join(root, cluster)))
      if (existsSync(join(root, cluster, ns, pod))) podDirs.push(join(root, cluster, ns, pod));
  }
  if (podDirs.length === 0) {
    io.err(`isthmus logs: no pod "${pod}" in ${dir} (see isthmus status ${dir})\n`);
    return 1;
  }
  for (const d of podDirs) {
    const files = list(d).filter((f) =>
      values.sidecar
        ? f === "sidecar.log"
        : values.container
          ? f === `${values.container}.log`
          : f !== "sidecar.log",
    );
    if (files.length === 0) {
      io.err(
        `isthmus logs: pod ${pod} has no ${values.sidecar ? "sidecar" : `container "${values.container}"`} log\n`,
      );
      return 1;
    }
    for (const f of files) {
      if (files.length > 1) io.out(`==> ${f.replace(/\.log$/, "")} <==\n`);
      io.out(readFileSync(join(d, f), "utf8"));
    }
  }
  return 0;
}

/** The ready mesh as `-o json` prints it: {"clusters": {NAME: {...}}, "pods": [...]}. */
function summary(s: RuntimeStatus) {
  return {
    mesh: s.mesh,
    dir: s.dir,
    pid: s.pid,
    clusters: s.clusters,
    pods: s.pods.map((p) => ({
      cluster: p.cluster,
      namespace: p.namespace,
      name: p.name,
      address: p.address,
      identity: p.identity,
      ready: p.ready,
    })),
  };
}

function render(s: RuntimeStatus): string {
  const clusters = table(
    ["CLUSTER", "NETWORK", "LOCALITY", "INGRESS", "CONTROL PLANE", "CONFIG API"],
    Object.entries(s.clusters).map(([name, c]) => [
      name + (c.private ? " (private)" : ""),
      c.network,
      c.locality || "-",
      c.ingress ?? "-",
      c.controlPlane,
      c.configApi,
    ]),
  );
  const pods = table(
    ["CLUSTER", "POD", "ADDRESS", "IDENTITY", "READY", "RESTARTS"],
    s.pods.map((p) => [
      p.cluster,
      `${p.namespace}/${p.name}`,
      p.address,
      p.identity,
      p.ready
        ? "yes"
        : `no (sidecar ${p.sidecar.state}; ${p.containers.map((c) => `${c.name} ${c.state}`).join(", ")})`,
      String(p.restarts + p.sidecar.restarts),
    ]),
  );
  return `mesh ${s.mesh} (pid ${s.pid})\n\n${clusters}\n${pods}`;
}

function refuse(io: CommandIO, diagnostics: readonly Diagnostic[]): number {
  printDiagnostics(io, diagnostics, { quiet: false, withSeverity: false });
  io.err("isthmus up: nothing started\n");
  return 1;
}

function parse(
  args: string[],
  options: NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>,
) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: { ...options, help: { type: "boolean", short: "h" } },
    }) as {
      values: Record<string, string | boolean | undefined> & {
        help?: boolean;
        output?: string;
        detach?: boolean;
        supervise?: boolean;
        container?: string;
        sidecar?: boolean;
      };
      positionals: string[];
    };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function oneDir(positionals: readonly string[]): string {
  if (positionals.length !== 1) throw new UsageError("one DIR (holding mesh.yaml) is required");
  return positionals[0]!;
}

function writeState(stateDir: string, state: StateFile): void {
  const file = join(stateDir, STATE_FILE);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(state), { mode: 0o600 });
  renameSync(temp, file);
}

function readState(stateDir: string): StateFile | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, STATE_FILE), "utf8")) as StateFile;
  } catch {
    return undefined;
  }
}

/** The state of a runtime whose process is alive; a stale file (a crashed or killed runtime) is none. */
function liveState(stateDir: string): StateFile | undefined {
  const s = readState(stateDir);
  return s !== undefined && alive(s.pid) ? s : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function tail(file: string, lines: number): string {
  try {
    return `${readFileSync(file, "utf8").split("\n").slice(-lines).join("\n")}\n`;
  } catch {
    return "";
  }
}
