// The published JSON Schema and the compiled validator must both come from the current schema.ts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { renderSchema, renderValidator, SCHEMA_PATH, VALIDATOR_PATH } from "./gen-proxy-schema.ts";

test("docs/proxy-config.schema.json is up to date", () => {
  assert.equal(readFileSync(SCHEMA_PATH, "utf8"), renderSchema(), "run: npm run gen:proxy-schema");
});

test("the compiled ProxyConfig validator is up to date", () => {
  assert.equal(readFileSync(VALIDATOR_PATH, "utf8"), renderValidator(), "run: npm run gen:proxy-schema");
});
