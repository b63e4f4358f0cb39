import { equal, match, ok, throws } from "node:assert/strict";
import { validateGrammar } from "../../src/engine/gbnf.ts";
import { SchemaError } from "../../src/engine/structured/errors.ts";
import { jsonObjectGrammar, jsonSchemaToGrammar } from "../../src/engine/structured/json_schema.ts";
import { SCHEMA_CORPUS } from "../fixtures/schema_corpus.ts";
import { z } from "zod";
import { seededRandom } from "../helpers.ts";
import { GbnfMatcher } from "./gbnf_matcher.ts";
import { compileSchema } from "./json_schema_ajv.ts";

/** JSON text as a model might write it: compact, spaced, or indented. */
function spellings(value: unknown): string[] {
  return [JSON.stringify(value), JSON.stringify(value, null, 2), JSON.stringify(value, null, "\t")];
}

Deno.test("the schema corpus has at least 50 schemas, and ajv agrees with its instances", () => {
  ok(SCHEMA_CORPUS.length >= 50, `only ${SCHEMA_CORPUS.length} schemas`);
  equal(new Set(SCHEMA_CORPUS.map((e) => e.name)).size, SCHEMA_CORPUS.length);
  for (const entry of SCHEMA_CORPUS) {
    const validate = compileSchema(entry.schema, entry.draft);
    for (const v of entry.valid) ok(validate(v), `${entry.name}: ajv rejects ${JSON.stringify(v)}`);
    for (const v of entry.invalid) {
      ok(!validate(v), `${entry.name}: ajv accepts ${JSON.stringify(v)}`);
    }
  }
});

Deno.test("jsonSchemaToGrammar() writes grammars the validator accepts for every corpus schema", () => {
  for (const entry of SCHEMA_CORPUS) {
    const grammar = jsonSchemaToGrammar(entry.schema);
    const summary = validateGrammar(grammar);
    ok(summary.stackFanout < 1000, `${entry.name}: fan-out ${summary.stackFanout}`);
    ok(summary.searchPaths < 5_000, `${entry.name}: ${summary.searchPaths} stacks per token`);
  }
});

Deno.test("the grammar of each corpus schema accepts its valid instances and rejects invalid ones", () => {
  for (const entry of SCHEMA_CORPUS) {
    const matcher = new GbnfMatcher(jsonSchemaToGrammar(entry.schema));
    for (const value of entry.valid) {
      for (const text of spellings(value)) {
        ok(matcher.matches(text), `${entry.name}: the grammar rejects ${JSON.stringify(text)}`);
      }
    }
    for (const value of entry.invalid) {
      ok(
        !matcher.matches(JSON.stringify(value)),
        `${entry.name}: the grammar accepts ${JSON.stringify(value)}`,
      );
    }
  }
});

Deno.test("jsonSchemaToGrammar() keeps whitespace bounded and numbers finite", () => {
  const matcher = new GbnfMatcher(
    jsonSchemaToGrammar({ type: "array", items: { type: "number" } }),
  );
  ok(matcher.matches("[1, 2]"));
  ok(matcher.matches("[1,\n    2]"));
  ok(matcher.matches(`[1,${" ".repeat(21)}2]`));
  ok(!matcher.matches(`[1,${" ".repeat(22)}2]`), "more than 21 spaces");
  ok(!matcher.matches(`[1,\n${" ".repeat(21)}2]`), "more than 20 spaces of indent");
  ok(!matcher.matches("[1,\n\n2]"), "two newlines");
  ok(matcher.matches("[1.5e10]"));
  ok(!matcher.matches("[1e999]"), "an exponent that overflows to Infinity");
  ok(!matcher.matches(`[${"9".repeat(17)}]`), "more than 16 digits");
});

Deno.test("jsonObjectGrammar() accepts any JSON object and nothing else", () => {
  const matcher = new GbnfMatcher(jsonObjectGrammar());
  for (const text of ["{}", '{"a": [1, {"b": null}], "c": "\\u00e9\\n"}', '{ "x" : true }']) {
    ok(matcher.matches(text), text);
  }
  for (const text of ["[]", '"s"', "{", '{"a":}', '{"a":1,}', '{"\\ud800": 1}']) {
    ok(!matcher.matches(text), text);
  }
});

Deno.test("an enum's values share their beginnings, so llama.cpp follows one stack through them", () => {
  const values = Array.from({ length: 1000 }, (_, i) => `item_${i}_alpha`);
  const grammar = jsonSchemaToGrammar({ type: "string", enum: values });
  // One stack per value at each token's start cost up to 3.6 s per token on qwen2 (7,037 tries).
  const { searchPaths, stackFanout } = validateGrammar(grammar);
  ok(searchPaths < 400 && stackFanout <= 11, `${searchPaths} tries, ${stackFanout} stacks`);
  const matcher = new GbnfMatcher(grammar);
  for (const i of [0, 7, 10, 99, 100, 999]) ok(matcher.matches(`"item_${i}_alpha"`), `${i}`);
  for (const text of ['"item_1000_alpha"', '"item__alpha"', '"item_01_alpha"', '"item_1"']) {
    ok(!matcher.matches(text), text);
  }
  // Values of every kind, some a prefix of others.
  const mixed = new GbnfMatcher(
    jsonSchemaToGrammar({
      enum: ["a", "ab", "abc", 1, 12, true, null, { x: 1 }, "\u00e9", "\u{1F600}x"],
    }),
  );
  for (const text of ['"a"', '"ab"', '"abc"', "1", "12", "true", "null", '{"x": 1}', '"\u00e9"']) {
    ok(mixed.matches(text), text);
  }
  ok(mixed.matches('"\u{1F600}x"'));
  for (const text of ['"abcd"', "123", '"b"', "false"]) ok(!mixed.matches(text), text);
});

Deno.test("an object of 100 optional properties passes the validator; 600 one-character values do not", () => {
  const properties = Object.fromEntries(
    Array.from({ length: 100 }, (_, j) => [`field_${j}`, { type: j % 2 ? "string" : "boolean" }]),
  );
  ok(validateGrammar(jsonSchemaToGrammar({ type: "object", properties })).searchPaths < 50_000);
  // 600 values that each start with another character: 600 stacks scan the whole vocabulary at
  // the token after the quote (0.5-0.8 s per token on qwen2).
  const hanzi = Array.from({ length: 600 }, (_, i) => String.fromCodePoint(0x4e00 + 3 * i));
  throws(
    () => validateGrammar(jsonSchemaToGrammar({ type: "string", enum: hanzi })),
    /more than 100000 parse stacks/,
  );
});

Deno.test("listed properties close an object, even none listed (a tool without arguments)", () => {
  const none = new GbnfMatcher(jsonSchemaToGrammar({ type: "object", properties: {} }));
  ok(none.matches("{}") && none.matches("{ }"));
  ok(!none.matches('{"a": 1}'), "no extra members where properties are listed");
  const open = new GbnfMatcher(
    jsonSchemaToGrammar({ type: "object", properties: {}, additionalProperties: true }),
  );
  ok(open.matches('{"a": 1}'));
  ok(
    new GbnfMatcher(jsonSchemaToGrammar({ type: "object" })).matches('{"a": 1}'),
    "nothing listed",
  );
});

Deno.test("additionalProperties with declared properties never writes a declared key twice", () => {
  const schema = {
    type: "object",
    properties: { id: { type: "integer" }, idx: { type: "boolean" } },
    additionalProperties: { type: "string" },
  };
  const matcher = new GbnfMatcher(jsonSchemaToGrammar(schema));
  ok(matcher.matches('{"id": 1, "other": "x", "i": "y", "idxx": "z"}'));
  ok(matcher.matches('{"extra": "only"}'));
  ok(!matcher.matches('{"id": 1, "id": "x"}'));
  ok(!matcher.matches('{"id": 1, "idx": "x"}'));
  ok(!matcher.matches('{"x": 1}'), "an extra value of the wrong type");
});

Deno.test("annotation keywords are ignored and bounds above the repetition limit are clamped", () => {
  const grammar = jsonSchemaToGrammar({
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: "urn:x",
    title: "T",
    description: "D",
    default: "x",
    examples: ["y"],
    type: "string",
    maxLength: 5000,
    deprecated: false,
  });
  validateGrammar(grammar);
  match(grammar, /\{0,1000\}/);
});

/** Asserts that converting a schema raises a SchemaError naming a keyword. */
function refuses(schema: unknown, keyword: string, message?: RegExp): void {
  throws(() => jsonSchemaToGrammar(schema), (error: unknown) => {
    ok(error instanceof SchemaError, `not a SchemaError: ${error}`);
    equal(error.keyword, keyword);
    ok(error.message.includes(keyword === "" ? "schema" : `"${keyword}"`), error.message);
    if (message) match(error.message, message);
    return true;
  });
}

Deno.test("keywords the converter cannot honour raise a SchemaError naming them", () => {
  refuses({ not: { type: "string" } }, "not");
  refuses({ if: {}, then: {} }, "if");
  refuses({ type: "array", uniqueItems: true }, "uniqueItems");
  refuses({ type: "integer", multipleOf: 3 }, "multipleOf");
  refuses({ type: "object", patternProperties: { "^a": {} } }, "patternProperties");
  refuses({ type: "array", contains: { type: "integer" } }, "contains");
  refuses(
    { type: "object", properties: { a: { type: "object", dependentRequired: {} } } },
    "dependentRequired",
    /at \/properties\/a/,
  );
  refuses({ type: "string", format: "iri" }, "format", /supported: date/);
  refuses({ type: "string", format: "date", pattern: "^x" }, "pattern", /no string together/);
  refuses({ type: "string", format: "date", maxLength: 5 }, "format", /matches no string/);
  refuses({ $ref: "https://example.com/schema.json" }, "$ref");
  refuses({ $ref: "#/$defs/missing" }, "$ref", /points to nothing/);
  refuses({ type: "string", pattern: "^(?:(?=a)x|y)z$" }, "pattern", /lookahead that the rest/);
  refuses({ type: "string", pattern: "^(?<=a)b$" }, "pattern", /lookbehind/);
  refuses({ type: "string", pattern: "^(a)\\1$" }, "pattern", /backreference/);
  refuses({ type: "string", pattern: "^a$b" }, "pattern");
  refuses({ type: "string", pattern: "^a{5}$", maxLength: 3 }, "pattern", /no string of the/);
  refuses({ type: "string", pattern: "^a[^\\s\\S]$" }, "pattern", /matches no string$/);
  refuses({ type: "string", pattern: "^.*$", minLength: 2500 }, "pattern", /too large a grammar/);
  // Shortened under maxLength it cannot reach minLength; whole it can: too large, not "no string".
  refuses(
    { type: "string", pattern: "^(?:a{1,30}b){1,9}$", minLength: 40, maxLength: 45 },
    "pattern",
    /too large a grammar/,
  );
  refuses({ type: "number", minimum: 0.5 }, "minimum", /whole-number/);
  refuses({ type: "integer", minimum: 5, maximum: 4 }, "minimum");
  refuses({ type: "string", minLength: 2000 }, "minLength");
  refuses({ type: "wat" }, "type");
  refuses(
    { type: "object", properties: {}, required: ["a"], additionalProperties: false },
    "required",
  );
  refuses({ anyOf: [] }, "anyOf");
  refuses({ allOf: [{ type: "string" }, { type: "integer" }] }, "allOf");
  refuses(false, "");
  refuses("string", "");
});

Deno.test("deeply nested schemas are refused, not a stack overflow", () => {
  let schema: Record<string, unknown> = { type: "integer" };
  for (let i = 0; i < 10_000; i++) schema = { type: "array", items: schema };
  refuses(schema, "", /nested more than 64/);
  let pattern = "a";
  for (let i = 0; i < 10_000; i++) pattern = `(${pattern})`;
  throws(() => jsonSchemaToGrammar({ type: "string", pattern }), SchemaError);
});

Deno.test("a huge schema is refused with a SchemaError, not a huge grammar", () => {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 3000; i++) properties[`property_number_${i}`] = { enum: [`value ${i}`, i] };
  throws(() => jsonSchemaToGrammar({ type: "object", properties }), SchemaError);
});

Deno.test("integer ranges are exact at every bound", () => {
  const cases: [number, number][] = [[0, 0], [-3, 3], [7, 13], [95, 1005], [-1000, -999], [1, 1]];
  for (const [lo, hi] of cases) {
    const matcher = new GbnfMatcher(
      jsonSchemaToGrammar({ type: "integer", minimum: lo, maximum: hi }),
    );
    for (let n = lo - 15; n <= hi + 15; n++) {
      equal(matcher.matches(String(n)), n >= lo && n <= hi, `${n} in [${lo}, ${hi}]`);
    }
    ok(!matcher.matches("-0") || lo <= 0, "-0");
    ok(!matcher.matches("01"), "a leading zero");
  }
});

/** `$defs` of `levels` models, each with properties that refer to the next level through `allOf`. */
function nestedModels(levels: number, allOf: (ref: string) => unknown): Record<string, unknown> {
  const defs: Record<string, unknown> = { [`M${levels}`]: { type: "string" } };
  for (let i = 0; i < levels; i++) {
    const next = allOf(`#/$defs/M${i + 1}`);
    defs[`M${i}`] = { type: "object", properties: { a: next, b: next, c: next, d: next } };
  }
  return { $ref: "#/$defs/M0", $defs: defs };
}

Deno.test("a schema whose merged allOf and $ref siblings would take exponential work is refused in time, a pydantic-style reference is one rule", () => {
  // pydantic's {"allOf": [{"$ref"}], "description"} is the reference itself: linear work.
  let started = performance.now();
  const pydantic = nestedModels(14, ($ref) => ({ allOf: [{ $ref }], description: "a model" }));
  validateGrammar(jsonSchemaToGrammar(pydantic));
  ok(performance.now() - started < 2000, `${performance.now() - started} ms`);
  // allOf with a constraint beside the reference inlines the target at each of four uses.
  started = performance.now();
  const merged = nestedModels(12, ($ref) => ({ allOf: [{ $ref }, { minProperties: 0 }] }));
  throws(() => jsonSchemaToGrammar(merged), (error: unknown) => {
    ok(error instanceof SchemaError);
    match(error.message, /needs more than 20000 sub-schemas visited/);
    return true;
  });
  ok(performance.now() - started < 2000, `${performance.now() - started} ms`);
});

Deno.test("schemas that used to overflow or throw inside the converter are a SchemaError", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 3000; i++) deep = [deep];
  const cases: [unknown, RegExp][] = [
    [{ const: deep }, /"const" holds a value nested more than 64 deep/],
    [
      { type: "object", properties: { ["k".repeat(5000)]: {} }, additionalProperties: true },
      /a property name of 5000 characters beside other members/,
    ],
    [{ type: "string", pattern: "^[\\ud800-\\udbff]$" }, /class range starts or ends at a UTF-16/],
    [
      { type: "object", additionalProperties: false, minProperties: 1 },
      /"minProperties" is 1, but the schema allows no member/,
    ],
  ];
  for (const [schema, message] of cases) {
    throws(() => jsonSchemaToGrammar(schema), (error: unknown) => {
      ok(error instanceof SchemaError, String(error));
      match(error.message, message);
      return true;
    });
  }
});

Deno.test("const and enum values are kept only where they meet the schema's other keywords", () => {
  const matcherOf = (schema: unknown) => new GbnfMatcher(jsonSchemaToGrammar(schema));
  const short = matcherOf({ type: "string", enum: ["zzzzzzzzzzzz", "b"], maxLength: 2 });
  ok(short.matches('"b"'));
  ok(!short.matches('"zzzzzzzzzzzz"'));
  const bounded = matcherOf({
    allOf: [{ enum: [1, 50, 100, 1000, 7, 3] }, { type: "integer", minimum: 60 }],
  });
  for (const value of ["100", "1000"]) ok(bounded.matches(value), value);
  for (const value of ["1", "50", "7"]) ok(!bounded.matches(value), value);
  ok(matcherOf({ enum: ["ab", "b"], pattern: "^b$" }).matches('"b"'));
  for (
    const schema of [
      { const: "a", type: "integer" },
      { type: "integer", const: 5, minimum: 10 },
      { allOf: [{ const: "a" }, { enum: ["b"] }] },
    ]
  ) {
    throws(
      () => jsonSchemaToGrammar(schema),
      /has no value that meets the schema's other keywords/,
    );
  }
  throws(() => jsonSchemaToGrammar({ enum: [[1]], minItems: 1 }), /"minItems" is not supported/);
  throws(() => jsonSchemaToGrammar({ enum: ["a"], format: "date" }), /"format" is not supported/);
});

Deno.test("a pattern's escaped characters take JSON's escapes in either case, sharing their beginnings", () => {
  const matcherOf = (pattern: string) =>
    new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern }));
  const spaces = matcherOf("^\\s+$");
  for (const text of ['"\\n"', '"\\u000a"', '"\\u000A"', '"\\u000b"', '"\\u000B"', '"\\t "']) {
    ok(spaces.matches(text), text);
  }
  for (const text of ['"\\u0001"', '"\\u001f"', '"\\\\"', '"\\""']) ok(!spaces.matches(text), text);
  const anyButNewline = matcherOf("^.$");
  for (const text of ['"\\u0001"', '"\\u001F"', '"\\t"', '"\\u0009"', '"\\\\"', '"\\""']) {
    ok(anyButNewline.matches(text), text);
  }
  for (const text of ['"\\n"', '"\\u000a"', '"\\r"', '"\\u000D"']) {
    ok(!anyButNewline.matches(text), text);
  }
  // Written as it reads too (the first branch is too large for an automaton).
  const asItReads = matcherOf("x[xy]{14}|\\x1f|\\n|[\\t]");
  for (const text of ['"\\u001F"', '"\\u001f"', '"\\u000a"', '"\\n"', '"\\u0009"', '"\\t"']) {
    ok(asItReads.matches(text), text);
  }
  // One backslash, then a class: a `.` had listed 30 escapes as alternatives of their own, each a
  // parse stack for llama.cpp, and patterns such as `^.*\S.*$` were refused as too costly.
  const grammar = jsonSchemaToGrammar({ type: "string", pattern: "^.$" });
  equal(grammar.match(/"\\x5c"/g)?.length, 1, grammar);
});

/** Random strings over a few characters that patterns treat apart: letters, digits, spaces, escapes. */
function randomTexts(count: number, seed: number): string[] {
  const random = seededRandom(seed);
  const alphabet = [
    "a",
    "b",
    "Z",
    "0",
    "7",
    " ",
    "-",
    ".",
    "@",
    "\n",
    "\t",
    '"',
    "\\",
    "\u0001",
    "é",
  ];
  return Array.from({ length: count }, () => {
    const length = random(9);
    return Array.from({ length }, () => alphabet[random(alphabet.length)]).join("");
  });
}

Deno.test("a pattern and its lengths hold together, as JavaScript's RegExp and the lengths say", () => {
  const cases: { pattern: string; minLength?: number; maxLength?: number }[] = [
    { pattern: "^(\\S+ ?)*$" },
    { pattern: "^.*\\S.*$", maxLength: 5 },
    { pattern: "^.+@.+\\..+$" },
    { pattern: "^\\s*-\\s*.+$", minLength: 3 },
    { pattern: "a|^b|7$" },
    { pattern: "^[a-z]+( [a-z]+)*$", minLength: 3, maxLength: 6 },
    { pattern: "^(?:ab|a)(?:bc|c)?$" },
    { pattern: "[^a-z]{2}", maxLength: 4 },
    { pattern: "^\\w{2,4}(-\\d)?$", minLength: 4 },
    { pattern: "^.{0,3}$", minLength: 2 },
    // Lookaheads where the rest of their branch follows them to its end.
    { pattern: "^(?=.*[A-Z])(?=.*\\d)[A-Za-z\\d]{4,8}$" },
    { pattern: "^(?!\\.)(?!.*\\.\\.)[a-z.@]{1,6}$" },
    { pattern: "a(?!b)|(?=b.)b" },
    { pattern: "^(?:x|(?!.*-)(?=\\d)\\d+(?:-(?=7)\\d)?)$" },
    // An optional group whose end loops (`[^a]+`): skipping it must not enter the loop.
    { pattern: "^(?:b[^a]+)?b?$" },
  ];
  const texts = randomTexts(400, 7);
  texts.push("ab", "abc", "a b", "ab cd", "x@y.z", "- a", "ab-7", "ab", "abc", "a.b@c.d", "7b");
  for (const { pattern, minLength, maxLength } of cases) {
    const schema = { type: "string", pattern, minLength, maxLength };
    const matcher = new GbnfMatcher(jsonSchemaToGrammar(schema));
    const regex = new RegExp(pattern, "u");
    for (const text of texts) {
      const length = [...text].length;
      const expected = regex.test(text) && length >= (minLength ?? 0) &&
        length <= (maxLength ?? Infinity);
      equal(
        matcher.matches(JSON.stringify(text)),
        expected,
        `${JSON.stringify(schema)} ${JSON.stringify(text)}`,
      );
    }
  }
});

Deno.test("patterns whose parts overlap become one parse stack per character", () => {
  // Written as they read, each split a run of text in many ways, and llama.cpp follows every way:
  // the validator refused them as too costly to match.
  for (
    const pattern of ["^(\\S+ ?)*$", "^.*\\S.*$", "^.+@.+\\..+$", "^\\s*-\\s*.+$", "^(a|ab)*b?$"]
  ) {
    const summary = validateGrammar(jsonSchemaToGrammar({ type: "string", pattern }));
    ok(summary.searchPaths < 1_000, `${pattern}: ${summary.searchPaths}`);
    ok(summary.stackFanout < 8, `${pattern}: fan-out ${summary.stackFanout}`);
  }
});

Deno.test("a schema's patterns share a bounded work, so many hard ones convert in time", () => {
  // Each of these has an automaton past the state limit: alone, 0.2 s to find out.
  const properties = Object.fromEntries(
    Array.from({ length: 40 }, (_, i) => [`p${i}`, {
      type: "string",
      pattern: `^(?:[a-z]{1,30}\\s?){1,${20 + i}}$`,
    }]),
  );
  const started = performance.now();
  const grammar = jsonSchemaToGrammar({ type: "object", properties });
  const took = performance.now() - started;
  ok(took < 3_000, `${took} ms`);
  ok(grammar.includes("p39"));
  // A format's automaton is remembered: the next schema with it converts at once.
  jsonSchemaToGrammar({ type: "string", format: "uri" });
  const again = performance.now();
  jsonSchemaToGrammar({ type: "object", properties: { link: { type: "string", format: "uri" } } });
  ok(performance.now() - again < 50, `${performance.now() - again} ms`);
});

Deno.test("a pattern with a huge class converts quickly, as it reads", () => {
  // 20,000 ranges in one class: the automaton's pieces had taken 22 s to find.
  const huge = Array.from({ length: 20_000 }, (_, i) => String.fromCodePoint(0x4e00 + 2 * i));
  const started = performance.now();
  try {
    jsonSchemaToGrammar({ type: "string", pattern: `^[${huge.join("")}]{1,50}$` });
  } catch (error) {
    ok(error instanceof SchemaError, String(error)); // the grammar may be too large
  }
  ok(performance.now() - started < 2_000, `${performance.now() - started} ms`);
});

Deno.test("a format and a pattern hold together, and a format Shimmy does not write names its pattern", () => {
  const matcherOf = (schema: unknown) => new GbnfMatcher(jsonSchemaToGrammar(schema));
  const dates2 = matcherOf({ type: "string", format: "date", pattern: "^20" });
  ok(dates2.matches('"2024-02-28"'));
  ok(!dates2.matches('"1999-12-31"'), "the pattern holds");
  ok(!dates2.matches('"2024-02-30"'), "the format holds");
  const nanoid = matcherOf({ type: "string", format: "nanoid", pattern: "^[a-z]{3}$" });
  ok(nanoid.matches('"abc"'));
  ok(!nanoid.matches('"abcd"'));
  refuses({ type: "string", format: "nanoid" }, "format", /or any beside a pattern/);
});

Deno.test("zod 4's string formats convert, and every string their grammar takes, zod takes", () => {
  const cases: [z.ZodType, string[]][] = [
    [z.email(), ["ann.lee@example.com", "a@b.co", "x+y@mail.co.uk", "a..b@c.de", ".a@b.cd", "a@b"]],
    [z.uuid(), ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"]],
    [z.iso.datetime(), [
      "2024-02-28T08:30:00Z",
      "2024-02-29T08:30:00Z",
      "2024-05-01T08:30:00+02:00",
    ]],
    [z.iso.date(), ["2024-02-28", "2023-02-29", "2024-13-01"]],
    [z.ipv4(), ["192.168.0.1", "256.1.1.1", "01.2.3.4"]],
    [z.ipv6(), ["::1", "fe80::1:2", "2001:db8::2:1", "1:2:3:4:5:6:7:8", ":1"]],
    [z.e164(), ["+14155552671", "14155552671", "+0123456"]],
    [z.nanoid(), ["V1StGXR8_Z5jdHi6B-myT", "short"]],
    [z.base64(), ["", "YWJj", "YWI=", "YW=="]],
    [z.cuid(), ["cjld2cjxh0000qzrmn831i7rn", "xjld2cjxh"]],
    [z.iso.duration(), ["P3Y6M4DT12H30M5S", "PT15M", "P2W", "P", "PT", "P1DT", "P1W2D"]],
    [z.emoji(), ["😀", "👍🏽", "🇫🇷", "abc", "#", "😀a"]],
    [z.hostname(), ["example.com", "a.b-c.de", "localhost", "-a.com", "a..b", "ab."]],
  ];
  for (const [type, samples] of cases) {
    const matcher = new GbnfMatcher(jsonSchemaToGrammar(z.toJSONSchema(type)));
    const taken = samples.filter((sample) => matcher.matches(JSON.stringify(sample)));
    ok(taken.length > 0, `${JSON.stringify(z.toJSONSchema(type))} takes none of ${samples}`);
    for (const sample of taken) ok(type.safeParse(sample).success, `zod refuses ${sample}`);
  }
});

Deno.test("a format whose lengths would take too large a grammar keeps shorter parts under maxLength", () => {
  // Counted exactly, an email under 64 characters takes thousands of states; halving maxLength
  // had left 16 characters in all. Its atoms and labels are shortened instead.
  for (const maxLength of [64, 40, 24]) {
    const grammar = jsonSchemaToGrammar({ type: "string", format: "email", maxLength });
    ok(grammar.length < 20_000, `${grammar.length} characters`);
    const matcher = new GbnfMatcher(grammar);
    ok(matcher.matches('"john.smith@example.com"'), `maxLength ${maxLength}`);
    ok(!matcher.matches(JSON.stringify(`a@${"b".repeat(maxLength)}.io`)));
    for (const text of randomEmails(200, maxLength)) {
      if (matcher.matches(JSON.stringify(text))) ok([...text].length <= maxLength, text);
    }
  }
});

/** Email-like texts of random parts, some longer than `around`. */
function randomEmails(count: number, around: number): string[] {
  const random = seededRandom(around);
  const part = () => "abcdefghij".slice(0, 1 + random(10)).repeat(1 + random(3));
  return Array.from({ length: count }, () => `${part()}.${part()}@${part()}.${part()}.io`);
}

/** A random pattern with a lookahead where the rest of its branch follows it to its end. */
function randomLookaheadPattern(random: (n: number) => number): string {
  const atoms = ["a", "b", "c", ".", "[ab]", "[^a]", "\\d", "\\s", "1", "-"];
  const atom = (depth: number): string => {
    const r = random(10);
    if (r < 6 || depth > 2) return atoms[random(atoms.length)]!;
    return r < 8 ? `(?:${seq(depth + 1)}|${seq(depth + 1)})` : `(?:${seq(depth + 1)})`;
  };
  const quantified = (text: string): string =>
    [
      `${text}*`,
      `${text}+`,
      `${text}?`,
      `${text}{${random(3)},${2 + random(3)}}`,
      text,
    ][random(5)]!;
  const seq = (depth: number): string =>
    Array.from({ length: 1 + random(3) }, () => quantified(atom(depth))).join("");
  const look = () => `(?${random(2) ? "=" : "!"}${seq(2)}${random(3) ? "" : "$"})`;
  const body = [
    () => look() + seq(0),
    () => `${seq(0)}(?:${seq(1)}|${look()}${seq(1)})`,
    () => `${seq(0)}(?:${look()}${seq(1)})?`,
  ][random(3)]!();
  return `${random(3) ? "^" : ""}${body}${random(3) ? "$" : ""}`;
}

Deno.test("random patterns with lookaheads take exactly what RegExp takes", () => {
  const random = seededRandom(31);
  const alphabet = ["a", "b", "c", "1", "2", ".", "-", " ", "x"];
  let compared = 0;
  for (let i = 0; i < 250; i++) {
    const pattern = randomLookaheadPattern(random);
    let matcher: GbnfMatcher;
    try {
      matcher = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern }));
    } catch (error) {
      ok(error instanceof SchemaError, String(error)); // e.g. one that matches no string
      continue;
    }
    const regex = new RegExp(pattern, "u");
    for (let j = 0; j < 30; j++) {
      const text = Array.from({ length: random(8) }, () => alphabet[random(alphabet.length)]).join(
        "",
      );
      equal(matcher.matches(JSON.stringify(text)), regex.test(text), `/${pattern}/ on "${text}"`);
      compared++;
    }
  }
  ok(compared > 3000, `${compared} compared`);
});

Deno.test("Unicode property escapes take what RegExp takes; a class too large for llama.cpp keeps a part", () => {
  // Letters of several scripts (Latin-1, Greek, Cyrillic, CJK, Hangul), digits, marks, emoji,
  // punctuation, and letters of the rarer scripts that \p{L}'s narrowed class leaves out.
  const alphabet = [
    ..."aZé ñ-'Ωжд日本한1٣.,!😀👍🏽🇫",
    "\u0f40",
    "\u{10400}",
    "\u0985",
    "\u02b0",
    "\u0301",
  ];
  const random = seededRandom(11);
  const texts = Array.from(
    { length: 600 },
    () => Array.from({ length: 1 + random(6) }, () => alphabet[random(alphabet.length)]).join(""),
  );
  const exact = [
    "^\\P{N}+$",
    "^[\\p{Script=Greek}\\p{Nd}]+$",
    "^[\\p{Extended_Pictographic}\\p{Emoji_Component}]+$",
  ];
  // \p{L} holds 677 ranges and \p{Lu} 651: narrowed where the pattern takes them, widened
  // under (?!…).
  const narrowedOrWidened = [
    "^[\\p{L} '-]+$",
    "^\\p{Lu}\\p{Ll}*$",
    "^[^\\p{L}\\s]+$",
    "^(?!\\p{L}).+$",
    "^(?!.*\\P{L})..$",
  ];
  for (const pattern of [...exact, ...narrowedOrWidened]) {
    const matcher = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern }));
    const regex = new RegExp(pattern, "u");
    let taken = 0;
    for (const text of texts) {
      const takes = matcher.matches(JSON.stringify(text));
      if (exact.includes(pattern)) equal(takes, regex.test(text), `/${pattern}/ on "${text}"`);
      else ok(!takes || regex.test(text), `/${pattern}/ takes "${text}"`);
      if (takes) taken++;
    }
    ok(taken > 0, `/${pattern}/ takes none`);
  }
  // Common letters stay in the narrowed class; a rare script's do not.
  const names = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern: "^[\\p{L} ]+$" }));
  for (const name of ["José María", "Ωμέγα", "Жанна", "日本", "한국", "Zoë ñ"]) {
    ok(names.matches(JSON.stringify(name)), name);
  }
  ok(!names.matches(JSON.stringify("\u0985")), "a Bengali letter is left out");
  refuses(
    { type: "string", pattern: "^\\p{NoSuchProperty}$" },
    "pattern",
    /not a Unicode property/,
  );
  refuses({ type: "string", pattern: "^\\p{RGI_Emoji}$" }, "pattern", /not a Unicode property/);
  refuses({ type: "string", pattern: "^\\pL$" }, "pattern", /needs a property in braces/);
});

Deno.test("a lookahead that only bounds the length is read as lengths where reading it in step is too large", () => {
  // zod's hostname() is this shape: 253 lengths counted in every state of the labels' automaton.
  const pattern = "^(?=.{1,200}\\.?$)(?:[a-z0-9]{1,30}\\.){0,20}[a-z]{2,9}$";
  const matcher = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern }));
  const regex = new RegExp(pattern, "u");
  const random = seededRandom(5);
  const alphabet = [..."ab1.."];
  let taken = 0;
  for (let i = 0; i < 3000; i++) {
    const text = Array.from({ length: random(40) }, () => alphabet[random(alphabet.length)]).join(
      "",
    );
    if (!matcher.matches(JSON.stringify(text))) continue;
    ok(regex.test(text), `takes "${text}"`);
    taken++;
  }
  ok(taken > 20, `takes ${taken}`);
  ok(matcher.matches(JSON.stringify("api.example.com")));
  // A lookahead that needs more than a length is not one: the password rule still holds exactly.
  const password = "^(?=.*\\d)[a-z\\d]{2,4}$";
  const exact = new GbnfMatcher(jsonSchemaToGrammar({ type: "string", pattern: password }));
  for (const text of ["ab", "a1", "abcd", "1"]) {
    equal(exact.matches(JSON.stringify(text)), new RegExp(password).test(text), text);
  }
});
