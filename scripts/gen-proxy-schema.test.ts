// The published JSON Schema must be the one the proxy validates with.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { renderSchema, SCHEMA_PATH } from "./gen-proxy-schema.ts";

test("docs/proxy-config.schema.json is up to date", () => {
  assert.equal(readFileSync(SCHEMA_PATH, "utf8"), renderSchema(), "run: npm run gen:proxy-schema");
});
