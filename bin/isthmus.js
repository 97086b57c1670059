#!/usr/bin/env node
// The isthmus command. Runs the compiled JavaScript in dist/ when it is at least as new as every source file
// (npm install builds it), and otherwise the TypeScript sources through Node's type stripping (Node >= 22.18).
// On an older Node, re-runs itself with the Node 24 that the project installs (devDependency node@24).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** Newest modification time of any file under dir, in ms. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function builtIsFresh() {
  const stamp = join(root, "dist", ".build-stamp");
  if (process.env.ISTHMUS_FROM_SOURCE === "1" || !existsSync(stamp)) return false;
  return statSync(stamp).mtimeMs >= newest(join(root, "src"));
}

const compiled = builtIsFresh();
const [major, minor] = process.versions.node.split(".").map(Number);
// Also with dist/: the native addons (re2) are built for the project's Node.
if (major < 22 || (major === 22 && minor < 18)) {
  const bundled = join(root, "node_modules", "node", "bin", "node");
  if (existsSync(bundled) && process.env.ISTHMUS_REEXEC !== "1") {
    const r = spawnSync(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: "inherit",
      env: { ...process.env, ISTHMUS_REEXEC: "1" },
    });
    process.exit(r.status ?? 1);
  }
  console.error(
    `isthmus needs Node.js >= 22.18 (this is ${process.version}); run 'npm install' to install Node 24 locally`,
  );
  process.exit(1);
}

// The proxy runs in every pod, so its memory is multiplied by the mesh: V8 flags that keep a sidecar's peak
// memory down at no measured cost in throughput (npm run bench:proxy): a 2 MB young generation (its garbage
// is short-lived per-request objects), and no V8 background threads (their malloc arenas and compilation
// zones cost about 6 MB; a sidecar is pinned to one core anyway). Flags must be given at start-up, so the
// process replaces itself (same PID, no parent left behind) where Node can.
const PROXY_FLAGS = ["--max-semi-space-size=2", "--single-threaded"];
if (
  process.argv[2] === "proxy" &&
  !PROXY_FLAGS.every((f) => process.execArgv.includes(f)) &&
  typeof process.execve === "function"
) {
  const flags = PROXY_FLAGS.filter((f) => !process.execArgv.includes(f));
  // glibc: one malloc arena and freed memory returned to the system early (the proxy's allocations outside
  // the V8 heap are small and short-lived; extra arenas and a high trim threshold only hold pages).
  const env = { MALLOC_ARENA_MAX: "1", MALLOC_TRIM_THRESHOLD_: "131072", ...process.env };
  process.execve(
    process.execPath,
    [
      process.execPath,
      ...flags,
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    env,
  );
}

const { main } = await import(compiled ? "../dist/cli/main.js" : "../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
