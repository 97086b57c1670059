// A CONNECT stream on a reverse tunnel, shaped as the socket an HTTP/1 upstream connection expects: 'connect'
// once the initiator answered 200, an error when it answered anything else or when no tunnel of the name is
// up (then on the next tick, as a refused dial reports). node:http2 streams already have setTimeout, pause and
// cork; what a socket has besides is added as no-ops (Nagle does not apply to a stream).
import type net from "node:net";
import { PassThrough } from "node:stream";
import type { TunnelRegistry } from "./registry.ts";

type SocketLike = NodeJS.ReadWriteStream & Record<string, unknown>;

/** `registry` undefined (a pool made outside a proxy): as if no tunnel were up, never a dial. */
export function tunnelSocket(
  registry: TunnelRegistry | undefined,
  name: string,
  authority: string,
): net.Socket {
  const stream = registry?.open(name, authority);
  if (stream === undefined) {
    const failed = new PassThrough();
    process.nextTick(() =>
      failed.destroy(Object.assign(new Error(`no reverse tunnel ${name} is up`), { code: "ENOTUNNEL" })),
    );
    return socketShaped(failed as unknown as SocketLike, true);
  }
  stream.once("response", (headers) => {
    const status = headers[":status"];
    if (status === 200) stream.emit("connect");
    else stream.destroy(new Error(`reverse tunnel ${name} answered ${String(status)} for ${authority}`));
  });
  return socketShaped(stream as unknown as SocketLike, false);
}

function socketShaped(s: SocketLike, withTimeout: boolean): net.Socket {
  const self = () => s;
  s.setNoDelay = self;
  s.setKeepAlive = self;
  if (withTimeout) s.setTimeout = self;
  return s as unknown as net.Socket;
}
