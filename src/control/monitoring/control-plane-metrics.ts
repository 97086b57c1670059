// The control plane's own metrics, with istiod's names (pilot_*), so Istio's control-plane dashboards and
// alerts read them unchanged. prom-client keeps them: this is not a hot path. Every label value comes from a
// fixed set (the resource type), never from a proxy, so a proxy cannot grow the series.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** What the push side reports; DiscoveryServer calls it, and knows nothing of Prometheus. */
export interface PushObserver {
  /** A response written to one proxy: how long rendering and sending took, and its size. */
  pushed(type: string, seconds: number, bytes: number): void;
  /** A proxy refused a response (NACK). */
  rejected(type: string): void;
  /** A config could not be rendered for a proxy (nothing was sent to it). */
  renderFailed(type: string): void;
  /** A proxy acknowledged the config that carried a change, this long after the change. */
  converged(seconds: number): void;
  /** A push was triggered (after the debounce), for this reason. */
  triggered(reason: string): void;
  connected(delta: 1 | -1): void;
}

/** What the CA's CSR service reports (src/control/ca/certificate-service.ts); reasons come from fixed sets. */
export interface CaObserver {
  csrReceived(): void;
  certIssued(): void;
  /** A refused CSR: whose fault (the token, the CSR, the identity asked for, signing) and the precise reason. */
  csrRefused(kind: "authentication" | "csr" | "identity" | "sign", reason: string): void;
  caExpiry(root: Date, chain: Date): void;
}

export class ControlPlaneMetrics implements PushObserver, CaObserver {
  readonly registry = new Registry();
  private readonly xds = new Gauge({
    name: "pilot_xds",
    help: "Number of endpoints connected to this pilot using XDS.",
    registers: [this.registry],
  });
  private readonly pushes = new Counter({
    name: "pilot_xds_pushes",
    help: "Responses pushed to proxies, per resource type.",
    labelNames: ["type"],
    registers: [this.registry],
  });
  private readonly rejects = new Counter({
    name: "pilot_total_xds_rejects",
    help: "Total number of XDS responses from pilot rejected by proxy.",
    labelNames: ["type"],
    registers: [this.registry],
  });
  private readonly internalErrors = new Counter({
    name: "pilot_total_xds_internal_errors",
    help: "Total number of internal XDS errors in pilot.",
    labelNames: ["type"],
    registers: [this.registry],
  });
  private readonly pushTime = new Histogram({
    name: "pilot_xds_push_time",
    help: "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
    labelNames: ["type"],
    buckets: [0.01, 0.1, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  private readonly configSize = new Histogram({
    name: "pilot_xds_config_size_bytes",
    help: "Distribution of configuration sizes pushed to clients",
    labelNames: ["type"],
    buckets: [1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000],
    registers: [this.registry],
  });
  private readonly convergence = new Histogram({
    name: "pilot_proxy_convergence_time",
    help: "Delay in seconds between config change and a proxy receiving all required configuration.",
    buckets: [0.1, 0.5, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  private readonly triggers = new Counter({
    name: "pilot_push_triggers",
    help: "Total number of times a push was triggered, labeled by reason for the push.",
    labelNames: ["type"],
    registers: [this.registry],
  });

  // Citadel's (istiod's CA) names, so Istio's dashboards read them; isthmus_ca_csr_refused_total breaks the
  // refusals down by reason.
  private readonly csrs = new Counter({
    name: "citadel_server_csr_count",
    help: "The number of CSRs received by Citadel server.",
    registers: [this.registry],
  });
  private readonly issued = new Counter({
    name: "citadel_server_success_cert_issuance_count",
    help: "The number of certificates issuances that have succeeded.",
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({
    name: "citadel_server_authentication_failure_count",
    help: "The number of authentication failures.",
    registers: [this.registry],
  });
  private readonly csrParseErrors = new Counter({
    name: "citadel_server_csr_parsing_err_count",
    help: "The number of errors occurred when parsing the CSR.",
    registers: [this.registry],
  });
  private readonly idErrors = new Counter({
    name: "citadel_server_id_extraction_err_count",
    help: "The number of errors occurred when extracting the ID from CSR.",
    registers: [this.registry],
  });
  private readonly signErrors = new Counter({
    name: "citadel_server_csr_sign_err_count",
    help: "The number of errors occurred when signing the CSR.",
    labelNames: ["error_type"],
    registers: [this.registry],
  });
  private readonly refusedCsrs = new Counter({
    name: "isthmus_ca_csr_refused_total",
    help: "CSRs refused, by reason.",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  private readonly rootExpiry = new Gauge({
    name: "citadel_server_root_cert_expiry_timestamp",
    help: "The unix timestamp, in seconds, when Citadel root cert will expire.",
    registers: [this.registry],
  });
  private readonly chainExpiry = new Gauge({
    name: "citadel_server_cert_chain_expiry_timestamp",
    help: "The unix timestamp, in seconds, when Citadel cert chain will expire.",
    registers: [this.registry],
  });

  csrReceived(): void {
    this.csrs.inc();
  }

  certIssued(): void {
    this.issued.inc();
  }

  csrRefused(kind: "authentication" | "csr" | "identity" | "sign", reason: string): void {
    this.refusedCsrs.inc({ reason });
    if (kind === "authentication") this.authFailures.inc();
    else if (kind === "csr") this.csrParseErrors.inc();
    else if (kind === "identity") this.idErrors.inc();
    else this.signErrors.inc({ error_type: reason });
  }

  caExpiry(root: Date, chain: Date): void {
    this.rootExpiry.set(root.getTime() / 1000);
    this.chainExpiry.set(chain.getTime() / 1000);
  }

  pushed(type: string, seconds: number, bytes: number): void {
    this.pushes.inc({ type });
    this.pushTime.observe({ type }, seconds);
    this.configSize.observe({ type }, bytes);
  }

  rejected(type: string): void {
    this.rejects.inc({ type });
  }

  renderFailed(type: string): void {
    this.internalErrors.inc({ type });
  }

  converged(seconds: number): void {
    this.convergence.observe(seconds);
  }

  triggered(reason: string): void {
    this.triggers.inc({ type: reason });
  }

  connected(delta: 1 | -1): void {
    this.xds.inc(delta);
  }

  /** The Prometheus text exposition. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
