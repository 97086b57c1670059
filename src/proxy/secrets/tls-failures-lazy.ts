// The TLS failure accounting (tls-failures.ts) is for proxies with TLS listeners or clusters only: loaded
// synchronously on first use (require of an ES module, as http2/lazy.ts), from the compiled or the TypeScript
// sources, whichever this file itself was loaded from.
import { createRequire } from "node:module";

type TlsFailuresModule = typeof import("./tls-failures.ts");

const require = createRequire(import.meta.url);
const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
let loaded: TlsFailuresModule | undefined;

export function tlsFailures(): TlsFailuresModule {
  loaded ??= require(`./tls-failures${ext}`) as TlsFailuresModule;
  return loaded;
}
