// TLS peers refused, on both sides of the proxy: why (Envoy's ssl.* stat names), counted per listener and per
// cluster, and logged with the peer and the reason, at most one line per reason per second (a flood of bad
// clients must not flood the log; what was held back is counted in the next line). Loaded on first use by
// proxies with TLS (tls-failures-lazy.ts): a plain-text sidecar never loads it.
//
// Never logged: keys, certificates as a whole. A peer's chain is described by its fields (subject, SANs,
// issuer, serial, validity, SHA-256 fingerprint), each quoted and cut to a bounded length, since a peer chooses
// them.
import type net from "node:net";
import type tls from "node:tls";
import { type Counter, StatsStore } from "../stats/stats.ts";

/** Envoy's names: `listener.NAME.ssl.KIND` and `cluster.NAME.ssl.KIND`. */
export type TlsFailureKind =
  | "fail_verify_no_cert"
  | "fail_verify_error"
  | "fail_verify_san"
  | "connection_error";

export interface TlsFailure {
  readonly kind: TlsFailureKind;
  /** A short code: the rate limit's key with the kind (CERT_HAS_EXPIRED, ECONNRESET, SAN_MISMATCH...). */
  readonly code: string;
  /** The whole reason, for the log and the transport failure reason. */
  readonly reason: string;
}

/** Where the lines go: stderr, as the proxy's other lines. Replaceable (tests). */
export const tlsLog = {
  write(line: string): void {
    process.stderr.write(line);
  },
};

/** OpenSSL's certificate verification results as Node names them (X509_V_ERR_*): the chain did not verify. */
const CHAIN_ERRORS = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_CRL",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "CERT_SIGNATURE_FAILURE",
  "CRL_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CRL_NOT_YET_VALID",
  "CRL_HAS_EXPIRED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "ERROR_IN_CRL_LAST_UPDATE_FIELD",
  "ERROR_IN_CRL_NEXT_UPDATE_FIELD",
  "OUT_OF_MEM",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_CHAIN_TOO_LONG",
  "CERT_REVOKED",
  "INVALID_CA",
  "PATH_LENGTH_EXCEEDED",
  "INVALID_PURPOSE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "UNSPECIFIED",
]);

/** Name checks: Node's default server identity check, OpenSSL's host check. */
const NAME_ERRORS = new Set(["ERR_TLS_CERT_ALTNAME_INVALID", "HOSTNAME_MISMATCH"]);

// ---------------------------------------------------------------------------------------------- the log

const LOG_INTERVAL_MS = 1000;
/** Distinct reasons tracked per scope; beyond, they share one line per second. */
const MAX_KEYS = 64;
const MAX_FIELD = 256;

interface LogEntry {
  last: number;
  suppressed: number;
  latest: string;
  timer: NodeJS.Timeout | undefined;
}

/**
 * One scope's lines (a listener, a cluster): the first line of a key (kind and code) is written at once, the
 * following ones within a second are counted, and a summary with their number and the latest of them is
 * written when the second is over. At most one line per key per second, whatever the rate of failures.
 */
export class RateLimitedLog {
  private readonly prefix: string;
  private readonly entries = new Map<string, LogEntry>();
  private readonly intervalMs: number;

  constructor(scope: string, intervalMs = LOG_INTERVAL_MS) {
    this.prefix = `isthmus proxy: tls: ${scope}: `;
    this.intervalMs = intervalMs;
  }

  log(key: string, message: string): void {
    const now = Date.now();
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= MAX_KEYS) this.sweep(now);
      if (this.entries.size >= MAX_KEYS) {
        key = "(other reasons)";
        e = this.entries.get(key);
      }
    }
    if (e === undefined) {
      this.entries.set(key, { last: now, suppressed: 0, latest: "", timer: undefined });
      this.write(message);
      return;
    }
    if (e.timer === undefined && now - e.last >= this.intervalMs) {
      e.last = now;
      this.write(message);
      return;
    }
    e.suppressed++;
    e.latest = message;
    if (e.timer === undefined) {
      const entry = e;
      entry.timer = setTimeout(() => this.flush(key, entry), Math.max(0, entry.last + this.intervalMs - now));
      entry.timer.unref();
    }
  }

  private flush(key: string, e: LogEntry): void {
    e.timer = undefined;
    if (e.suppressed === 0) return;
    const n = e.suppressed;
    const since = Date.now() - e.last;
    e.suppressed = 0;
    e.last = Date.now();
    this.write(`${n} more ${key} in the last ${since} ms, not logged one by one; the latest: ${e.latest}`);
  }

  /** Forgets keys quiet for a whole interval. */
  private sweep(now: number): void {
    for (const [k, e] of this.entries)
      if (e.timer === undefined && now - e.last >= this.intervalMs) this.entries.delete(k);
  }

  private write(message: string): void {
    try {
      tlsLog.write(`${this.prefix}${message}\n`);
    } catch {
      // a log that cannot be written never fails a connection
    }
  }
}

// ------------------------------------------------------------------------------------------- describing

/** A peer's value, quoted, with control characters escaped and cut to a bounded length. */
function q(value: string): string {
  return JSON.stringify(value.length > MAX_FIELD ? `${value.slice(0, MAX_FIELD)}...` : value);
}

/** A subject or issuer as "O=..., CN=..." (node:tls gives an object; repeated fields as arrays). */
function dn(name: tls.Certificate | undefined): string {
  if (name === undefined || name === null) return "";
  return Object.entries(name as unknown as Record<string, string | string[]>)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`)
    .join(", ");
}

function isEmpty(cert: tls.PeerCertificate | null | undefined): boolean {
  return cert === null || cert === undefined || Object.keys(cert).length === 0;
}

/** The peer's chain by its fields, leaf first (at most 4 certificates); "none" without a certificate. */
export function describeChain(socket: tls.TLSSocket): string {
  let cert: tls.DetailedPeerCertificate | undefined;
  try {
    cert = socket.getPeerCertificate(true);
  } catch {
    return "unavailable";
  }
  if (isEmpty(cert)) return "none";
  const parts: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; cert !== undefined && !isEmpty(cert) && i < 4; i++) {
    const fp = cert.fingerprint256 ?? "";
    if (seen.has(fp)) break;
    seen.add(fp);
    parts.push(
      `[${i}] subject=${q(dn(cert.subject))} san=${q(cert.subjectaltname ?? "")} issuer=${q(dn(cert.issuer))} ` +
        `serial=${q(cert.serialNumber ?? "")} valid=${q(`${cert.valid_from} .. ${cert.valid_to}`)} sha256=${fp}`,
    );
    const next: tls.DetailedPeerCertificate | undefined = cert.issuerCertificate;
    if (next === cert) break;
    cert = next;
  }
  return parts.join(" ");
}

/** The URI SANs of a certificate ("URI:a, DNS:b" -> ["a"]). */
function uriSans(cert: tls.PeerCertificate): string[] {
  return (cert.subjectaltname ?? "")
    .split(", ")
    .filter((n) => n.startsWith("URI:"))
    .map((n) => n.slice(4));
}

/**
 * "address:port" of the peer. A TLS socket that lost its handle (the peer reset the handshake) no longer knows
 * it; the raw socket it wraps does (the listener reads the address before the handshake, and Node caches it).
 */
function peerAddress(socket: net.Socket): string {
  let s: net.Socket | undefined = socket;
  if (s.remoteAddress === undefined) s = (socket as { _parent?: net.Socket })._parent;
  const a = s?.remoteAddress;
  if (a === undefined) return "unknown peer";
  return `${a.includes(":") ? `[${a}]` : a}:${s!.remotePort ?? 0}`;
}

/** An error as "CODE: reason": OpenSSL's errors carry a short reason besides a message with file and line. */
function errorText(err: Error): string {
  const e = err as NodeJS.ErrnoException & { reason?: unknown };
  const text = typeof e.reason === "string" && e.reason !== "" ? e.reason : err.message.trim();
  return clean(e.code ? `${e.code}: ${text}` : text);
}

/** Control characters escaped (a peer's text never starts a line of its own), cut to a bounded length. */
function clean(text: string): string {
  let out = "";
  for (const ch of text.length > 2 * MAX_FIELD ? `${text.slice(0, 2 * MAX_FIELD)}...` : text) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}

// ----------------------------------------------------------------------------------- downstream (listener)

/**
 * Why a client was refused by a chain that requires a verified certificate (and maybe one of `sans`): none
 * presented, a chain that does not verify (authorizationError: expired, not yet valid, unknown or self-signed
 * issuer), or an identity not allowed.
 */
export function classifyClient(socket: tls.TLSSocket, sans: readonly string[] | undefined): TlsFailure {
  const cert = socket.getPeerCertificate();
  if (isEmpty(cert))
    return { kind: "fail_verify_no_cert", code: "NO_CERTIFICATE", reason: "no client certificate" };
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? "UNVERIFIED");
    return { kind: "fail_verify_error", code, reason: code };
  }
  const ids = uriSans(cert);
  const allowed = `[${(sans ?? []).join(", ")}]`;
  return {
    kind: "fail_verify_san",
    code: "SAN_MISMATCH",
    reason:
      ids.length === 0
        ? `peer certificate has no URI SAN (${q(cert.subjectaltname ?? "")}), expected one of ${allowed}`
        : `peer identity ${ids
            .slice(0, 4)
            .map((id) => clean(id))
            .join(", ")}${ids.length > 4 ? ` (and ${ids.length - 4} more)` : ""} is not one of ${allowed}`,
  };
}

/** A listener's ssl.* counters and its log. */
export class ListenerTlsStats {
  readonly handshake: Counter;
  readonly noCert: Counter;
  readonly verifyError: Counter;
  readonly verifySan: Counter;
  readonly connectionError: Counter;
  private readonly log: RateLimitedLog;

  constructor(store: StatsStore, listener: string) {
    const p = `listener.${listener}.ssl.`;
    this.handshake = store.counter(`${p}handshake`);
    this.noCert = store.counter(`${p}fail_verify_no_cert`);
    this.verifyError = store.counter(`${p}fail_verify_error`);
    this.verifySan = store.counter(`${p}fail_verify_san`);
    this.connectionError = store.counter(`${p}connection_error`);
    this.log = new RateLimitedLog(`listener ${listener}`);
  }

  /** A client completed the handshake but its certificate does not pass the chain's requirements. */
  refused(socket: tls.TLSSocket, sans: readonly string[] | undefined): TlsFailure {
    const f = classifyClient(socket, sans);
    (f.kind === "fail_verify_no_cert"
      ? this.noCert
      : f.kind === "fail_verify_error"
        ? this.verifyError
        : this.verifySan
    ).inc();
    this.log.log(
      `${f.kind} ${f.code}`,
      `refused client ${peerAddress(socket)}: ssl.${f.kind}: ${f.reason}; peer chain: ${describeChain(socket)}`,
    );
    return f;
  }

  /** A handshake that failed (tlsClientError: a protocol error, an alert, a reset, the handshake timeout). */
  handshakeFailed(socket: net.Socket, err: Error): void {
    this.connectionError.inc();
    const code = (err as NodeJS.ErrnoException).code ?? "HANDSHAKE";
    this.log.log(
      `connection_error ${code}`,
      `handshake with ${peerAddress(socket)} failed: ssl.connection_error: ${errorText(err)}`,
    );
  }
}

const listenerStatsCache = new WeakMap<StatsStore, Map<string, ListenerTlsStats>>();

/** The listener's counters and log, the same object for the same store and name (they survive a config swap). */
export function listenerStats(store: StatsStore, listener: string): ListenerTlsStats {
  let m = listenerStatsCache.get(store);
  if (m === undefined) {
    m = new Map();
    listenerStatsCache.set(store, m);
  }
  let s = m.get(listener);
  if (s === undefined) {
    s = new ListenerTlsStats(store, listener);
    m.set(listener, s);
  }
  return s;
}

// -------------------------------------------------------------------------------------- upstream (cluster)

/**
 * Why a TLS connection to an upstream failed to open, or undefined when TLS had no part in it (a refused or
 * unreachable endpoint, a connect timeout before the TCP connection: counted as connect failures only).
 * `socket`, when given, tells a server identity check (checkServerIdentity's error, whatever its code) from
 * other errors by its authorizationError.
 */
export function classifyUpstream(err: Error, socket?: tls.TLSSocket): TlsFailure | undefined {
  const e = err as NodeJS.ErrnoException;
  if (e.syscall === "connect" || e.syscall === "getaddrinfo") return undefined;
  if (socket?.connecting) return undefined;
  const code = e.code;
  const text = errorText(err);
  if (code !== undefined && CHAIN_ERRORS.has(code)) return { kind: "fail_verify_error", code, reason: text };
  const authz = socket?.authorizationError as unknown;
  const identityCheck =
    (code !== undefined && NAME_ERRORS.has(code)) ||
    (authz !== undefined && authz !== null && (authz === err.message || authz === code)) ||
    // Without the socket: the cluster's matchSubjectAltNames check words its error this way (cluster.ts).
    (socket === undefined && code === undefined && err.message.startsWith("peer identity "));
  if (identityCheck) return { kind: "fail_verify_san", code: code ?? "SAN_MISMATCH", reason: text };
  return { kind: "connection_error", code: code ?? "HANDSHAKE", reason: text };
}

/** A cluster's ssl.* counters and its log. */
export class UpstreamTlsStats {
  readonly verifyError: Counter;
  readonly verifySan: Counter;
  readonly connectionError: Counter;
  private readonly log: RateLimitedLog;

  constructor(store: StatsStore, cluster: string) {
    const p = `cluster.${cluster}.ssl.`;
    this.verifyError = store.counter(`${p}fail_verify_error`);
    this.verifySan = store.counter(`${p}fail_verify_san`);
    this.connectionError = store.counter(`${p}connection_error`);
    this.log = new RateLimitedLog(`cluster ${cluster}`);
  }

  /**
   * Counts and logs a failed TLS connect to `endpoint` ("address:port"); returns the transport failure reason
   * for the 503, or undefined when the failure was not TLS's (nothing counted then).
   */
  failure(endpoint: string, err: Error, socket?: tls.TLSSocket): string | undefined {
    const f = classifyUpstream(err, socket);
    if (f === undefined) return undefined;
    (f.kind === "fail_verify_error"
      ? this.verifyError
      : f.kind === "fail_verify_san"
        ? this.verifySan
        : this.connectionError
    ).inc();
    this.log.log(`${f.kind} ${f.code}`, `endpoint ${endpoint} refused: ssl.${f.kind}: ${f.reason}`);
    return `TLS error: ${f.reason} (ssl.${f.kind})`;
  }
}

const upstreamStatsCache = new WeakMap<StatsStore, Map<string, UpstreamTlsStats>>();

/** The cluster's counters and log, the same object for the same store and name. */
export function upstreamStats(store: StatsStore, cluster: string): UpstreamTlsStats {
  let m = upstreamStatsCache.get(store);
  if (m === undefined) {
    m = new Map();
    upstreamStatsCache.set(store, m);
  }
  let s = m.get(cluster);
  if (s === undefined) {
    s = new UpstreamTlsStats(store, cluster);
    m.set(cluster, s);
  }
  return s;
}

const byClusterCounter = new WeakMap<Counter, UpstreamTlsStats | null>();
const CLUSTER_COUNTER = /^cluster\.(.+)\.upstream_cx_total$/;

/**
 * The cluster's counters found from one of its own counters (`cluster.NAME.upstream_cx_total`, which every
 * connection pool holds through its cluster's limits): the pool knows neither its cluster's name nor its store.
 * Undefined for a counter no store made (a pool built in a unit test).
 */
export function upstreamStatsOf(clusterCounter: Counter): UpstreamTlsStats | undefined {
  let s = byClusterCounter.get(clusterCounter);
  if (s === undefined) {
    const m = CLUSTER_COUNTER.exec(clusterCounter.name);
    const store = m ? StatsStore.ownerOf(clusterCounter) : undefined;
    s = m && store ? upstreamStats(store, m[1]!) : null;
    byClusterCounter.set(clusterCounter, s);
  }
  return s ?? undefined;
}
