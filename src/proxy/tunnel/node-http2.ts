// node:http2 costs a proxy about 12 MB of memory (see http2/lazy.ts); only proxies that hold or accept reverse
// tunnels need it, so the tunnel code loads it when a tunnel first needs it.
import { createRequire } from "node:module";

type Http2 = typeof import("node:http2");

const require = createRequire(import.meta.url);
let loaded: Http2 | undefined;

export function nodeHttp2(): Http2 {
  loaded ??= require("node:http2") as Http2;
  return loaded;
}
