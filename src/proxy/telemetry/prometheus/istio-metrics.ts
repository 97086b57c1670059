// Istio's standard metrics, kept by the proxy itself and exposed in Prometheus' text format: the names, labels
// and histogram buckets of Istio's stats plugin, so Istio's dashboards and Kiali-style queries work unchanged.
//
// Per request: one key string from the label values that vary, one map lookup, three histogram updates. The
// label text of a series is built once, when the series is created. Series are capped (MAX_SERIES): beyond
// the cap requests are counted in one overflow series, so a peer that varies its labels cannot grow memory.
import type {
  HttpRequestRecord,
  PeerInfo,
  Reporter,
  TcpConnectionRecord,
  TelemetrySink,
} from "../request-record.ts";

/** Istio's buckets for istio_request_duration_milliseconds. */
export const DURATION_BUCKETS_MS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];
/** Istio's buckets for istio_request_bytes and istio_response_bytes. */
export const BYTES_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

export const MAX_SERIES = 10_000;

class Histogram {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private readonly bounds: readonly number[];

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++)
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
  }

  /** Cumulative bucket lines, _sum and _count. */
  write(name: string, labels: string, out: string[]): void {
    let cum = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cum += this.counts[i]!;
      out.push(`${name}_bucket{${labels},le="${this.bounds[i]}"} ${cum}`);
    }
    out.push(`${name}_bucket{${labels},le="+Inf"} ${this.count}`);
    out.push(`${name}_sum{${labels}} ${this.sum}`);
    out.push(`${name}_count{${labels}} ${this.count}`);
  }
}

interface HttpSeries {
  readonly labels: string;
  requests: number;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}

interface TcpSeries {
  readonly labels: string;
  opened: number;
  closed: number;
  sent: number;
  received: number;
}

const UNKNOWN = "unknown";

export class IstioMetrics implements TelemetrySink {
  private readonly own: PeerInfo;
  private readonly http = new Map<string, HttpSeries>();
  private readonly tcp = new Map<string, TcpSeries>();
  /** Requests and connections that found the series cap reached. */
  overflow = 0;

  constructor(own: PeerInfo) {
    this.own = own;
  }

  onHttpRequest(r: HttpRequestRecord): void {
    const grpc = r.grpcStatus !== undefined;
    // Series are found in two steps: by the peer object (decoded peers are cached, so one object per peer) and
    // reporter, then by a short key of what varies per request; no long label string is built per request.
    const byPeer = this.forPeer(r.reporter, r.peer);
    const short = `${r.responseCode}|${r.responseFlags}|${r.destinationService}|${r.grpcStatus ?? ""}|${r.connectionSecurityPolicy}`;
    let s = byPeer.get(short);
    if (s === undefined) {
      const long = `${r.reporter}|${peerKey(r.peer)}|${short}`;
      s = this.http.get(long);
      if (s === undefined) {
        if (this.http.size >= MAX_SERIES) {
          this.overflow++;
          return;
        }
        const labels = `${this.sides(r.reporter, r.peer, r.destinationService)},request_protocol="${grpc ? "grpc" : "http"}",response_code="${r.responseCode}",grpc_response_status="${r.grpcStatus ?? ""}",response_flags="${esc(r.responseFlags)}",connection_security_policy="${r.connectionSecurityPolicy}"`;
        s = {
          labels,
          requests: 0,
          duration: new Histogram(DURATION_BUCKETS_MS),
          requestBytes: new Histogram(BYTES_BUCKETS),
          responseBytes: new Histogram(BYTES_BUCKETS),
        };
        this.http.set(long, s);
      }
      byPeer.set(short, s);
    }
    s.requests++;
    s.duration.observe(r.durationMs);
    s.requestBytes.observe(r.bytesReceived);
    s.responseBytes.observe(r.bytesSent);
  }

  private readonly peerSeries = new WeakMap<PeerInfo, Map<string, HttpSeries>>();
  private readonly noPeer = {
    source: new Map<string, HttpSeries>(),
    destination: new Map<string, HttpSeries>(),
  };
  private readonly peerSource = new WeakMap<PeerInfo, Map<string, HttpSeries>>();

  private forPeer(reporter: Reporter, peer: PeerInfo | undefined): Map<string, HttpSeries> {
    if (peer === undefined) return this.noPeer[reporter];
    const maps = reporter === "source" ? this.peerSource : this.peerSeries;
    let m = maps.get(peer);
    if (m === undefined) {
      // A peer object seen for the first time may describe a peer already known (another decode of the same
      // header after the decode cache evicted it): onHttpRequest finds its series again by the long key.
      m = new Map();
      maps.set(peer, m);
    }
    return m;
  }

  onTcpOpen(
    r: Pick<
      TcpConnectionRecord,
      "reporter" | "peer" | "destinationService" | "connectionSecurityPolicy" | "responseFlags"
    >,
  ): void {
    const s = this.tcpSeries(
      r.reporter,
      r.peer,
      r.destinationService,
      r.responseFlags,
      r.connectionSecurityPolicy,
    );
    if (s) s.opened++;
  }

  onTcpClose(r: TcpConnectionRecord): void {
    const s = this.tcpSeries(
      r.reporter,
      r.peer,
      r.destinationService,
      r.responseFlags,
      r.connectionSecurityPolicy,
    );
    if (!s) return;
    s.closed++;
    s.sent += r.bytesSent;
    s.received += r.bytesReceived;
  }

  private tcpSeries(
    reporter: Reporter,
    peer: PeerInfo | undefined,
    service: string,
    flags: string,
    mtls: string,
  ): TcpSeries | undefined {
    // Open is reported once the outcome of connecting is known, so open and close share the flags and a series.
    const key = `${reporter}|${peerKey(peer)}|${service}|${flags}|${mtls}`;
    let s = this.tcp.get(key);
    if (s === undefined) {
      if (this.tcp.size >= MAX_SERIES) {
        this.overflow++;
        return undefined;
      }
      s = {
        labels: `${this.sides(reporter, peer, service)},request_protocol="tcp",response_flags="${esc(flags)}",connection_security_policy="${mtls}"`,
        opened: 0,
        closed: 0,
        sent: 0,
        received: 0,
      };
      this.tcp.set(key, s);
    }
    return s;
  }

  /** reporter, source_* and destination_* labels: this proxy on its side of the hop, the peer on the other. */
  private sides(reporter: Reporter, peer: PeerInfo | undefined, service: string): string {
    const src = reporter === "source" ? this.own : (peer ?? {});
    const dst = reporter === "source" ? (peer ?? {}) : this.own;
    const m = /^([^.]+)\.([^.]+)\.svc\./.exec(service);
    return [
      `reporter="${reporter}"`,
      `source_workload="${v(src.workload)}"`,
      `source_workload_namespace="${v(src.namespace)}"`,
      `source_principal="${v(src.principal)}"`,
      `source_app="${v(src.app)}"`,
      `source_version="${v(src.version)}"`,
      `source_cluster="${v(src.cluster)}"`,
      `source_canonical_service="${v(src.canonicalService)}"`,
      `source_canonical_revision="${v(src.canonicalRevision)}"`,
      `destination_workload="${v(dst.workload)}"`,
      `destination_workload_namespace="${v(dst.namespace)}"`,
      `destination_principal="${v(dst.principal)}"`,
      `destination_app="${v(dst.app)}"`,
      `destination_version="${v(dst.version)}"`,
      `destination_service="${v(service)}"`,
      `destination_service_name="${v(m?.[1] ?? service)}"`,
      `destination_service_namespace="${v(m?.[2] ?? dst.namespace)}"`,
      `destination_cluster="${v(dst.cluster)}"`,
      `destination_canonical_service="${v(dst.canonicalService)}"`,
      `destination_canonical_revision="${v(dst.canonicalRevision)}"`,
    ].join(",");
  }

  /** Prometheus text exposition (format 0.0.4) of every series. */
  exposition(): string {
    const out: string[] = [];
    if (this.http.size > 0) {
      out.push(
        "# HELP istio_requests_total Requests, by source, destination and response.",
        "# TYPE istio_requests_total counter",
      );
      for (const s of this.http.values()) out.push(`istio_requests_total{${s.labels}} ${s.requests}`);
      const hist = (name: string, help: string, pick: (s: HttpSeries) => Histogram) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
        for (const s of this.http.values()) pick(s).write(name, s.labels, out);
      };
      hist("istio_request_duration_milliseconds", "Request duration in milliseconds.", (s) => s.duration);
      hist("istio_request_bytes", "Request body sizes in bytes.", (s) => s.requestBytes);
      hist("istio_response_bytes", "Response body sizes in bytes.", (s) => s.responseBytes);
    }
    if (this.tcp.size > 0) {
      const counter = (name: string, help: string, pick: (s: TcpSeries) => number) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
        for (const s of this.tcp.values()) out.push(`${name}{${s.labels}} ${pick(s)}`);
      };
      counter("istio_tcp_sent_bytes_total", "Bytes sent to the downstream.", (s) => s.sent);
      counter("istio_tcp_received_bytes_total", "Bytes received from the downstream.", (s) => s.received);
      counter("istio_tcp_connections_opened_total", "TCP connections opened.", (s) => s.opened);
      counter("istio_tcp_connections_closed_total", "TCP connections closed.", (s) => s.closed);
    }
    out.push(
      "# HELP isthmus_metrics_overflow_total Requests not counted because the series cap was reached.",
      "# TYPE isthmus_metrics_overflow_total counter",
      `isthmus_metrics_overflow_total ${this.overflow}`,
    );
    return `${out.join("\n")}\n`;
  }
}

const peerKeys = new WeakMap<PeerInfo, string>();

function peerKey(p: PeerInfo | undefined): string {
  if (p === undefined) return "";
  let k = peerKeys.get(p);
  if (k === undefined) {
    k = JSON.stringify(p);
    peerKeys.set(p, k);
  }
  return k;
}

function v(x: string | undefined): string {
  return x === undefined || x === "" ? UNKNOWN : esc(x);
}

/** Prometheus label value escaping: backslash, double quote, newline. */
export function esc(x: string): string {
  return /[\\"\n]/.test(x) ? x.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") : x;
}
