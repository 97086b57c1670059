// npm start: the Guestbook demo (examples/guestbook) on the local runtime, `isthmus up` in the foreground
// (Ctrl-C stops it); arguments after `npm start --` go to `isthmus up` (e.g. --isolate). What the demo needs
// besides Node is Debian's redis-server: installed here with apt-get when this runs as root on Debian, else named
// with the exact command to install it.
//
// The demo is two clusters: `isthmus up` says ready once every pod of both is, but the frontend in iks reaches
// the analyzer in icp only once icp's control plane has dialled iks's and sent its endpoints. So after up's
// table this waits for that link (isthmus remote-clusters) and then says where to go and what runs where.
import { execFile, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const dir = join(root, "examples", "guestbook");
const bin = join(root, "bin", "isthmus.js");
const LINK_TIMEOUT_MS = 60_000;

function has(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

if (!has("redis-server")) {
  const root_ = process.getuid?.() === 0;
  if (root_ && has("apt-get")) {
    console.error("npm start: installing Debian's redis-server (the Guestbook's Redis)...");
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const ok =
      spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit", env }).status === 0 &&
      spawnSync("apt-get", ["install", "-y", "-qq", "redis-server"], { stdio: "inherit", env }).status === 0;
    if (!ok) {
      console.error("npm start: apt-get could not install redis-server; install it and run npm start again");
      process.exit(1);
    }
  } else {
    console.error(
      "npm start: the Guestbook needs redis-server (Debian's package). Install it with:\n" +
        "  sudo apt-get install redis-server\nthen run npm start again.",
    );
    process.exit(1);
  }
}

// `isthmus up` in a process group of its own, and every signal forwarded to it once: in the terminal's group it
// would get Ctrl-C's SIGINT twice (from the terminal and forwarded), and up takes a second signal as "stop now",
// leaving the mesh's processes behind. A closed terminal (SIGHUP) stops the mesh too.
const child = spawn(process.execPath, [bin, "up", dir, ...process.argv.slice(2)], {
  stdio: ["ignore", "inherit", "inherit"],
  detached: true,
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => child.kill(signal === "SIGHUP" ? "SIGTERM" : signal));
let exited = false;
child.on("exit", (code, signal) => {
  exited = true;
  process.exit(code ?? (signal ? 1 : 0));
});
void announce().catch((e: Error) => console.error(`npm start: ${e.message}`));

interface Status {
  pid: number;
  ready: boolean;
  status?: {
    clusters: Record<string, { ingress?: string; private: boolean }>;
    pods: Array<{ cluster: string; name: string }>;
  };
}

interface RemoteClusters {
  cluster: string;
  remoteClusters: Array<{ cluster: string; state: string; direction: string }>;
}

/** Once this run of `isthmus up` is ready and the clusters are linked: the URL, and what runs where. */
async function announce(): Promise<void> {
  let status: NonNullable<Status["status"]> | undefined;
  while (status === undefined) {
    if (exited) return;
    const state = readState();
    if (state !== undefined && state.pid === child.pid && state.ready && state.status) status = state.status;
    else await sleep(250);
  }
  const deadline = Date.now() + LINK_TIMEOUT_MS;
  let links: RemoteClusters[] = [];
  for (;;) {
    if (exited) return;
    links = await remoteClusters();
    const all = links.flatMap((l) => l.remoteClusters);
    if (all.length > 0 && all.every((l) => l.state === "connected")) break;
    if (Date.now() > deadline) {
      console.error(
        `npm start: the clusters are not linked after ${LINK_TIMEOUT_MS / 1000} s: entries are stored without a ` +
          "score until they are. See: node bin/isthmus.js remote-clusters --mesh examples/guestbook",
      );
      return;
    }
    await sleep(500);
  }
  const ingress = Object.values(status.clusters).find((c) => c.ingress)?.ingress;
  const lines = [`npm start: the Guestbook is up: ${ingress ?? "(no ingress port in mesh.yaml)"}/`];
  for (const [name, c] of Object.entries(status.clusters)) {
    const pods = status.pods.filter((p) => p.cluster === name).map((p) => p.name);
    lines.push(`  ${name}${c.private ? " (private: dials out only)" : ""}: ${pods.join(", ")}`);
  }
  for (const l of links)
    for (const r of l.remoteClusters)
      if (r.direction === "dial") lines.push(`  link: ${l.cluster} dialled ${r.cluster}, ${r.state}`);
  lines.push("  see it: node bin/isthmus.js remote-clusters --mesh examples/guestbook (README.md: more)");
  console.error(lines.join("\n"));
}

function readState(): Status | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, ".isthmus", "runtime.json"), "utf8")) as Status;
  } catch {
    // Not written yet, or being replaced.
    return undefined;
  }
}

/** Every cluster's links, as `isthmus remote-clusters --mesh` reports them; [] while it cannot tell. */
function remoteClusters(): Promise<RemoteClusters[]> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, "remote-clusters", "--mesh", dir, "-o", "json"],
      { encoding: "utf8", timeout: 10_000 },
      (error, stdout) => {
        try {
          resolve(error ? [] : (JSON.parse(stdout) as RemoteClusters[]));
        } catch {
          resolve([]);
        }
      },
    );
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
