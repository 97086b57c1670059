// A ProxyConfig as the push stream's named resources, and back (see discovery.proto). The control plane lists;
// the proxy assembles what it holds into one ProxyConfig, which it then validates like any other.
import type { ClusterConfig, ListenerConfig, ProxyConfig, RouteConfiguration } from "../config/types.ts";

export const BOOTSTRAP = "bootstrap";
const LISTENER = "listener/";
const ROUTE = "route/";
const CLUSTER = "cluster/";

/** Resources of one kind, as the config holds them: a list the control plane may share between proxies. */
export interface ResourceList {
  readonly prefix: string;
  readonly items: readonly { readonly name: string }[];
}

/**
 * The same resources as splitConfig, grouped: the bootstrap, and the listeners, route configurations and clusters
 * as the very arrays the config holds. A control plane that renders one array for many proxies can then
 * serialize, version and diff it once per array instead of once per proxy.
 */
export function configLists(config: ProxyConfig): { bootstrap: object; lists: ResourceList[] } {
  const { listeners, routeConfigs, clusters, ...bootstrap } = config;
  const [shared, own] = clusterSegments(clusters ?? []);
  return {
    bootstrap,
    lists: [
      { prefix: LISTENER, items: listeners },
      { prefix: ROUTE, items: routeConfigs ?? [] },
      { prefix: CLUSTER, items: shared },
      { prefix: CLUSTER, items: own },
    ],
  };
}

const SEGMENTS = Symbol("clusterSegments");
const NO_CLUSTERS: readonly ClusterConfig[] = Object.freeze([]);

/**
 * A proxy's clusters as a list shared with other proxies followed by its own (a sidecar's inbound clusters).
 * The result is the concatenation, remembering its two parts: the push side encodes, versions and diffs each
 * part once per list object, so a thousand sidecars sharing one outbound scope still share its clusters.
 */
export function withOwnClusters(
  shared: readonly ClusterConfig[],
  own: readonly ClusterConfig[],
): readonly ClusterConfig[] {
  if (own.length === 0) return shared;
  const all = [...shared, ...own];
  Object.defineProperty(all, SEGMENTS, { value: [shared, own], enumerable: false });
  return all;
}

function clusterSegments(
  clusters: readonly ClusterConfig[],
): readonly [readonly ClusterConfig[], readonly ClusterConfig[]] {
  const s = (clusters as { [SEGMENTS]?: readonly [readonly ClusterConfig[], readonly ClusterConfig[]] })[
    SEGMENTS
  ];
  return s ?? [clusters, NO_CLUSTERS];
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
