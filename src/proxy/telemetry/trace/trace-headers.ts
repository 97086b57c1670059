// The trace headers the proxy replaces on the way upstream, in a module of their own so that the exchanges can
// know them without loading the tracer (and node:crypto) in proxies that do not trace.
/** Names of the headers RequestTracer.begin() replaces, for the exchanges to drop from the request. */
export const TRACE_HEADERS: ReadonlySet<string> = new Set([
  "traceparent",
  "b3",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-flags",
  // Passed on again by begin() when the trace it belongs to is continued, dropped when a new one starts.
  "tracestate",
  // Always set again by begin(), so that a request carrying several ends up with exactly one.
  "x-request-id",
]);
