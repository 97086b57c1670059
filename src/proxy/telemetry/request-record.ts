// What the HTTP exchanges report when a request ends, and the TCP proxy when a connection closes: the one
// input of every telemetry sink (Prometheus metrics, access log, trace spans). Filled by the exchange as the
// request goes; sinks must not keep references to it after their call returns (it may be reused).

/** Which side of the hop this proxy is: the client's sidecar (source) or the server's (destination). */
export type Reporter = "source" | "destination";

/** Workload metadata of one side of a hop, as Istio's metrics labels name it. */
export interface PeerInfo {
  readonly workload?: string;
  readonly namespace?: string;
  /** SPIFFE identity (spiffe://trust-domain/ns/NS/sa/SA) when mTLS verified it. */
  readonly principal?: string;
  readonly app?: string;
  readonly version?: string;
  readonly cluster?: string;
  readonly canonicalService?: string;
  readonly canonicalRevision?: string;
}

export interface HttpRequestRecord {
  /** Epoch milliseconds when the request head was complete. */
  readonly startTimeMs: number;
  /** Milliseconds from start to the last byte of the response (or the failure). */
  readonly durationMs: number;
  readonly method: string;
  /** Path with query, as received. */
  readonly path: string;
  readonly authority: string;
  /** "HTTP/1.1", "HTTP/1.0" or "HTTP/2". */
  readonly protocol: string;
  /** 0 when no response was sent (downstream went away first). */
  readonly responseCode: number;
  /** Envoy's response flags joined with ",", or "-" for none (e.g. "UF,URX"). */
  readonly responseFlags: string;
  /** grpc-status of a gRPC response (trailers or headers), else undefined. */
  readonly grpcStatus: number | undefined;
  /** Body bytes from the downstream, and to it. */
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /** "ADDRESS:PORT" of the endpoint that served (the last attempt), "" for local replies. */
  readonly upstreamHost: string;
  readonly upstreamCluster: string;
  /** Retries made (attempts - 1). */
  readonly retries: number;
  readonly routeName: string;
  readonly downstreamRemoteAddress: string;
  readonly requestId: string;
  /** W3C trace id (32 hex) when tracing is on, else "". */
  readonly traceId: string;
  readonly userAgent: string;
  /** Whether the downstream connection was mTLS with a verified peer ("mutual_tls") or not ("none"). */
  readonly connectionSecurityPolicy: "mutual_tls" | "none";
  readonly reporter: Reporter;
  /** The other side's metadata (from peer metadata exchange), when known. */
  readonly peer: PeerInfo | undefined;
  /** Destination service host (the authority without port, or the cluster's service name). */
  readonly destinationService: string;
}

export interface TcpConnectionRecord {
  readonly startTimeMs: number;
  readonly durationMs: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly upstreamHost: string;
  readonly upstreamCluster: string;
  readonly downstreamRemoteAddress: string;
  readonly connectionSecurityPolicy: "mutual_tls" | "none";
  readonly reporter: Reporter;
  readonly peer: PeerInfo | undefined;
  readonly destinationService: string;
  /** Envoy's response flags ("UF" when the upstream could not be reached), "-" for none. */
  readonly responseFlags: string;
}

/** A telemetry sink. Called on the proxy's hot path: no I/O inline, no throwing. */
export interface TelemetrySink {
  onHttpRequest(record: HttpRequestRecord): void;
  /**
   * A TCP connection opened (istio_tcp_connections_opened_total): reported once its upstream connected or
   * failed, so that open and close carry the same response flags, as Istio reports them.
   */
  onTcpOpen?(
    record: Pick<
      TcpConnectionRecord,
      | "upstreamCluster"
      | "reporter"
      | "peer"
      | "destinationService"
      | "connectionSecurityPolicy"
      | "responseFlags"
    >,
  ): void;
  onTcpClose?(record: TcpConnectionRecord): void;
  /** Flushes buffers and stops timers (shutdown). */
  close?(): Promise<void>;
}

/**
 * The destination_service of a request: its virtual host's name without a port ("reviews.default.svc.cluster.local:9080"
 * -> "reviews.default.svc.cluster.local", as the control plane names them), or "unknown" when no route matched.
 * Never the client's Host header: a client could otherwise mint a metric series per request.
 */
export function destinationServiceOf(virtualHost: string | undefined): string {
  if (virtualHost === undefined || virtualHost === "") return "unknown";
  const colon = virtualHost.lastIndexOf(":");
  return colon > 0 && /^\d+$/.test(virtualHost.slice(colon + 1)) ? virtualHost.slice(0, colon) : virtualHost;
}
