import { equal } from "node:assert/strict";
import { jsonExcess } from "../../src/util/json_depth.ts";

const nestsDeeperThan = (text: string, max: number) => jsonExcess(text, max, Infinity) === "depth";

Deno.test("jsonExcess() counts nesting of arrays and objects, not brackets inside strings", () => {
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

Deno.test("jsonExcess() counts strings, keys, arrays and objects, never numbers or literals", () => {
  equal(jsonExcess('{"a": ["b", {}], "c": "[{"}', 8, 7), undefined);
  equal(jsonExcess('{"a": ["b", {}], "c": "[{"}', 8, 6), "values");
  equal(jsonExcess('["\\"", "x"]', 8, 3), undefined, "an escaped quote is no string of its own");
  equal(jsonExcess(`[${"1, true, null, ".repeat(100_000)}2]`, 8, 1), undefined);
  equal(jsonExcess("[],".repeat(1_000_000), 8, 300_000), "values");
});
