// The literal-prefix shortcut in front of RE2 must never reject a path the regex would match.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import RE2 from "re2";
import { literalPrefix } from "./route-table.ts";

test("literal prefixes of typical route regexes", () => {
  assert.equal(literalPrefix("/admin/[a-z]+"), "/admin/");
  assert.equal(literalPrefix("/ab*c"), "/a");
  assert.equal(literalPrefix("/a?b"), "/");
  assert.equal(literalPrefix("(/a|/b)"), "");
  assert.equal(literalPrefix("/a|/b"), "");
  assert.equal(literalPrefix(".*"), "");
  assert.equal(literalPrefix("/x\\.y"), "/x");
});

test("whenever the regex matches a path, the path starts with the literal prefix", () => {
  const piece = fc.constantFrom(
    "/",
    "a",
    "b",
    "ab",
    ".",
    "*",
    "+",
    "?",
    "[ab]",
    "(a|b)",
    "{2}",
    "\\.",
    "|",
    "x",
  );
  const regex = fc.array(piece, { minLength: 1, maxLength: 6 }).map((xs) => xs.join(""));
  const path = fc.array(fc.constantFrom("/", "a", "b", ".", "x"), { maxLength: 8 }).map((xs) => xs.join(""));
  fc.assert(
    fc.property(regex, path, (r, p) => {
      let re: RE2;
      try {
        re = new RE2(`^(?:${r})$`, "u");
      } catch {
        return true; // not a valid regex: the config validator refuses it
      }
      if (re.test(p))
        assert.ok(p.startsWith(literalPrefix(r)), `${r} matched ${p} without prefix ${literalPrefix(r)}`);
      return true;
    }),
    { numRuns: 3000 },
  );
});
