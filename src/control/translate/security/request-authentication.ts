// RequestAuthentication -> the proxy's jwt_authn providers, one per jwtRule of every applicable resource
// (Istio's requirement: any of them, or no token). jwks inline -> localJwks; jwksUri -> a remote JWKS the proxy
// fetches, caches and refreshes itself. A rule with neither (Istio would discover the keys through the
// issuer's OpenID configuration) gets an empty key set: its tokens are refused, never accepted unverified.
import type { Resource } from "../../../api/resource.ts";
import { arr, obj, str } from "../../../api/validate/checker.ts";
import type { JwtAuthnConfig, JwtProvider } from "../../../proxy/config/types.ts";

export function jwtAuthnConfig(resources: readonly Resource[]): JwtAuthnConfig | undefined {
  const providers: JwtProvider[] = [];
  const sorted = [...resources].sort((a, b) =>
    a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace),
  );
  for (const r of sorted)
    arr(obj(r.object.spec)?.jwtRules).forEach((x, i) => {
      const rule = obj(x);
      if (!rule) return;
      const issuer = str(rule.issuer);
      const jwks = str(rule.jwks);
      const jwksUri = str(rule.jwksUri);
      const strings = (v: unknown) => arr(v).filter((s): s is string => typeof s === "string");
      const headers = arr(rule.fromHeaders)
        .map((h) => obj(h))
        .filter((h) => h !== undefined && str(h.name) !== undefined)
        .map((h) => ({
          name: str(h!.name)!,
          ...(str(h!.prefix) !== undefined ? { valuePrefix: str(h!.prefix)! } : {}),
        }));
      const audiences = strings(rule.audiences);
      const params = strings(rule.fromParams);
      const cookies = strings(rule.fromCookies);
      const out = str(rule.outputPayloadToHeader);
      providers.push({
        name: `${r.namespace}/${r.name}/${i}`,
        ...(issuer !== undefined ? { issuer } : {}),
        ...(audiences.length > 0 ? { audiences } : {}),
        ...(jwks !== undefined
          ? { localJwks: jwks }
          : jwksUri !== undefined
            ? { remoteJwks: { uri: jwksUri } }
            : { localJwks: '{"keys":[]}' }),
        ...(headers.length > 0 ? { fromHeaders: headers } : {}),
        ...(params.length > 0 ? { fromParams: params } : {}),
        ...(cookies.length > 0 ? { fromCookies: cookies } : {}),
        ...(rule.forwardOriginalToken === true ? { forward: true } : {}),
        ...(out !== undefined ? { forwardPayloadHeader: out } : {}),
      });
    });
  return providers.length > 0 ? { providers } : undefined;
}
