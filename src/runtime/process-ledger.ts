// Every process a runtime started, written down as it starts (pid and kernel start time) in
// DIR/.isthmus/processes: a runtime that was killed leaves its processes running, and some cannot be found by
// their directory or environment (redis-server changes both), so `isthmus down` reads the ledger. The start
// time guards against a pid the kernel has since given to someone else.
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";

export class ProcessLedger {
  readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  /** Starts a fresh ledger (a new run). */
  reset(): void {
    writeFileSync(this.file, "", { mode: 0o600 });
  }

  record(pid: number): void {
    const start = startTime(pid);
    if (start !== undefined) appendFileSync(this.file, `${pid} ${start}\n`, { mode: 0o600 });
  }

  /** The recorded processes still alive as themselves (same pid, same start time). */
  alive(): number[] {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return [];
    }
    const out: number[] = [];
    for (const line of text.split("\n")) {
      const [pid, start] = line.split(" ");
      if (!pid || !start || !/^\d+$/.test(pid)) continue;
      if (startTime(Number(pid)) === start) out.push(Number(pid));
    }
    return out;
  }
}

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}
