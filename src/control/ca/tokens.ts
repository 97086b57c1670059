// Workload tokens: what a proxy shows the CA to get a certificate. Istio uses the pod's Kubernetes service
// account token; isthmus has no API server, so the control plane issues its own short-lived JWTs (ES256,
// sub "system:serviceaccount:NS:SA" like Kubernetes', aud "isthmus-ca") to whoever holds the admin token
// (the local runtime, an operator), and the CA verifies them on each CSR. The signing key is generated at
// start, or kept in --state-dir so that tokens handed out survive a restart of the control plane.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { calculateJwkThumbprint, decodeProtectedHeader, errors, exportJWK, jwtVerify, SignJWT } from "jose";
import type { Grant } from "./authority.ts";
import { writeFiles } from "./cacerts.ts";

export const TOKEN_AUDIENCE = "isthmus-ca";
export const TOKEN_ISSUER = "isthmus-control-plane";
export const TOKEN_KEY_FILE = "token-signing-key.pem";
/** Our tokens are about 400 bytes; a larger one is refused before it is decoded. */
export const MAX_TOKEN_BYTES = 4096;
export const DEFAULT_TOKEN_TTL_SECONDS = 3600;
/** Short-lived by design: a leaked token is worth a day at most. Holders re-request (the token file is re-read). */
export const MAX_TOKEN_TTL_SECONDS = 86_400;
const ALGORITHM = "ES256";
/** Clock skew tolerated between the issuer and whoever checks exp/nbf (the same process today). */
const CLOCK_TOLERANCE_SECONDS = 5;

/** Why a token was refused; a fixed set (metrics label values). */
export type TokenRefusal =
  | "missing"
  | "too-large"
  | "malformed"
  | "algorithm"
  | "signature"
  | "expired"
  | "not-yet-valid"
  | "audience"
  | "issuer"
  | "subject";

export type TokenCheck =
  | { readonly ok: true; readonly grant: Grant; readonly expiresAt: Date }
  | { readonly ok: false; readonly reason: TokenRefusal; readonly message: string };

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** Problems of a namespace / service account pair (Kubernetes' name rules), empty when valid. */
export function grantProblems(namespace: unknown, serviceAccount: unknown): string[] {
  const out: string[] = [];
  if (typeof namespace !== "string" || !NAMESPACE.test(namespace))
    out.push("namespace must be a DNS-1123 label (lower case letters, digits, '-', at most 63 characters)");
  if (typeof serviceAccount !== "string" || !SERVICE_ACCOUNT.test(serviceAccount))
    out.push("serviceAccount must be a DNS-1123 subdomain (lower case letters, digits, '-', '.')");
  return out;
}

export class WorkloadTokens {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  private readonly kid: string;

  private constructor(privateKey: KeyObject, kid: string) {
    this.privateKey = privateKey;
    this.publicKey = createPublicKey(privateKey);
    this.kid = kid;
  }

  private static async fromKey(privateKey: KeyObject): Promise<WorkloadTokens> {
    if (privateKey.asymmetricKeyType !== "ec" || privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1")
      throw new Error("the token signing key must be an EC P-256 key");
    const kid = await calculateJwkThumbprint(await exportJWK(createPublicKey(privateKey)));
    return new WorkloadTokens(privateKey, kid);
  }

  /** With a key that lives as long as this process. */
  static generate(): Promise<WorkloadTokens> {
    return WorkloadTokens.fromKey(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
  }

  /** With the key in DIR/token-signing-key.pem, created (0600) on first use. */
  static async loadOrCreate(dir: string): Promise<WorkloadTokens> {
    const file = join(dir, TOKEN_KEY_FILE);
    if (existsSync(file)) {
      if (lstatSync(file).size > 16 * 1024) throw new Error(`${file} is too large to be a key`);
      try {
        return await WorkloadTokens.fromKey(createPrivateKey(readFileSync(file, "utf8")));
      } catch (e) {
        throw new Error(`cannot use the token signing key ${file}: ${(e as Error).message}`);
      }
    }
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFiles(dir, { [TOKEN_KEY_FILE]: privateKey.export({ format: "pem", type: "pkcs8" }).toString() });
    return WorkloadTokens.fromKey(privateKey);
  }

  /** A token granting `grant`'s identity for ttlSeconds. */
  async issue(
    grant: Grant,
    ttlSeconds = DEFAULT_TOKEN_TTL_SECONDS,
  ): Promise<{ token: string; expiresAt: Date }> {
    const problems = grantProblems(grant.namespace, grant.serviceAccount);
    if (problems.length > 0) throw new Error(problems.join("; "));
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TOKEN_TTL_SECONDS)
      throw new Error(`ttlSeconds must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: ALGORITHM, typ: "JWT", kid: this.kid })
      .setIssuer(TOKEN_ISSUER)
      .setSubject(`system:serviceaccount:${grant.namespace}:${grant.serviceAccount}`)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(this.privateKey);
    return { token, expiresAt: new Date((now + ttlSeconds) * 1000) };
  }

  /**
   * The config API's request body {namespace, serviceAccount, ttlSeconds?}: a token, or what is wrong with
   * the body.
   */
  async issueFor(
    body: unknown,
  ): Promise<{ ok: true; token: string; expiresAt: string } | { ok: false; errors: string[] }> {
    if (typeof body !== "object" || body === null || Array.isArray(body))
      return {
        ok: false,
        errors: ["the body must be a JSON object {namespace, serviceAccount, ttlSeconds}"],
      };
    const { namespace, serviceAccount, ttlSeconds, ...rest } = body as Record<string, unknown>;
    const errors = grantProblems(namespace, serviceAccount);
    for (const k of Object.keys(rest)) errors.push(`unknown field "${k}"`);
    const ttl = ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS)
      errors.push(`ttlSeconds must be an integer from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    if (errors.length > 0) return { ok: false, errors };
    const issued = await this.issue(
      { namespace: namespace as string, serviceAccount: serviceAccount as string },
      ttl as number,
    );
    return { ok: true, token: issued.token, expiresAt: issued.expiresAt.toISOString() };
  }

  /** The identity a token grants, or why it grants none. Never throws; the token itself is never echoed. */
  async verify(token: string | undefined): Promise<TokenCheck> {
    const refuse = (reason: TokenRefusal, message: string): TokenCheck => ({ ok: false, reason, message });
    if (token === undefined || token === "")
      return refuse("missing", "no token (authorization: Bearer TOKEN)");
    if (token.length > MAX_TOKEN_BYTES)
      return refuse(
        "too-large",
        `the token has ${token.length} bytes; at most ${MAX_TOKEN_BYTES} are accepted`,
      );
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      return refuse("malformed", "the token is not a JWS compact serialization");
    }
    // Checked before the signature, so that "none" and HMAC confusion get their own reason.
    if (alg !== ALGORITHM)
      return refuse("algorithm", `algorithm ${JSON.stringify(alg)} is not accepted (${ALGORITHM})`);
    let payload: { sub?: string; exp?: number };
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, {
        algorithms: [ALGORITHM],
        audience: TOKEN_AUDIENCE,
        issuer: TOKEN_ISSUER,
        requiredClaims: ["sub", "exp"],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (e) {
      return tokenError(e);
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(payload.sub ?? "");
    if (!m || grantProblems(m[1], m[2]).length > 0)
      return refuse(
        "subject",
        `subject "${String(payload.sub).slice(0, 300)}" is not system:serviceaccount:NS:SA`,
      );
    return {
      ok: true,
      grant: { namespace: m[1]!, serviceAccount: m[2]! },
      expiresAt: new Date((payload.exp ?? 0) * 1000),
    };
  }
}

function tokenError(e: unknown): TokenCheck {
  const refuse = (reason: TokenRefusal, message: string): TokenCheck => ({ ok: false, reason, message });
  if (e instanceof errors.JWTExpired) return refuse("expired", "the token has expired");
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === "aud") return refuse("audience", `the token's audience is not ${TOKEN_AUDIENCE}`);
    if (e.claim === "iss") return refuse("issuer", `the token's issuer is not ${TOKEN_ISSUER}`);
    if (e.claim === "nbf" || e.claim === "iat") return refuse("not-yet-valid", "the token is not valid yet");
    return refuse("malformed", `claim ${e.claim}: ${e.reason}`);
  }
  if (e instanceof errors.JWSSignatureVerificationFailed)
    return refuse("signature", "the token's signature does not verify (signed by another key?)");
  if (e instanceof errors.JOSEAlgNotAllowed)
    return refuse("algorithm", "the token's algorithm is not accepted");
  return refuse("malformed", `the token is malformed: ${(e as Error).message}`);
}
