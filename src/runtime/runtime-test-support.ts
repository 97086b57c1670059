// Shared by the local runtime's end-to-end tests (src/runtime, and the demos' in examples/): the isthmus CLI
// as a process, a free port, and the processes a mesh runs in its directory.
import { spawn } from "node:child_process";
import { readdirSync, readlinkSync } from "node:fs";
import net from "node:net";

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
