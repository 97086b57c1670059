// CORS as Envoy's cors filter applies a route's policy (Istio's corsPolicy): a preflight (OPTIONS with Origin
// and Access-Control-Request-Method) from an allowed origin is answered by the proxy; other requests from an
// allowed origin get Access-Control-Allow-Origin (and -Credentials, -Expose-Headers) on the response. A request
// from an origin that is not allowed passes through untouched, preflight included, as in Envoy.
import type { CorsPolicy, StringMatch } from "../config/types.ts";
import { RE2 } from "../lazy-modules.ts";

export class CompiledCors {
  private readonly origins: ReadonlyArray<(origin: string) => boolean>;
  private readonly preflightTail: string;
  private readonly responseTail: string;

  constructor(p: CorsPolicy) {
    this.origins = p.allowOrigins.map(compileMatch);
    let pre = "";
    if (p.allowMethods?.length) pre += `access-control-allow-methods: ${p.allowMethods.join(",")}\r\n`;
    if (p.allowHeaders?.length) pre += `access-control-allow-headers: ${p.allowHeaders.join(",")}\r\n`;
    if (p.maxAgeSeconds !== undefined) pre += `access-control-max-age: ${p.maxAgeSeconds}\r\n`;
    const cred = p.allowCredentials ? "access-control-allow-credentials: true\r\n" : "";
    this.preflightTail = pre + cred;
    this.responseTail =
      cred +
      (p.exposeHeaders?.length ? `access-control-expose-headers: ${p.exposeHeaders.join(",")}\r\n` : "");
  }

  allows(origin: string): boolean {
    for (const m of this.origins) if (m(origin)) return true;
    return false;
  }

  /** Header lines (CRLF-terminated) of the proxy's answer to an allowed preflight. */
  preflightHeaders(origin: string): string {
    return `access-control-allow-origin: ${origin}\r\n${this.preflightTail}`;
  }

  /** Header lines to add to a response to an allowed origin. */
  responseHeaders(origin: string): string {
    return `access-control-allow-origin: ${origin}\r\n${this.responseTail}`;
  }
}

/** Whether a request is a CORS preflight (RFC: OPTIONS with Origin and Access-Control-Request-Method). */
export function isPreflight(method: string, headers: readonly string[]): boolean {
  if (method !== "OPTIONS") return false;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === "access-control-request-method") return true;
  return false;
}

function compileMatch(m: StringMatch): (v: string) => boolean {
  if (m.exact !== undefined) {
    const e = m.exact;
    return e === "*" ? () => true : (v) => v === e;
  }
  if (m.prefix !== undefined) {
    const p = m.prefix;
    return (v) => v.startsWith(p);
  }
  const re = new (RE2())(`^(?:${m.regex ?? ""})$`, "u");
  return (v) => re.test(v);
}

export function compileCors(p: CorsPolicy | undefined): CompiledCors | undefined {
  return p ? new CompiledCors(p) : undefined;
}
