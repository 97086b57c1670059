// The small HTTP/1.1 servers beside the proxy (admin, Prometheus scrape) take one request per connection,
// parsed by the proxy's own head parser (node:http would cost a sidecar about 10 MB for a few requests a
// minute), answer it and close. Heads are bounded (16 KiB, 64 headers) and a connection that sends nothing
// useful is closed after 10 s.
import type net from "node:net";
import { parseRequestHead } from "../http1/head-parser.ts";
import { statusText } from "../http1/local-reply.ts";

/** Reads one request head from `socket` and calls `handle`; malformed requests get 400 here. */
export function serveOneRequest(
  socket: net.Socket,
  handle: (method: string, target: string, socket: net.Socket) => void,
): void {
  socket.on("error", () => socket.destroy());
  socket.setTimeout(10_000, () => socket.destroy());
  let buf: Buffer | null = null;
  socket.on("data", (chunk: Buffer) => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    const r = parseRequestHead(buf, 0, { maxHeadBytes: 16 * 1024, maxHeaders: 64 });
    if (r.kind === "incomplete") return;
    socket.removeAllListeners("data");
    if (r.kind === "error") {
      respond(socket, r.status, `${r.reason}\n`);
      return;
    }
    // An admin handler that throws answers 500: from a socket's data handler the exception would otherwise be
    // uncaught and take the whole proxy (and the traffic it carries) down with it.
    try {
      handle(r.head.method, r.head.target, socket);
    } catch (e) {
      if (!socket.writableEnded) respond(socket, 500, `internal error: ${(e as Error).message}\n`);
      else socket.destroy();
    }
  });
}

export function respond(
  socket: net.Socket,
  status: number,
  body: string,
  type = "text/plain; charset=utf-8",
): void {
  const len = Buffer.byteLength(body);
  socket.end(
    `HTTP/1.1 ${status} ${statusText(status)}\r\ncontent-type: ${type}\r\ncache-control: no-cache\r\ncontent-length: ${len}\r\nconnection: close\r\n\r\n${body}`,
  );
}
