// A TCP connection through an HTTP proxy's CONNECT method, as a stream for the `pg` client's `stream` option.
//
// Why: isthmus gives an app a local address for the TCP Services of its own namespace (the
// POSTGRES_SERVICE_HOST/PORT variables, tunnelled through the pod's sidecar), but nothing for a TCP host that
// only a ServiceEntry declares, such as the "cloud" database outside the mesh. The pod's sidecar takes CONNECT
// HOST:PORT on its HTTP_PROXY port for any host the mesh knows, ServiceEntries included, and routes the
// connection as the mesh says (here: to the ServiceEntry's static endpoint). So the app opens the tunnel
// itself: connect to the sidecar, send `CONNECT beetravels-db.cloud.example.com:5432`, wait for 200, then talk
// the PostgreSQL protocol over the same socket.
//
// pg calls setNoDelay() and connect(port, host) on the stream, waits for "connect", then reads and writes it;
// this class offers that much of net.Socket's surface and keeps the real socket inside.
import net from "node:net";
import { Duplex } from "node:stream";

const MAX_HEAD_BYTES = 16 * 1024;

export class ConnectTunnelSocket extends Duplex {
  /**
   * @param {{host: string, port: number}} proxy
   * @param {{connectTimeoutMs?: number}} [options]
   */
  constructor(proxy, options = {}) {
    super({ allowHalfOpen: false });
    this.proxy = proxy;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    /** @type {net.Socket | undefined} */
    this.socket = undefined;
    this.connecting = false;
    /** @type {[boolean, number] | undefined} */
    this.keepAlive = undefined;
    /** Writes made before the tunnel is up wait for it. */
    this.waiting = [];
  }

  /**
   * Opens the tunnel to host:port; emits "connect" once the proxy answers 2xx, "error" otherwise.
   * @param {number} port
   * @param {string} host
   */
  connect(port, host) {
    if (this.socket) throw new Error("already connected");
    const target = `${host.includes(":") ? `[${host}]` : host}:${port}`;
    const via = `${this.proxy.host}:${this.proxy.port}`;
    this.connecting = true;
    const socket = net.connect({ host: this.proxy.host, port: this.proxy.port, noDelay: true });
    this.socket = socket;
    const timer = setTimeout(
      () =>
        this.destroy(new Error(`CONNECT ${target} via ${via}: no answer within ${this.connectTimeoutMs} ms`)),
      this.connectTimeoutMs,
    );
    socket.once("connect", () =>
      socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`, "latin1"),
    );
    let head = Buffer.alloc(0);
    const onHead = (chunk) => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (head.length > MAX_HEAD_BYTES) this.destroy(new Error(`CONNECT ${target} via ${via}: bad answer`));
        return;
      }
      socket.off("data", onHead);
      clearTimeout(timer);
      const statusLine = head.subarray(0, head.indexOf("\r\n")).toString("latin1");
      if (!/^HTTP\/1\.[01] 2\d\d /.test(`${statusLine} `)) {
        this.destroy(new Error(`CONNECT ${target} via ${via} refused: ${statusLine}`));
        return;
      }
      this.connecting = false;
      socket.on("data", (data) => {
        if (!this.push(data)) socket.pause();
      });
      socket.on("end", () => this.push(null));
      const rest = head.subarray(end + 4);
      if (rest.length > 0) this.push(rest);
      if (this.keepAlive) socket.setKeepAlive(...this.keepAlive);
      for (const w of this.waiting.splice(0)) socket.write(w.chunk, w.encoding, w.callback);
      this.emit("connect");
    };
    socket.on("data", onHead);
    socket.on("error", (e) => {
      clearTimeout(timer);
      this.destroy(new Error(`CONNECT ${target} via ${via}: ${e.message}`));
    });
    socket.on("close", () => {
      clearTimeout(timer);
      if (this.connecting) this.destroy(new Error(`CONNECT ${target} via ${via}: connection closed`));
      else this.destroy();
    });
    return this;
  }

  _read() {
    this.socket?.resume();
  }

  _write(chunk, encoding, callback) {
    if (!this.socket || this.connecting) this.waiting.push({ chunk, encoding, callback });
    else this.socket.write(chunk, encoding, callback);
  }

  _final(callback) {
    if (this.socket && !this.connecting) this.socket.end(callback);
    else callback();
  }

  _destroy(err, callback) {
    this.socket?.destroy();
    for (const w of this.waiting.splice(0)) w.callback(err ?? new Error("tunnel closed"));
    callback(err);
  }

  // The parts of net.Socket that pg uses.
  setNoDelay() {
    return this; // the socket to the proxy is made with noDelay
  }

  setKeepAlive(enable = false, initialDelay = 0) {
    this.keepAlive = [enable, initialDelay];
    if (this.socket && !this.connecting) this.socket.setKeepAlive(enable, initialDelay);
    return this;
  }

  ref() {
    this.socket?.ref();
    return this;
  }

  unref() {
    this.socket?.unref();
    return this;
  }
}
