// A ProxyConfig as the push stream's named resources, and back (see discovery.proto). The control plane splits;
// the proxy assembles what it holds into one ProxyConfig, which it then validates like any other.
import type { ClusterConfig, ListenerConfig, ProxyConfig, RouteConfiguration } from "../config/types.ts";

export const BOOTSTRAP = "bootstrap";
const LISTENER = "listener/";
const ROUTE = "route/";
const CLUSTER = "cluster/";

/** The named parts of a config: the bootstrap (every field but the three lists) first, then each list's items. */
export function splitConfig(config: ProxyConfig): Array<[name: string, part: object]> {
  const { listeners, routeConfigs, clusters, ...bootstrap } = config;
  const out: Array<[string, object]> = [[BOOTSTRAP, bootstrap]];
  for (const l of listeners) out.push([LISTENER + l.name, l]);
  for (const r of routeConfigs ?? []) out.push([ROUTE + r.name, r]);
  for (const c of clusters ?? []) out.push([CLUSTER + c.name, c]);
  return out;
}

/**
 * One ProxyConfig from parsed resources (in the order held). A name of no known kind is an error: the proxy
 * refuses the response rather than guess.
 */
export function assembleConfig(parts: ReadonlyMap<string, unknown>): ProxyConfig {
  const listeners: ListenerConfig[] = [];
  const routeConfigs: RouteConfiguration[] = [];
  const clusters: ClusterConfig[] = [];
  let bootstrap: object = {};
  for (const [name, part] of parts) {
    if (name === BOOTSTRAP) bootstrap = part as object;
    else if (name.startsWith(LISTENER)) listeners.push(part as ListenerConfig);
    else if (name.startsWith(ROUTE)) routeConfigs.push(part as RouteConfiguration);
    else if (name.startsWith(CLUSTER)) clusters.push(part as ClusterConfig);
    else throw new Error(`unknown resource ${JSON.stringify(name.slice(0, 200))}`);
  }
  return { ...bootstrap, listeners, routeConfigs, clusters };
}
