// What the proxy benchmarks share: free ports, waiting for a port, nginx started from a snippet (one worker,
// pinned to a core), and wrk pinned to core 1 returning requests/s (refusing runs with error responses).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";

export const children: ChildProcess[] = [];

/** Installs wrk, nginx and taskset with apt-get when missing (as root), or explains how. */
export function ensureTools(bench: string): void {
  const missing = ["wrk", "nginx", "taskset"].filter((t) => {
    try {
      execFileSync("sh", ["-c", `command -v ${t} || test -x /usr/sbin/${t}`], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    console.error(`${bench} needs ${missing.join(", ")}: apt-get install wrk nginx-light util-linux`);
    process.exit(1);
  }
  console.error(`installing ${missing.join(", ")} with apt-get ...`);
  execFileSync(
    "sh",
    [
      "-c",
      "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light util-linux",
    ],
    { stdio: "inherit" },
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

function nginxBin(): string {
  return existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
}

/** nginx with one worker pinned to `core`, serving the `http {}` snippet `conf`, its files under `work/name`. */
export function startNginx(work: string, name: string, core: number, conf: string): ChildProcess {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "nginx.conf");
  writeFileSync(
    file,
    `worker_processes 1;\ndaemon off;\nerror_log ${dir}/error.log;\npid ${dir}/nginx.pid;\nevents { worker_connections 4096; }\n` +
      `http {\n  access_log off;\n  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};\n${conf}\n}\n`,
  );
  // Its own process group: the worker is killed with its master (a SIGKILLed master leaves it running).
  const p = spawn("taskset", ["-c", String(core), nginxBin(), "-c", file, "-p", dir], {
    stdio: "ignore",
    detached: true,
  });
  groups.add(p);
  children.push(p);
  return p;
}

/** wrk on core 1 against 127.0.0.1:port for `seconds`: requests/s. */
export function wrk(
  port: number,
  opts: { host: string; seconds: number; connections: number; path: string; headers?: string[] },
): number {
  const out = execFileSync(
    "taskset",
    [
      "-c",
      "1",
      "wrk",
      "-t1",
      `-c${opts.connections}`,
      `-d${opts.seconds}s`,
      "-H",
      `Host: ${opts.host}`,
      ...(opts.headers ?? []).flatMap((h) => ["-H", h]),
      `http://127.0.0.1:${port}${opts.path}`,
    ],
    { encoding: "utf8" },
  );
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk output not understood:\n${out}`);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (errors) throw new Error(`wrk saw ${errors[1]} error responses on port ${port}`);
  return Number(m[1]);
}

const groups = new Set<ChildProcess>();

export function killChildren(): void {
  for (const c of children) {
    if (groups.has(c) && c.pid !== undefined) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    } else if (c.exitCode === null) c.kill("SIGKILL");
  }
}
