// npm start: the Guestbook demo (examples/guestbook) on the local runtime, `isthmus up` in the foreground
// (Ctrl-C stops it). What the demo needs besides Node is Debian's redis-server: installed here with apt-get
// when this runs as root on Debian, else named with the exact command to install it.
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");

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

const child = spawn(
  process.execPath,
  [join(root, "bin", "isthmus.js"), "up", join(root, "examples", "guestbook")],
  {
    stdio: "inherit",
  },
);
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
