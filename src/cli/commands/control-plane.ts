// isthmus control-plane — istiod's job, first slice: reads Istio and Kubernetes resources from files, keeps
// the service registry, and serves every connecting proxy its sidecar ProxyConfig over the push stream.
import { readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CertificateAuthority } from "../../control/ca/authority.ts";
import { CacertsError } from "../../control/ca/cacerts.ts";
import { registerCertificateService } from "../../control/ca/certificate-service.ts";
import { WorkloadTokens } from "../../control/ca/tokens.ts";
import { MeshPeering } from "../../control/mesh-peering.ts";
import type { ProxyNode } from "../../control/model.ts";
import { ControlPlaneMetrics } from "../../control/monitoring/control-plane-metrics.ts";
import { MonitoringServer } from "../../control/monitoring/monitoring-server.ts";
import { DiscoveryServer } from "../../control/push/discovery-server.ts";
import { ServiceRegistry } from "../../control/registry/registry.ts";
import { meshInputs } from "../../control/registry/remote-clusters.ts";
import { RegistrationSource } from "../../control/registry/workload-source.ts";
import { ConfigApi, type DebugSource } from "../../control/store/config-api.ts";
import { ConfigStore } from "../../control/store/config-store.ts";
import { FileSource } from "../../control/store/file-source.ts";
import { InvalidStateError, type LoadedState, StateFile } from "../../control/store/state-file.ts";
import { durationMs } from "../../control/translate/duration.ts";
import { SidecarRenderer } from "../../control/translate/sidecar-renderer.ts";
import { tlsCheck } from "../../control/translate/tls-check.ts";
import type { NodeMessage } from "../../proxy/xds/discovery-proto.ts";
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";

const HELP = `Usage: isthmus control-plane --config PATH... [options]

Serves sidecar configs translated from the Istio and Kubernetes resources in PATH (files or directories) to
proxies started with 'isthmus proxy --control-plane ADDR --node-id ID --namespace NS --label app=...'.
Instances come from ServiceEntry endpoints and WorkloadEntries.

PATH is watched: a change is read 200 ms after the last write and pushed. The unit is the file: a file
whose new text has an error (half-written, a resource that fails validation) is not applied at all, its
errors are printed as FILE:LINE:COL, and its last good resources stay served until it is fixed. A removed
file removes its resources; an emptied file counts as an interrupted write and keeps them.
Files take precedence over the config API: 'isthmus apply' and 'delete' of a resource that a file defines
are refused (409), and a file that starts defining a resource applied through the API takes it over.

Options:
  -c, --config PATH    resources to serve, a file or a directory (read recursively, *.yaml, *.yml,
                       *.json); watched; repeatable; optional with --api-listen
      --listen ADDR    address of the push stream (default 127.0.0.1:15010, Istio's plain-text port)
      --api-listen ADDR
                       serve the config API (isthmus apply / get / delete) on ADDR; needs a token of at
                       least 16 characters in the ISTHMUS_TOKEN environment variable, and with it the
                       debug views of isthmus proxy-status and proxy-config, and workload
                       registrations: PUT /apis/registrations/NAMESPACE/NAME with JSON {address, labels,
                       serviceAccount, locality, network, cluster, weight, ports, group, healthy} makes a pod
                       or VM an instance of the Services that select it (DELETE removes it)
      --monitoring-listen ADDR
                       Prometheus metrics with istiod's names (pilot_*) on http://ADDR/metrics
                       (default 127.0.0.1:15014, istiod's monitoring port; "off" to disable)
      --state-dir DIR  keep the resources applied through the config API in DIR/applied.yaml (created
                       0600, DIR 0700 if missing), written durably before each apply or delete answers,
                       and restored at start before any proxy is served, so a restarted control plane
                       pushes the same config. Without it they are kept in memory only and lost on
                       restart (--config files are read again either way). A state file that does not
                       load (corrupt, invalid) stops the start with its FILE:LINE:COL errors
      --discard-invalid-state
                       instead, move such a state file aside (DIR/applied.yaml.invalid-TIME) and start
                       without the applied resources: every proxy is then pushed a config without them
      --trust-domain TD
                       the mesh's SPIFFE trust domain (default cluster.local): workload certificates carry
                       spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT
      --trust-domain-alias TD
                       another trust domain naming the same identities (Istio's trustDomainAliases):
                       servers may present spiffe://TD/..., and AuthorizationPolicy principals in any of
                       the mesh's trust domains match in all of them; repeatable. Their roots must be
                       trusted too: --extra-roots
      --extra-roots FILE
                       PEM roots sent to every workload in its trust bundle besides the CA's own (the old
                       root during a root rotation, the roots of aliased trust domains)
      --ca-dir DIR     sign workload certificates with the plug-in CA in DIR, Istio's cacerts layout
                       (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem; 'isthmus ca intermediate'
                       makes one). Without it a self-signed root is generated (kept in
                       DIR/self-signed-ca of --state-dir when given). Workloads get certificates on the
                       --listen port (CertificateService) with a token from POST /apis/tokens of the config
                       API; see docs/security.md
      --proxy-metrics-port PORT
                       sidecars and gateways that announce their address (isthmus proxy --ip) serve
                       Istio's metrics (istio_requests_total, ... with source and destination workload,
                       principal and connection_security_policy) on http://ADDRESS:PORT/stats/prometheus
                       (Istio's is 15090; default: off)
Multi-cluster (docs/peering.md, docs/multicluster.md):
      --cluster NAME   this control plane's cluster (Istio's clusterID); with it, the control plane peers
                       with the clusters its MeshLink resources (isthmus.io/v1alpha1) name, exchanging
                       Services and endpoints both ways over mutual TLS (a certificate from its own CA)
      --network NET    the cluster's network (default: NAME): endpoints on other networks are reached
                       through their east-west gateways (Services labelled topology.istio.io/network)
      --private        the cluster can only dial out: it serves no peering port, and its east-west gateways
                       dial the public ones and hold reverse tunnels instead of being dialled
      --peer-listen ADDR
                       serve the PeerService on ADDR (Istio's 15012 is the usual port); not with --private
      --peer-grace DURATION
                       keep a gone peer's endpoints this long once its gateways stop answering (default 30s)
  -h, --help           show this help

Signals: SIGHUP re-reads and re-validates every file now (and prints the errors of those still refused)
and pushes what changed; SIGTERM/SIGINT stop.
`;

export async function runControlPlane(args: string[], io: CommandIO): Promise<number> {
  let values: {
    config?: string[] | undefined;
    listen?: string | undefined;
    "api-listen"?: string | undefined;
    "monitoring-listen"?: string | undefined;
    "state-dir"?: string | undefined;
    "discard-invalid-state"?: boolean | undefined;
    "trust-domain"?: string | undefined;
    "ca-dir"?: string | undefined;
    "proxy-metrics-port"?: string | undefined;
    "trust-domain-alias"?: string[] | undefined;
    "extra-roots"?: string | undefined;
    cluster?: string | undefined;
    network?: string | undefined;
    private?: boolean | undefined;
    "peer-listen"?: string | undefined;
    "peer-grace"?: string | undefined;
    help?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c", multiple: true },
        listen: { type: "string" },
        "api-listen": { type: "string" },
        "monitoring-listen": { type: "string" },
        "state-dir": { type: "string" },
        "discard-invalid-state": { type: "boolean" },
        "trust-domain": { type: "string" },
        "ca-dir": { type: "string" },
        "proxy-metrics-port": { type: "string" },
        "trust-domain-alias": { type: "string", multiple: true },
        "extra-roots": { type: "string" },
        cluster: { type: "string" },
        network: { type: "string" },
        private: { type: "boolean" },
        "peer-listen": { type: "string" },
        "peer-grace": { type: "string" },
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
  const paths = values.config ?? [];
  const apiListen = values["api-listen"];
  if (paths.length === 0 && !apiListen)
    throw new UsageError("--config PATH or --api-listen ADDR is required");
  const token = process.env.ISTHMUS_TOKEN ?? "";
  if (apiListen && token.length < 16)
    throw new UsageError("--api-listen needs ISTHMUS_TOKEN (at least 16 characters) in the environment");
  const metricsPortText = values["proxy-metrics-port"];
  const proxyMetricsPort = metricsPortText === undefined ? undefined : Number(metricsPortText);
  if (
    proxyMetricsPort !== undefined &&
    (!/^\d+$/.test(metricsPortText!) || proxyMetricsPort < 1 || proxyMetricsPort > 65535)
  )
    throw new UsageError(`--proxy-metrics-port must be a port number (1-65535), not "${metricsPortText}"`);
  const cluster = values.cluster;
  if (cluster !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cluster))
    throw new UsageError(`--cluster must be a DNS label (lower case letters, digits, '-'), not "${cluster}"`);
  for (const f of ["network", "private", "peer-listen", "peer-grace"] as const)
    if (values[f] !== undefined && cluster === undefined) throw new UsageError(`--${f} needs --cluster`);
  const network = values.network ?? cluster ?? "";
  if (!/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(network) && cluster !== undefined)
    throw new UsageError(`--network must be a name (letters, digits, '-', '_', '.'), not "${network}"`);
  if (values.private && values["peer-listen"] !== undefined)
    throw new UsageError(
      "--private and --peer-listen exclude each other: a private cluster is never dialled",
    );
  const peerGraceMs = values["peer-grace"] === undefined ? undefined : durationMs(values["peer-grace"]);
  if (values["peer-grace"] !== undefined && (peerGraceMs === undefined || peerGraceMs < 1000))
    throw new UsageError(
      `--peer-grace must be a duration of at least 1s (e.g. 30s), not "${values["peer-grace"]}"`,
    );
  const stateDir = values["state-dir"];
  if (stateDir === "") throw new UsageError("--state-dir needs a directory");
  if (values["discard-invalid-state"] && stateDir === undefined)
    throw new UsageError("--discard-invalid-state needs --state-dir");
  const trustDomain = values["trust-domain"] ?? "cluster.local";
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(trustDomain))
    throw new UsageError(`--trust-domain must be a DNS name in lower case, not "${trustDomain}"`);
  if (values["ca-dir"] === "") throw new UsageError("--ca-dir needs a directory");
  const state = stateDir === undefined ? undefined : new StateFile(stateDir);
  const log = (line: string) => io.err(line);
  const store = new ConfigStore(undefined, state ? { persister: state, log } : { log });
  // Restored before the files are read and before the push stream listens: a proxy reconnecting after a
  // restart must get the config it had, not one without the applied resources.
  if (state !== undefined) {
    const loaded = await loadState(state, store.maxResources, values["discard-invalid-state"] ?? false, io);
    if (loaded === undefined) return 1;
    store.restoreApplied(loaded.resources);
  } else if (apiListen)
    io.err(
      "isthmus control-plane: no --state-dir: resources applied through the config API are lost on restart\n",
    );
  // Watched from here on; each file's last good resources are what the store serves of it.
  const files = paths.length > 0 ? new FileSource(store, paths, { log: (line) => io.err(line) }) : undefined;
  await files?.start();
  const registrations = new RegistrationSource();
  // Without --cluster the control plane runs alone; with it, the registry also holds the peers' state.
  let peering: MeshPeering | undefined;
  const buildRegistry = (previous?: ServiceRegistry) => {
    const local = store.all();
    if (cluster === undefined) return new ServiceRegistry(local, [], previous, registrations.workloads());
    const inputs =
      peering?.inputs(local) ?? meshInputs({ cluster, network, private: values.private === true }, local, []);
    return new ServiceRegistry(
      inputs.resources,
      inputs.instances,
      previous,
      registrations.workloads(),
      inputs.topology,
    );
  };
  let registry = buildRegistry();
  const aliases = values["trust-domain-alias"] ?? [];
  for (const a of aliases)
    if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(a) || a === trustDomain)
      throw new UsageError(`--trust-domain-alias must be another DNS name in lower case, not "${a}"`);
  let extraRoots: string | undefined;
  if (values["extra-roots"] !== undefined) {
    try {
      extraRoots = readFileSync(values["extra-roots"], "utf8");
    } catch (e) {
      io.err(`isthmus control-plane: --extra-roots ${values["extra-roots"]}: ${(e as Error).message}\n`);
      return 1;
    }
    if (!extraRoots.includes("-----BEGIN CERTIFICATE-----")) {
      io.err(`isthmus control-plane: --extra-roots ${values["extra-roots"]}: no PEM certificate in it\n`);
      return 1;
    }
  }
  const rendererOptions = {
    trustDomain,
    ...(aliases.length > 0 ? { trustDomainAliases: aliases } : {}),
    ...(proxyMetricsPort !== undefined ? { proxyMetricsPort } : {}),
  };
  let renderer = new SidecarRenderer(registry, rendererOptions);
  const metrics = new ControlPlaneMetrics();
  let ca: CertificateAuthority;
  let tokens: WorkloadTokens;
  try {
    ca =
      values["ca-dir"] !== undefined
        ? await CertificateAuthority.fromDirectory(values["ca-dir"], {
            trustDomain,
            ...(extraRoots !== undefined ? { extraRoots } : {}),
          })
        : await CertificateAuthority.selfSigned({
            trustDomain,
            ...(extraRoots !== undefined ? { extraRoots } : {}),
            ...(stateDir === undefined ? {} : { dir: join(stateDir, "self-signed-ca") }),
          });
    tokens =
      stateDir === undefined ? await WorkloadTokens.generate() : await WorkloadTokens.loadOrCreate(stateDir);
  } catch (e) {
    // Files an operator gave or the state directory: their problem is reported, not a crash (exit 70).
    io.err(`isthmus control-plane: ${e instanceof CacertsError ? "" : "CA: "}${(e as Error).message}\n`);
    await files?.close();
    return 1;
  }
  const proxyNode = (node: NodeMessage): ProxyNode => ({
    id: node.id,
    namespace: node.namespace || "default",
    labels: node.labels,
    ...(node.serviceAccount ? { serviceAccount: node.serviceAccount } : {}),
    ...(node.ip ? { appAddress: node.ip } : {}),
    ...(node.locality ? { locality: node.locality } : {}),
    ...(node.network ? { network: node.network } : {}),
    ...(node.cluster ? { cluster: node.cluster } : {}),
  });
  const server = new DiscoveryServer({
    observer: metrics,
    render: (node) => renderer.render(proxyNode(node)),
  });
  registerCertificateService(server, { ca, tokens, observer: metrics, log });
  io.err(
    `isthmus control-plane: CA for trust domain ${trustDomain}: ${values["ca-dir"] === undefined ? "self-signed root" : `plug-in CA ${values["ca-dir"]}`}\n`,
  );
  const rebuild = (reason: string) => {
    // The previous registry and renderer let unchanged services keep their rendered objects (and the push side
    // its encodings): a change costs what it touches.
    registry = buildRegistry(registry);
    renderer = new SidecarRenderer(registry, rendererOptions, renderer);
    server.push(reason);
    if (reason !== "peer") peering?.changed(store.all());
  };
  store.onChange(() => rebuild("config"));
  registrations.onChange(() => rebuild("endpoint"));
  if (cluster !== undefined) {
    peering = new MeshPeering({
      identity: { cluster, network, private: values.private === true, trustDomain },
      ca,
      ...(values["peer-listen"] !== undefined ? { listen: values["peer-listen"] } : {}),
      ...(peerGraceMs !== undefined ? { graceMs: peerGraceMs } : {}),
      log,
      registry: () => registry,
      onChange: () => rebuild("peer"),
    });
    try {
      await peering.start(store.all());
    } catch (e) {
      io.err(`isthmus control-plane: peering: ${(e as Error).message}\n`);
      await files?.close();
      return 1;
    }
    io.err(
      `isthmus control-plane: cluster ${cluster}, network ${network}${values.private ? " (private: dials out only)" : ""}${peering.address ? `; peering on ${peering.address}` : ""}\n`,
    );
  }
  let api: ConfigApi | undefined;
  if (apiListen) {
    const debug: DebugSource = {
      status: () => server.status(),
      currentConfig: (id) => server.currentConfig(id),
      ...(peering !== undefined ? { remoteClusters: () => peering!.status() } : {}),
      tlsCheck: (id, host) => {
        const node = server.node(id);
        return node === undefined
          ? undefined
          : tlsCheck(registry, proxyNode(node), host === undefined ? {} : { host });
      },
    };
    api = new ConfigApi(store, token, debug, registrations, tokens);
    const m = /^(.*):(\d+)$/.exec(apiListen);
    if (!m) throw new UsageError(`--api-listen must be HOST:PORT, not "${apiListen}"`);
    const apiPort = await api.listen(m[1]!, Number(m[2]));
    io.err(`isthmus control-plane: config API on ${m[1]}:${apiPort}\n`);
  }
  const monitoringListen = values["monitoring-listen"] ?? "127.0.0.1:15014";
  let monitoring: MonitoringServer | undefined;
  if (monitoringListen !== "off") {
    const m = /^(.*):(\d+)$/.exec(monitoringListen);
    if (!m) throw new UsageError(`--monitoring-listen must be HOST:PORT or "off", not "${monitoringListen}"`);
    monitoring = new MonitoringServer(metrics);
    try {
      const p = await monitoring.listen(m[1]!, Number(m[2]));
      io.err(`isthmus control-plane: metrics on http://${m[1]}:${p}/metrics\n`);
    } catch (e) {
      io.err(`isthmus control-plane: cannot listen on ${monitoringListen}: ${(e as Error).message}\n`);
      await api?.close();
      await files?.close();
      return 1;
    }
  }
  const address = values.listen ?? "127.0.0.1:15010";
  let port: number;
  try {
    port = await server.listen(address);
  } catch (e) {
    io.err(`isthmus control-plane: cannot listen on ${address}: ${(e as Error).message}\n`);
    await api?.close();
    await monitoring?.close();
    await files?.close();
    return 1;
  }
  io.err(
    `isthmus control-plane: serving ${registry.services.length} services on ${address.replace(/:\d+$/, "")}:${port}\n`,
  );
  let quit!: () => void;
  const done = new Promise<void>((r) => {
    quit = r;
  });
  const onHup = async () => {
    await files?.reload(true);
    io.err(`isthmus control-plane: reloaded, ${registry.services.length} services\n`);
  };
  process.on("SIGHUP", onHup);
  process.on("SIGTERM", quit);
  process.on("SIGINT", quit);
  await done;
  process.off("SIGHUP", onHup);
  process.off("SIGTERM", quit);
  process.off("SIGINT", quit);
  await peering?.stop();
  await files?.close();
  await api?.close();
  await monitoring?.close();
  await server.stop();
  return 0;
}

/** The state file's resources, or undefined (after printing why) when the control plane must not start. */
async function loadState(
  state: StateFile,
  maxResources: number,
  discardInvalid: boolean,
  io: CommandIO,
): Promise<LoadedState | undefined> {
  try {
    const loaded = await state.load(maxResources);
    if (loaded.found)
      io.err(
        `isthmus control-plane: restored ${loaded.resources.length} applied resources from ${state.file}\n`,
      );
    if (state.looseMode())
      io.err(
        `isthmus control-plane: warning: ${state.file} is readable by others; the next change writes it 0600\n`,
      );
    return loaded;
  } catch (e) {
    if (!(e instanceof InvalidStateError)) {
      io.err(`isthmus control-plane: cannot load the state in ${state.dir}: ${(e as Error).message}\n`);
      return undefined;
    }
    io.err(`isthmus control-plane: ${e.message}`);
    if (!discardInvalid) {
      io.err(
        "isthmus control-plane: not starting: the proxies would be pushed a config without the applied " +
          "resources; fix or remove the file, or pass --discard-invalid-state\n",
      );
      return undefined;
    }
    // Kept, not deleted: it is the only copy of what was applied, and an operator may want it back.
    const aside = `${state.file}.invalid-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      renameSync(state.file, aside);
    } catch (err) {
      io.err(`isthmus control-plane: cannot move ${state.file} aside: ${(err as Error).message}\n`);
      return undefined;
    }
    io.err(
      `isthmus control-plane: warning: --discard-invalid-state: moved it to ${aside}; starting without ` +
        "the resources applied through the config API\n",
    );
    return { resources: [], diagnostics: [], found: false };
  }
}
