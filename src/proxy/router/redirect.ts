// The Location of a redirect route, as Envoy builds it: each part of the request URL is kept unless the
// redirect replaces it (scheme, host, port, whole path, or the matched prefix).
import type { CompiledRoute } from "./route-table.ts";

export function redirectLocation(
  route: CompiledRoute,
  authority: string,
  path: string,
  scheme: string,
): string {
  const r = route.redirect!;
  const colon = authority.lastIndexOf(":");
  const hasPort = colon > 0 && authority.indexOf("]") < colon;
  const reqHost = hasPort ? authority.slice(0, colon) : authority;
  const reqPort = hasPort ? authority.slice(colon + 1) : "";
  const host = r.host ?? reqHost;
  // A new host drops the request's port (it was the old host's); an explicit port always wins.
  const port = r.port !== undefined ? String(r.port) : r.host !== undefined ? "" : reqPort;
  const targetScheme = r.scheme ?? scheme;
  const defaultPort = targetScheme === "https" ? "443" : "80";
  // A new path keeps the request's query unless it brings its own (Envoy's path_redirect, strip_query off).
  const q = path.indexOf("?");
  let p = r.path === undefined ? path : r.path.includes("?") || q === -1 ? r.path : r.path + path.slice(q);
  const prefix = route.config.match.prefix;
  if (
    r.path === undefined &&
    r.prefixRewrite !== undefined &&
    prefix !== undefined &&
    path.startsWith(prefix)
  ) {
    p = r.prefixRewrite + path.slice(prefix.length);
  }
  return `${targetScheme}://${host}${port && port !== defaultPort ? `:${port}` : ""}${p}`;
}
