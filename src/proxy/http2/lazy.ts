// node:http2 and the code around it cost a sidecar about 12 MB of memory; most sidecars never see HTTP/2.
// This loads the HTTP/2 module synchronously on first use (require of an ES module, Node >= 22.12), from
// the compiled or the TypeScript sources, whichever this file itself was loaded from.
import { createRequire } from "node:module";

type Http2Module = typeof import("./index.ts");

const require = createRequire(import.meta.url);
const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
let loaded: Http2Module | undefined;

export function http2Module(): Http2Module {
  loaded ??= require(`./index${ext}`) as Http2Module;
  return loaded;
}
