// isthmus ca — the certificates of a multi-cluster mesh, as Istio's tools/certs makes them: one root,
// created once and kept offline, and per cluster an intermediate CA in Istio's cacerts layout, given to that
// cluster's control plane with --ca-dir. Workloads of every cluster then chain up to the shared root and trust
// each other.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  CACERTS_FILES,
  CacertsError,
  createIntermediate,
  createRoot,
  writeFiles,
} from "../../control/ca/cacerts.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";

export const ROOT_FILES = { cert: "root-cert.pem", key: "root-key.pem" } as const;

const HELP = `Usage: isthmus ca root --out DIR [--trust-domain TD] [--days N]
       isthmus ca intermediate --root DIR --cluster NAME --out DIR [--days N]

Creates a mesh's certificate authorities as Istio's tools/certs does (EC P-256 keys).

  root           a self-signed root CA: DIR/root-cert.pem and DIR/root-key.pem (0600). Keep the key
                 offline; it is only needed to make intermediates.
    --out DIR        where to write (created 0700; existing files are not overwritten)
    --trust-domain TD  the root's organization (default cluster.local)
    --days N         validity (default 3650)

  intermediate   a cluster's CA signed by the root, in Istio's cacerts layout: DIR/ca-cert.pem,
                 DIR/ca-key.pem (0600), DIR/root-cert.pem, DIR/cert-chain.pem (ca-cert then root).
                 Start that cluster's control plane with --ca-dir DIR.
    --root DIR       the directory 'isthmus ca root' wrote
    --cluster NAME   the cluster (in the certificate's subject, L=NAME)
    --out DIR        where to write (created 0700; existing files are not overwritten)
    --days N         validity (default 730), never past the root's

  -h, --help     show this help
`;

export async function runCa(args: string[], io: CommandIO): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === undefined || verb === "-h" || verb === "--help" || verb === "help") {
    io.out(HELP);
    return verb === undefined ? 2 : 0;
  }
  let values: {
    out?: string | undefined;
    root?: string | undefined;
    cluster?: string | undefined;
    "trust-domain"?: string | undefined;
    days?: string | undefined;
    help?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        out: { type: "string" },
        root: { type: "string" },
        cluster: { type: "string" },
        "trust-domain": { type: "string" },
        days: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) {
    io.out(HELP);
    return 0;
  }
  if (verb !== "root" && verb !== "intermediate")
    throw new UsageError(`unknown subcommand "${verb}" (root or intermediate)`);
  const out = values.out;
  if (!out) throw new UsageError("--out DIR is required");
  const days = parseDays(values.days, verb === "root" ? 3650 : 730);
  try {
    if (verb === "root") {
      if (values.root !== undefined || values.cluster !== undefined)
        throw new UsageError("--root and --cluster are options of 'isthmus ca intermediate'");
      const trustDomain = values["trust-domain"] ?? "cluster.local";
      if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(trustDomain))
        throw new UsageError(`--trust-domain must be a DNS name in lower case, not "${trustDomain}"`);
      const root = await createRoot({ trustDomain, days });
      writeFiles(out, { [ROOT_FILES.cert]: root.cert, [ROOT_FILES.key]: root.key });
      io.err(`isthmus ca: wrote ${join(out, ROOT_FILES.cert)} and ${join(out, ROOT_FILES.key)}\n`);
      return 0;
    }
    if (values["trust-domain"] !== undefined)
      throw new UsageError("--trust-domain is an option of 'isthmus ca root' (and of isthmus control-plane)");
    const rootDir = values.root;
    const cluster = values.cluster;
    if (!rootDir) throw new UsageError("--root DIR is required");
    if (!cluster) throw new UsageError("--cluster NAME is required");
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(cluster))
      throw new UsageError(`--cluster must be a name of letters, digits, '.', '_' and '-', not "${cluster}"`);
    const read = (name: string) => {
      try {
        return readFileSync(join(rootDir, name), "utf8");
      } catch (e) {
        throw new CacertsError(`cannot read ${join(rootDir, name)}: ${(e as Error).message}`);
      }
    };
    const files = await createIntermediate({
      rootCert: read(ROOT_FILES.cert),
      rootKey: read(ROOT_FILES.key),
      cluster,
      days,
    });
    writeFiles(out, {
      [CACERTS_FILES.caCert]: files.caCert,
      [CACERTS_FILES.caKey]: files.caKey,
      [CACERTS_FILES.rootCert]: files.rootCert,
      [CACERTS_FILES.certChain]: files.certChain,
    });
    io.err(`isthmus ca: wrote the cacerts of cluster ${cluster} to ${out}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof CacertsError)) throw e;
    io.err(`isthmus ca ${verb}: ${e.message}\n`);
    return 1;
  }
}

function parseDays(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 36_500)
    throw new UsageError(`--days must be from 1 to 36500, not "${text}"`);
  return n;
}
