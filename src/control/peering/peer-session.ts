// One stream between two control planes, from either end: the Hello exchange (the dialler speaks first, the
// dialled side answers once it has admitted the dialler), then snapshots both ways, one unacknowledged at a time,
// each received one decoded, checked and acknowledged (or refused with the reason) in order. PeerLinks decides
// who is admitted and what a snapshot changes; a session only speaks the protocol and reports.
import { clip } from "./identity.ts";
import { PEERING_LIMITS } from "./limits.ts";
import type { ExportExpectation, PeerExport, ServiceCheckCache } from "./peer-export.ts";
import { checkPeerExport } from "./peer-export.ts";
import {
  grpc,
  type HelloMessage,
  type PeerClientStream,
  type PeerMessage,
  type PeerServerStream,
  PROTOCOL_VERSIONS,
  type SnapshotMessage,
} from "./peering-proto.ts";
import { decodeSnapshot, type EncodedSnapshot } from "./snapshot-codec.ts";

/** Who opened the stream: we dialled the peer, or the peer dialled us. */
export type Direction = "dial" | "accept";

/** How a session ended. */
export interface SessionOutcome {
  /** Why, for status and logs; undefined when the stream ended cleanly. */
  readonly reason: string | undefined;
  /** Verification failed on either side (TLS, identity, cluster, network, protocol version). */
  readonly refused: boolean;
  /** Closed as the duplicate of another stream to the same peer: not a failure. */
  readonly superseded: boolean;
}

export type Admission =
  | { readonly ok: true; readonly expect: ExportExpectation; readonly cache: ServiceCheckCache }
  | { readonly ok: false; readonly code: grpc.status; readonly reason: string };

export interface SessionHooks {
  /** The peer's Hello: admit it (with what its exports must say) or refuse it. */
  admit(s: PeerSession, hello: HelloMessage): Admission;
  /** Both Hellos are through. */
  attached(s: PeerSession): void;
  snapshotAccepted(s: PeerSession, exp: PeerExport, version: string): void;
  snapshotRefused(s: PeerSession, version: string, reason: string): void;
  /** The peer answered our snapshot: accepted (error undefined) or refused. */
  acknowledged(s: PeerSession, version: string, error: string | undefined): void;
  closed(s: PeerSession, outcome: SessionOutcome): void;
}

/** Status codes by which a peer tells us it refused us (rather than failing). */
const REFUSAL_CODES = new Set([
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION,
]);
/** The code a side closes a duplicate stream with. */
export const SUPERSEDED_CODE = grpc.status.ALREADY_EXISTS;
/** A TLS failure in a client's UNAVAILABLE status: refused, not unreachable. */
const TLS_FAILURE =
  /certificate|self[- ]signed|issuer|handshake|alert|SSL|TLS|control plane's identity|peer presented/i;

export class PeerSession {
  /** The peer's Hello, once admitted. */
  peer: HelloMessage | undefined;
  private phase: "hello" | "open" | "closed" = "hello";
  private expect: ExportExpectation | undefined;
  private cache: ServiceCheckCache | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  /** Our snapshot the peer has not answered yet, and the newest one to send after it. */
  private inFlight: EncodedSnapshot | undefined;
  private latest: EncodedSnapshot | undefined;
  private lastAnswered: string | undefined;
  private receiving = false;
  private queued: SnapshotMessage | undefined;
  /** Set when we close the stream ourselves: what the outcome says whatever status follows. */
  private closing: SessionOutcome | undefined;

  readonly direction: Direction;
  /** The peer's address: the dialled HOST:PORT, or the dialler's. */
  readonly remote: string;
  private readonly stream: PeerClientStream | PeerServerStream;
  private readonly ownHello: HelloMessage;
  private readonly hooks: SessionHooks;
  private readonly helloTimeoutMs: number;
  private readonly ackTimeoutMs: number;

  constructor(
    direction: Direction,
    remote: string,
    stream: PeerClientStream | PeerServerStream,
    ownHello: HelloMessage,
    hooks: SessionHooks,
    timeouts: { helloMs?: number; ackMs?: number } = {},
  ) {
    this.direction = direction;
    this.remote = remote;
    this.stream = stream;
    this.ownHello = ownHello;
    this.hooks = hooks;
    this.helloTimeoutMs = timeouts.helloMs ?? PEERING_LIMITS.helloTimeoutMs;
    this.ackTimeoutMs = timeouts.ackMs ?? PEERING_LIMITS.ackTimeoutMs;
  }

  start(): void {
    this.stream.on("data", (m: PeerMessage) => this.onMessage(m));
    if (this.direction === "dial") {
      const call = this.stream as PeerClientStream;
      // 'status' is the call's last word (its code and details); 'error' repeats a non-OK one.
      call.on("status", (st: grpc.StatusObject) => this.onStatus(st));
      call.on("error", () => {});
      this.write({ hello: this.ownHello });
    } else {
      const call = this.stream as PeerServerStream;
      call.on("cancelled", () =>
        this.finish({ reason: "the peer closed the stream", refused: false, superseded: false }),
      );
      call.on("end", () => {
        // The peer half-closed: answer with OK and finish.
        this.finish({ reason: "the peer ended the stream", refused: false, superseded: false });
      });
      call.on("error", () => {});
      call.on("close", () => this.finish({ reason: "the stream closed", refused: false, superseded: false }));
    }
    this.helloTimer = setTimeout(
      () =>
        this.close(grpc.status.DEADLINE_EXCEEDED, `no Hello from the peer within ${this.helloTimeoutMs} ms`, {
          refused: false,
        }),
      this.helloTimeoutMs,
    );
  }

  /** Sends `snap` now, or once the peer has answered the one in flight; nothing when it already has it. */
  offer(snap: EncodedSnapshot): void {
    this.latest = snap;
    this.sendLatest();
  }

  /**
   * Ends the stream: a dialled one by cancelling the call, an accepted one with `code` and `reason` as its
   * status (the dialler sees why).
   */
  close(code: grpc.status, reason: string, how: { refused?: boolean; superseded?: boolean } = {}): void {
    if (this.phase === "closed" || this.closing) return;
    this.closing = { reason, refused: how.refused ?? false, superseded: how.superseded ?? false };
    if (this.direction === "dial") (this.stream as PeerClientStream).cancel();
    else (this.stream as PeerServerStream).emit("error", { code, details: reason });
    // An accepted stream's status goes out once pending writes have; a cancelled call ends at once. Either
    // way the session is over for us now.
    this.finish(this.closing);
  }

  private write(m: PeerMessage): void {
    if (this.phase === "closed" || this.closing) return;
    try {
      this.stream.write(m);
    } catch (e) {
      this.finish({
        reason: `cannot write to the stream: ${(e as Error).message}`,
        refused: false,
        superseded: false,
      });
    }
  }

  private onStatus(st: grpc.StatusObject): void {
    if (st.code === grpc.status.OK) {
      this.finish({ reason: "the peer ended the stream", refused: false, superseded: false });
      return;
    }
    if (st.code === SUPERSEDED_CODE) {
      this.finish({ reason: st.details, refused: false, superseded: true });
      return;
    }
    const refused =
      REFUSAL_CODES.has(st.code) || (st.code === grpc.status.UNAVAILABLE && TLS_FAILURE.test(st.details));
    this.finish({
      reason: st.details || grpc.status[st.code] || `status ${st.code}`,
      refused,
      superseded: false,
    });
  }

  private finish(outcome: SessionOutcome): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    clearTimeout(this.helloTimer);
    clearTimeout(this.ackTimer);
    this.queued = undefined;
    if (this.direction === "accept") {
      // Our OK status for a half-closed stream; a no-op once the stream has ended.
      const call = this.stream as PeerServerStream;
      if (!call.writableEnded && !call.destroyed) call.end();
    }
    this.hooks.closed(this, this.closing ?? outcome);
  }

  private protocolError(message: string): void {
    this.close(grpc.status.INVALID_ARGUMENT, `protocol error: ${message}`, { refused: false });
  }

  private onMessage(m: PeerMessage): void {
    if (this.phase === "closed" || this.closing) return;
    const kind = m?.kind;
    if (this.phase === "hello") {
      if (kind !== "hello" || !m.hello) {
        this.protocolError(`the first message must be a Hello, not ${kind ?? "an empty message"}`);
        return;
      }
      this.onHello(m.hello);
      return;
    }
    if (kind === "snapshot" && m.snapshot) this.onSnapshot(m.snapshot);
    else if (kind === "ack" && m.ack) this.onAck(m.ack.version, m.ack.error);
    else this.protocolError(`unexpected ${kind ?? "empty message"} after the Hello`);
  }

  private onHello(hello: HelloMessage): void {
    clearTimeout(this.helloTimer);
    if (!PROTOCOL_VERSIONS.includes(hello.protocolVersion)) {
      this.close(
        grpc.status.FAILED_PRECONDITION,
        `cluster "${clip(hello.cluster)}" speaks peering protocol version ${hello.protocolVersion}; ` +
          `${this.ownHello.cluster} speaks ${PROTOCOL_VERSIONS.join(", ")}`,
        { refused: true },
      );
      return;
    }
    const admission = this.hooks.admit(this, hello);
    if (!admission.ok) {
      this.close(admission.code, admission.reason, { refused: true });
      return;
    }
    this.peer = hello;
    this.expect = admission.expect;
    this.cache = admission.cache;
    if (this.direction === "accept") this.write({ hello: this.ownHello });
    this.phase = "open";
    this.hooks.attached(this);
    this.sendLatest();
  }

  private sendLatest(): void {
    if (this.phase !== "open" || this.closing || this.inFlight || !this.latest) return;
    if (this.latest.message.version === this.lastAnswered) return;
    this.inFlight = this.latest;
    this.write({ snapshot: this.latest.message });
    this.ackTimer = setTimeout(
      () =>
        this.close(
          grpc.status.DEADLINE_EXCEEDED,
          `the peer did not acknowledge snapshot ${this.inFlight?.message.version} within ${this.ackTimeoutMs} ms`,
        ),
      this.ackTimeoutMs,
    );
  }

  private onAck(version: string, error: string): void {
    if (!this.inFlight || version !== this.inFlight.message.version) {
      this.protocolError(`an acknowledgement of snapshot "${clip(version)}", which is not the one in flight`);
      return;
    }
    clearTimeout(this.ackTimer);
    this.inFlight = undefined;
    this.lastAnswered = version;
    this.hooks.acknowledged(
      this,
      version,
      error === "" ? undefined : clip(error, PEERING_LIMITS.maxErrorLength),
    );
    this.sendLatest();
  }

  private onSnapshot(snap: SnapshotMessage): void {
    // Full snapshots: while one is being checked, only the newest of those that arrive meanwhile matters.
    if (this.receiving) {
      this.queued = snap;
      return;
    }
    this.receiving = true;
    this.receive(snap).then(
      () => {
        this.receiving = false;
        const next = this.queued;
        this.queued = undefined;
        if (next && this.phase === "open") this.onSnapshot(next);
      },
      (e: unknown) => {
        this.receiving = false;
        this.close(grpc.status.INTERNAL, `internal error checking a snapshot: ${(e as Error).message}`);
      },
    );
  }

  private async receive(snap: SnapshotMessage): Promise<void> {
    const version = String(snap.version ?? "");
    const decoded = await decodeSnapshot(snap);
    const checked = decoded.ok ? await checkPeerExport(decoded.value, this.expect!, this.cache) : decoded;
    if (this.phase !== "open" || this.closing) return;
    if (!checked.ok) {
      const reason = `${decoded.ok ? "" : "snapshot "}${checked.field}: ${checked.message}`;
      this.hooks.snapshotRefused(this, version, reason);
      this.write({
        ack: {
          version: clip(version, PEERING_LIMITS.maxVersionLength),
          error: clip(reason, PEERING_LIMITS.maxErrorLength),
        },
      });
      return;
    }
    this.hooks.snapshotAccepted(this, checked.export, version);
    this.write({ ack: { version, error: "" } });
  }
}
