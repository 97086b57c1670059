// Per request: continue the caller's trace or start one (sampled at samplingPercent when the caller left the
// decision open, as Envoy does), make this hop's span id, ensure an x-request-id, and say which headers the
// upstream request carries. At the end of the request a sampled hop becomes one span for the exporter.
import { randomBytes, randomUUID } from "node:crypto";
import type { HeaderValueOption } from "../../config/types.ts";
import type { HttpRequestRecord } from "../request-record.ts";
import { formatTraceparent, parseB3, parseTraceparent } from "./trace-context.ts";

export { TRACE_HEADERS } from "./trace-headers.ts";

export interface TraceHandle {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly sampled: boolean;
  /** Headers for the upstream request (replacing the incoming ones of the same names). */
  readonly upstreamHeaders: readonly HeaderValueOption[];
  /** The request id the request carries (generated when it had none). */
  readonly requestId: string;
}

/** A finished, sampled hop. */
export interface FinishedSpan {
  readonly handle: TraceHandle;
  readonly record: HttpRequestRecord;
}

export interface SpanSink {
  export(span: FinishedSpan): void;
  shutdown(): Promise<void>;
}

const MAX_REQUEST_ID = 128;

export class RequestTracer {
  private readonly samplingFraction: number;
  private readonly sink: SpanSink;
  /** Random ids come from one buffer refilled every 512 ids: one syscall instead of one per request. */
  private pool = Buffer.alloc(0);
  private at = 0;

  constructor(samplingPercent: number, sink: SpanSink) {
    this.samplingFraction = samplingPercent / 100;
    this.sink = sink;
  }

  /** `headers`: flat [name, value, ...] with lower-case names. */
  begin(headers: readonly string[]): TraceHandle {
    const get = (name: string) => {
      for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
      return undefined;
    };
    const w3c = parseTraceparent(get("traceparent"));
    const incoming = w3c ?? parseB3(get);
    const traceId = incoming?.traceId ?? this.hex(16);
    // A caller may send only a sampling decision (b3: 0, x-b3-sampled: 1) without ids: it is kept.
    const sampled = incoming?.sampled ?? b3Decision(get) ?? Math.random() < this.samplingFraction;
    const spanId = this.hex(8);
    const existingId = get("x-request-id");
    const requestId =
      existingId !== undefined && existingId.length > 0 && existingId.length <= MAX_REQUEST_ID
        ? existingId
        : randomUUID();
    const up: HeaderValueOption[] = [
      { name: "traceparent", value: formatTraceparent(traceId, spanId, sampled) },
      { name: "x-request-id", value: requestId },
    ];
    const tracestate = get("tracestate");
    if (w3c !== undefined && tracestate !== undefined && tracestate.length <= 512)
      up.push({ name: "tracestate", value: tracestate });
    if (incoming?.format === "b3") {
      up.push(
        { name: "x-b3-traceid", value: traceId },
        { name: "x-b3-spanid", value: spanId },
        { name: "x-b3-parentspanid", value: incoming.parentSpanId },
        { name: "x-b3-sampled", value: sampled ? "1" : "0" },
      );
    }
    return {
      traceId,
      spanId,
      parentSpanId: incoming?.parentSpanId ?? "",
      sampled,
      upstreamHeaders: up,
      requestId,
    };
  }

  end(handle: TraceHandle, record: HttpRequestRecord): void {
    if (handle.sampled) this.sink.export({ handle, record });
  }

  shutdown(): Promise<void> {
    return this.sink.shutdown();
  }

  private hex(bytes: number): string {
    if (this.at + bytes > this.pool.length) {
      this.pool = randomBytes(4096);
      this.at = 0;
    }
    const s = this.pool.toString("hex", this.at, this.at + bytes);
    this.at += bytes;
    return s;
  }
}

/** A bare B3 sampling decision: "b3: 0|1|d" or x-b3-sampled / x-b3-flags without ids. */
function b3Decision(get: (name: string) => string | undefined): boolean | undefined {
  const single = get("b3");
  if (single === "0") return false;
  if (single === "1" || single === "d") return true;
  if (get("x-b3-flags") === "1") return true;
  const s = get("x-b3-sampled");
  if (s === "1" || s === "true") return true;
  if (s === "0" || s === "false") return false;
  return undefined;
}
