// The local runtime: a planned mesh (plan.ts) brought up as processes. Per cluster: an intermediate CA under one
// shared root, `isthmus control-plane` on the cluster's own loopback address; per pod: its registration (with
// Istio's sidecar label, so callers use mutual TLS), a workload token, `isthmus proxy` as its sidecar on the
// pod's address, and its containers. Everything is supervised (supervisor.ts); a sidecar that dies takes its
// pod out of the registry until it is ready again. Progress goes to `log`; status() is what `isthmus status`
// and the ready table print.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { arr, obj } from "../api/validate/checker.ts";
import { CACERTS_FILES, createIntermediate, createRoot, writeFiles } from "../control/ca/cacerts.ts";
import { closeTogether, forwardThroughProxy } from "./connect-forwarder.ts";
import type { Isolation } from "./isolation.ts";
import {
  EAST_WEST_LABELS,
  EAST_WEST_NAMESPACE,
  EAST_WEST_SERVICE_ACCOUNT,
  isMultiCluster,
  linkBetween,
  multiClusterManifests,
  peerListen,
} from "./multicluster.ts";
import { type ClusterPlan, type MeshPlan, type PodPlan, SIDECAR_OUTBOUND_PORT } from "./plan.ts";
import { ProcessLedger } from "./process-ledger.ts";
import { type ProcessSpec, type ProcessState, Supervised } from "./supervisor.ts";

const BIN = new URL("../../bin/isthmus.js", import.meta.url).pathname;
export const PUSH_PORT = 15010;
export const API_PORT = 15011;
const METRICS_PORT = 15090;
const READY_TIMEOUT_MS = 120_000;

export interface PodStatus {
  readonly cluster: string;
  readonly namespace: string;
  readonly name: string;
  readonly address: string;
  readonly identity: string;
  readonly ready: boolean;
  readonly restarts: number;
  readonly containers: ReadonlyArray<{
    name: string;
    state: ProcessState;
    restarts: number;
    lastExit?: string;
  }>;
  readonly sidecar: { state: ProcessState | "none"; restarts: number };
  /** The sidecar's admin endpoints (/stats, /config_dump, ...), while it runs. */
  readonly admin?: string;
}

export interface RuntimeStatus {
  readonly mesh: string;
  readonly dir: string;
  readonly pid: number;
  readonly ready: boolean;
  readonly clusters: Readonly<
    Record<
      string,
      {
        controlPlane: string;
        configApi: string;
        network: string;
        locality: string;
        private: boolean;
        ingress?: string;
      }
    >
  >;
  readonly pods: readonly PodStatus[];
}

interface RunningPod {
  readonly plan: PodPlan;
  readonly cluster: ClusterPlan;
  /** Undefined for a pod outside the mesh. */
  readonly sidecar: Supervised | undefined;
  readonly containers: Supervised[];
  sidecarReady: boolean;
  adminPort: number | undefined;
}

export class MeshRuntime {
  private readonly plan: MeshPlan;
  private readonly stateDir: string;
  private readonly log: (line: string) => void;
  private readonly token = randomBytes(24).toString("hex");
  private readonly controlPlanes: Supervised[] = [];
  private readonly gateways: Supervised[] = [];
  private readonly forwarders: net.Server[] = [];
  /** Gateway servers the host's ingress ports lead to: the mesh is ready once they listen. */
  private readonly gatewayPorts: Array<[string, number]> = [];
  /** Cluster name -> the ingress URL on the host (ingress.port). */
  private readonly ingress = new Map<string, string>();
  private readonly pods: RunningPod[] = [];
  /** The east-west gateways (registered like pods, so registered again after a control plane restarts). */
  private readonly eastWest: Array<{ readonly cluster: ClusterPlan; readonly pod: PodPlan }> = [];
  private stopped = false;
  ready = false;

  /** With --isolate: each cluster's processes run in its network namespace. */
  private readonly isolation: Isolation | undefined;

  constructor(
    plan: MeshPlan,
    stateDir: string,
    log: (line: string) => void,
    options: { readonly isolation?: Isolation; readonly peerGrace?: string } = {},
  ) {
    this.plan = plan;
    this.stateDir = stateDir;
    this.log = log;
    this.isolation = options.isolation;
    this.peerGrace = options.peerGrace ?? PEER_GRACE;
    this.ledger = new ProcessLedger(join(stateDir, "processes"));
  }

  private readonly ledger: ProcessLedger;

  /** How long a control plane keeps a gone peer's endpoints once its gateways stop answering. */
  private readonly peerGrace: string;

  /** `isthmus proxy` for a pod (sidecar) or gateway of cluster c, connected to its control plane. */
  private proxyArgv(c: ClusterPlan, pod: PodPlan, token: string): string[] {
    return [
      process.execPath,
      BIN,
      "proxy",
      ...["--control-plane", `${c.controlPlaneAddress}:${PUSH_PORT}`, "--node-id", pod.name],
      ...["--namespace", pod.namespace, "--service-account", pod.serviceAccount],
      ...Object.entries(pod.labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]),
      ...["--ip", pod.address, "--identity-token", token, "--trust-domain", this.plan.mesh.trustDomain],
      ...this.adminArgs(pod.address),
      ...localityArgs(c),
    ];
  }

  /** A supervised process of this runtime, written down in the ledger when it starts. */
  private supervised(spec: Omit<ProcessSpec, "ledger">): Supervised {
    return new Supervised({ ...spec, ledger: this.ledger });
  }

  /** A cluster's process: inside its network namespace when isolated (hostNetwork pods stay on the host). */
  private inCluster(c: ClusterPlan, argv: string[], hostNetwork = false): string[] {
    return this.isolation && !hostNetwork ? this.isolation.command(c.cluster.name, argv) : argv;
  }

  /** Where a pod's sidecar serves its admin endpoints. */
  adminHost(p: PodPlan): string {
    return this.isolation ? p.address : "127.0.0.1";
  }

  /** The sidecar's admin address: the pod's own when isolated (the runtime reaches it there). */
  private adminArgs(address: string): string[] {
    return this.isolation ? ["--admin-port", "0", "--admin-address", address] : ["--admin-port", "0"];
  }

  /** Starts everything and resolves once every pod is ready; rejects (after stopping all) otherwise. */
  async start(): Promise<void> {
    this.starting = this.run();
    return this.starting;
  }

  private starting: Promise<void> | undefined;

  private async run(): Promise<void> {
    try {
      await this.ensureCa();
      for (const c of this.plan.clusters) await this.startControlPlane(c);
      for (const c of this.plan.clusters) await this.startGateway(c);
      if (isMultiCluster(this.plan.clusters))
        for (const c of this.plan.clusters) await this.startEastWestGateway(c);
      for (const c of this.plan.clusters) await this.startPods(c);
      await this.waitReady();
      this.ready = true;
    } catch (e) {
      this.stopped = true;
      await this.shutdown();
      throw e;
    }
  }

  /** Stops everything; a start in progress gives up at its next step (checkNotStopped) first. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.starting !== undefined && !this.ready) await this.starting.catch(() => {});
    await this.shutdown();
  }

  /** Apps first (their sidecars still up to finish what they send), then sidecars, gateways, control planes. */
  private async shutdown(): Promise<void> {
    await Promise.all(this.pods.flatMap((p) => p.containers.map((c) => c.stop())));
    for (const f of this.forwarders) f.close();
    await Promise.all(this.pods.map((p) => p.sidecar?.stop()));
    await Promise.all(this.gateways.map((g) => g.stop()));
    await Promise.all(this.controlPlanes.map((c) => c.stop()));
  }

  status(): RuntimeStatus {
    const clusters: Record<string, RuntimeStatus["clusters"][string]> = {};
    for (const c of this.plan.clusters)
      clusters[c.cluster.name] = {
        controlPlane: `${c.controlPlaneAddress}:${PUSH_PORT}`,
        configApi: `http://${c.controlPlaneAddress}:${API_PORT}`,
        network: c.cluster.network,
        locality: c.cluster.locality,
        private: c.cluster.private,
        ...(this.ingress.has(c.cluster.name) ? { ingress: this.ingress.get(c.cluster.name)! } : {}),
      };
    return {
      mesh: this.plan.mesh.name,
      dir: this.plan.mesh.dir,
      pid: process.pid,
      ready: this.ready,
      clusters,
      pods: this.pods.map((p) => ({
        cluster: p.cluster.cluster.name,
        namespace: p.plan.namespace,
        name: p.plan.name,
        address: p.plan.address,
        identity: p.plan.sidecar ? this.spiffe(p.plan) : "-",
        ready: p.sidecarReady && p.containers.every((c) => c.state === "running"),
        restarts: p.containers.reduce((n, c) => n + c.restarts, 0),
        containers: p.containers.map((c) => ({
          name: c.spec.name,
          state: c.state,
          restarts: c.restarts,
          ...(c.lastExit !== undefined ? { lastExit: c.lastExit } : {}),
        })),
        sidecar: p.sidecar
          ? { state: p.sidecar.state, restarts: p.sidecar.restarts }
          : { state: "none", restarts: 0 },
        ...(p.adminPort !== undefined ? { admin: `http://${this.adminHost(p.plan)}:${p.adminPort}` } : {}),
      })),
    };
  }

  /**
   * Stops every process of one cluster for good (no restart): a cluster dying, for failover tests and
   * benchmarks. Its pods are reported not ready from then on.
   */
  async stopCluster(name: string): Promise<void> {
    const c = this.plan.clusters.find((x) => x.cluster.name === name);
    if (c === undefined) throw new Error(`no cluster ${name}`);
    // All at once and outright (SIGKILL), as a machine or a data centre going away: nothing says goodbye.
    const i = this.plan.clusters.indexOf(c);
    const doomed = [
      ...this.pods
        .filter((p) => p.cluster === c)
        .flatMap((p) => [...p.containers, ...(p.sidecar ? [p.sidecar] : [])]),
      ...this.gateways.filter((g) => g.spec.name.startsWith(`${name}/`)),
      ...(this.controlPlanes[i] ? [this.controlPlanes[i]] : []),
    ];
    await Promise.all(doomed.map((s) => s.stop(0)));
  }

  /** Stops one process of the mesh for good, by its name (e.g. "control-plane/west"). */
  async stopProcess(processName: string): Promise<void> {
    const s = this.processes().find((x) => x.spec.name === processName);
    if (s === undefined) throw new Error(`no process ${processName}`);
    await s.stop(0);
  }

  private processes(): Supervised[] {
    return [
      ...this.controlPlanes,
      ...this.gateways,
      ...this.pods.flatMap((p) => [...p.containers, ...(p.sidecar ? [p.sidecar] : [])]),
    ];
  }

  /** Kills one process of the mesh by its name (e.g. "hidden/east-west-gateway"); its supervisor restarts it. */
  kill(processName: string): void {
    const s = this.processes().find((x) => x.spec.name === processName);
    if (s?.pid === undefined) throw new Error(`no running process ${processName}`);
    process.kill(s.pid, "SIGKILL");
  }

  /** The runtime's token for the control planes' config APIs (isthmus apply against a local cluster). */
  get apiToken(): string {
    return this.token;
  }

  private spiffe(p: PodPlan): string {
    return `spiffe://${this.plan.mesh.trustDomain}/ns/${p.namespace}/sa/${p.serviceAccount}`;
  }

  /** One root for the mesh (kept across runs), one intermediate per cluster: clusters trust each other. */
  private async ensureCa(): Promise<void> {
    // The config APIs' token for this run, for the CLI's --mesh DIR (remote-clusters, status views): 0600.
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    this.ledger.reset();
    writeFileSync(join(this.stateDir, "api-token"), this.token, { mode: 0o600 });
    // Workload tokens are minted afresh each run (a token outlives neither its day nor its signing key).
    rmSync(join(this.stateDir, "tokens"), { recursive: true, force: true });
    const rootDir = join(this.stateDir, "ca", "root");
    const rootCert = join(rootDir, "root-cert.pem");
    const rootKey = join(rootDir, "root-key.pem");
    if (!existsSync(rootCert)) {
      this.log("creating the mesh's root CA");
      const root = await createRoot({ trustDomain: this.plan.mesh.trustDomain, days: 3650 });
      writeFiles(rootDir, { "root-cert.pem": root.cert, "root-key.pem": root.key }, { overwrite: true });
    }
    for (const c of this.plan.clusters) {
      const dir = join(this.stateDir, "ca", c.cluster.name);
      if (existsSync(join(dir, CACERTS_FILES.caCert))) continue;
      const pem = await createIntermediate({
        rootCert: readFileSync(rootCert, "utf8"),
        rootKey: readFileSync(rootKey, "utf8"),
        cluster: c.cluster.name,
        days: 365,
      });
      writeFiles(
        dir,
        {
          [CACERTS_FILES.caCert]: pem.caCert,
          [CACERTS_FILES.caKey]: pem.caKey,
          [CACERTS_FILES.rootCert]: pem.rootCert,
          [CACERTS_FILES.certChain]: pem.certChain,
        },
        { overwrite: true },
      );
    }
  }

  /** A stop during start (Ctrl-C while starting): nothing more is started, the start gives up. */
  private checkNotStopped(): void {
    if (this.stopped) throw new Error("stopped while starting");
  }

  private async startControlPlane(c: ClusterPlan): Promise<void> {
    this.checkNotStopped();
    const addr = c.controlPlaneAddress;
    for (const port of [PUSH_PORT, API_PORT])
      if (await portOpen(addr, port))
        throw new Error(`cluster ${c.cluster.name}: ${addr}:${port} is in use (another isthmus up?)`);
    // A cluster of a multi-cluster mesh gets its east-west gateway's Service and Gateway and its MeshLinks.
    const added: string[] = [];
    if (isMultiCluster(this.plan.clusters)) {
      const file = join(this.stateDir, "multicluster", `${c.cluster.name}.yaml`);
      mkdirSync(join(this.stateDir, "multicluster"), { recursive: true });
      writeFileSync(file, multiClusterManifests(c, this.plan.clusters));
      const listen = peerListen(c);
      added.push(
        ...["--config", file, "--cluster", c.cluster.name, "--network", c.cluster.network],
        ...(c.cluster.private ? ["--private"] : []),
        ...(listen ? ["--peer-listen", listen] : []),
        ...["--peer-grace", this.peerGrace],
      );
    }
    const argv = [
      process.execPath,
      BIN,
      "control-plane",
      ...c.cluster.manifests.flatMap((m) => ["--config", m]),
      ...added,
      ...["--listen", `${addr}:${PUSH_PORT}`, "--api-listen", `${addr}:${API_PORT}`],
      ...["--monitoring-listen", "off", "--trust-domain", this.plan.mesh.trustDomain],
      ...[
        "--ca-dir",
        join(this.stateDir, "ca", c.cluster.name),
        "--proxy-metrics-port",
        String(METRICS_PORT),
      ],
      // Its token signing key (and anything applied) survives a restart: the pods' tokens stay good.
      ...["--state-dir", join(this.stateDir, "control-planes", c.cluster.name)],
    ];
    const cp = this.supervised({
      name: `control-plane/${c.cluster.name}`,
      argv: this.inCluster(c, argv),
      env: { ...baseEnv(), ISTHMUS_TOKEN: this.token },
      cwd: this.plan.mesh.dir,
      logFile: join(this.stateDir, "logs", "control-planes", `${c.cluster.name}.log`),
      restart: true,
    });
    this.controlPlanes.push(cp);
    this.log(`cluster ${c.cluster.name}: control plane on ${addr}`);
    // A restarted control plane has lost its registrations (they are the runtime's to give): give them again.
    let starts = 0;
    cp.started(() => {
      if (starts++ > 0) void this.reregister(c);
    });
    cp.start();
    await waitFor(
      () => portOpen(addr, API_PORT),
      30_000,
      `cluster ${c.cluster.name}: the control plane did not start (see ${cp.spec.logFile})`,
    );
  }

  /**
   * The cluster's ingress gateway (Istio's istio-ingressgateway: namespace istio-system, labels
   * istio=ingressgateway), on the cluster's .0.2 address with its own identity; Gateway resources that select
   * it bind their servers there. With ingress.port, 127.0.0.1:PORT forwards to its first HTTP server's port.
   */
  private async startGateway(c: ClusterPlan): Promise<void> {
    this.checkNotStopped();
    const address = gatewayAddress(c);
    const labels = { istio: "ingressgateway", app: "istio-ingressgateway" };
    const pod: PodPlan = {
      name: `istio-ingressgateway-${c.cluster.name}`,
      namespace: "istio-system",
      deployment: "istio-ingressgateway",
      address,
      labels,
      serviceAccount: "istio-ingressgateway-service-account",
      containers: [],
      sidecar: true,
      tcpOutbound: [],
    };
    const token = await this.tokenFile(c, pod);
    const gw = this.supervised({
      name: `${c.cluster.name}/ingress-gateway`,
      argv: this.inCluster(c, this.proxyArgv(c, pod, token)),
      env: baseEnv(),
      cwd: this.plan.mesh.dir,
      logFile: join(this.stateDir, "logs", "gateways", `${c.cluster.name}.log`),
      restart: true,
    });
    this.gateways.push(gw);
    gw.start();
    const port = c.cluster.ingressPort;
    if (port === undefined) return;
    const target = gatewayHttpPort(c);
    if (target === undefined) {
      this.log(
        `cluster ${c.cluster.name}: ingress.port ${port} given, but no Gateway has an HTTP server for it`,
      );
      return;
    }
    const server = net.createServer((down) => {
      const up = net.connect({ host: address, port: target, noDelay: true });
      down.setNoDelay(true);
      down.pipe(up);
      up.pipe(down);
      closeTogether(down, up);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          new Error(`cluster ${c.cluster.name}: ingress port 127.0.0.1:${port}: ${e.code ?? e.message}`),
        ),
      );
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.forwarders.push(server);
    this.gatewayPorts.push([address, target]);
    this.ingress.set(c.cluster.name, `http://127.0.0.1:${port}`);
    this.log(`cluster ${c.cluster.name}: ingress gateway on ${address}:${target}, http://127.0.0.1:${port}`);
  }

  /**
   * The cluster's east-west gateway (Istio's istio-eastwestgateway) on its .0.3 address: AUTO_PASSTHROUGH on
   * 15443 for the other networks' callers, and on a public network the reverse tunnel acceptor on 15008 (a
   * private network's gateway dials those instead). Registered as the workload behind the network's gateway
   * Service, so that the control plane knows (and tells its peers) where the network's gateway is.
   */
  private async startEastWestGateway(c: ClusterPlan): Promise<void> {
    this.checkNotStopped();
    const address = c.eastWestAddress;
    const pod: PodPlan = {
      name: `istio-eastwestgateway-${c.cluster.name}`,
      namespace: EAST_WEST_NAMESPACE,
      deployment: "istio-eastwestgateway",
      address,
      labels: { ...EAST_WEST_LABELS, "topology.istio.io/network": c.cluster.network },
      serviceAccount: EAST_WEST_SERVICE_ACCOUNT,
      containers: [],
      sidecar: false,
      tcpOutbound: [],
    };
    const token = await this.tokenFile(c, pod);
    const gw = this.supervised({
      name: `${c.cluster.name}/east-west-gateway`,
      argv: this.inCluster(c, this.proxyArgv(c, pod, token)),
      env: baseEnv(),
      cwd: this.plan.mesh.dir,
      logFile: join(this.stateDir, "logs", "gateways", `${c.cluster.name}-east-west.log`),
      restart: true,
    });
    this.gateways.push(gw);
    this.eastWest.push({ cluster: c, pod });
    gw.start();
    await this.register(c, pod, true);
    this.log(`cluster ${c.cluster.name}: east-west gateway on ${address}:15443`);
  }

  private async reregister(c: ClusterPlan): Promise<void> {
    try {
      await waitFor(() => portOpen(c.controlPlaneAddress, API_PORT), 30_000, "the control plane's API");
      const pods = this.pods.filter((p) => p.cluster === c);
      for (const p of pods) await this.register(c, p.plan, p.sidecarReady).catch(() => {});
      for (const g of this.eastWest) if (g.cluster === c) await this.register(c, g.pod, true).catch(() => {});
      this.log(`cluster ${c.cluster.name}: control plane restarted; ${pods.length} pods registered again`);
    } catch {
      // Not back yet: its next start tries again.
    }
  }

  private api(c: ClusterPlan, path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`http://${c.controlPlaneAddress}:${API_PORT}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      signal: AbortSignal.timeout(10_000),
    });
  }

  private async register(c: ClusterPlan, p: PodPlan, healthy: boolean): Promise<void> {
    const body = {
      address: p.address,
      labels: p.sidecar ? { ...p.labels, "security.istio.io/tlsMode": "istio" } : p.labels,
      serviceAccount: p.serviceAccount,
      network: c.cluster.network,
      cluster: c.cluster.name,
      ...(c.cluster.locality ? { locality: c.cluster.locality } : {}),
      healthy,
    };
    const r = await this.api(c, `/apis/registrations/${p.namespace}/${p.name}`, {
      method: "PUT",
      body: JSON.stringify(body),
    });
    if (r.status >= 300)
      throw new Error(`registering ${p.namespace}/${p.name}: ${r.status} ${await r.text()}`);
  }

  private async tokenFile(c: ClusterPlan, p: PodPlan): Promise<string> {
    const file = join(this.stateDir, "tokens", c.cluster.name, `${p.namespace}.${p.serviceAccount}.token`);
    if (existsSync(file)) return file;
    const r = await this.api(c, "/apis/tokens", {
      method: "POST",
      body: JSON.stringify({ namespace: p.namespace, serviceAccount: p.serviceAccount, ttlSeconds: 86_400 }),
    });
    if (r.status !== 200)
      throw new Error(`a token for ${p.namespace}/${p.serviceAccount}: ${r.status} ${await r.text()}`);
    mkdirSync(join(this.stateDir, "tokens", c.cluster.name), { recursive: true, mode: 0o700 });
    writeFileSync(file, ((await r.json()) as { token: string }).token, { mode: 0o600 });
    return file;
  }

  private async startPods(c: ClusterPlan): Promise<void> {
    for (const p of c.pods) {
      this.checkNotStopped();
      for (const port of p.containers.flatMap((x) => x.ports))
        if (await portOpen(p.address, port))
          throw new Error(`pod ${p.namespace}/${p.name}: ${p.address}:${port} is in use`);
      const logs = join(this.stateDir, "logs", c.cluster.name, p.namespace, p.name);
      if (!p.sidecar) {
        // Outside the mesh: registered as is (callers use plain text), nothing to wait for but its ports.
        await this.register(c, p, true);
        const running: RunningPod = {
          plan: p,
          cluster: c,
          sidecar: undefined,
          containers: [],
          sidecarReady: true,
          adminPort: undefined,
        };
        this.pods.push(running);
        this.startContainers(c, running, logs);
        continue;
      }
      await this.register(c, p, false);
      const token = await this.tokenFile(c, p);
      const sidecar = this.supervised({
        name: `${p.name}/sidecar`,
        argv: this.inCluster(c, this.proxyArgv(c, p, token)),
        env: baseEnv(),
        cwd: this.plan.mesh.dir,
        logFile: join(logs, "sidecar.log"),
        restart: true,
      });
      const running: RunningPod = {
        plan: p,
        cluster: c,
        sidecar,
        containers: [],
        sidecarReady: false,
        adminPort: undefined,
      };
      // A dead sidecar takes its pod out of every caller's endpoints until it is ready again.
      sidecar.exited(() => {
        running.sidecarReady = false;
        running.adminPort = undefined;
        if (!this.stopped) void this.register(c, p, false).catch(() => {});
      });
      sidecar.started(() => void this.watchSidecar(running));
      this.pods.push(running);
      sidecar.start();
      await this.tcpForwarders(c, running, logs);
      this.startContainers(c, running, logs);
    }
  }

  private startContainers(c: ClusterPlan, running: RunningPod, logs: string): void {
    const p = running.plan;
    for (const container of p.containers) {
      const argv = [...container.argv];
      if (argv[0] === "node") argv[0] = process.execPath;
      const s = this.supervised({
        name: `${p.name}/${container.name}`,
        argv: this.inCluster(c, argv, p.hostNetwork),
        env: { ...baseEnv(), ...container.env, ISTHMUS_CLUSTER: c.cluster.name },
        cwd: this.plan.mesh.dir,
        logFile: join(logs, `${container.name}.log`),
        restart: true,
      });
      running.containers.push(s);
      s.start();
    }
    this.log(
      `cluster ${c.cluster.name}: pod ${p.namespace}/${p.name} on ${p.address}${p.sidecar ? "" : " (no sidecar)"}`,
    );
  }

  /**
   * A pod's TCP service ports (connect-forwarder.ts): in this process, or inside the cluster's namespace as a
   * process of their own when isolated (the pod's address is only there).
   */
  private async tcpForwarders(c: ClusterPlan, running: RunningPod, logs: string): Promise<void> {
    const p = running.plan;
    if (p.tcpOutbound.length === 0) return;
    const via = { host: p.address, port: SIDECAR_OUTBOUND_PORT };
    if (this.isolation === undefined) {
      for (const t of p.tcpOutbound)
        this.forwarders.push(
          await forwardThroughProxy(via, {
            listenHost: p.address,
            localPort: t.localPort,
            targetHost: t.host,
            targetPort: t.port,
          }).catch((e: Error) => {
            throw new Error(`pod ${p.namespace}/${p.name}: ${e.message}`);
          }),
        );
      return;
    }
    const s = this.supervised({
      name: `${p.name}/tcp-forwarder`,
      argv: this.inCluster(c, [
        process.execPath,
        BIN,
        "x",
        "connect-forward",
        `${via.host}:${via.port}`,
        ...p.tcpOutbound.map((t) => `${p.address}:${t.localPort}=${t.host}:${t.port}`),
      ]),
      env: baseEnv(),
      cwd: this.plan.mesh.dir,
      logFile: join(logs, "tcp-forwarder.log"),
      restart: true,
    });
    running.containers.push(s);
    s.start();
  }

  /** Once the sidecar answers ready (config and certificate in hand), the pod is registered healthy. */
  private async watchSidecar(pod: RunningPod): Promise<void> {
    const sidecar = pod.sidecar!;
    const started = sidecar.pid;
    // Only this run's lines: an earlier run's admin port is gone (or someone else's now).
    const from = logSize(sidecar.spec.logFile);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!this.stopped && sidecar.pid === started && Date.now() < deadline) {
      pod.adminPort ??= adminPortFrom(sidecar.spec.logFile, from);
      if (
        pod.adminPort !== undefined &&
        (await httpOk(`http://${this.adminHost(pod.plan)}:${pod.adminPort}/ready`))
      ) {
        pod.sidecarReady = true;
        await this.register(pod.cluster, pod.plan, true).catch(() => {});
        return;
      }
      await sleep(100);
    }
  }

  /**
   * Every control plane has synced with every peer it links to, a moment ago, and its proxies run what it
   * last sent: a call across clusters works once the mesh says ready.
   */
  private async linksSynced(): Promise<boolean> {
    for (const c of this.plan.clusters) {
      try {
        const links = (await (await this.api(c, "/debug/remote_clusters")).json()) as {
          remoteClusters?: Array<{ state: string; lastSyncReceived?: string | null }>;
        };
        const peers = links.remoteClusters ?? [];
        const expected = this.plan.clusters.filter((o) => o !== c && linkBetween(c, o) !== undefined).length;
        if (peers.length < expected) return false;
        for (const l of peers)
          if (
            l.state !== "connected" ||
            !l.lastSyncReceived ||
            Date.now() - Date.parse(l.lastSyncReceived) < 300
          )
            return false;
        const sync = (await (await this.api(c, "/debug/syncz")).json()) as {
          items?: Array<{ state: string }>;
        };
        if ((sync.items ?? []).some((x) => x.state !== "SYNCED")) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  private async waitReady(): Promise<void> {
    await waitFor(
      async () => {
        this.checkNotStopped();
        // A container crash-looping before it was ever ready will not get there: say why now.
        for (const p of this.pods)
          for (const c of p.containers)
            if (c.restarts >= 3)
              throw new Error(
                `pod ${p.plan.namespace}/${p.plan.name}: container ${c.spec.name} keeps exiting (${c.lastExit}); its log ends:\n${tailOf(c.spec.logFile, 15)}`,
              );
        for (const [address, port] of this.gatewayPorts) if (!(await portOpen(address, port))) return false;
        if (isMultiCluster(this.plan.clusters) && !(await this.linksSynced())) return false;
        for (const p of this.pods) {
          if (!p.sidecarReady) return false;
          for (const port of p.plan.containers.flatMap((x) => x.ports))
            if (!(await portOpen(p.plan.address, port))) return false;
        }
        return true;
      },
      READY_TIMEOUT_MS,
      () => {
        const waiting = this.pods.filter(
          (p) => !p.sidecarReady || p.containers.some((c) => c.state !== "running"),
        );
        return `not ready after ${READY_TIMEOUT_MS / 1000} s: ${waiting
          .map(
            (p) =>
              `${p.plan.name} (sidecar ${p.sidecarReady ? "ready" : (p.sidecar?.state ?? "none")}; ${p.containers.map((c) => `${c.spec.name} ${c.state}${c.lastExit ? `, ${c.lastExit}` : ""}`).join(", ")})`,
          )
          .join("; ")}`;
      },
    );
  }
}

/** Cluster i's ingress gateway listens on 127.(20+i).0.2. */
function gatewayAddress(c: ClusterPlan): string {
  return c.ingressAddress;
}

/** The port of the first HTTP server of the Gateways that select the ingress gateway (80 first). */
function gatewayHttpPort(c: ClusterPlan): number | undefined {
  const ports: number[] = [];
  for (const g of c.resources) {
    if (g.kind !== "Gateway") continue;
    const spec = obj(g.object.spec);
    const selector = obj(spec?.selector) ?? {};
    if (selector.istio !== "ingressgateway" && selector.app !== "istio-ingressgateway") continue;
    for (const s of arr(spec?.servers)) {
      const p = obj(obj(s)?.port);
      const protocol = String(p?.protocol ?? "").toUpperCase();
      if (typeof p?.number === "number" && (protocol === "HTTP" || protocol === "HTTP2"))
        ports.push(p.number);
    }
  }
  return ports.includes(80) ? 80 : ports[0];
}

/** A workload's locality from its cluster's, for locality load balancing. */
function localityArgs(c: ClusterPlan): string[] {
  return c.cluster.locality ? ["--locality", c.cluster.locality] : [];
}

/** How long a control plane keeps a peer's endpoints after the link dropped, while its gateway is down. */
const PEER_GRACE = "30s";

/** The environment every process starts from: PATH and the like, never the parent's proxies or tokens. */
function baseEnv(): Record<string, string> {
  const keep = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "ISTHMUS_FROM_SOURCE"];
  const out: Record<string, string> = {};
  for (const k of keep) if (process.env[k] !== undefined) out[k] = process.env[k]!;
  return out;
}

function tailOf(file: string, lines: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

function logSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function adminPortFrom(logFile: string, from: number): number | undefined {
  try {
    const text = readFileSync(logFile).subarray(from).toString("utf8");
    const all = [...text.matchAll(/admin on [^\s]+:(\d+)/g)];
    const last = all.at(-1);
    return last ? Number(last[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return r.status === 200;
  } catch {
    return false;
  }
}

export function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (open: boolean) => {
      s.destroy();
      resolve(open);
    };
    s.setTimeout(1000, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  cond: () => Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(typeof what === "string" ? what : what());
    await sleep(100);
  }
}
