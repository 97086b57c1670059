// The admin listener's request handling: a handler that throws answers 500 instead of taking the process
// down (an uncaught exception in a socket's data handler would), and the listener keeps serving.
import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { closeAll, get, onClose } from "../test-support.ts";
import { respond, serveOneRequest } from "./one-request.ts";

after(closeAll);

test("a handler that throws answers 500, and the next request is served", async () => {
  const server = net.createServer((s) =>
    serveOneRequest(s, (_method, target, socket) => {
      if (target === "/boom") throw new Error("broken view");
      respond(socket, 200, "fine\n");
    }),
  );
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onClose(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const broken = await get(port, "/boom");
  assert.equal(broken.status, 500);
  assert.match(broken.body.toString(), /internal error: broken view/);
  assert.equal((await get(port, "/")).status, 200);
});
