// isthmus proxy --config FILE — run the data-plane proxy from a static ProxyConfig, like `envoy -c`.
import net from "node:net";
import { parseArgs } from "node:util";
import { AdminServer } from "../../proxy/admin/admin-server.ts";
import { type LoadedConfig, loadProxyConfigFile } from "../../proxy/config/load.ts";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { HeapGovernor } from "../../proxy/memory/heap-governor.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";

const HELP = `Usage: isthmus proxy --config FILE [options]
       isthmus proxy --control-plane HOST:PORT --node-id ID [--namespace NS] [options]

Runs the isthmus proxy from a ProxyConfig file (YAML or JSON; schema in docs/proxy-config.schema.json,
reference in docs/proxy.md). Like 'envoy -c', but the format is isthmus' own.

Options:
  -c, --config FILE        the bootstrap ProxyConfig (required without --control-plane)
      --control-plane ADDR take configs from a control plane's push stream (isthmus control-plane); the
                           bootstrap, if given, serves until the first config arrives
      --node-id ID         this proxy's identity on the push stream (with --control-plane)
      --namespace NS       its namespace (default "default")
      --label K=V          a label of the workload behind it (repeatable)
      --ip ADDR            the workload's address; the sidecar's listeners bind to it (default 127.0.0.1)
      --locality R/Z[/S]   where the workload runs (region/zone[/subzone]), for locality load balancing
      --service-account SA the workload's service account (default "default")
      --identity-token FILE
                           obtain the workload certificate: a key made here, a CSR for
                           spiffe://TRUST_DOMAIN/ns/NS/sa/SA sent to the control plane's CA with the token in
                           FILE (re-read on each request; isthmus control-plane issues them), rotated at half
                           its lifetime; held as the secrets "default" (certificate) and "ROOTCA" (trust
                           bundle) that listeners and clusters name. The proxy is not ready until it has one.
      --trust-domain TD    the mesh's trust domain (default cluster.local)
      --ca ADDR            the CA's address (default: --control-plane's)
      --admin-port N       override admin.port (default from the config, else 15000; 0 picks a free port)
      --admin-address ADDR override admin.address (default from the config, else 127.0.0.1)
      --drain-timeout MS   on SIGTERM, how long in-flight requests may take before exit (default 15000)
      --heap-headroom-mb N force a full garbage collection when the JS heap grows N MB past its live size
                           (checked every second; default 4; 0 leaves it to V8). Keeps the sidecar's memory
                           near its working set: V8 alone lets garbage grow to several times the live size.
  -h, --help               show this help

Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight requests, exit); SIGHUP re-reads FILE and
applies it if valid (an invalid file is reported and the running config stays).
Admin endpoints: /ready /config_dump /clusters /stats /memory /certs /drain_listeners (POST) /quitquitquit (POST).
`;

export async function runProxy(args: string[], io: CommandIO): Promise<number> {
  let values: {
    config?: string | undefined;
    "admin-port"?: string | undefined;
    "admin-address"?: string | undefined;
    "drain-timeout"?: string | undefined;
    "heap-headroom-mb"?: string | undefined;
    "control-plane"?: string | undefined;
    "node-id"?: string | undefined;
    namespace?: string | undefined;
    label?: string[] | undefined;
    ip?: string | undefined;
    "service-account"?: string | undefined;
    "identity-token"?: string | undefined;
    "trust-domain"?: string | undefined;
    locality?: string | undefined;
    ca?: string | undefined;
    help?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        "admin-port": { type: "string" },
        "admin-address": { type: "string" },
        "drain-timeout": { type: "string" },
        "heap-headroom-mb": { type: "string" },
        "control-plane": { type: "string" },
        "node-id": { type: "string" },
        namespace: { type: "string" },
        label: { type: "string", multiple: true },
        ip: { type: "string" },
        locality: { type: "string" },
        "service-account": { type: "string" },
        "identity-token": { type: "string" },
        "trust-domain": { type: "string" },
        ca: { type: "string" },
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
  const file = values.config;
  const controlPlane = values["control-plane"];
  if (!file && !controlPlane) throw new UsageError("--config FILE or --control-plane ADDR is required");
  if (controlPlane && !values["node-id"])
    throw new UsageError("--node-id ID is required with --control-plane");
  if (values.locality !== undefined && !/^[^/\s]+(\/[^/\s]+){0,2}$/.test(values.locality))
    throw new UsageError(
      `--locality must be region, region/zone or region/zone/subzone, not "${values.locality}"`,
    );
  const tokenFile = values["identity-token"];
  const caAddress = values.ca ?? controlPlane;
  if (tokenFile !== undefined && caAddress === undefined)
    throw new UsageError("--identity-token needs --ca ADDR or --control-plane ADDR");
  const namespace = values.namespace ?? "default";
  const serviceAccount = values["service-account"] ?? "default";
  const trustDomain = values["trust-domain"] ?? "cluster.local";
  for (const [flag, v] of [
    ["--namespace", namespace],
    ["--service-account", serviceAccount],
  ] as const)
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(v) || v.length > 63)
      throw new UsageError(`${flag} must be a DNS label, not "${v}"`);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(trustDomain))
    throw new UsageError(`--trust-domain must be a DNS name, not "${trustDomain}"`);
  const drainTimeout = intOption(values["drain-timeout"], "--drain-timeout", 15_000);
  const headroomMb = intOption(values["heap-headroom-mb"], "--heap-headroom-mb", 4);
  const empty: ProxyConfig = { listeners: [] };
  const loaded: LoadedConfig = file
    ? await loadProxyConfigFile(file)
    : { ok: true, config: empty, warnings: [] };
  for (const w of loaded.warnings) io.err(`warning: ${w}\n`);
  if (!loaded.ok) {
    for (const e of loaded.errors) io.err(`${e}\n`);
    return 1;
  }
  const proxy = new ProxyServer();
  // Without a bootstrap the proxy stays PRE_INITIALIZING (/ready 503) until the control plane's first config.
  const applied = file ? await proxy.apply(loaded.config) : { ok: true, errors: [] };
  if (!applied.ok) {
    for (const e of applied.errors) io.err(`${file}: ${e}\n`);
    return 1;
  }
  const adminPort = intOption(values["admin-port"], "--admin-port", loaded.config.admin?.port ?? 15000);
  let admin: AdminServer | undefined;
  let quit!: () => void;
  const done = new Promise<void>((resolve) => {
    quit = resolve;
  });
  const adminAddress = values["admin-address"] ?? loaded.config.admin?.address ?? "127.0.0.1";
  if (net.isIP(adminAddress) === 0)
    throw new UsageError(`--admin-address must be an IP address, not "${adminAddress}"`);
  if (adminPort !== 0 || values["admin-port"] !== undefined) {
    admin = new AdminServer(proxy, {
      address: adminAddress,
      port: adminPort,
      onQuit: () => quit(),
    });
    try {
      const port = await admin.listen();
      io.err(`isthmus proxy: admin on ${adminAddress}:${port}\n`);
    } catch (e) {
      io.err(`${(e as Error).message}\n`);
      await proxy.shutdown(0);
      return 1;
    }
  }
  for (const l of loaded.config.listeners) {
    io.err(
      `isthmus proxy: listener ${l.name} on ${l.address ?? "0.0.0.0"}:${proxy.listener(l.name)?.boundPort ?? l.port}\n`,
    );
  }
  const governor =
    headroomMb > 0
      ? new HeapGovernor({ headroomBytes: headroomMb * 1024 * 1024, stats: proxy.stats })
      : undefined;
  let identity: { close(): void } | undefined;
  if (tokenFile !== undefined) {
    // Loaded only by proxies that have a mesh identity (gRPC and X.509 stay out of a static proxy).
    const { WorkloadIdentity } = await import("../../proxy/identity/workload-identity.ts");
    const id = new WorkloadIdentity({
      spiffeId: `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`,
      caAddress: caAddress!,
      tokenFile,
      log: (line) => io.err(`isthmus proxy: identity: ${line}\n`),
    });
    proxy.awaiting.add("identity");
    id.onRotate((m) => {
      proxy.awaiting.delete("identity");
      proxy.secrets.setCertificate("default", {
        certificateChain: m.certificateChain,
        privateKey: m.privateKey,
      });
      proxy.secrets.setValidation("ROOTCA", { trustedCa: m.trustBundle });
      io.err(`isthmus proxy: identity ${m.spiffeId} until ${m.notAfter.toISOString()}\n`);
    });
    // Not awaited: the proxy serves its bootstrap meanwhile; listeners that need the secret wait for it.
    id.start().catch((e: unknown) => io.err(`isthmus proxy: identity: ${(e as Error).message}\n`));
    identity = id;
  }
  let discovery: { stop(): void } | undefined;
  if (controlPlane) {
    const labels: Record<string, string> = {};
    for (const l of values.label ?? []) {
      const eq = l.indexOf("=");
      if (eq <= 0) throw new UsageError(`--label must be KEY=VALUE, not "${l}"`);
      labels[l.slice(0, eq)] = l.slice(eq + 1);
    }
    // gRPC is loaded only by proxies that use the push stream.
    const { DiscoveryClient } = await import("../../proxy/xds/discovery-client.ts");
    const client = new DiscoveryClient(proxy, {
      address: controlPlane,
      node: {
        id: values["node-id"]!,
        namespace,
        cluster: "",
        network: "",
        serviceAccount,
        labels,
        ip: values.ip ?? "",
        locality: values.locality ?? "",
      },
      onEvent: (e) => io.err(`isthmus proxy: control plane ${e.kind}${e.detail ? `: ${e.detail}` : ""}\n`),
    });
    client.start();
    discovery = client;
  }
  const onTerm = () => quit();
  const onHup = async () => {
    if (!file) return;
    const next = await loadProxyConfigFile(file);
    for (const w of next.warnings) io.err(`warning: ${w}\n`);
    if (!next.ok) {
      io.err(
        `isthmus proxy: reload refused, running config kept:\n${next.errors.map((e) => `  ${e}\n`).join("")}`,
      );
      return;
    }
    const r = await proxy.apply(next.config);
    io.err(
      r.ok ? "isthmus proxy: config reloaded\n" : `isthmus proxy: reload refused: ${r.errors.join("; ")}\n`,
    );
  };
  process.on("SIGTERM", onTerm);
  process.on("SIGINT", onTerm);
  process.on("SIGHUP", onHup);
  await done;
  io.err("isthmus proxy: draining\n");
  discovery?.stop();
  identity?.close();
  await proxy.shutdown(drainTimeout);
  governor?.stop();
  admin?.close();
  process.off("SIGTERM", onTerm);
  process.off("SIGINT", onTerm);
  process.off("SIGHUP", onHup);
  return 0;
}

function intOption(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} must be a whole number, not "${v}"`);
  return Number(v);
}
