// Which loopback addresses a running mesh owns. Each mesh takes a block of 16 second octets (127.B.0.0 to
// 127.(B+15).255.255: one /16 per cluster), claimed with a lock file that names the runtime's pid, so that two
// meshes on one machine (two demos, tests running side by side) never share an address. A lock whose pid is
// gone is stale and taken over.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const FIRST = 20;
const SIZE = 16;
const LAST = 255 - SIZE + 1;
const DIR = join(tmpdir(), "isthmus-address-blocks");

export interface AddressBlock {
  readonly base: number;
  release(): void;
}

/** Claims the first free block for `clusters` clusters; undefined when every block is taken. */
export function claimAddressBlock(clusters: number, pid = process.pid): AddressBlock | undefined {
  if (clusters > SIZE) return undefined;
  mkdirSync(DIR, { recursive: true, mode: 0o700 });
  for (let base = FIRST; base <= LAST; base += SIZE) {
    const file = join(DIR, `${base}.lock`);
    if (take(file, pid)) return { base, release: () => rmSync(file, { force: true }) };
  }
  return undefined;
}

function take(file: string, pid: number): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, String(pid));
      closeSync(fd);
      return true;
    } catch {
      // Held: by a live runtime, or stale.
      let owner = 0;
      try {
        owner = Number(readFileSync(file, "utf8"));
      } catch {
        continue;
      }
      if (owner > 0 && alive(owner)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
