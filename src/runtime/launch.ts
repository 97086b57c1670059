// Everything `isthmus up` does before the processes start, in one place for the CLI, the tests and the
// benchmarks: the mesh's block of addresses, its network namespaces when isolated (or why not), the plan on
// those addresses, and the runtime; stop() undoes all of it.

import type { Diagnostic } from "../api/diagnostic.ts";
import { claimAddressBlock } from "./address-blocks.ts";
import { cleanupLeftovers, createIsolation, type Isolation, isolationSupport } from "./isolation.ts";
import type { MeshSpec } from "./mesh-file.ts";
import { MeshRuntime } from "./mesh-runtime.ts";
import { type Addressing, planMesh } from "./plan.ts";

export interface LaunchOptions {
  /** Each cluster in its own network namespace (root only; otherwise unisolated, with the reason logged). */
  readonly isolate?: boolean;
  readonly log: (line: string) => void;
  /** How long control planes keep a gone peer's endpoints once its gateways stop answering (e.g. "30s"). */
  readonly peerGrace?: string;
}

export interface LaunchedMesh {
  readonly runtime: MeshRuntime;
  /** Undefined when unisolated (not asked, or not possible: see `unisolatedReason`). */
  readonly isolation: Isolation | undefined;
  readonly unisolatedReason: string | undefined;
  readonly base: number;
  readonly warnings: readonly Diagnostic[];
  /** Stops the runtime, removes the namespaces, releases the addresses. */
  stop(): Promise<void>;
}

export type LaunchResult =
  | { readonly ok: true; readonly mesh: LaunchedMesh }
  | { readonly ok: false; readonly diagnostics: readonly Diagnostic[]; readonly message?: string };

/** Prepares a mesh to start (runtime.start() starts it). */
export async function launchMesh(
  spec: MeshSpec,
  stateDir: string,
  options: LaunchOptions,
): Promise<LaunchResult> {
  const block = claimAddressBlock(spec.clusters.length);
  if (block === undefined)
    return {
      ok: false,
      diagnostics: [],
      message: "every block of loopback addresses is taken by running meshes; stop one first",
    };
  let isolation: Isolation | undefined;
  let unisolatedReason: string | undefined;
  try {
    if (options.isolate) {
      const support = await isolationSupport();
      if (!support.ok) {
        unisolatedReason = support.reason;
        options.log(`--isolate: ${support.reason}; running unisolated`);
      } else {
        // A runtime that was killed left its namespaces: the block is ours now, so they go.
        await cleanupLeftovers(block.base);
        isolation = await createIsolation({
          base: block.base,
          clusters: spec.clusters.map((c, index) => ({ name: c.name, index, private: c.private })),
        });
        options.log(
          `isolated: a network namespace per cluster (${isolation.layout.hubNamespace} joins them)`,
        );
      }
    }
    const placed = await planMesh(
      spec,
      block.base,
      isolation
        ? isolatedAddressing(
            isolation,
            spec.clusters.map((c) => c.name),
          )
        : undefined,
    );
    if (!placed.ok) {
      await isolation?.destroy();
      block.release();
      return { ok: false, diagnostics: placed.diagnostics };
    }
    const runtime = new MeshRuntime(placed.plan, stateDir, options.log, {
      ...(isolation ? { isolation } : {}),
      ...(options.peerGrace ? { peerGrace: options.peerGrace } : {}),
    });
    let stopping: Promise<void> | undefined;
    return {
      ok: true,
      mesh: {
        runtime,
        isolation,
        unisolatedReason,
        base: block.base,
        warnings: placed.warnings,
        stop: () => {
          stopping ??= runtime
            .stop()
            .then(() => isolation?.destroy())
            .finally(() => block.release());
          return stopping;
        },
      },
    };
  } catch (e) {
    await isolation?.destroy().catch(() => {});
    block.release();
    throw e;
  }
}

/** Isolated addressing: cluster i's hosts in its namespace's /24 (host h at .h+1), hostNetwork on the host. */
function isolatedAddressing(isolation: Isolation, clusters: readonly string[]): Addressing {
  return {
    address: (i, host) => isolation.address(clusters[i]!, host + 1),
    firstPodHost: 3,
    maxPods: 251,
    hostAddress: isolation.hostAddress,
  };
}
