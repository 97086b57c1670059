// A tunnel's CONNECT stream joined to a socket: bytes flow both ways with backpressure (pipe, so HTTP/2 flow
// control reaches the sockets at both ends), and the two close together: cleanly (what is still to be written
// is written, within a grace period) when one ends cleanly, at once with a reset when one fails.
import type http2 from "node:http2";
import type net from "node:net";

const NGHTTP2_NO_ERROR = 0;
const NGHTTP2_CANCEL = 8;

export function pairStream(stream: http2.Http2Stream, socket: net.Socket, graceMs: number): void {
  stream.on("error", () => {});
  socket.on("error", () => {});
  stream.pipe(socket);
  socket.pipe(stream);
  stream.once("close", () => {
    if (stream.rstCode === NGHTTP2_NO_ERROR) finishSoon(socket, graceMs);
    else socket.destroy();
  });
  socket.once("close", (hadError: boolean) => closeStream(stream, hadError, graceMs));
}

/**
 * Closes a stream: after what it still has to send when the socket it was paired with ended cleanly (within
 * `graceMs`), with a reset (CANCEL) at once when that socket failed. close() alone would drop data that flow
 * control still holds back: only 'finish' says it has all left.
 */
export function closeStream(stream: http2.Http2Stream, failed: boolean, graceMs: number): void {
  if (stream.closed || stream.destroyed) return;
  if (failed) {
    stream.close(NGHTTP2_CANCEL);
    return;
  }
  const timer = setTimeout(() => stream.close(NGHTTP2_CANCEL), graceMs);
  timer.unref();
  stream.once("close", () => clearTimeout(timer));
  const done = () => stream.close(NGHTTP2_NO_ERROR);
  if (stream.writableFinished) done();
  else {
    stream.once("finish", done);
    if (!stream.writableEnded) stream.end();
  }
}

/** Ends `socket` and destroys it once its buffered bytes are written, or after `graceMs` at most. */
export function finishSoon(socket: net.Socket, graceMs: number): void {
  if (socket.destroyed) return;
  if (!socket.writableEnded) socket.end();
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  const timer = setTimeout(() => socket.destroy(), graceMs);
  timer.unref();
  socket.once("finish", () => {
    clearTimeout(timer);
    socket.destroy();
  });
  socket.once("close", () => clearTimeout(timer));
}
