// Istio's semantic rules for DestinationRule.
import { atMostOne, type Checker, eachObj, num, type Obj, obj, type Path, setKeys, str } from "./checker.ts";
import { clientTls, exportTo, istioName, labels, workloadSelector } from "./common.ts";
import { durationAtLeast1ms, parseDuration, percent, port, wildcardHost } from "./formats.ts";

export function validateDestinationRule(c: Checker, spec: Obj): void {
  const host = str(spec.host);
  if (host !== undefined) {
    const err = wildcardHost(host);
    if (err) c.error(["spec", "host"], err);
  }
  trafficPolicy(c, obj(spec.trafficPolicy), ["spec", "trafficPolicy"], true);
  const names = new Set<string>();
  eachObj(spec.subsets, ["spec", "subsets"], (s, p) => {
    const name = str(s.name);
    if (name !== undefined) {
      if (names.has(name)) c.error([...p, "name"], `duplicate subset names: ${name}`);
      names.add(name);
      const err = name === "" ? "subset name cannot be empty" : istioName(name);
      if (err) c.error([...p, "name"], name === "" ? err : `subset name is invalid: ${err}`);
    }
    labels(c, s.labels, [...p, "labels"]);
    trafficPolicy(c, obj(s.trafficPolicy), [...p, "trafficPolicy"], true);
  });
  exportTo(c, spec.exportTo, ["spec", "exportTo"]);
  if (spec.workloadSelector !== undefined) {
    workloadSelector(c, spec.workloadSelector, ["spec", "workloadSelector"]);
    const ex = Array.isArray(spec.exportTo) ? spec.exportTo : [];
    if (ex.length > 1)
      c.error(
        ["spec", "exportTo"],
        "destination rule with workload selector cannot have multiple entries in exportTo",
      );
    else if (ex.length === 1 && ex[0] !== "." && ex[0] !== c.resource.namespace)
      c.error(
        ["spec", "exportTo"],
        "destination rule with workload selector cannot have exportTo beyond current namespace",
      );
  }
}

function trafficPolicy(c: Checker, tp: Obj | undefined, p: Path, allowPortLevel: boolean): void {
  if (!tp) return;
  if (Object.keys(tp).length === 0) c.error(p, "traffic policy must have at least one field");
  if (tp.tunnel !== undefined && tp.proxyProtocol !== undefined)
    c.error(p, "tunnel and proxyProtocol must not be set together");
  loadBalancer(c, obj(tp.loadBalancer), [...p, "loadBalancer"]);
  connectionPool(c, obj(tp.connectionPool), [...p, "connectionPool"]);
  outlierDetection(c, obj(tp.outlierDetection), [...p, "outlierDetection"]);
  const locality = obj(obj(tp.loadBalancer)?.localityLbSetting);
  if (
    locality &&
    (Array.isArray(locality.failover) || Array.isArray(locality.failoverPriority)) &&
    !tp.outlierDetection
  )
    c.warn(
      [...p, "loadBalancer", "localityLbSetting"],
      "outlier detection policy must be provided for failover",
    );
  clientTls(c, tp.tls, [...p, "tls"]);
  const tunnel = obj(tp.tunnel);
  if (tunnel) {
    const err = port(tunnel.targetPort);
    if (err) c.error([...p, "tunnel", "targetPort"], err);
  }
  if (!allowPortLevel) return;
  const ports = new Set<number>();
  eachObj(tp.portLevelSettings, [...p, "portLevelSettings"], (pl, pp) => {
    const n = num(obj(pl.port)?.number);
    if (setKeys(pl, ["loadBalancer", "connectionPool", "outlierDetection", "tls"]).length === 0)
      c.error(pp, "port traffic policy must have at least one field");
    if (n === undefined) c.error([...pp, "port"], "portTrafficPolicy must have valid port");
    else {
      const err = port(n);
      if (err) c.error([...pp, "port", "number"], err);
      if (ports.has(n))
        c.warn(
          [...pp, "port", "number"],
          `port ${n} has more than one portLevelSettings entry; the first wins`,
        );
      ports.add(n);
    }
    loadBalancer(c, obj(pl.loadBalancer), [...pp, "loadBalancer"]);
    connectionPool(c, obj(pl.connectionPool), [...pp, "connectionPool"]);
    outlierDetection(c, obj(pl.outlierDetection), [...pp, "outlierDetection"]);
    clientTls(c, pl.tls, [...pp, "tls"]);
  });
}

function loadBalancer(c: Checker, lb: Obj | undefined, p: Path): void {
  if (!lb) return;
  atMostOne(c, lb, p, ["simple", "consistentHash"], "loadBalancer");
  const ch = obj(lb.consistentHash);
  if (ch) {
    const keys = ["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"];
    const set = setKeys(ch, keys).filter((k) => k !== "useSourceIp" || ch.useSourceIp === true);
    if (set.length > 1)
      c.error([...p, "consistentHash"], `only one hash key may be set; found ${set.join(" and ")}`);
    if (set.length === 0) c.error([...p, "consistentHash"], `consistentHash needs one of ${keys.join(", ")}`);
    if (ch.minimumRingSize !== undefined && (ch.ringHash !== undefined || ch.maglev !== undefined))
      c.error([...p, "consistentHash"], "only one of MinimumRingSize or Maglev/Ringhash can be specified");
    const cookie = obj(ch.httpCookie);
    if (cookie) {
      if (!str(cookie.name))
        c.error([...p, "consistentHash", "httpCookie", "name"], "name required for HttpCookie");
      if (cookie.ttl !== undefined) {
        const ttl = str(cookie.ttl);
        if (ttl !== undefined && ttl !== "0s") {
          const err = durationAtLeast1ms(ttl);
          if (err) c.error([...p, "consistentHash", "httpCookie", "ttl"], err);
        }
      }
    }
    const maglev = obj(ch.maglev);
    const tableSize = num(maglev?.tableSize);
    if (tableSize !== undefined && (!isPrime(tableSize) || tableSize >= 5000011))
      c.error(
        [...p, "consistentHash", "maglev", "tableSize"],
        "tableSize must be a prime number for maglev (below 5000011)",
      );
  }
  const wu = lb.warmupDurationSecs ?? obj(lb.warmup)?.duration;
  if (typeof wu === "string") {
    const err = durationAtLeast1ms(wu);
    if (err) c.error([...p, "warmupDurationSecs"], err);
  }
  const locality = obj(lb.localityLbSetting);
  if (locality) localityLb(c, locality, [...p, "localityLbSetting"]);
  if (locality && lb.zoneAwareLbSetting !== undefined)
    c.error(p, "only one of localityLbSetting and zoneAwareLbSetting can be set");
}

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

const TOPOLOGY_LABELS = new Set([
  "topology.kubernetes.io/region",
  "topology.kubernetes.io/zone",
  "topology.istio.io/subzone",
]);

/** localityLbSetting as Istio's agent validation checks it. */
function localityLb(c: Checker, l: Obj, p: Path): void {
  const distribute = Array.isArray(l.distribute) ? l.distribute : [];
  const failover = Array.isArray(l.failover) ? l.failover : [];
  if (distribute.length > 0 && failover.length > 0)
    c.error(p, "can not simultaneously specify 'distribute' and 'failover'");
  if (failover.length > 0) {
    for (const [i, v] of (Array.isArray(l.failoverPriority) ? l.failoverPriority : []).entries()) {
      const label = String(v).split("=")[0]!;
      if (TOPOLOGY_LABELS.has(label))
        c.error(
          [...p, "failoverPriority", i],
          `can not simultaneously set 'failover' and topology label '${label}' in 'failover_priority'`,
        );
    }
  }
  const froms: string[] = [];
  eachObj(l.distribute, [...p, "distribute"], (d, dp) => {
    const from = str(d.from);
    if (from !== undefined) {
      const err = localityPattern(from) ?? overlaps(from, froms);
      if (err) c.error([...dp, "from"], err);
      froms.push(from);
    }
    const to = obj(d.to);
    let total = 0;
    const tos: string[] = [];
    if (to) {
      for (const [loc, w] of Object.entries(to)) {
        const err = localityPattern(loc) ?? overlaps(loc, tos);
        if (err) c.error([...dp, "to", loc], err);
        tos.push(loc);
        if (typeof w === "number") {
          if (w < 1 || w > 100) c.error([...dp, "to", loc], "locality weight must be in range [1, 100]");
          total += w;
        }
      }
    }
    if (total !== 100) c.error([...dp, "to"], `total locality weight ${total} != 100`);
  });
  eachObj(l.failover, [...p, "failover"], (f, fp) => {
    const from = str(f.from);
    const to = str(f.to);
    if (from !== undefined && from === to)
      c.error(fp, "locality lb failover settings must specify different regions");
    for (const [k, v] of [
      ["from", from],
      ["to", to],
    ] as const) {
      if (v?.includes("/")) c.error([...fp, k], "locality lb failover only specify region");
      if (v?.includes("*"))
        c.error([...fp, k], "locality lb failover region should not contain '*' wildcard");
    }
  });
}

/** An earlier locality that contains this one, or the reverse ("us-east" and "us-east/zone1"). */
function overlaps(loc: string, earlier: readonly string[]): string | undefined {
  const norm = (s: string) => (s.endsWith("/*") ? s.slice(0, -2) : s === "*" ? "" : s);
  const a = norm(loc);
  for (const e of earlier) {
    const b = norm(e);
    if (a === b || b === "" || a === "" || a.startsWith(`${b}/`) || b.startsWith(`${a}/`))
      return `locality ${loc} overlap with previous specified ones`;
  }
  return undefined;
}

/** region/zone/subzone, with one "*" allowed only at the end. */
function localityPattern(v: string): string | undefined {
  const parts = v.split("/");
  if (parts.length > 3 || parts.some((s) => s === ""))
    return `locality ${v} must not contain empty region/zone/subzone info`;
  const stars = (v.match(/\*/g) ?? []).length;
  if (stars > 1 || (stars === 1 && parts[parts.length - 1] !== "*"))
    return `locality ${v} wildcard '*' number can not exceed 1 and must be in the end`;
  return undefined;
}

function connectionPool(c: Checker, cp: Obj | undefined, p: Path): void {
  if (!cp) return;
  if (cp.tcp === undefined && cp.http === undefined)
    c.error(p, "connection pool must have at least one field");
  const tcp = obj(cp.tcp);
  if (tcp) {
    nonNegative(c, tcp, [...p, "tcp"], ["maxConnections"]);
    for (const f of ["connectTimeout", "idleTimeout", "maxConnectionDuration"]) {
      const v = str(tcp[f]);
      if (v !== undefined && !(f === "idleTimeout" && parseDuration(v) === 0)) {
        const err = durationAtLeast1ms(v);
        if (err) c.error([...p, "tcp", f], err);
      }
    }
    const ka = obj(tcp.tcpKeepalive);
    if (ka) {
      for (const f of ["time", "interval"]) {
        const v = str(ka[f]);
        if (v !== undefined) {
          const err = durationAtLeast1ms(v);
          if (err) c.error([...p, "tcp", "tcpKeepalive", f], err);
        }
      }
    }
  }
  const http = obj(cp.http);
  if (http) {
    nonNegative(
      c,
      http,
      [...p, "http"],
      [
        "http1MaxPendingRequests",
        "http2MaxRequests",
        "maxRequestsPerConnection",
        "maxRetries",
        "maxConcurrentStreams",
      ],
    );
    const idle = str(http.idleTimeout);
    if (idle !== undefined) {
      const err = durationAtLeast1ms(idle);
      if (err) c.error([...p, "http", "idleTimeout"], err);
    }
    if (http.h2UpgradePolicy === "UPGRADE" && http.useClientProtocol === true)
      c.error([...p, "http"], "use client protocol must not be true when H2UpgradePolicy is UPGRADE");
  }
}

function nonNegative(c: Checker, o: Obj, p: Path, fields: string[]): void {
  for (const f of fields) {
    const n = num(o[f]);
    if (n !== undefined && n < 0) c.error([...p, f], `${f} must not be negative`);
  }
}

function outlierDetection(c: Checker, od: Obj | undefined, p: Path): void {
  if (!od) return;
  nonNegative(c, od, p, [
    "consecutiveErrors",
    "consecutive5xxErrors",
    "consecutiveGatewayErrors",
    "consecutiveLocalOriginFailures",
  ]);
  if (od.consecutiveErrors !== undefined)
    c.warn([...p, "consecutiveErrors"], "consecutiveErrors is deprecated; use consecutive5xxErrors");
  if ((num(od.consecutiveLocalOriginFailures) ?? 0) > 0 && od.splitExternalLocalOriginErrors !== true)
    c.error(
      p,
      "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
    );
  for (const f of ["interval", "baseEjectionTime"]) {
    const v = str(od[f]);
    if (v !== undefined) {
      const err = durationAtLeast1ms(v);
      if (err) c.error([...p, f], err);
    }
  }
  for (const f of ["maxEjectionPercent", "minHealthPercent"]) {
    if (od[f] !== undefined) {
      const err = percent(od[f]);
      if (err) c.error([...p, f], `${f}: ${err}`);
    }
  }
}
