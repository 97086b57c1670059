// A gone peer's grace period: its export is kept while its east-west gateways still answer a probe (the
// traffic they carry may well still flow), and withdrawn once they have not answered for the whole period, or,
// with no probe or no gateways (a private peer), once the period has passed.
import type { PeerAddress } from "./peer-export.ts";

export type GatewayProbe = (gateways: readonly PeerAddress[]) => Promise<boolean>;

export interface GracePeriodOptions {
  readonly graceMs: number;
  /** How often to probe; never more than half the period apart. */
  readonly probeIntervalMs: number;
  readonly probe: GatewayProbe | undefined;
  readonly gateways: readonly PeerAddress[];
  /** The period is over: withdraw the export (called once, never after stop()). */
  readonly expired: (why: string) => void;
  /** The gateways' answer changed (false: they stopped answering; true: they answer again). */
  readonly answerChanged: (answering: boolean) => void;
}

export class GracePeriod {
  private readonly options: GracePeriodOptions;
  private timer: NodeJS.Timeout | undefined;
  private lastAlive = Date.now();
  private answering = true;
  private stopped = false;

  constructor(options: GracePeriodOptions) {
    this.options = options;
    const { graceMs, probe, gateways } = options;
    if (probe === undefined || gateways.length === 0) {
      this.timer = setTimeout(() => this.expire(`no stream for ${graceMs} ms`), graceMs);
      return;
    }
    const interval = Math.max(10, Math.min(options.probeIntervalMs, Math.floor(graceMs / 2)));
    const tick = async () => {
      this.timer = undefined;
      const ok = await probeWithin(probe, gateways, interval);
      if (this.stopped) return;
      const now = Date.now();
      if (ok) this.lastAlive = now;
      if (ok !== this.answering) {
        this.answering = ok;
        options.answerChanged(ok);
      }
      if (now - this.lastAlive >= graceMs) this.expire(`its gateway has not answered for ${graceMs} ms`);
      else this.timer = setTimeout(tick, interval);
    };
    this.timer = setTimeout(tick, interval);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private expire(why: string): void {
    if (this.stopped) return;
    this.stop();
    this.options.expired(why);
  }
}

/** The probe's answer; false when it throws, rejects or takes longer than `ms`. */
function probeWithin(probe: GatewayProbe, gateways: readonly PeerAddress[], ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    let answer: Promise<boolean>;
    try {
      answer = Promise.resolve(probe(gateways));
    } catch {
      answer = Promise.resolve(false);
    }
    answer.then(
      (ok) => {
        clearTimeout(timer);
        resolve(ok === true);
      },
      () => {
        clearTimeout(timer);
        resolve(false);
      },
    );
  });
}
