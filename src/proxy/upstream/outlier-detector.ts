// Passive health checking (Envoy's outlier detection, Istio's DestinationRule outlierDetection): endpoints that
// fail several times in a row are ejected (not picked by the load balancer) for baseEjectionTime times the
// number of times they have been ejected, then return on their own.
//
// As Envoy does without split_external_local_origin_errors, a connection failure, reset or timeout counts as a
// 503 from the endpoint. An ejection happens at once when the threshold is reached; the interval timer only
// brings endpoints back (and lowers the ejection multiplier of endpoints that stayed healthy a whole interval).
// At most maxEjectionPercent of the endpoints are ejected at once, but always at least one, as Envoy; below
// minHealthPercent healthy endpoints nothing more is ejected.
import type { OutlierDetection } from "../config/types.ts";
import type { HealthGeneration } from "../lb/priority.ts";
import type { Counter, Gauge, StatsStore } from "../stats/stats.ts";

/** What the detector needs of an endpoint; the upstream layer's Endpoint has these fields. */
export interface OutlierEndpoint {
  readonly key: string;
  healthy: boolean;
  /** Per-endpoint state, owned by the detector. */
  outlier: OutlierState | null;
}

export interface OutlierState {
  consecutive5xx: number;
  consecutiveGateway: number;
  ejections: number;
  /** Epoch ms when the current ejection ends; 0 when not ejected. */
  ejectedUntil: number;
  /** Whether the endpoint saw a failure since the last interval (for the multiplier's decay). */
  failedThisInterval: boolean;
}

/** Envoy caps an ejection at 300 s (max_ejection_time). */
const MAX_EJECTION_MS = 300_000;

export class OutlierDetector {
  private readonly endpoints: readonly OutlierEndpoint[];
  private readonly consecutive5xx: number;
  private readonly consecutiveGateway: number;
  private readonly baseEjectionMs: number;
  private readonly maxEjectionPercent: number;
  private readonly minHealthPercent: number;
  private readonly timer: NodeJS.Timeout;
  private readonly ejectedGauge: Gauge;
  private readonly ejections5xx: Counter;
  private readonly ejectionsGateway: Counter;
  private readonly ejectionsOverflow: Counter;
  private readonly now: () => number;
  private readonly health: HealthGeneration;

  /** `health` is bumped on every ejection and return, for the cluster's priority balancer. */
  constructor(
    config: OutlierDetection,
    endpoints: readonly OutlierEndpoint[],
    store: StatsStore,
    statPrefix: string,
    now: () => number = Date.now,
    health: HealthGeneration = { value: 0 },
  ) {
    this.endpoints = endpoints;
    this.consecutive5xx = config.consecutive5xxErrors ?? 5;
    this.consecutiveGateway = config.consecutiveGatewayErrors ?? 0;
    this.baseEjectionMs = config.baseEjectionTimeMs ?? 30_000;
    this.maxEjectionPercent = config.maxEjectionPercent ?? 10;
    this.minHealthPercent = config.minHealthPercent ?? 0;
    this.now = now;
    this.health = health;
    for (const e of endpoints)
      e.outlier ??= {
        consecutive5xx: 0,
        consecutiveGateway: 0,
        ejections: 0,
        ejectedUntil: 0,
        failedThisInterval: false,
      };
    this.ejectedGauge = store.gauge(`${statPrefix}outlier_detection.ejections_active`);
    this.ejections5xx = store.counter(`${statPrefix}outlier_detection.ejections_consecutive_5xx`);
    this.ejectionsGateway = store.counter(
      `${statPrefix}outlier_detection.ejections_consecutive_gateway_failure`,
    );
    this.ejectionsOverflow = store.counter(`${statPrefix}outlier_detection.ejections_overflow`);
    this.timer = setInterval(() => this.tick(), config.intervalMs ?? 10_000);
    this.timer.unref();
    this.updateGauge();
  }

  /** The endpoint answered with `status` (a failure without a response is reported as 503). */
  report(e: OutlierEndpoint, status: number): void {
    const s = e.outlier;
    if (s === null) return;
    if (status < 500) {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
      return;
    }
    s.failedThisInterval = true;
    s.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) s.consecutiveGateway++;
    else s.consecutiveGateway = 0;
    if (!e.healthy) return;
    if (this.consecutive5xx > 0 && s.consecutive5xx >= this.consecutive5xx) this.eject(e, this.ejections5xx);
    else if (this.consecutiveGateway > 0 && s.consecutiveGateway >= this.consecutiveGateway)
      this.eject(e, this.ejectionsGateway);
  }

  private eject(e: OutlierEndpoint, reason: Counter): void {
    const s = e.outlier!;
    const n = this.endpoints.length;
    const ejected = this.endpoints.reduce((k, x) => k + (x.healthy ? 0 : 1), 0);
    const max = Math.max(1, Math.floor((n * this.maxEjectionPercent) / 100));
    const healthyAfter = ((n - ejected - 1) * 100) / n;
    if (ejected >= max || healthyAfter < this.minHealthPercent) {
      this.ejectionsOverflow.inc();
      return;
    }
    s.ejections++;
    s.ejectedUntil = this.now() + Math.min(MAX_EJECTION_MS, this.baseEjectionMs * s.ejections);
    s.consecutive5xx = 0;
    s.consecutiveGateway = 0;
    e.healthy = false;
    this.health.value++;
    reason.inc();
    this.updateGauge();
  }

  /** Brings back endpoints whose ejection is over; decays the multiplier of endpoints healthy all interval. */
  tick(): void {
    const now = this.now();
    for (const e of this.endpoints) {
      const s = e.outlier!;
      if (!e.healthy && s.ejectedUntil !== 0 && now >= s.ejectedUntil) {
        e.healthy = true;
        s.ejectedUntil = 0;
        this.health.value++;
      } else if (e.healthy && !s.failedThisInterval && s.ejections > 0) {
        s.ejections--;
      }
      s.failedThisInterval = false;
    }
    this.updateGauge();
  }

  private updateGauge(): void {
    let k = 0;
    for (const e of this.endpoints) if (!e.healthy) k++;
    this.ejectedGauge.value = k;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
