// isthmus apply / get / delete — the control plane's config API from the command line, like kubectl against
// an API server. The server is --server URL or ISTHMUS_SERVER; the token ISTHMUS_TOKEN.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";

const COMMON = `  --server URL   the control plane's config API (default: $ISTHMUS_SERVER); the token is $ISTHMUS_TOKEN`;

export function connection(server: string | undefined): { base: string; headers: Record<string, string> } {
  const base = server ?? process.env.ISTHMUS_SERVER;
  if (!base) throw new UsageError("--server URL (or ISTHMUS_SERVER) is required");
  const token = process.env.ISTHMUS_TOKEN;
  if (!token) throw new UsageError("ISTHMUS_TOKEN is required");
  return { base: base.replace(/\/$/, ""), headers: { authorization: `Bearer ${token}` } };
}

export interface Answer {
  ok?: boolean;
  error?: string;
  changed?: string[];
  items?: unknown[];
  diagnostics?: Array<{ severity: string; file: string; line?: number; col?: number; message: string }>;
}

export async function call(
  io: CommandIO,
  url: string,
  init: RequestInit,
): Promise<{ status: number; body: Answer } | undefined> {
  try {
    const res = await fetch(url, init);
    return { status: res.status, body: (await res.json()) as Answer };
  } catch (e) {
    io.err(`cannot reach ${url}: ${(e as Error).message}\n`);
    return undefined;
  }
}

export function report(io: CommandIO, a: Answer): void {
  for (const d of a.diagnostics ?? [])
    io.err(`${d.file}${d.line ? `:${d.line}:${d.col ?? 1}` : ""} ${d.severity}: ${d.message}\n`);
  if (a.error) io.err(`${a.error}\n`);
}

export async function runApply(args: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      file: { type: "string", short: "f", multiple: true },
      server: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.out(
      `Usage: isthmus apply -f FILE... [--server URL]\n\nApplies each file's resources all or none.\n${COMMON}\n`,
    );
    return 0;
  }
  if (!values.file?.length) throw new UsageError("-f FILE is required");
  const { base, headers } = connection(values.server);
  let failed = false;
  for (const f of values.file) {
    const text = await readFile(f, "utf8");
    const r = await call(io, `${base}/apis/resources`, {
      method: "POST",
      headers: { ...headers, "x-source": f },
      body: text,
    });
    if (!r) return 1;
    report(io, r.body);
    if (r.status !== 200) failed = true;
    else for (const c of r.body.changed ?? []) io.out(`${c} applied\n`);
  }
  return failed ? 1 : 0;
}

export async function runGet(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { namespace: { type: "string", short: "n" }, server: { type: "string" } },
  });
  const [kind, name] = positionals;
  if (!kind) throw new UsageError("usage: isthmus get KIND [NAME] [-n NAMESPACE]");
  const { base, headers } = connection(values.server);
  const path = [kind, values.namespace ?? (name ? "default" : undefined), name]
    .filter((x) => x !== undefined)
    .map((x) => encodeURIComponent(x!));
  const r = await call(io, `${base}/apis/resources/${path.join("/")}`, { headers });
  if (!r) return 1;
  if (r.status !== 200) {
    report(io, r.body);
    return 1;
  }
  io.out(`${JSON.stringify(r.body.items ?? [], null, 2)}\n`);
  return 0;
}

export async function runDelete(args: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { namespace: { type: "string", short: "n" }, server: { type: "string" } },
  });
  const [kind, name] = positionals;
  if (!kind || !name) throw new UsageError("usage: isthmus delete KIND NAME [-n NAMESPACE]");
  const { base, headers } = connection(values.server);
  const r = await call(
    io,
    `${base}/apis/resources/${[kind, values.namespace ?? "default", name].map(encodeURIComponent).join("/")}`,
    { method: "DELETE", headers },
  );
  if (!r) return 1;
  report(io, r.body);
  if (r.status === 200) for (const c of r.body.changed ?? []) io.out(`${c} deleted\n`);
  return r.status === 200 ? 0 : 1;
}
