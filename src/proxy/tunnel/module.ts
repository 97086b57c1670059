// Everything of the reverse tunnels the rest of the proxy uses, behind one dynamic import (lazy.ts).
export { ReverseTunnelAcceptorRuntime } from "./acceptor.ts";
export { type PreparedTunnels, ReverseTunnelInitiators } from "./initiators.ts";
export { closeStream, pairStream } from "./pair.ts";
export { authorityOf } from "./protocol.ts";
export { TunnelRegistry } from "./registry.ts";
export { tunnelSocket } from "./stream-socket.ts";
