// One supervised process of the local runtime (a control plane, a sidecar, an app container): started with
// its output appended to its own log file, restarted when it exits with a CrashLoopBackOff-like delay (1 s,
// doubling to 30 s; back to 1 s after a minute of running), stopped with SIGTERM, then SIGKILL after a grace
// period. Each runs in its own process group, so what it forks goes with it.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { ProcessLedger } from "./process-ledger.ts";

export interface ProcessSpec {
  readonly name: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly logFile: string;
  /** Restart after an exit (apps, sidecars); false: an exit is final (and reported). */
  readonly restart: boolean;
  /** Where each started process is written down (for `down` after a killed runtime). */
  readonly ledger?: ProcessLedger;
}

export type ProcessState = "starting" | "running" | "backoff" | "exited" | "stopped";

const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const STABLE_AFTER_MS = 60_000;
const STOP_GRACE_MS = 5000;

export class Supervised {
  readonly spec: ProcessSpec;
  state: ProcessState = "starting";
  restarts = 0;
  lastExit: string | undefined;
  private child: ChildProcess | undefined;
  private backoff = FIRST_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private stopping = false;
  private readonly onStart: Array<() => void> = [];
  private readonly onExit: Array<(reason: string) => void> = [];

  constructor(spec: ProcessSpec) {
    this.spec = spec;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Called after each (re)start. */
  started(fn: () => void): void {
    this.onStart.push(fn);
  }

  /** Called after each exit, with how it ended. */
  exited(fn: (reason: string) => void): void {
    this.onExit.push(fn);
  }

  start(): void {
    this.stopping = false;
    mkdirSync(dirname(this.spec.logFile), { recursive: true });
    const fd = openSync(this.spec.logFile, "a", 0o600);
    writeSync(fd, `--- ${new Date().toISOString()} isthmus: starting ${this.spec.argv.join(" ")}\n`);
    let child: ChildProcess;
    try {
      child = spawn(this.spec.argv[0]!, this.spec.argv.slice(1), {
        cwd: this.spec.cwd,
        env: this.spec.env,
        stdio: ["ignore", fd, fd],
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    if (child.pid !== undefined) this.spec.ledger?.record(child.pid);
    this.startedAt = Date.now();
    this.state = "running";
    child.once("error", (e) => this.ended(`cannot start: ${e.message}`));
    child.once("exit", (code, signal) => this.ended(signal ? `killed by ${signal}` : `exit code ${code}`));
    for (const fn of this.onStart) fn();
  }

  private ended(reason: string): void {
    if (this.child === undefined) return;
    this.child = undefined;
    this.lastExit = reason;
    for (const fn of this.onExit) fn(reason);
    if (this.stopping) {
      this.state = "stopped";
      return;
    }
    if (!this.spec.restart) {
      this.state = "exited";
      return;
    }
    if (Date.now() - this.startedAt > STABLE_AFTER_MS) this.backoff = FIRST_BACKOFF_MS;
    this.state = "backoff";
    this.restarts++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopping) this.start();
    }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }

  /** SIGTERM to its process group, SIGKILL after the grace period; resolves once it is gone. */
  /** Stops the process for good: SIGTERM, then SIGKILL after graceMs; graceMs 0 kills it outright (a crash). */
  stop(graceMs = STOP_GRACE_MS): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (child === undefined || child.pid === undefined) {
      this.state = "stopped";
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const kill = setTimeout(() => signalGroup(child.pid!, "SIGKILL"), graceMs);
      child.once("exit", () => {
        clearTimeout(kill);
        // Whatever it forked and left behind goes too.
        signalGroup(child.pid!, "SIGKILL");
        resolve();
      });
      signalGroup(child.pid!, graceMs === 0 ? "SIGKILL" : "SIGTERM");
    });
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Gone already.
  }
}
