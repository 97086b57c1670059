// Value formats shared by Istio's and Kubernetes' validation: names, hosts, durations, ports, regexes, CIDRs.
// Each returns an error message, or undefined when the value is valid.
import { isIP } from "node:net";
import RE2 from "re2";

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function dns1123Label(v: string): string | undefined {
  if (v.length > 63) return `"${v}" is longer than 63 characters`;
  if (!DNS1123_LABEL.test(v))
    return `"${v}" is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)`;
  return undefined;
}

export function dns1123Subdomain(v: string): string | undefined {
  if (v.length > 253) return `"${v}" is longer than 253 characters`;
  for (const label of v.split(".")) {
    if (!DNS1123_LABEL.test(label) || label.length > 63)
      return `"${v}" is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.')`;
  }
  return undefined;
}

/** A host as Istio accepts it: a DNS name, optionally starting with a `*` label ("*", "*.example.com"). */
export function wildcardHost(v: string): string | undefined {
  if (v === "") return "host must not be empty";
  if (v.length > 255) return `host "${v}" is longer than 255 characters`;
  const labels = v.split(".");
  for (const [i, label] of labels.entries()) {
    // Istio's ValidateWildcardDomain: the first label may be "*", "*foo" or "*-foo".
    if (i === 0 && /^\*([-A-Za-z0-9]*[A-Za-z0-9])?$/.test(label)) continue;
    if (i === labels.length - 1 && label === "" && labels.length > 1) continue; // trailing dot (FQDN)
    if (label.length === 0 || label.length > 63 || !/^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$/.test(label)) {
      if (label.includes("*"))
        return `host "${v}": a wildcard is only allowed as the whole first label ("*.example.com")`;
      return `host "${v}" is not a valid DNS name`;
    }
  }
  return undefined;
}

/** Kubernetes label key: optional DNS-subdomain prefix and a name of <= 63 characters. */
export function labelKey(k: string): string | undefined {
  const slash = k.lastIndexOf("/");
  const prefix = slash === -1 ? undefined : k.slice(0, slash);
  const name = slash === -1 ? k : k.slice(slash + 1);
  if (prefix !== undefined && (prefix === "" || dns1123Subdomain(prefix)))
    return `label key "${k}" has an invalid prefix`;
  if (!/^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/.test(name) || name.length > 63)
    return `label key "${k}" is invalid (a name of at most 63 alphanumerics, '-', '_' or '.')`;
  return undefined;
}

export function labelValue(v: string): string | undefined {
  if (v === "") return undefined;
  if (v.length > 63 || !/^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(v))
    return `label value "${v}" is invalid (at most 63 alphanumerics, '-', '_' or '.')`;
  return undefined;
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration as Istio's CRDs take them (Go / CEL syntax: "1h30m", "1.5s", "100ms") into milliseconds,
 * or returns an error message.
 */
export function parseDuration(v: string): number | string {
  if (!/^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/.test(v))
    return `"${v}" is not a duration (e.g. "10s", "1.5s", "250ms", "1h")`;
  let total = 0;
  for (const m of v.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  }
  return total;
}

/** Istio's ValidateDuration: at least 1ms and whole milliseconds. */
export function durationAtLeast1ms(v: string): string | undefined {
  const ms = parseDuration(v);
  if (typeof ms === "string") return ms;
  if (ms < 1) return `duration must be greater than 1ms (got "${v}")`;
  if (Math.abs(ms - Math.round(ms)) > 1e-9)
    return `only durations to ms precision are supported (got "${v}")`;
  return undefined;
}

export function port(n: unknown): string | undefined {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535)
    return `port number ${JSON.stringify(n)} must be in the range 1..65535`;
  return undefined;
}

export function percent(n: unknown): string | undefined {
  if (typeof n !== "number" || !(n >= 0 && n <= 100))
    return `percentage ${JSON.stringify(n)} is not in range 0..100`;
  return undefined;
}

/** Largest regex accepted; Envoy's RE2 program-size guard does the same job on its side. */
const MAX_REGEX_LENGTH = 1024;

/** RE2 syntax, as Istio and Envoy use: no backreferences, no lookaround. */
export function re2Regex(pattern: string): string | undefined {
  if (pattern.length > MAX_REGEX_LENGTH)
    return `regex is too large, max length allowed is ${MAX_REGEX_LENGTH}`;
  try {
    new RE2(pattern, "u");
    return undefined;
  } catch (e) {
    return `"${pattern}": ${(e as Error).message}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)`;
  }
}

export function cidrOrIp(v: string): string | undefined {
  const slash = v.indexOf("/");
  const ip = slash === -1 ? v : v.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) return `"${v}" is not an IP address or CIDR block`;
  if (slash !== -1) {
    const bits = v.slice(slash + 1);
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `"${v}" has an invalid prefix length`;
  }
  return undefined;
}

export function ipAddress(v: string): string | undefined {
  return isIP(v) === 0 ? `"${v}" is not an IP address` : undefined;
}

/** An HTTP header name (RFC 9110 token). */
export function headerName(v: string): string | undefined {
  if (v === "") return "header name must not be empty";
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v)) return `"${v}" is not a valid HTTP header name`;
  return undefined;
}

/** Istio's protocol names for ports (Gateway, ServiceEntry, Sidecar). */
export const PROTOCOLS = new Set([
  "HTTP",
  "HTTPS",
  "GRPC",
  "GRPC-WEB",
  "HTTP2",
  "MONGO",
  "REDIS",
  "MYSQL",
  "TCP",
  "TLS",
  "UDP",
  "HBONE",
]);

export function protocol(v: string): string | undefined {
  return PROTOCOLS.has(v.toUpperCase())
    ? undefined
    : `unknown protocol "${v}"; one of ${[...PROTOCOLS].join(", ")}`;
}
