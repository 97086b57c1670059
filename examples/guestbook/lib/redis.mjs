// A minimal Redis client (RESP2 over one TCP connection, commands pipelined in order) — enough for the
// Guestbook's few commands without a dependency. The connection opens on first use and again after it drops;
// a command that gets no reply within the timeout closes it (its state is unknown) and fails.
import net from "node:net";

const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

export class RedisError extends Error {
  constructor(message) {
    super(message);
    this.name = "RedisError";
  }
}

export class RedisClient {
  /**
   * @param {{host: string, port: number, name?: string, connectTimeoutMs?: number, commandTimeoutMs?: number}} options
   */
  constructor(options) {
    this.host = options.host;
    this.port = options.port;
    this.name = options.name ?? `redis ${options.host}:${options.port}`;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 1000;
    this.commandTimeoutMs = options.commandTimeoutMs ?? 2000;
    /** @type {net.Socket | undefined} */
    this.socket = undefined;
    /** @type {{resolve: (v: unknown) => void, reject: (e: Error) => void, timer: NodeJS.Timeout}[]} */
    this.pending = [];
    this.buffer = Buffer.alloc(0);
  }

  /**
   * Sends one command; resolves with its reply (strings, integers, arrays, null), rejects on an error reply.
   * @param {...(string | number)} args
   */
  command(...args) {
    return new Promise((resolve, reject) => {
      const socket = this.connect();
      const timer = setTimeout(() => {
        this.drop(
          socket,
          new RedisError(`${this.name}: no reply to ${args[0]} within ${this.commandTimeoutMs} ms`),
        );
      }, this.commandTimeoutMs);
      this.pending.push({ resolve, reject, timer });
      socket.write(encode(args));
    });
  }

  close() {
    if (this.socket) this.drop(this.socket, new RedisError(`${this.name}: client closed`));
  }

  /** @returns {net.Socket} */
  connect() {
    if (this.socket) return this.socket;
    const socket = net.createConnection({ host: this.host, port: this.port });
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.setTimeout(this.connectTimeoutMs, () => {
      if (socket.connecting) this.drop(socket, new RedisError(`${this.name}: connect timed out`));
    });
    socket.once("connect", () => socket.setTimeout(0));
    socket.on("data", (chunk) => this.onData(socket, chunk));
    socket.on("error", (e) => this.drop(socket, new RedisError(`${this.name}: ${e.message}`)));
    socket.on("close", () => this.drop(socket, new RedisError(`${this.name}: connection closed`)));
    return socket;
  }

  /** Fails every pending command and forgets the connection (the next command reconnects). */
  drop(socket, err) {
    if (this.socket !== socket) return;
    this.socket = undefined;
    socket.destroy();
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  onData(socket, chunk) {
    if (this.socket !== socket) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > MAX_BUFFERED_BYTES) {
      this.drop(socket, new RedisError(`${this.name}: reply larger than ${MAX_BUFFERED_BYTES} bytes`));
      return;
    }
    let offset = 0;
    for (;;) {
      let parsed;
      try {
        parsed = parse(this.buffer, offset);
      } catch (e) {
        this.drop(socket, new RedisError(`${this.name}: ${e.message}`));
        return;
      }
      if (parsed === undefined) break;
      offset = parsed.next;
      const p = this.pending.shift();
      if (p === undefined) {
        this.drop(socket, new RedisError(`${this.name}: reply without a command`));
        return;
      }
      clearTimeout(p.timer);
      if (parsed.value instanceof RedisError) p.reject(parsed.value);
      else p.resolve(parsed.value);
    }
    this.buffer = this.buffer.subarray(offset);
  }
}

/** A command as a RESP array of bulk strings. */
export function encode(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const s = String(a);
    parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
  }
  return parts.join("");
}

/**
 * Parses one RESP2 reply at `offset`; undefined when the buffer does not hold all of it yet.
 * @param {Buffer} buf
 * @param {number} offset
 * @returns {{value: unknown, next: number} | undefined}
 */
export function parse(buf, offset) {
  const eol = buf.indexOf("\r\n", offset);
  if (eol === -1) return undefined;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString("utf8", offset + 1, eol);
  const next = eol + 2;
  switch (type) {
    case "+":
      return { value: line, next };
    case "-":
      return { value: new RedisError(line), next };
    case ":":
      return { value: Number(line), next };
    case "$": {
      const len = Number(line);
      if (len === -1) return { value: null, next };
      if (!Number.isInteger(len) || len < 0) throw new Error(`bad bulk length ${line}`);
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString("utf8", next, next + len), next: next + len + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count === -1) return { value: null, next };
      if (!Number.isInteger(count) || count < 0) throw new Error(`bad array length ${line}`);
      const items = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`unexpected reply type ${JSON.stringify(type)}`);
  }
}
