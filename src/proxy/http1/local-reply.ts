// Responses the proxy makes itself (no route, no healthy upstream, overflow, bad request, ...), with Envoy's
// bodies so that users recognise them.
import { ResponseFlag } from "../upstream/response-flags.ts";

export const STATUS_TEXT: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  204: "No Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Payload Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? "Unknown";
}

/** The status and body Envoy gives for a request that ended with this flag. */
export function replyForFlag(flag: ResponseFlag, detail: string): { status: number; body: string } {
  switch (flag) {
    case ResponseFlag.NoRouteFound:
      return { status: 404, body: "" };
    case ResponseFlag.NoHealthyUpstream:
      return { status: 503, body: "no healthy upstream" };
    case ResponseFlag.NoClusterFound:
      return { status: 503, body: "" };
    case ResponseFlag.UpstreamOverflow:
      return {
        status: 503,
        body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
      };
    case ResponseFlag.UpstreamConnectionFailure:
      return {
        status: 503,
        body: `upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: ${detail}`,
      };
    case ResponseFlag.UpstreamConnectionTermination:
      return {
        status: 503,
        body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
      };
    case ResponseFlag.UpstreamProtocolError:
      return { status: 502, body: `upstream sent an invalid response: ${detail}` };
    case ResponseFlag.UpstreamRequestTimeout:
      return { status: 504, body: "upstream request timeout" };
    case ResponseFlag.RateLimited:
      return { status: 429, body: "local_rate_limited" };
    default:
      return { status: 400, body: detail };
  }
}

/** A complete HTTP/1.1 response. */
export function localReplyBytes(status: number, body: string, close: boolean, extraHeaders = ""): string {
  const len = Buffer.byteLength(body);
  return (
    `HTTP/1.1 ${status} ${statusText(status)}\r\n` +
    (len > 0 ? "content-type: text/plain\r\n" : "") +
    `content-length: ${len}\r\n` +
    extraHeaders +
    (close ? "connection: close\r\n" : "") +
    `\r\n${body}`
  );
}
