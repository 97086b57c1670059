// isthmus x — istioctl's experimental group (`istioctl x ...`): commands whose output may still change.
import type { CommandIO } from "../main.ts";
import { UsageError } from "../usage-error.ts";

const HELP = `Usage: isthmus x <group> <command> [options]

Experimental commands, as istioctl's 'x': their output may change.

Commands:
  authz check    the authorization policies in a proxy's config, in the order the proxy applies them
  connect-forward VIA LISTEN=TARGET...
                 tunnel connections to each LISTEN (HOST:PORT) through the HTTP proxy VIA with CONNECT TARGET
                 (what isthmus up runs for a pod's TCP service ports inside an isolated cluster)

Run 'isthmus x authz check --help' for its options.
`;

const AUTHZ_HELP = `Usage: isthmus x authz check PROXY|--file FILE [options]

Commands:
  check          the authorization policies in a proxy's config, per listener and filter chain

Run 'isthmus x authz check --help' for its options.
`;

const isHelp = (a: string | undefined) => a === "--help" || a === "-h" || a === "help";

export async function runExperimental(args: string[], io: CommandIO): Promise<number> {
  const [group, command, ...rest] = args;
  if (group === undefined || isHelp(group)) {
    io.out(HELP);
    return group === undefined ? 2 : 0;
  }
  if (group === "connect-forward") {
    const { main } = await import("../../runtime/connect-forwarder.ts");
    try {
      await main([command ?? "", ...rest].filter((a) => a !== ""));
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    await new Promise(() => {});
  }
  if (group !== "authz") throw new UsageError(`unknown experimental command "${group}"`);
  if (command === undefined || isHelp(command)) {
    io.out(AUTHZ_HELP);
    return command === undefined ? 2 : 0;
  }
  if (command !== "check") throw new UsageError(`unknown command "authz ${command}"; there is "authz check"`);
  const { runAuthzCheck } = await import("./authz-check.ts");
  return runAuthzCheck(rest, io);
}
