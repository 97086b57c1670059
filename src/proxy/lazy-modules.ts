// Modules a sidecar often never needs, loaded on first use: node:tls (about 6 MB of memory; only TLS chains
// and upstreams use it) and re2 (about 4 MB, native; only regex routes and matchers use it). Sidecars run in
// every pod, so what they do not load is memory the whole mesh keeps.
import { createRequire } from "node:module";

type TlsModule = typeof import("node:tls");
type Re2Constructor = typeof import("re2");

const require = createRequire(import.meta.url);
let tls: TlsModule | undefined;
let re2: Re2Constructor | undefined;

export function tlsModule(): TlsModule {
  tls ??= require("node:tls") as TlsModule;
  return tls;
}

export function RE2(): Re2Constructor {
  re2 ??= require("re2") as Re2Constructor;
  return re2;
}
