// isthmus proxy-config secret — istioctl's `proxy-config secret`: the certificates a proxy holds (its named
// secrets "default" and "ROOTCA"), read from the proxy's own admin endpoint (/certs), not the control plane.
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";
import { outputFormat, table } from "./debug-views.ts";

/** The admin's /certs answer (src/proxy/secrets/certs-report.ts), as the CLI reads it. */
export interface CertsReport {
  readonly certificates?: ReadonlyArray<{ name: string; chain?: readonly CertificateDetails[] }>;
  readonly validations?: ReadonlyArray<{ name: string; ca?: readonly CertificateDetails[] }>;
}

export interface CertificateDetails {
  readonly subject?: string;
  readonly subjectAltNames?: readonly string[];
  readonly serialNumber?: string;
  readonly validFrom?: string;
  readonly expirationTime?: string;
  readonly daysUntilExpiration?: number;
}

/** Envoy's SDS names the proxy uses: its workload certificate and the roots it trusts. */
const CERTIFICATE = "default";
const ROOTS = "ROOTCA";

export const SECRET_HEADER = [
  "RESOURCE NAME",
  "TYPE",
  "STATUS",
  "VALID CERT",
  "SERIAL NUMBER",
  "NOT AFTER",
  "NOT BEFORE",
] as const;

/**
 * The table's rows: each certificate secret (its leaf; the intermediates are in -o json) and every root of each
 * validation secret. "default" and "ROOTCA" always have a row: WARMING while the proxy has not received them.
 */
export function secretRows(report: CertsReport, now = Date.now()): string[][] {
  const rows: string[][] = [];
  const warming = (name: string, type: string) => [name, type, "WARMING", "false", "-", "-", "-"];
  const row = (name: string, type: string, c: CertificateDetails) => {
    const from = Date.parse(c.validFrom ?? "");
    const to = Date.parse(c.expirationTime ?? "");
    const valid = Number.isFinite(from) && Number.isFinite(to) && from <= now && now < to;
    return [
      name,
      type,
      "ACTIVE",
      String(valid),
      c.serialNumber || "-",
      rfc3339(c.expirationTime),
      rfc3339(c.validFrom),
    ];
  };
  const certificates = report.certificates ?? [];
  const validations = report.validations ?? [];
  const certNames = [CERTIFICATE, ...certificates.map((c) => c.name).filter((n) => n !== CERTIFICATE)];
  for (const name of certNames) {
    const leaf = certificates.find((c) => c.name === name)?.chain?.[0];
    rows.push(leaf === undefined ? warming(name, "Cert Chain") : row(name, "Cert Chain", leaf));
  }
  const caNames = [ROOTS, ...validations.map((v) => v.name).filter((n) => n !== ROOTS)];
  for (const name of caNames) {
    const roots = validations.find((v) => v.name === name)?.ca ?? [];
    if (roots.length === 0) rows.push(warming(name, "CA"));
    for (const c of roots) rows.push(row(name, "CA", c));
  }
  return rows;
}

/** 2026-01-02T03:04:05Z, as istioctl prints times (the report has milliseconds). */
function rfc3339(iso: string | undefined): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z") : iso;
}

/** http://HOST:PORT from --admin or ISTHMUS_PROXY_ADMIN; a bare HOST:PORT is taken as http. */
export function adminBase(given: string | undefined): string {
  const raw = given ?? process.env.ISTHMUS_PROXY_ADMIN;
  if (!raw)
    throw new UsageError("--admin URL (or ISTHMUS_PROXY_ADMIN) is required, e.g. http://127.0.0.1:15000");
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  const url = URL.parse(withScheme);
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:") || url.host === "")
    throw new UsageError(`--admin must be an http URL such as http://127.0.0.1:15000, not "${raw}"`);
  return `${url.protocol}//${url.host}`;
}

const ADMIN_TIMEOUT_MS = 5000;

/** GET base+path from the proxy's admin: its text and parsed JSON, or undefined with the reason on stderr. */
async function adminGet(
  io: CommandIO,
  base: string,
  path: string,
): Promise<{ text: string; json: unknown } | undefined> {
  const url = `${base}${path}`;
  let status: number;
  let text: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
    status = res.status;
    text = await res.text();
  } catch (e) {
    io.err(`cannot reach the proxy's admin at ${url}: ${reason(e)}\n`);
    return undefined;
  }
  if (status !== 200) {
    const first = text.split("\n")[0]!.slice(0, 200);
    io.err(`${url} answered ${status}${first ? ` (${first})` : ""}: is ${base} a proxy's admin listener?\n`);
    return undefined;
  }
  try {
    return { text, json: JSON.parse(text) };
  } catch {
    io.err(`${url} did not answer JSON: is ${base} a proxy's admin listener?\n`);
    return undefined;
  }
}

/** fetch's "fetch failed" says nothing: the cause (ECONNREFUSED, ENOTFOUND...) does. */
function reason(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  if (err.name === "TimeoutError") return `no answer within ${ADMIN_TIMEOUT_MS / 1000} s`;
  const cause = err.cause;
  if (cause?.code && cause.message && !cause.message.includes(cause.code))
    return `${cause.code} (${cause.message})`;
  return cause?.message ?? cause?.code ?? err.message;
}

export async function runProxySecret(
  o: { admin: string | undefined; output: string | undefined; proxy: string | undefined },
  io: CommandIO,
): Promise<number> {
  const output = outputFormat(o.output, ["table", "json"]);
  const base = adminBase(o.admin);
  if (o.proxy !== undefined) {
    const dump = await adminGet(io, base, "/config_dump");
    if (dump === undefined) return 1;
    const id = (dump.json as { config?: { node?: { id?: unknown } } | null }).config?.node?.id;
    if (typeof id !== "string") {
      io.err(
        `cannot check that the proxy at ${base} is "${o.proxy}": it reports no node id (no config applied yet?); ` +
          "leave PROXY out to read it anyway\n",
      );
      return 1;
    }
    if (id !== o.proxy) {
      io.err(`the proxy at ${base} is "${id}", not "${o.proxy}"\n`);
      return 1;
    }
  }
  const certs = await adminGet(io, base, "/certs");
  if (certs === undefined) return 1;
  if (output === "json") {
    io.out(certs.text.endsWith("\n") ? certs.text : `${certs.text}\n`);
    return 0;
  }
  io.out(table(SECRET_HEADER, secretRows(certs.json as CertsReport)));
  return 0;
}
