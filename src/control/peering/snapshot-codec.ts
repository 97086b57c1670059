// A PeerExport as a Snapshot message and back: JSON text, deflated when large, versioned by its digest (equal
// exports have equal versions, so an unchanged export is never sent twice). Decoding is bounded: the inflated
// size, then JSON parsing; the strict check of the content is peer-export.ts's.
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { deflateRaw, inflateRaw } from "node:zlib";
import { PEERING_LIMITS } from "./limits.ts";
import type { PeerExport } from "./peer-export.ts";
import type { SnapshotMessage } from "./peering-proto.ts";

const deflate = promisify(deflateRaw);
const inflate = promisify(inflateRaw);

/** A snapshot encoded once, sent to every peer. */
export interface EncodedSnapshot {
  readonly message: SnapshotMessage;
  readonly services: number;
  readonly instances: number;
}

export class SnapshotTooLargeError extends Error {}

export async function encodeSnapshot(exp: PeerExport): Promise<EncodedSnapshot> {
  const json = Buffer.from(JSON.stringify(exp), "utf8");
  const version = createHash("sha256").update(json).digest("hex").slice(0, 32);
  const deflated = json.length > PEERING_LIMITS.deflateAboveBytes;
  const payload = deflated ? await deflate(json) : json;
  // The message's other fields take a few dozen bytes.
  if (payload.length > PEERING_LIMITS.maxMessageBytes - 1024)
    throw new SnapshotTooLargeError(
      `the export is ${payload.length} bytes${deflated ? " deflated" : ""} (${exp.services.length} services, ${exp.instances.length} instances); a snapshot may have at most ${PEERING_LIMITS.maxMessageBytes - 1024}`,
    );
  return {
    message: { version, payload, encoding: deflated ? "deflate" : "" },
    services: exp.services.length,
    instances: exp.instances.length,
  };
}

export type DecodedSnapshot =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly field: string; readonly message: string };

/** The parsed JSON of a received snapshot, or why it cannot be read. */
export async function decodeSnapshot(m: SnapshotMessage): Promise<DecodedSnapshot> {
  if (typeof m.version !== "string" || m.version === "" || m.version.length > PEERING_LIMITS.maxVersionLength)
    return {
      ok: false,
      field: "version",
      message: `must be 1..${PEERING_LIMITS.maxVersionLength} characters`,
    };
  let json: Buffer;
  if (m.encoding === "") json = m.payload;
  else if (m.encoding === "deflate") {
    try {
      json = await inflate(m.payload, { maxOutputLength: PEERING_LIMITS.maxPayloadJsonBytes });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return {
        ok: false,
        field: "payload",
        message:
          code === "ERR_BUFFER_TOO_LARGE"
            ? `inflates to more than ${PEERING_LIMITS.maxPayloadJsonBytes} bytes`
            : `does not inflate: ${(e as Error).message}`,
      };
    }
  } else
    return { ok: false, field: "encoding", message: `"${m.encoding.slice(0, 40)}" is not "" or "deflate"` };
  if (json.length > PEERING_LIMITS.maxPayloadJsonBytes)
    return { ok: false, field: "payload", message: `more than ${PEERING_LIMITS.maxPayloadJsonBytes} bytes` };
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  try {
    return { ok: true, value: JSON.parse(text.decode(json)) };
  } catch (e) {
    return {
      ok: false,
      field: "payload",
      message: `is not UTF-8 JSON: ${(e as Error).message.slice(0, 200)}`,
    };
  }
}
