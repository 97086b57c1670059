// Shared by the translator's tests: Istio resources from YAML text (parsed and validated as the control plane
// does, so a test cannot translate something the API would refuse), and a real ProxyServer running a
// translated config with its listeners moved to free ports.
import assert from "node:assert/strict";
import { parseResources } from "../../api/load/parse-documents.ts";
import type { Resource } from "../../api/resource.ts";
import { validateResources } from "../../api/validate/index.ts";
import type { ProxyConfig } from "../../proxy/config/types.ts";
import { validateProxyConfig } from "../../proxy/config/validate.ts";
import { ProxyServer } from "../../proxy/proxy.ts";
import { onClose, RawClient, type RawResponse } from "../../proxy/test-support.ts";

/** Valid resources from YAML documents; fails the test on any error. */
export async function resources(yaml: string): Promise<Resource[]> {
  const parsed = parseResources("test.yaml", yaml);
  assert.deepEqual(parsed.diagnostics, []);
  const { valid, diagnostics } = await validateResources(parsed.resources);
  assert.deepEqual(
    diagnostics.filter((d) => d.severity === "error").map((d) => d.message),
    [],
  );
  return valid;
}

/** The config is one the proxy accepts. */
export function assertValid(cfg: ProxyConfig): void {
  assert.deepEqual(
    validateProxyConfig(cfg).filter((p) => p.severity === "error"),
    [],
  );
}

/** Runs the config in a real proxy, every listener on a free port of 127.0.0.1; returns ports by listener. */
export async function runProxy(cfg: ProxyConfig): Promise<Record<string, number>> {
  const proxy = new ProxyServer();
  const r = await proxy.apply({
    ...cfg,
    admin: { port: 0 },
    listeners: cfg.listeners.map((l) => ({ ...l, address: "127.0.0.1", port: 0 })),
  });
  assert.deepEqual(r.errors, []);
  onClose(() => proxy.shutdown(0));
  const ports: Record<string, number> = {};
  for (const l of cfg.listeners) ports[l.name] = proxy.listener(l.name)!.boundPort;
  return ports;
}

/** One request through an HTTP_PROXY-style listener (absolute-form), on a fresh connection. */
export async function viaProxy(
  port: number,
  url: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const host = new URL(url).host;
  return request(port, `GET ${url} HTTP/1.1\r\nhost: ${host}\r\n${lines(headers)}\r\n`);
}

/** One origin-form request with a Host header, on a fresh connection. */
export async function withHost(
  port: number,
  host: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return request(port, `GET ${path} HTTP/1.1\r\nhost: ${host}\r\n${lines(headers)}\r\n`);
}

async function request(port: number, raw: string): Promise<RawResponse> {
  const c = await RawClient.connect(port);
  try {
    c.write(raw);
    return await c.read("GET");
  } finally {
    c.destroy();
  }
}

function lines(headers: Record<string, string>): string {
  return Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
}
