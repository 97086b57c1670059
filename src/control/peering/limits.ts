// Every bound of the peering link in one place: what a peer may send, how long it may take, how often we
// retry. A peer that exceeds one is refused with the bound's name and value.

export const PEERING_LIMITS = {
  /** Largest gRPC message either side sends or accepts (a snapshot's payload, deflated when large). */
  maxMessageBytes: 16 * 1024 * 1024,
  /** Largest export JSON once inflated: deflate shrinks JSON 5-15x, and a bomb stops here. */
  maxPayloadJsonBytes: 64 * 1024 * 1024,
  /** Exports whose JSON is larger than this travel deflated. */
  deflateAboveBytes: 64 * 1024,
  maxInstances: 100_000,
  maxServices: 20_000,
  /** East-west gateways or tunnel acceptors of one network. */
  maxGateways: 64,
  /** Labels of one instance. */
  maxLabels: 64,
  /** One exported Service or ServiceEntry as JSON. */
  maxServiceJsonBytes: 256 * 1024,
  /** Nesting of maps and lists inside one exported resource (as the config loader's). */
  maxNestingDepth: 64,
  maxVersionLength: 128,
  maxErrorLength: 4096,
  /** The peer's Hello must come this soon after the stream opens (the dial included). */
  helloTimeoutMs: 10_000,
  /** A snapshot the peer does not acknowledge this soon ends the stream (the peer is stuck). */
  ackTimeoutMs: 60_000,
  /** Changes to the export within this window are sent as one snapshot. */
  debounceMs: 100,
  /** gRPC keepalive: a ping after this long without traffic, and the link is dead without an answer in... */
  keepaliveTimeMs: 3_000,
  /** ...this long: a dead peer is noticed within about 6 s. */
  keepaliveTimeoutMs: 3_000,
  /** Reconnection backoff: first delay, cap, and the jitter (a fraction of the delay, either way). */
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  backoffJitter: 0.2,
  /** How long a gone peer's export is kept once its gateway stops answering (or at all, without a probe). */
  graceMs: 30_000,
  /** How often a gone peer's gateways are probed (at most; never more than twice per grace period). */
  probeIntervalMs: 5_000,
  /** Refusals of peers no link names, kept for status. */
  maxRecentRefusals: 16,
} as const;
