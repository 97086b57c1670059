// Trace context on the wire: W3C traceparent (version 00) and Zipkin's B3 (multi-header and single "b3").
// Parsing is strict (exact lengths, lower-case hex, no all-zero ids) and never throws: anything else is no
// context, and the proxy starts a new trace.

export interface TraceContext {
  /** 32 lower-case hex. */
  readonly traceId: string;
  /** The caller's span (16 hex), the parent of this hop's span; "" when the trace starts here. */
  readonly parentSpanId: string;
  /** Whether the caller decided to sample; undefined when it left the decision to us. */
  readonly sampled: boolean | undefined;
  /** The propagation format the request used, so that the response keeps to it. */
  readonly format: "w3c" | "b3" | "none";
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = "0".repeat(32);
const ZERO16 = "0".repeat(16);

/** traceparent: 00-TRACEID-PARENTID-FLAGS. */
export function parseTraceparent(v: string | undefined): TraceContext | undefined {
  if (v === undefined || v.length !== 55) return undefined;
  const [version, traceId, spanId, flags] = v.split("-");
  if (version !== "00" || !traceId || !spanId || !flags) return undefined;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16)
    return undefined;
  if (!/^[0-9a-f]{2}$/.test(flags)) return undefined;
  return { traceId, parentSpanId: spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1, format: "w3c" };
}

/** B3: the single "b3" header (TRACEID-SPANID[-SAMPLED[-PARENT]]) or x-b3-traceid / x-b3-spanid / x-b3-sampled. */
export function parseB3(get: (name: string) => string | undefined): TraceContext | undefined {
  const single = get("b3");
  if (single !== undefined && single.length <= 128) {
    const parts = single.split("-");
    if (parts.length === 1) return undefined; // a bare sampling decision, no context
    const ctx = b3Ids(parts[0], parts[1], parts[2]);
    if (ctx) return ctx;
  }
  return b3Ids(
    get("x-b3-traceid"),
    get("x-b3-spanid"),
    get("x-b3-flags") === "1" ? "d" : get("x-b3-sampled"),
  );
}

function b3Ids(
  trace: string | undefined,
  span: string | undefined,
  sampled: string | undefined,
): TraceContext | undefined {
  if (trace === undefined || span === undefined) return undefined;
  const t = trace.length === 16 ? `${ZERO16}${trace}` : trace;
  if (!HEX32.test(t) || t === ZERO32 || !HEX16.test(span) || span === ZERO16) return undefined;
  const s =
    sampled === "1" || sampled === "d" || sampled === "true"
      ? true
      : sampled === "0" || sampled === "false"
        ? false
        : undefined;
  return { traceId: t, parentSpanId: span, sampled: s, format: "b3" };
}

export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? "01" : "00"}`;
}
