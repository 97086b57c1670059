// Answers every request with the cluster and pod that served it (the runtime's ISTHMUS_CLUSTER and POD_NAME).
import http from "node:http";

const body = `${process.env.ISTHMUS_CLUSTER} ${process.env.POD_NAME}\n`;
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), process.env.HOST);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
