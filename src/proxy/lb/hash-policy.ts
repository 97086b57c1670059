// A route's hash policies → the request hash that RING_HASH and MAGLEV clusters pick with.
//
// Envoy (RouteAction.hash_policy) evaluates every policy and combines the hashes of those that produce one
// (rotating the running hash and xor-ing in the next), except that a policy marked `terminal` that produces a
// hash ends the evaluation; only when no policy produces a hash is there no hash (the balancer then picks at
// random). Our HashPolicy has no `terminal` flag: the first policy that yields a value wins and the rest are
// not evaluated, which is Envoy's behaviour with `terminal: true` on every policy, and what Istio's
// consistentHash (one key per DestinationRule) needs. No value from any policy: undefined.
//
// Values are hashed with murmur3 (hash.ts), the function that places the ring's virtual nodes:
// - header: the value the input returns for the name, as configured (HashInput.header should match names
//   case-insensitively, as HTTP does). A present but empty header is a value (Envoy hashes it too).
// - cookie: the cookie's value. Envoy generates the cookie when it is absent and `ttl` is set; that belongs
//   to the HTTP layer (it must also send Set-Cookie): it generates a value, sets it and hashes it the same way.
// - sourceIp: the downstream address without port; an empty string means unknown (no value).
// - queryParameter: the parameter's (first) value.

import type { HashPolicy } from "../config/types.ts";
import { murmur3 } from "./hash.ts";

export interface HashInput {
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
  /** The downstream peer's IP address, without port; "" when unknown. */
  sourceIp: string;
  queryParameter(name: string): string | undefined;
}

/**
 * The request hash (unsigned 32-bit) from the first policy that yields a value, or undefined. Hashing does not
 * allocate; V8 may box a result of 2^30 or more as a heap number, once per call.
 */
export function computeHash(policies: readonly HashPolicy[], input: HashInput): number | undefined {
  for (let i = 0; i < policies.length; i++) {
    const value = policyValue(policies[i]!, input);
    if (value !== undefined) return murmur3(value);
  }
  return undefined;
}

function policyValue(policy: HashPolicy, input: HashInput): string | undefined {
  if ("header" in policy) return input.header(policy.header);
  if ("cookie" in policy) return input.cookie(policy.cookie);
  if ("sourceIp" in policy) return policy.sourceIp && input.sourceIp !== "" ? input.sourceIp : undefined;
  if ("queryParameter" in policy) return input.queryParameter(policy.queryParameter);
  return undefined;
}
