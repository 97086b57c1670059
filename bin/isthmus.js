#!/usr/bin/env node
// The isthmus command. The sources are TypeScript run by Node's type stripping (Node >= 22.18). On an older
// Node, re-run with the Node 24 that the project installs (devDependency node@24), or say what is needed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  const bundled = fileURLToPath(new URL("../node_modules/node/bin/node", import.meta.url));
  if (existsSync(bundled) && process.env.ISTHMUS_REEXEC !== "1") {
    const r = spawnSync(bundled, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
      stdio: "inherit",
      env: { ...process.env, ISTHMUS_REEXEC: "1" },
    });
    process.exit(r.status ?? 1);
  }
  console.error(
    `isthmus needs Node.js >= 22.18 (this is ${process.version}); run 'npm install' to install Node 24 locally`,
  );
  process.exit(1);
}

const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
