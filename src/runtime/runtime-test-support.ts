// Shared by the local runtime's end-to-end tests (src/runtime, and the demos' in examples/): the isthmus CLI
// as a process, a free port, and the processes a mesh runs in its directory.
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;

export { eventually } from "../control/e2e-support.ts";

/** `isthmus ARGS` until it exits, with its exit code and output. */
export function isthmus(
  args: readonly string[],
  cwd = process.cwd(),
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ISTHMUS_FROM_SOURCE: "1" },
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

/** A port free on 127.0.0.1 now (a mesh's ingress). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Processes whose working directory is `dir`: every app the runtime started for the mesh of `dir`. */
export function processesIn(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readlinkSync(`/proc/${p}/cwd`) === dir) out.push(Number(p));
    } catch {
      // Gone, or not ours to look at.
    }
  }
  return out;
}

const MESH_LOCK = join(tmpdir(), "isthmus-e2e-mesh.lock");

/**
 * Whole meshes under test one at a time, whatever the test runner's concurrency: two of them at once on a
 * 2-core machine starve each other's processes into timeouts, which would test the machine, not the mesh.
 * Resolves once this test file holds the lock (a lock whose owner died is taken over); call the returned
 * function to release it.
 */
export async function exclusiveMesh(): Promise<() => void> {
  for (;;) {
    try {
      const fd = openSync(MESH_LOCK, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      const release = () => {
        try {
          if (readFileSync(MESH_LOCK, "utf8") === String(process.pid)) rmSync(MESH_LOCK, { force: true });
        } catch {
          // already gone
        }
      };
      process.once("exit", release);
      return release;
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(MESH_LOCK, "utf8"));
      } catch {
        continue;
      }
      let alive = owner > 0;
      try {
        if (alive) process.kill(owner, 0);
      } catch {
        alive = false;
      }
      if (!alive) rmSync(MESH_LOCK, { force: true });
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
}
