// The HTTP/2 side of the proxy, as one module so that it can be loaded on first use (see lazy.ts).
export { Http2Downstream } from "./downstream.ts";
export { Http2UpstreamExchange } from "./upstream-exchange.ts";
export { Http2Sessions } from "./upstream-sessions.ts";
