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

export class ControlPlaneMetrics implements PushObserver {
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
