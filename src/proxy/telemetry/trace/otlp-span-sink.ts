// Spans exported with OTLP/HTTP (JSON) by OpenTelemetry's own exporter and batch processor. The proxy knows
// every id and time of a hop already, so it hands the processor finished ReadableSpans instead of running an
// OpenTelemetry tracer per request (which would make its own ids and context objects). The batch processor
// bounds the queue (a dead collector drops spans instead of growing memory) and retries nothing on the hot path.
// This module is imported only when tracing is configured: OpenTelemetry is not loaded otherwise.
import { type Attributes, SpanKind, SpanStatusCode, TraceFlags } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace";
import type { FinishedSpan, SpanSink } from "./request-tracer.ts";

export interface OtlpOptions {
  readonly endpoint: string;
  readonly serviceName: string;
  /** Spans waiting for export at most; beyond it they are dropped. Default 2048. */
  readonly maxQueueSize?: number;
  readonly scheduledDelayMillis?: number;
}

const SCOPE = { name: "isthmus-proxy", version: "0.1.0" };

export class OtlpSpanSink implements SpanSink {
  private readonly processor: BatchSpanProcessor;
  private readonly resource;

  constructor(o: OtlpOptions) {
    const exporter = new OTLPTraceExporter({ url: o.endpoint, timeoutMillis: 5000 });
    this.processor = new BatchSpanProcessor({
      exporter,
      maxQueueSize: o.maxQueueSize ?? 2048,
      maxExportBatchSize: 512,
      scheduledDelayMillis: o.scheduledDelayMillis ?? 1000,
      exportTimeoutMillis: 5000,
    });
    this.resource = resourceFromAttributes({ "service.name": o.serviceName });
  }

  export({ handle, record: r }: FinishedSpan): void {
    const start = r.startTimeMs;
    const end = start + r.durationMs;
    const attributes: Attributes = {
      "http.request.method": r.method,
      "url.path": r.path,
      "server.address": r.authority,
      "http.response.status_code": r.responseCode,
      "network.protocol.name": "http",
      upstream_cluster: r.upstreamCluster,
      response_flags: r.responseFlags,
      "guid:x-request-id": r.requestId,
      component: "proxy",
    };
    if (r.upstreamHost) attributes["upstream.address"] = r.upstreamHost;
    if (r.grpcStatus !== undefined) attributes["rpc.grpc.status_code"] = r.grpcStatus;
    const spanContext = { traceId: handle.traceId, spanId: handle.spanId, traceFlags: TraceFlags.SAMPLED };
    const span: ReadableSpan = {
      name: `${r.destinationService || r.authority}${r.path.split("?")[0]}`,
      kind: r.reporter === "source" ? SpanKind.CLIENT : SpanKind.SERVER,
      spanContext: () => spanContext,
      ...(handle.parentSpanId !== ""
        ? {
            parentSpanContext: {
              traceId: handle.traceId,
              spanId: handle.parentSpanId,
              traceFlags: TraceFlags.SAMPLED,
              isRemote: true,
            },
          }
        : {}),
      startTime: hr(start),
      endTime: hr(end),
      duration: hr(r.durationMs),
      status:
        r.responseCode >= 500 || r.responseCode === 0
          ? { code: SpanStatusCode.ERROR }
          : { code: SpanStatusCode.UNSET },
      attributes,
      links: [],
      events: [],
      ended: true,
      resource: this.resource,
      instrumentationScope: SCOPE,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
    this.processor.onEnd(span);
  }

  async shutdown(): Promise<void> {
    await this.processor.shutdown();
  }
}

/** Epoch milliseconds (fractional) as OpenTelemetry's [seconds, nanoseconds]. */
function hr(ms: number): [number, number] {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}
