// Writes docs/proxy-config.schema.json from src/proxy/config/schema.ts (the one source of truth).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROXY_CONFIG_SCHEMA } from "../src/proxy/config/schema.ts";

export const SCHEMA_PATH = join(import.meta.dirname, "..", "docs", "proxy-config.schema.json");

export function renderSchema(): string {
  return `${JSON.stringify(PROXY_CONFIG_SCHEMA, null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(SCHEMA_PATH, renderSchema());
  console.log(`wrote ${SCHEMA_PATH}`);
}
