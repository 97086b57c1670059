// npm run bench:up — how long `isthmus up --detach` takes from the command to a ready mesh, and how much memory
// the whole mesh holds, for each demo (examples/guestbook, examples/beetravels). Each run brings the demo up on
// a temporary copy (its own ingress port), checks one request through the ingress, sums the resident memory of
// every process of the mesh (the runtime, control planes, gateways, sidecars, apps, databases) and takes it
// down. Required: Guestbook ready <= 10 s, Bee Travels <= 20 s. Ends with one JSON line.
import { spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DEMOS = [
  { name: "guestbook", required: 10 },
  { name: "beetravels", required: 20 },
] as const;

function isthmus(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, "bin", "isthmus.js"), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => {
      out += d;
    });
    child.stderr!.on("data", (d) => {
      err += d;
    });
    child.once("exit", (code) => resolve({ code: code ?? -1, out, err }));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resident memory (MB) of the mesh: the runtime and every process it started, found by their parent chain. */
function meshRssMb(runtimePid: number): { mb: number; pssMb: number; processes: number } {
  const parent = new Map<number, number>();
  const rss = new Map<number, number>();
  const pss = new Map<number, number>();
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      parent.set(Number(p), Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? 0));
      rss.set(Number(p), Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0));
      // Proportional: pages shared between processes (the Node binary, ~48 MB) counted once in all.
      const rollup = readFileSync(`/proc/${p}/smaps_rollup`, "utf8");
      pss.set(Number(p), Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0));
    } catch {
      // Gone.
    }
  }
  const ofMesh = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 16; p = parent.get(p) ?? 0, hops++)
      if (p === runtimePid) return true;
    return false;
  };
  let kb = 0;
  let pssKb = 0;
  let processes = 0;
  for (const [pid, k] of rss)
    if (ofMesh(pid)) {
      kb += k;
      pssKb += pss.get(pid) ?? 0;
      processes++;
    }
  return { mb: kb / 1024, pssMb: pssKb / 1024, processes };
}

async function measure(
  demo: string,
): Promise<{ readyS: number; rssMb: number; pssMb: number; processes: number; pods: number }> {
  const dir = mkdtempSync(join(tmpdir(), `isthmus-bench-up-${demo}-`));
  try {
    cpSync(join(root, "examples", demo), dir, { recursive: true, filter: (s) => !s.includes(".isthmus") });
    symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
    const port = await freePort();
    const mesh = join(dir, "mesh.yaml");
    writeFileSync(mesh, readFileSync(mesh, "utf8").replace(/port: \d+/, `port: ${port}`));
    const t0 = performance.now();
    const up = await isthmus(["up", dir, "--detach", "-o", "json"]);
    const readyS = (performance.now() - t0) / 1000;
    if (up.code !== 0) throw new Error(`${demo}: isthmus up failed:\n${up.err}`);
    const ready = JSON.parse(up.out) as {
      pid: number;
      pods: unknown[];
      clusters: Record<string, { ingress?: string }>;
    };
    const ingress = Object.values(ready.clusters).find((c) => c.ingress)?.ingress;
    if (ingress) {
      const r = await fetch(`${ingress}/`);
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`${demo}: the ingress answers ${r.status}`);
    }
    // Settled memory: a moment after ready, as a user would find it.
    await new Promise((r) => setTimeout(r, 2000));
    const mem = meshRssMb(ready.pid);
    await isthmus(["down", dir]);
    return { readyS, rssMb: mem.mb, pssMb: mem.pssMb, processes: mem.processes, pods: ready.pods.length };
  } finally {
    await isthmus(["down", dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: Record<string, Awaited<ReturnType<typeof measure>> | null> = {};
console.log(
  `bench:up — ${RUNS} runs per demo, time from 'isthmus up --detach' to ready, resident memory of the mesh\n`,
);
console.log(
  "demo          pods   processes   ready (best / all runs)            RSS (MB)   PSS (MB)   required",
);
for (const d of DEMOS) {
  if (!existsSync(join(root, "examples", d.name, "mesh.yaml"))) {
    results[d.name] = null;
    console.log(
      `${d.name.padEnd(13)} -      -           not built yet                      -          <= ${d.required} s`,
    );
    continue;
  }
  const runs: Array<Awaited<ReturnType<typeof measure>>> = [];
  for (let i = 0; i < RUNS; i++) runs.push(await measure(d.name));
  const best = runs.reduce((a, b) => (b.readyS < a.readyS ? b : a));
  const rss = Math.max(...runs.map((r) => r.rssMb));
  const pss = Math.max(...runs.map((r) => r.pssMb));
  results[d.name] = { ...best, rssMb: rss, pssMb: pss };
  console.log(
    `${d.name.padEnd(13)} ${String(best.pods).padEnd(6)} ${String(best.processes).padEnd(11)} ${`${best.readyS.toFixed(2)} s / ${runs.map((r) => r.readyS.toFixed(2)).join(", ")}`.padEnd(34)} ${rss.toFixed(0).padEnd(10)} ${pss.toFixed(0).padEnd(10)} <= ${d.required} s`,
  );
}
const fig = (n: string, k: "readyS" | "rssMb") => {
  const r = results[n];
  return r ? Number(r[k].toFixed(k === "readyS" ? 2 : 0)) : null;
};
console.log(
  JSON.stringify({
    guestbook_ready_s: fig("guestbook", "readyS"),
    beetravels_ready_s: fig("beetravels", "readyS"),
    guestbook_rss_mb: fig("guestbook", "rssMb"),
    beetravels_rss_mb: fig("beetravels", "rssMb"),
  }),
);
