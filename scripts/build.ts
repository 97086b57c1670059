// Compiles src/ to dist/ (plain JavaScript) for running. Node can run the TypeScript sources directly, but
// type stripping costs a proxy about 25 MB of memory and start-up time; bin/isthmus.js uses dist/ whenever it
// is at least as new as every source file, and the sources otherwise.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");
const src = join(root, "src");
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.build.json")],
  {
    stdio: "inherit",
  },
);
// JSON data read at run time (generated field trees) goes along.
const copyJson = (dir: string): void => {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== "testdata") copyJson(p);
    } else if (name.endsWith(".json")) {
      const to = join(dist, relative(src, p));
      mkdirSync(join(to, ".."), { recursive: true });
      cpSync(p, to);
    }
  }
};
copyJson(src);
writeFileSync(join(dist, ".build-stamp"), `${new Date().toISOString()}\n`);
console.log("built dist/");
