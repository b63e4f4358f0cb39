import { equal } from "node:assert/strict";
import { nestsDeeperThan } from "../../src/util/json_depth.ts";

Deno.test("nestsDeeperThan() counts arrays and objects, not brackets inside strings", () => {
  equal(nestsDeeperThan('{"a": [[1]]}', 3), false);
  equal(nestsDeeperThan('{"a": [[1]]}', 2), true);
  equal(nestsDeeperThan('{"a": "[[[[{{{{"}', 1), false);
  equal(nestsDeeperThan('["\\"[[[", 1]', 1), false, "an escaped quote does not end the string");
  equal(nestsDeeperThan('["\\\\", [[1]]]', 2), true, "an escaped backslash does");
  equal(nestsDeeperThan('[[[ "unterminated', 2), true);
  equal(nestsDeeperThan('[ "unterminated [[[[', 1), false);
  equal(nestsDeeperThan("[]".repeat(100_000), 1), false, "siblings are no deeper");
  equal(nestsDeeperThan("[".repeat(1_000_000), 256), true);
});
