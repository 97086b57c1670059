// The committed field tree must be what the installed models generate: regenerate after upgrading
// @kubernetes-models/* with `npm run gen:schemas`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { generateKnownFields, KNOWN_FIELDS_PATH } from "./gen-known-fields.ts";

test("known-fields.gen.json is up to date with the installed schema models", () => {
  assert.equal(readFileSync(KNOWN_FIELDS_PATH, "utf8"), generateKnownFields(), "run: npm run gen:schemas");
});
