// Modules a sidecar often never needs, loaded on first use: node:tls (about 6 MB of memory; only TLS chains
// and upstreams use it) and re2 (about 4 MB, native; only regex routes and matchers use it). Sidecars run in
// every pod, so what they do not load is memory the whole mesh keeps.
import { createRequire } from "node:module";

type TlsModule = typeof import("node:tls");
type HttpModule = typeof import("node:http");
type CryptoModule = typeof import("node:crypto");
type HttpsModule = typeof import("node:https");
type Re2Constructor = typeof import("re2");

const require = createRequire(import.meta.url);
let tls: TlsModule | undefined;
let re2: Re2Constructor | undefined;

export function tlsModule(): TlsModule {
  tls ??= require("node:tls") as TlsModule;
  return tls;
}

/** node:http and node:https, for the proxy's own outgoing calls (ext_authz checks, JWKS fetches). */
let http: HttpModule | undefined;
let https: HttpsModule | undefined;

export function httpModule(): HttpModule {
  http ??= require("node:http") as HttpModule;
  return http;
}

export function httpsModule(): HttpsModule {
  https ??= require("node:https") as HttpsModule;
  return https;
}

/** node:crypto (X.509 parsing for admin /certs): a few MB a proxy without TLS never needs. */
let crypto: CryptoModule | undefined;

export function cryptoModule(): CryptoModule {
  crypto ??= require("node:crypto") as CryptoModule;
  return crypto;
}

export function RE2(): Re2Constructor {
  re2 ??= require("re2") as Re2Constructor;
  return re2;
}
