// A pod's TCP service ports (the service env vars point there): each connection to POD_IP:localPort is tunnelled
// through the pod's sidecar with CONNECT HOST:PORT, so that it leaves with the pod's identity, over mutual TLS
// to the server. The runtime runs these in its own process; with --isolate the pod's address lives in its
// cluster's network namespace, so they run there as a process of their own:
//   isthmus x connect-forward VIA_HOST:VIA_PORT LISTEN_HOST:LOCAL_PORT=TARGET_HOST:TARGET_PORT ...
import net from "node:net";

export interface Forward {
  readonly listenHost: string;
  readonly localPort: number;
  readonly targetHost: string;
  readonly targetPort: number;
}

const MAX_RESPONSE_HEAD = 16 * 1024;

/** Either socket failing or closing closes both. */
export function closeTogether(a: net.Socket, b: net.Socket): void {
  const close = () => {
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on("error", close);
    s.on("close", close);
  }
}

/** Listens on listenHost:localPort and tunnels every connection through the proxy at via with CONNECT. */
export async function forwardThroughProxy(
  via: { readonly host: string; readonly port: number },
  f: Forward,
): Promise<net.Server> {
  const server = net.createServer((down) => {
    down.pause();
    const up = net.connect({ host: via.host, port: via.port, noDelay: true });
    closeTogether(down, up);
    const close = () => down.destroy();
    const target = `${f.targetHost}:${f.targetPort}`;
    up.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (head.length > MAX_RESPONSE_HEAD) close();
        return;
      }
      up.off("data", onData);
      if (!/^HTTP\/1\.1 200 /.test(head.subarray(0, 16).toString("latin1"))) {
        close();
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) down.write(rest);
      up.pipe(down);
      down.pipe(up);
      down.resume();
    };
    up.on("data", onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `${f.listenHost}:${f.localPort} for ${f.targetHost}:${f.targetPort}: ${e.code ?? e.message}`,
        ),
      ),
    );
    server.listen(f.localPort, f.listenHost, () => resolve());
  });
  return server;
}

function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`not HOST:PORT: ${s}`);
  return { host: s.slice(0, i), port };
}

/** The process form: arguments as in the header; runs until killed. */
export async function main(args: readonly string[]): Promise<void> {
  const [viaText, ...pairs] = args;
  if (viaText === undefined || pairs.length === 0)
    throw new Error("usage: connect-forwarder VIA_HOST:PORT LISTEN_HOST:PORT=TARGET_HOST:PORT ...");
  const via = hostPort(viaText);
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq < 0) throw new Error(`not LISTEN=TARGET: ${p}`);
    const listen = hostPort(p.slice(0, eq));
    const target = hostPort(p.slice(eq + 1));
    await forwardThroughProxy(via, {
      listenHost: listen.host,
      localPort: listen.port,
      targetHost: target.host,
      targetPort: target.port,
    });
  }
}
