// Locality load balancing (a DestinationRule's trafficPolicy.loadBalancer.localityLbSetting), as istiod
// computes it for one calling proxy (istio/istio pilot/pkg/networking/core/loadbalancer/loadbalancer.go:
// ApplyLocalityLoadBalancer and the functions it calls; and pilot/pkg/xds/endpoints/endpoint_builder.go, which
// passes the proxy's locality and labels and whether the rule has outlier detection). The result is, for each
// endpoint of a cluster, a priority level (the proxy's EndpointConfig.priority) and a weight.
//
// Which rules apply, as Istio:
// - `enabled: false`: nothing (every endpoint priority 0, weights unchanged).
// - `distribute` (when some entry's `from` matches the proxy's locality): locality weights, no priorities;
//   endpoints in localities no `to` names are dropped (weight 0 here: the caller must leave them out).
//   Applied with or without outlier detection.
// - otherwise, only when the rule sets outlierDetection (without it Envoy would never see a level as
//   unhealthy, so Istio sets no failover): `failoverPriority` levels, then `failover` on top when both are set;
//   or, without failoverPriority, the locality levels (0 same region/zone/subzone, 1 same region/zone, 2 same
//   region, 3 other regions), where `failover` {from, to} puts the `to` region at 3 and every other foreign
//   region at 4. Levels are then renumbered 0..N without gaps, as Istio does.
// - no setting at all: Istio's default mesh config (`enabled: true`, nothing else), i.e. the locality levels
//   when the rule has outlier detection.
//
// failoverPriority compares labels of the proxy and of each endpoint, in order; the first mismatch at
// position j (of n) gives priority n - j, and all matching gives 0. Istio first adds topology labels to both
// (AugmentLabels): topology.istio.io/cluster and the locality's topology.kubernetes.io/region,
// topology.kubernetes.io/zone and topology.istio.io/subzone override the own labels; topology.istio.io/network
// is added only when absent. "label=value" compares the endpoints' label with that value instead of the
// proxy's. When the first label is topology.istio.io/network itself (Istio #60829), the network is preferred
// but not required: another network's endpoints are ordered by the remaining labels, after every endpoint of
// the proxy's network (priority + n). With failover too, each failoverPriority level is split again by the
// locality levels (priority × 5 + locality level), then renumbered.
//
// Locality weights. Envoy picks a locality by its weight, then an endpoint by the endpoint weights within it;
// Istio's `distribute` sets those locality weights: each `to` entry's weight is split over the localities it
// matches in proportion to their current weights (the sum of their endpoints' weights), rounded up. The
// proxy here has endpoint weights only, so the same shares come from per-endpoint weights: locality weight
// × endpoint weight / the locality's total. Those are rationals; they are made integers exactly (over the
// least common multiple of the localities' totals, divided by the common factor) when that fits the proxy's
// limit of 1,000,000 per endpoint, else scaled so that the largest is 1,000,000 and rounded (every kept
// endpoint at least 1), an error below 0.0001% of the largest weight.
//
// Differences from Istio and Envoy, by construction of the proxy: Envoy scales a locality's weight by its
// health (× min(1, 1.4 × its healthy fraction)) while endpoint weights only lose their unhealthy endpoints, so
// with `distribute` and ejections the shares move differently; levels beyond 31 (the proxy's limit) are merged
// into 31. A `to` map whose keys overlap (refused by validation) is read in key order, where Istio's order is
// Go's random map order. Service trafficDistribution (PreferClose, ...), zoneAwareLbSetting and
// kubernetes.io/hostname are not modelled.

/** The calling proxy, as ProxyNode has it. */
export interface LocalityProxy {
  /** "region/zone/subzone" (or fewer parts, or ""). */
  readonly locality?: string | undefined;
  readonly network?: string | undefined;
  readonly cluster?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
}

/** One endpoint of the cluster, as ServiceInstance has it. */
export interface LocalityEndpoint {
  readonly locality?: string | undefined;
  readonly network?: string | undefined;
  readonly cluster?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
  /** Load-balancing weight, an integer >= 1; default 1. */
  readonly weight?: number | undefined;
}

/** Istio's LocalityLoadBalancerSetting. */
export interface LocalityLbSetting {
  readonly enabled?: boolean | undefined;
  readonly distribute?: readonly LocalityDistribute[] | undefined;
  readonly failover?: readonly LocalityFailover[] | undefined;
  readonly failoverPriority?: readonly string[] | undefined;
}

export interface LocalityDistribute {
  /** The proxy's locality this entry applies to: "region", "region/zone/*", "*"... */
  readonly from?: string | undefined;
  /** Locality pattern -> weight (the weights of one entry sum to 100). */
  readonly to?: Readonly<Record<string, number>> | undefined;
}

export interface LocalityFailover {
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

export interface LocalityLbResult {
  /** The endpoint's priority level, 0..31 (0 preferred). */
  readonly priority: number;
  /** The endpoint's weight, an integer 1..1,000,000; 0: the endpoint gets no traffic, leave it out. */
  readonly weight: number;
}

export const LABEL_NETWORK = "topology.istio.io/network";
export const LABEL_CLUSTER = "topology.istio.io/cluster";
export const LABEL_REGION = "topology.kubernetes.io/region";
export const LABEL_ZONE = "topology.kubernetes.io/zone";
export const LABEL_SUBZONE = "topology.istio.io/subzone";

/** The proxy config's limits. */
const MAX_PRIORITY = 31;
const MAX_WEIGHT = 1_000_000;
/** Istio's locality levels: same subzone, same zone, same region, the failover region, any other. */
const LOCALITY_LEVELS = 5;

/**
 * Each endpoint's priority and weight for `proxy`, in the order of `endpoints`. `setting` is the rule's
 * localityLbSetting (else the mesh's; undefined: Istio's default, enabled); `hasOutlierDetection` whether the
 * traffic policy in force for the cluster (port and subset merged) sets outlierDetection. Throws a RangeError
 * for an endpoint weight that is not an integer >= 1, or a distribute weight that is not an integer >= 0.
 */
export function localityLb(
  proxy: LocalityProxy,
  endpoints: readonly LocalityEndpoint[],
  setting: LocalityLbSetting | undefined,
  hasOutlierDetection: boolean,
): LocalityLbResult[] {
  const weights = endpoints.map((e, i) => endpointWeight(e, i));
  const unchanged = () => weights.map((weight) => ({ priority: 0, weight }));
  if (setting?.enabled === false) return unchanged();
  const s = setting ?? {};
  if ((s.distribute ?? []).length > 0) {
    const entry = (s.distribute ?? []).find((d) => localityMatch(proxy.locality, d.from ?? ""));
    if (entry === undefined) return unchanged();
    const distributed = distributeWeights(endpoints, weights, entry);
    return distributed.map((weight) => ({ priority: 0, weight }));
  }
  if (!hasOutlierDetection) return unchanged();
  const failoverPriority = s.failoverPriority ?? [];
  const failover = s.failover ?? [];
  let priorities = new Array<number>(endpoints.length).fill(0);
  if (failoverPriority.length > 0) {
    priorities = labelPriorities(proxy, endpoints, failoverPriority);
    if (failover.length > 0) priorities = localityPriorities(proxy, endpoints, failover, priorities);
  } else {
    priorities = localityPriorities(proxy, endpoints, failover, priorities);
  }
  return priorities.map((p, i) => ({ priority: Math.min(p, MAX_PRIORITY), weight: weights[i]! }));
}

/**
 * A localityLbSetting read from a DestinationRule's JSON (already validated: fields of the wrong type are
 * skipped); undefined when `value` is not an object.
 */
export function readLocalityLbSetting(value: unknown): LocalityLbSetting | undefined {
  if (!isObject(value)) return undefined;
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  const objects = (v: unknown) => (Array.isArray(v) ? v.filter(isObject) : []);
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return {
    ...(typeof value.enabled === "boolean" ? { enabled: value.enabled } : {}),
    distribute: objects(value.distribute).map((d) => ({
      from: str(d.from),
      to: isObject(d.to)
        ? Object.fromEntries(
            Object.entries(d.to).filter((kv): kv is [string, number] => typeof kv[1] === "number"),
          )
        : undefined,
    })),
    failover: objects(value.failover).map((f) => ({ from: str(f.from), to: str(f.to) })),
    failoverPriority: strings(value.failoverPriority),
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function endpointWeight(e: LocalityEndpoint, i: number): number {
  const w = e.weight ?? 1;
  if (!Number.isInteger(w) || w < 1)
    throw new RangeError(`endpoint ${i}: weight must be an integer >= 1, got ${String(w)}`);
  return w;
}

// ---------------------------------------------------------------------------------------------- localities

interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

/** Istio's SplitLocalityLabel: "a/b/c" -> region a, zone b, subzone c; parts beyond the third are ignored. */
function splitLocality(locality: string | undefined): Locality {
  const [region = "", zone = "", subzone = ""] = (locality ?? "").split("/");
  return { region, zone, subzone };
}

/** Istio's util.LocalityMatch: whether `locality` is matched by a rule pattern ("*" and missing parts match). */
function localityMatch(locality: string | undefined, pattern: string): boolean {
  const l = splitLocality(locality);
  const r = splitLocality(pattern);
  return (
    (r.region === "*" || l.region === r.region) &&
    (r.zone === "*" || r.zone === "" || l.zone === r.zone) &&
    (r.subzone === "*" || r.subzone === "" || l.subzone === r.subzone)
  );
}

/** Istio's util.LbPriority: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere. */
function localityLevel(proxy: Locality, endpoint: Locality): number {
  if (proxy.region !== endpoint.region) return 3;
  if (proxy.zone !== endpoint.zone) return 2;
  return proxy.subzone === endpoint.subzone ? 0 : 1;
}

/** Priorities renumbered 0..N in order, without gaps (Istio: "Priorities should range from 0 to N"). */
function compact(raw: readonly number[]): number[] {
  const order = [...new Set(raw)].sort((a, b) => a - b);
  const rank = new Map(order.map((p, i) => [p, i]));
  return raw.map((p) => rank.get(p)!);
}

/** Istio's applyLocalityFailover, over priorities already assigned (by failoverPriority, or all 0). */
function localityPriorities(
  proxy: LocalityProxy,
  endpoints: readonly LocalityEndpoint[],
  failover: readonly LocalityFailover[],
  previous: readonly number[],
): number[] {
  const from = splitLocality(proxy.locality);
  const rule = failover.find((f) => (f.from ?? "") === from.region);
  const raw = endpoints.map((e, i) => {
    const to = splitLocality(e.locality);
    let level = localityLevel(from, to);
    if (level === 3 && rule !== undefined && to.region !== (rule.to ?? "")) level = 4;
    return previous[i]! * LOCALITY_LEVELS + level;
  });
  return compact(raw);
}

// ------------------------------------------------------------------------------------- failover priority

/** Istio's AugmentLabels: topology labels from the cluster, locality and network over (or beside) `labels`. */
export function topologyLabels(who: LocalityProxy | LocalityEndpoint): Record<string, string> {
  const out: Record<string, string> = { ...who.labels };
  const l = splitLocality(who.locality);
  if (l.region !== "") out[LABEL_REGION] = l.region;
  if (l.zone !== "") out[LABEL_ZONE] = l.zone;
  if (l.subzone !== "") out[LABEL_SUBZONE] = l.subzone;
  if (who.cluster) out[LABEL_CLUSTER] = who.cluster;
  if (who.network && !out[LABEL_NETWORK]) out[LABEL_NETWORK] = who.network;
  return out;
}

/** Istio's applyFailoverPriorities (with applyFailoverPriorityPerLocality), renumbered over the cluster. */
function labelPriorities(
  proxy: LocalityProxy,
  endpoints: readonly LocalityEndpoint[],
  failoverPriority: readonly string[],
): number[] {
  const proxyLabels = topologyLabels(proxy);
  if (Object.keys(proxyLabels).length === 0 || endpoints.length === 0) return endpoints.map(() => 0);
  const n = failoverPriority.length;
  const networkPreferred = failoverPriority[0] === LABEL_NETWORK;
  const keys = failoverPriority.map((entry) => {
    const parts = entry.split("=");
    return { label: parts[0]!, value: parts.length === 2 ? parts[1]! : undefined };
  });
  const raw = endpoints.map((e) => {
    const labels = topologyLabels(e);
    let priority = 0;
    let adjust = 0;
    for (let j = 0; j < n; j++) {
      const { label, value } = keys[j]!;
      const wanted = value ?? proxyLabels[label] ?? "";
      if (wanted === (labels[label] ?? "")) continue;
      if (j === 0 && networkPreferred) {
        adjust = n;
        continue;
      }
      priority = n - j;
      break;
    }
    return priority + adjust;
  });
  return compact(raw);
}

// -------------------------------------------------------------------------------------------- distribute

/**
 * Istio's applyLocalityWeights for the matching `distribute` entry, as per-endpoint weights (0: dropped).
 * Localities are the endpoints' locality strings, as Istio groups endpoints by their locality label.
 */
function distributeWeights(
  endpoints: readonly LocalityEndpoint[],
  weights: readonly number[],
  entry: LocalityDistribute,
): number[] {
  const totals = new Map<string, number>();
  endpoints.forEach((e, i) => {
    const key = e.locality ?? "";
    totals.set(key, (totals.get(key) ?? 0) + weights[i]!);
  });
  /** Locality -> its new weight; localities left out get no traffic. */
  const localityWeight = new Map<string, number>();
  for (const [pattern, weight] of Object.entries(entry.to ?? {})) {
    if (!Number.isInteger(weight) || weight < 0)
      throw new RangeError(`distribute weight for ${pattern} must be an integer >= 0, got ${String(weight)}`);
    const matched = [...totals.keys()].filter((l) => !localityWeight.has(l) && localityMatch(l, pattern));
    const sum = matched.reduce((s, l) => s + totals.get(l)!, 0);
    for (const l of matched) {
      const share = (totals.get(l)! * weight) / sum;
      // Istio keeps the locality's own weight when its share is 0 (a `to` weight of 0).
      localityWeight.set(l, share > 0 ? Math.ceil(share) : totals.get(l)!);
    }
  }
  // Endpoint e of locality l: localityWeight(l) × weight(e) / total(l), as numerator / denominator.
  const numerators = endpoints.map((e, i) => (localityWeight.get(e.locality ?? "") ?? 0) * weights[i]!);
  const denominators = endpoints.map((e) => totals.get(e.locality ?? "")!);
  return integerWeights(numerators, denominators);
}

/**
 * Integers proportional to numerators[i] / denominators[i] (0 stays 0, the others >= 1, all <= MAX_WEIGHT):
 * exact over the least common multiple of the denominators when that fits, else rounded after scaling.
 */
function integerWeights(numerators: readonly number[], denominators: readonly number[]): number[] {
  const kept = numerators.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
  let lcm = 1;
  for (const i of kept) {
    lcm = (lcm / gcd(lcm, denominators[i]!)) * denominators[i]!;
    if (lcm > 2 ** 40) break; // the exact weights would not be safe integers anyway
  }
  const exact = numerators.map((x, i) => (x > 0 ? (x * lcm) / denominators[i]! : 0));
  if (exact.every(Number.isSafeInteger)) {
    const common = exact.reduce((g, x) => (x > 0 ? gcd(g, x) : g), 0);
    const reduced = exact.map((x) => (x > 0 ? x / common : 0));
    if (reduced.every((x) => x <= MAX_WEIGHT)) return reduced;
  }
  const values = numerators.map((x, i) => x / denominators[i]!);
  const max = Math.max(0, ...values);
  return values.map((v) => (v > 0 ? Math.max(1, Math.round((v * MAX_WEIGHT) / max)) : 0));
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
