// Istio's durations (protobuf Duration in YAML: "10s", "1.5s", "100ms", "1m", "1h", "2h30m").
const UNIT_MS: Readonly<Record<string, number>> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  ns: 0.000001,
};

/** Milliseconds of a duration string, or undefined when it is not one. */
export function durationMs(v: unknown): number | undefined {
  if (typeof v !== "string" || v.length === 0 || v.length > 64) return undefined;
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(v); m !== null; m = re.exec(v)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = re.lastIndex;
  }
  return at === v.length ? Math.round(total) : undefined;
}
