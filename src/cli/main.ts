// `isthmus` — one binary, subcommands after istioctl's verbs.

import { VERSION } from "../version.ts";
import { UsageError } from "./usage-error.ts";

interface Command {
  readonly summary: string;
  /** Loaded on use: `isthmus proxy` must not pay for the config API's schemas, nor the other way round. */
  readonly load: () => Promise<(args: string[], io: CommandIO) => Promise<number>>;
}

export interface CommandIO {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const COMMANDS: Record<string, Command> = {
  validate: {
    summary: "check Istio and Kubernetes resources against their schemas and Istio's rules",
    load: async () => (await import("./commands/validate.ts")).runValidate,
  },
  analyze: {
    summary: "find problems across resources (Istio's IST codes)",
    load: async () => (await import("./commands/analyze.ts")).runAnalyze,
  },
  proxy: {
    summary: "run the data-plane proxy from a ProxyConfig file (like envoy -c) or a control plane",
    load: async () => (await import("./commands/proxy.ts")).runProxy,
  },
  apply: {
    summary: "apply resources to a control plane (all or none per file)",
    load: async () => (await import("./commands/config-client.ts")).runApply,
  },
  get: {
    summary: "list a control plane's resources of a kind",
    load: async () => (await import("./commands/config-client.ts")).runGet,
  },
  delete: {
    summary: "delete a resource from a control plane",
    load: async () => (await import("./commands/config-client.ts")).runDelete,
  },
  "proxy-status": {
    summary: "the sync state of every proxy connected to the control plane",
    load: async () => (await import("./commands/debug-views.ts")).runProxyStatus,
  },
  "proxy-config": {
    summary: "a proxy's listeners, routes, clusters, endpoints (the control plane's view), certificates",
    load: async () => (await import("./commands/debug-views.ts")).runProxyConfig,
  },
  up: {
    summary: "run a mesh of one or more clusters as local processes from DIR/mesh.yaml",
    load: async () => (await import("./commands/up.ts")).runUp,
  },
  down: {
    summary: "stop the mesh 'isthmus up DIR --detach' started",
    load: async () => (await import("./commands/up.ts")).runDown,
  },
  status: {
    summary: "the clusters and pods of a running local mesh",
    load: async () => (await import("./commands/up.ts")).runStatus,
  },
  logs: {
    summary: "a pod's app and sidecar logs in a local mesh",
    load: async () => (await import("./commands/up.ts")).runLogs,
  },
  "remote-clusters": {
    summary: "the clusters a control plane peers with: link direction, state, last syncs, refusals",
    load: async () => (await import("./commands/remote-clusters.ts")).runRemoteClusters,
  },
  "tls-check": {
    summary: "client and server mTLS modes of the services a proxy calls, and their conflicts",
    load: async () => (await import("./commands/tls-check.ts")).runTlsCheck,
  },
  ca: {
    summary: "create a mesh root CA and per-cluster intermediates (Istio's cacerts layout)",
    load: async () => (await import("./commands/ca.ts")).runCa,
  },
  "control-plane": {
    summary: "serve sidecar configs translated from Istio resources over the push stream",
    load: async () => (await import("./commands/control-plane.ts")).runControlPlane,
  },
  x: {
    summary: "experimental: 'x authz check', the authorization policies in a proxy's config",
    load: async () => (await import("./commands/experimental.ts")).runExperimental,
  },
};

const HELP = `isthmus ${VERSION} — a service mesh for multi-cluster and hybrid cloud that speaks Istio's API

Usage: isthmus <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(14)} ${c.summary}`)
  .join("\n")}
  version        print the version

Run 'isthmus <command> --help' for a command's options.
`;

export async function main(argv: string[], io: CommandIO = defaultIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "version" || name === "--version") {
    io.out(`${VERSION}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.err(`isthmus: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  try {
    const run = await command.load();
    return await run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`isthmus ${name}: ${e.message}\nRun 'isthmus ${name} --help' for usage.\n`);
      return 2;
    }
    io.err(`isthmus ${name}: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 70;
  }
}

const defaultIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};
