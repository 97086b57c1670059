// Starting and stopping the control plane's small HTTP servers (config API, monitoring) the same way.
import type http from "node:http";

/** Listens on address:port (0: any free port) and resolves with the port bound. */
export function listenOn(server: http.Server, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, () => resolve((server.address() as { port: number }).port));
  });
}

/** Closes the server and every connection it holds (keep-alive ones included). */
export function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}
