// Envoy's jwt_authn with Istio's requirement (any provider, or no token at all): tokens are looked for where
// the providers say, each one found must verify against the provider of its issuer, else 401 with Envoy's
// message; a request without any token passes without a principal (an ALLOW policy naming requestPrincipals
// then denies it). Keys: the JWK's own algorithm (jose), never "none". jose is loaded on first use.
import type { JwtAuthnConfig, JwtProvider } from "../config/types.ts";
import { httpModule, httpsModule } from "../lazy-modules.ts";
import type { Counter, StatsStore } from "../stats/stats.ts";
import type { ClusterManager, Endpoint } from "../upstream/cluster.ts";
import type { VerifiedJwt } from "./rbac.ts";

type Jose = typeof import("jose");
type KeySet = ReturnType<Jose["createLocalJWKSet"]>;

let josePromise: Promise<Jose> | undefined;
function jose(): Promise<Jose> {
  josePromise ??= import("jose");
  return josePromise;
}

/** Envoy's messages (the 401's body). */
export const JWT_MESSAGES = {
  malformed: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
  badAlg: "Jwt header [alg] is not supported",
  unknownIssuer: "Jwt issuer is not configured",
  expired: "Jwt is expired",
  notYetValid: "Jwt not yet valid",
  audience: "Jwt audiences are not allowed",
  verification: "Jwt verification fails",
  noKey: "Jwks doesn't have key to match kid or alg from Jwt",
  fetch: "Jwks remote fetch is failed",
  tooLarge: "Jwt exceeds the size limit",
} as const;

const DEFAULT_MAX_TOKEN = 8192;
const MAX_JWKS_BYTES = 256 * 1024;
/** A kid the cached JWKS lacks refetches it, at most this often (a client cannot make us hammer the issuer). */
const MIN_REFETCH_MS = 1000;
const MAX_CACHED_JWKS = 128;

/** The request as the filter reads and edits it. */
export interface JwtRequest {
  /** Flat [name, value, ...], lower-case names; edited in place (token removed, payload header added). */
  readonly headers: string[];
  /** With query. */
  readonly path: string;
}

export type JwtOutcome =
  | { readonly ok: true; readonly jwt: VerifiedJwt | undefined }
  | { readonly ok: false; readonly message: string };

interface Location {
  readonly provider: CompiledProvider;
  readonly header?: { readonly name: string; readonly prefix: string };
  readonly param?: string;
  readonly cookie?: string;
}

interface CompiledProvider {
  readonly config: JwtProvider;
  readonly keys: () => Promise<KeySet | string>;
  readonly refetch: (() => Promise<KeySet | string>) | undefined;
}

/** One chain's jwt_authn filter. Counters PREFIX.jwt_authn.allowed / denied / jwks_fetch_success / jwks_fetch_failed. */
export class JwtAuthn {
  private readonly locations: Location[] = [];
  private readonly payloadHeaders: string[];
  private readonly allowedC: Counter;
  private readonly deniedC: Counter;
  private readonly fetchOk: Counter;
  private readonly fetchFail: Counter;

  constructor(c: JwtAuthnConfig, clusters: ClusterManager, store: StatsStore, statPrefix: string) {
    const p = `${statPrefix}jwt_authn.`;
    this.allowedC = store.counter(`${p}allowed`);
    this.deniedC = store.counter(`${p}denied`);
    this.fetchOk = store.counter(`${p}jwks_fetch_success`);
    this.fetchFail = store.counter(`${p}jwks_fetch_failed`);
    this.payloadHeaders = [];
    for (const pc of c.providers) {
      const provider = this.compile(pc, clusters);
      if (pc.forwardPayloadHeader) this.payloadHeaders.push(pc.forwardPayloadHeader.toLowerCase());
      const explicit =
        (pc.fromHeaders?.length ?? 0) + (pc.fromParams?.length ?? 0) + (pc.fromCookies?.length ?? 0) > 0;
      if (!explicit) {
        this.locations.push({ provider, header: { name: "authorization", prefix: "Bearer " } });
        this.locations.push({ provider, param: "access_token" });
        continue;
      }
      for (const h of pc.fromHeaders ?? [])
        this.locations.push({
          provider,
          header: { name: h.name.toLowerCase(), prefix: h.valuePrefix ?? "" },
        });
      for (const q of pc.fromParams ?? []) this.locations.push({ provider, param: q });
      for (const k of pc.fromCookies ?? []) this.locations.push({ provider, cookie: k });
    }
  }

  private compile(pc: JwtProvider, clusters: ClusterManager): CompiledProvider {
    if (pc.localJwks !== undefined) {
      const text = pc.localJwks;
      let set: Promise<KeySet | string> | undefined;
      return {
        config: pc,
        keys: () => {
          set ??= jose().then(
            (j) => j.createLocalJWKSet(JSON.parse(text)),
            () => JWT_MESSAGES.noKey,
          );
          return set;
        },
        refetch: undefined,
      };
    }
    const r = pc.remoteJwks!;
    const entry = remoteEntry(r.uri, r.cluster);
    const load = (force: boolean) =>
      entry.get(
        force,
        r.cacheDurationMs ?? 600_000,
        () =>
          fetchJwks(
            r.uri,
            r.cluster !== undefined ? clusters.get(r.cluster) : undefined,
            r.timeoutMs ?? 5000,
          ),
        this.fetchOk,
        this.fetchFail,
      );
    return { config: pc, keys: () => load(false), refetch: () => load(true) };
  }

  /** Verifies every token the request carries. The request's headers are edited on success. */
  async verify(req: JwtRequest): Promise<JwtOutcome> {
    const h = req.headers;
    // A client's own copy of a payload header would pass for a verified one.
    if (this.payloadHeaders.length > 0) removeHeaders(h, (n) => this.payloadHeaders.includes(n));
    const found = new Map<string, Location[]>();
    for (const loc of this.locations) {
      const token = extract(loc, req);
      if (token === undefined || token === "") continue;
      const l = found.get(token);
      if (l === undefined) found.set(token, [loc]);
      else l.push(loc);
    }
    if (found.size === 0) {
      this.allowedC.inc();
      return { ok: true, jwt: undefined };
    }
    let first: VerifiedJwt | undefined;
    const add: string[] = [];
    const removeFrom = new Set<string>();
    for (const [token, locs] of found) {
      const r = await this.verifyOne(token, locs);
      if (typeof r === "string") {
        this.deniedC.inc();
        return { ok: false, message: r };
      }
      first ??= r.jwt;
      const pc = r.provider.config;
      if (pc.forwardPayloadHeader) add.push(pc.forwardPayloadHeader.toLowerCase(), r.payloadB64);
      if (pc.forward !== true)
        for (const l of locs) if (l.header && l.provider === r.provider) removeFrom.add(l.header.name);
    }
    if (removeFrom.size > 0) removeHeaders(h, (n) => removeFrom.has(n));
    h.push(...add);
    this.allowedC.inc();
    return { ok: true, jwt: first };
  }

  private async verifyOne(
    token: string,
    locs: readonly Location[],
  ): Promise<{ jwt: VerifiedJwt; provider: CompiledProvider; payloadB64: string } | string> {
    const max = Math.min(...locs.map((l) => l.provider.config.maxTokenBytes ?? DEFAULT_MAX_TOKEN));
    if (token.length > max) return JWT_MESSAGES.tooLarge;
    const parts = token.split(".");
    if (parts.length !== 3) return JWT_MESSAGES.malformed;
    const j = await jose();
    let alg: unknown;
    let iss: unknown;
    try {
      alg = j.decodeProtectedHeader(token).alg;
      iss = j.decodeJwt(token).iss;
    } catch {
      return JWT_MESSAGES.malformed;
    }
    if (typeof alg !== "string" || alg === "" || alg.toLowerCase() === "none") return JWT_MESSAGES.badAlg;
    const provider = locs.find(
      (l) => l.provider.config.issuer === undefined || l.provider.config.issuer === iss,
    )?.provider;
    if (provider === undefined) return JWT_MESSAGES.unknownIssuer;
    const pc = provider.config;
    const attempt = async (keys: KeySet) => {
      const { payload } = await j.jwtVerify(token, keys, {
        ...(pc.issuer !== undefined ? { issuer: pc.issuer } : {}),
        ...(pc.audiences && pc.audiences.length > 0 ? { audience: [...pc.audiences] } : {}),
        clockTolerance: pc.clockSkewSeconds ?? 60,
      });
      return payload;
    };
    let keys = await provider.keys();
    if (typeof keys === "string") return keys;
    let payload: Record<string, unknown>;
    try {
      payload = await attempt(keys);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== "ERR_JWKS_NO_MATCHING_KEY" || provider.refetch === undefined) return messageOf(e);
      // A rotated key: the issuer's current set may have it.
      keys = await provider.refetch();
      if (typeof keys === "string") return keys;
      try {
        payload = await attempt(keys);
      } catch (e2) {
        return messageOf(e2);
      }
    }
    const sub = typeof payload.sub === "string" ? payload.sub : "";
    const principal = `${typeof payload.iss === "string" ? payload.iss : ""}/${sub}`;
    return { jwt: { principal, payload }, provider, payloadB64: parts[1]! };
  }
}

function messageOf(e: unknown): string {
  const err = e as { code?: string; claim?: string };
  switch (err.code) {
    case "ERR_JWT_EXPIRED":
      return JWT_MESSAGES.expired;
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (err.claim === "nbf" || err.claim === "iat") return JWT_MESSAGES.notYetValid;
      if (err.claim === "aud") return JWT_MESSAGES.audience;
      if (err.claim === "iss") return JWT_MESSAGES.unknownIssuer;
      return JWT_MESSAGES.verification;
    case "ERR_JWKS_NO_MATCHING_KEY":
    case "ERR_JWKS_MULTIPLE_MATCHING_KEYS":
      return JWT_MESSAGES.noKey;
    case "ERR_JOSE_ALG_NOT_ALLOWED":
    case "ERR_JOSE_NOT_SUPPORTED":
      return JWT_MESSAGES.badAlg;
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return JWT_MESSAGES.malformed;
    default:
      return JWT_MESSAGES.verification;
  }
}

function extract(loc: Location, req: JwtRequest): string | undefined {
  const h = req.headers;
  if (loc.header !== undefined) {
    const { name, prefix } = loc.header;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] !== name) continue;
      const v = h[i + 1]!;
      if (prefix === "") return v.trim();
      // Envoy compares the scheme without regard to case ("bearer x" is a bearer token).
      if (v.length > prefix.length && v.slice(0, prefix.length).toLowerCase() === prefix.toLowerCase())
        return v.slice(prefix.length).trim();
    }
    return undefined;
  }
  if (loc.param !== undefined) {
    const q = req.path.indexOf("?");
    if (q === -1) return undefined;
    for (const pair of req.path.slice(q + 1).split("&")) {
      const eq = pair.indexOf("=");
      if (eq === -1) continue;
      if (decodeSafe(pair.slice(0, eq)) === loc.param) return decodeSafe(pair.slice(eq + 1));
    }
    return undefined;
  }
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] !== "cookie") continue;
    for (const c of h[i + 1]!.split(";")) {
      const eq = c.indexOf("=");
      if (eq !== -1 && c.slice(0, eq).trim() === loc.cookie) return c.slice(eq + 1).trim();
    }
  }
  return undefined;
}

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

function removeHeaders(h: string[], drop: (name: string) => boolean): void {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (drop(h[i]!)) continue;
    h[w++] = h[i]!;
    h[w++] = h[i + 1]!;
  }
  h.length = w;
}

// ------------------------------------------------------------------------------------------- remote JWKS

/**
 * A remote JWKS shared by every chain and config that names the same URI and cluster, so that a config push
 * does not refetch it. At most MAX_CACHED_JWKS are kept (the oldest dropped).
 */
class RemoteJwks {
  private keys: KeySet | undefined;
  private fetchedAt = 0;
  private lastAttempt = 0;
  private pending: Promise<KeySet | string> | undefined;

  get(
    force: boolean,
    ttlMs: number,
    fetcher: () => Promise<unknown>,
    ok: Counter,
    fail: Counter,
  ): Promise<KeySet | string> {
    const now = Date.now();
    const fresh = this.keys !== undefined && now - this.fetchedAt < ttlMs;
    if (fresh && (!force || now - this.lastAttempt < MIN_REFETCH_MS)) return Promise.resolve(this.keys!);
    if (this.pending !== undefined) return this.pending;
    this.lastAttempt = now;
    this.pending = (async () => {
      try {
        const doc = await fetcher();
        const set = (await jose()).createLocalJWKSet(doc as Parameters<Jose["createLocalJWKSet"]>[0]);
        this.keys = set;
        this.fetchedAt = Date.now();
        ok.inc();
        return set;
      } catch {
        fail.inc();
        // An issuer briefly down: the keys we had still verify its tokens.
        return this.keys ?? JWT_MESSAGES.fetch;
      } finally {
        this.pending = undefined;
      }
    })();
    return this.pending;
  }
}

const remote = new Map<string, RemoteJwks>();

function remoteEntry(uri: string, cluster: string | undefined): RemoteJwks {
  const key = `${cluster ?? ""}\u0000${uri}`;
  let e = remote.get(key);
  if (e === undefined) {
    if (remote.size >= MAX_CACHED_JWKS) remote.delete(remote.keys().next().value!);
    e = new RemoteJwks();
    remote.set(key, e);
  }
  return e;
}

/** GET of the JWKS, bounded in time and size; through the cluster's endpoint when one is named. */
function fetchJwks(
  uri: string,
  cluster: { lb: { pick(x: object): unknown } } | undefined,
  timeoutMs: number,
): Promise<unknown> {
  const url = new URL(uri);
  const ep = cluster?.lb.pick({}) as Endpoint | undefined;
  if (cluster !== undefined && ep === undefined) return Promise.reject(new Error("no endpoint"));
  const secure = url.protocol === "https:";
  const mod = secure ? httpsModule() : httpModule();
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: ep?.address ?? url.hostname,
        port: ep?.port ?? (url.port || (secure ? 443 : 80)),
        path: `${url.pathname}${url.search}`,
        method: "GET",
        headers: { host: url.host, accept: "application/json" },
        ...(secure ? { servername: url.hostname } : {}),
        timeout: timeoutMs,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`status ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let n = 0;
        res.on("data", (c: Buffer) => {
          n += c.length;
          if (n > MAX_JWKS_BYTES) req.destroy(new Error("JWKS too large"));
          else chunks.push(c);
        });
        res.on("end", () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
          } catch (e) {
            reject(e);
          }
        });
        res.on("error", reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new Error("JWKS fetch timeout")), timeoutMs);
    req.on("close", () => clearTimeout(timer));
    req.on("timeout", () => req.destroy(new Error("JWKS fetch timeout")));
    req.on("error", reject);
    req.end();
  });
}
