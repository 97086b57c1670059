// Istio's semantic rules for PeerAuthentication and RequestAuthentication.
import { type Checker, each, eachObj, type Obj, obj, type Path, setKeys, str } from "./checker.ts";
import { workloadSelector } from "./common.ts";
import { durationAtLeast1ms, port } from "./formats.ts";

export function validatePeerAuthentication(c: Checker, spec: Obj): void {
  if (spec.selector !== undefined) workloadSelector(c, spec.selector, ["spec", "selector"]);
  const plm = obj(spec.portLevelMtls);
  if (plm === undefined) return;
  const ml = obj(obj(spec.selector)?.matchLabels);
  if (!ml || Object.keys(ml).length === 0)
    c.error(["spec", "portLevelMtls"], "mesh/namespace peer authentication cannot have port level mTLS");
  if (Object.keys(plm).length === 0)
    c.error(["spec", "portLevelMtls"], "port level mTLS, if defined, must have at least one element");
  for (const key of Object.keys(plm)) {
    if (!/^\d+$/.test(key) || port(Number(key)))
      c.error(["spec", "portLevelMtls", key], "port must be in range 1..65535");
  }
}

const MAX_INLINE_JWKS_BYTES = 64 * 1024;

export function validateRequestAuthentication(c: Checker, spec: Obj): void {
  if (setKeys(spec, ["selector", "targetRef", "targetRefs"]).length > 1)
    c.error(["spec"], "only one of targetRefs or workloadSelector can be set");
  if (spec.selector !== undefined) workloadSelector(c, spec.selector, ["spec", "selector"]);
  const issuers = new Set<string>();
  eachObj(spec.jwtRules, ["spec", "jwtRules"], (rule, p) => {
    const issuer = str(rule.issuer);
    const jwksUri = str(rule.jwksUri);
    if (!issuer && !jwksUri) c.error(p, "issuer or jwksUri must be non-empty string");
    if (issuer) {
      if (issuers.has(issuer))
        c.warn([...p, "issuer"], `issuer "${issuer}" is configured in more than one rule`);
      issuers.add(issuer);
    }
    each(rule.audiences, [...p, "audiences"], (a, ap) => {
      if (!str(a)) c.error(ap, "audience must be non-empty string");
    });
    if (jwksUri) {
      let url: URL | undefined;
      try {
        url = new URL(jwksUri);
      } catch {
        c.error([...p, "jwksUri"], `jwksUri "${jwksUri}" is not a valid URL`);
      }
      if (url && url.protocol !== "http:" && url.protocol !== "https:")
        c.error([...p, "jwksUri"], `URI scheme "${url.protocol.slice(0, -1)}" is not supported`);
    }
    const jwks = str(rule.jwks);
    if (jwks !== undefined) inlineJwks(c, jwks, [...p, "jwks"]);
    eachObj(rule.fromHeaders, [...p, "fromHeaders"], (h, hp) => {
      if (!str(h.name)) c.error([...hp, "name"], "location header name must be non-empty string");
    });
    each(rule.fromParams, [...p, "fromParams"], (q, qp) => {
      if (!str(q)) c.error(qp, "location query must be non-empty string");
    });
    each(rule.fromCookies, [...p, "fromCookies"], (q, qp) => {
      if (!str(q)) c.error(qp, "cookie name must be non-empty string");
    });
    eachObj(rule.outputClaimToHeaders, [...p, "outputClaimToHeaders"], (o, op) => {
      const header = str(o.header);
      if (!header || !str(o.claim))
        c.error(op, "outputClaimToHeaders header and claim value must be non-empty string");
      else if (!/^[-_A-Za-z0-9]+$/.test(header))
        c.error([...op, "header"], `header name ${header} is not a valid header name`);
    });
    const out = str(rule.outputPayloadToHeader);
    if (out !== undefined && !/^[-_A-Za-z0-9]+$/.test(out))
      c.error([...p, "outputPayloadToHeader"], `header name ${out} is not a valid header name`);
    const timeout = str(rule.timeout);
    if (timeout !== undefined) {
      const err = durationAtLeast1ms(timeout);
      if (err) c.error([...p, "timeout"], err);
    }
  });
}

/** An inline JWKS must parse and hold public keys only. */
function inlineJwks(c: Checker, jwks: string, p: Path): void {
  if (jwks.length > MAX_INLINE_JWKS_BYTES) {
    c.error(p, `jwks is larger than ${MAX_INLINE_JWKS_BYTES} bytes`);
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(jwks);
  } catch (e) {
    c.error(p, `jwks parse error: ${(e as Error).message}`);
    return;
  }
  const keys = obj(parsed)?.keys;
  if (!Array.isArray(keys)) {
    c.error(p, "jwks parse error: no keys array");
    return;
  }
  keys.forEach((k, i) => {
    const key = obj(k);
    if (!key || !str(key.kty)) c.error(p, `jwks parse error: key at index ${i} has no kty`);
    else if (key.d !== undefined || key.kty === "oct")
      c.warn(
        p,
        `jwks key at index ${i} contains private key material; only public keys are used for verification`,
      );
  });
}
