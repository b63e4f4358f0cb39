import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { SchemaError } from "../../src/engine/structured/errors.ts";
import { jsonSchemaToGrammar, MAX_ENUM_VALUES } from "../../src/engine/structured/json_schema.ts";
import { literalTrie } from "../../src/engine/structured/literal_trie.ts";
import { MAX_PATTERN_LENGTH } from "../../src/engine/structured/regex.ts";
import { mergeAllOf } from "../../src/engine/structured/schema_merge.ts";
import { TOOL_FORMATS } from "../../src/engine/tools/formats.ts";
import { forcedToolGrammar } from "../../src/engine/tools/grammar.ts";
import { GbnfMatcher } from "./gbnf_matcher.ts";

// Schemas are converted on the server's event loop: every stream waits meanwhile. The bounds
// below are generous for a busy 2-core machine; each case had taken seconds or more.

/** Runs work and fails when it took a second or more. */
function underASecond<T>(work: () => T): T {
  const started = performance.now();
  try {
    return work();
  } finally {
    const took = performance.now() - started;
    ok(took < 1_000, `${Math.round(took)} ms`);
  }
}

/** Asserts that converting the schema is a SchemaError naming the keyword, with the message. */
function refuses(schema: unknown, keyword: string, message: RegExp): void {
  throws(() => jsonSchemaToGrammar(schema), (error: unknown) => {
    ok(error instanceof SchemaError, String(error));
    equal(error.keyword, keyword);
    match(error.message, message);
    return true;
  });
}

Deno.test("enum values are checked against a backtracking pattern in linear time", () => {
  // RegExp took 1.27 s for 28 characters here, doubling with each one.
  const trap = `${"a".repeat(30)}!`;
  const grammar = underASecond(() =>
    jsonSchemaToGrammar({ type: "string", pattern: "^(a+)+$", enum: [trap, "aaa"] })
  );
  const matcher = new GbnfMatcher(grammar);
  ok(matcher.matches('"aaa"'));
  ok(!matcher.matches(JSON.stringify(trap)));
});

Deno.test("enum values match an unanchored pattern anywhere, as JSON Schema searches", () => {
  const kept = (pattern: string, values: string[]) => {
    const matcher = new GbnfMatcher(jsonSchemaToGrammar({ enum: values, pattern }));
    return values.filter((value) => matcher.matches(JSON.stringify(value)));
  };
  deepEqual(kept("ab", ["xaby", "ab", "ba"]), ["xaby", "ab"]);
  deepEqual(kept("^ab", ["xab", "abx", "ab"]), ["abx", "ab"]);
  deepEqual(kept("ab$", ["xab", "abx", "ab"]), ["xab", "ab"]);
  deepEqual(kept("^a$|^b", ["a", "ab", "ba", "c"]), ["a", "ba"]);
});

Deno.test("enum values beside a pattern too large for an automaton are refused, not run through RegExp", () => {
  // 2^21 states: past the automaton's limit.
  refuses(
    { type: "string", pattern: "^(a|b)*a(a|b){20}$", enum: ["ab", "a".repeat(21)] },
    "pattern",
    /too large or complex a pattern to check the const or enum values against/,
  );
});

Deno.test("an allOf branch of 10,000 unknown keywords is refused before it is merged", () => {
  // Merged with a copy of the schema per key, 20,000 keys took 73 s before the refusal.
  const keys = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 1]));
  underASecond(() =>
    refuses({ allOf: [{ type: "object" }, keys] }, "k0", /"k0" at \/allOf\/1 is not supported/)
  );
});

Deno.test("mergeAllOf() merges 20,000 keywords and intersects two 20,000-value enums in linear time", () => {
  const keys = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, 1]));
  const merged = underASecond(() => mergeAllOf([{ type: "object" }, keys], ""));
  equal(Object.keys(merged).length, 20_001);
  const left = Array.from({ length: 20_000 }, (_, i) => i);
  const right = Array.from({ length: 20_000 }, (_, i) => i + 10_000);
  const both = underASecond(() => mergeAllOf([{ enum: left }, { enum: right }], ""));
  deepEqual(both.enum, left.slice(10_000));
  // Objects are equal whatever their keys' order.
  deepEqual(
    mergeAllOf([{ enum: [{ a: 1, b: [2] }, { a: 2 }] }, { enum: [{ b: [2], a: 1 }] }], "").enum,
    [{ a: 1, b: [2] }],
  );
});

Deno.test("literalTrie() shares the beginnings of 40,000 texts in linear time", () => {
  // A copy of each group per entry: a string enum of 40,000 values took 20 s.
  const entries = Array.from({ length: 40_000 }, (_, i) => ({ text: `value_${i}`, tail: "" }));
  let rules = 0;
  const trie = underASecond(() => literalTrie(entries, () => `r${rules++}`));
  ok(trie.startsWith('"value_"'), trie.slice(0, 40));
});

Deno.test("an enum of more than 10,000 values is refused at once; 10,000 convert in time", () => {
  const values = (n: number) => Array.from({ length: n }, (_, i) => `v${i}`);
  underASecond(() =>
    refuses(
      { type: "string", enum: values(MAX_ENUM_VALUES + 1) },
      "enum",
      /has 10001 values; at most 10000 are supported/,
    )
  );
  const matcher = new GbnfMatcher(
    underASecond(() => jsonSchemaToGrammar({ type: "string", enum: values(MAX_ENUM_VALUES) })),
  );
  ok(matcher.matches('"v9999"'));
  ok(!matcher.matches('"v10000"'));
});

Deno.test("forcedToolGrammar() gives the patterns of all a request's tools one work budget", () => {
  // Each with a budget of its own, 128 tools with patterns past the automaton's limit took 5 s.
  const tools = Array.from({ length: 128 }, (_, i) => ({
    name: `tool_${i}`,
    parameters: {
      type: "object",
      properties: { q: { type: "string", pattern: `^(?:[a-y]{1,30}\\s?){1,${20 + i}}$` } },
      required: ["q"],
    },
  }));
  const grammar = underASecond(() => forcedToolGrammar(TOOL_FORMATS.hermes, tools, false));
  ok(grammar.includes("t127-root"));
});

Deno.test("a pattern longer than 4,096 characters is refused at once, not a stack overflow", () => {
  // 150,000 alternatives: 0.6 s, then a RangeError (an HTTP 500).
  const alternatives = Array.from({ length: 150_000 }, (_, i) => `x${i}`).join("|");
  underASecond(() =>
    refuses(
      { type: "string", pattern: `^(?:${alternatives})$` },
      "pattern",
      /has \d+ characters; at most 4096 are supported/,
    )
  );
  // At the limit, the pattern is read.
  const longest = `^${"[ab]".repeat(1023)}ab$`;
  equal(longest.length, MAX_PATTERN_LENGTH);
  const matcher = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern: longest }));
  ok(matcher.matches(JSON.stringify(`${"ba".repeat(511)}bab`)));
  ok(!matcher.matches(JSON.stringify(`${"ba".repeat(511)}baa`)));
});

Deno.test("patterns nested as deep as allowed convert or are a SchemaError, never a stack overflow", () => {
  const nest = (open: string, inner: string, close: string, depth = 32) =>
    open.repeat(depth) + inner + close.repeat(depth);
  const patterns = [
    `^${nest("(?:", "a|b", "){2,3}")}$`,
    `^${nest("(?:", "a|b", ")*")}$`,
    `^${nest("(?=", "a", ")")}a$`,
    `^${nest("(?!a", "a", ")", 31)}b$`,
    nest("(a|", "a", ")?b"),
    `^${nest("(?:x|(?:", "a", "))+", 16)}$`,
    nest("(", "a", ")", 33),
  ];
  for (const pattern of patterns) {
    try {
      jsonSchemaToGrammar({ type: "string", pattern });
    } catch (error) {
      ok(error instanceof SchemaError, `${pattern}: ${error}`);
    }
  }
});
