import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { validateGrammar } from "../../src/engine/gbnf.ts";
import { SchemaError, StructuredOutputError } from "../../src/engine/structured/errors.ts";
import { TOOL_FORMATS, type ToolFormatId } from "../../src/engine/tools/formats.ts";
import { forcedToolGrammar, prefixRules } from "../../src/engine/tools/grammar.ts";
import { parseOutput } from "../../src/engine/tools/parse.ts";
import { planChatOutput } from "../../src/engine/tools/plan.ts";
import type { ToolSpec } from "../../src/engine/tools/tool_types.ts";
import { GbnfMatcher } from "./gbnf_matcher.ts";

const TOOLS: ToolSpec[] = [
  {
    name: "get_weather",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", maxLength: 10 },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city"],
    },
  },
  {
    name: "tree",
    parameters: {
      $defs: {
        node: {
          type: "object",
          properties: { kids: { type: "array", items: { $ref: "#/$defs/node" } } },
        },
      },
      type: "object",
      properties: { root: { $ref: "#/$defs/node" } },
      required: ["root"],
    },
  },
];

/** A call to get_weather exactly as each forced grammar writes it. */
const WRITTEN: Record<ToolFormatId, string> = {
  hermes: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
  qwen3_coder: "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n" +
    "</function>\n</tool_call>",
  glm4:
    "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>",
  llama3: '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
  mistral_nemo:
    '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "abcDEF123"}]',
  mistral: '[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}',
  deepseek_r1:
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" +
    '{"city": "Oslo"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
  deepseek_v3_1: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>" +
    '{"city": "Oslo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
  granite: '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
  command_r7b: '<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", ' +
    '"parameters": {"city": "Oslo"}}\n]<|END_ACTION|>',
  functionary_v3_1: '<function=get_weather>{"city": "Oslo"}</function>',
  kimi_k2: "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0" +
    '<|tool_call_argument_begin|>{"city": "Oslo"}<|tool_call_end|><|tool_calls_section_end|>',
  gpt_oss: "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" +
    '{"city": "Oslo"}<|call|>',
  functionary_v3_2: 'get_weather\n{"city": "Oslo"}',
  generic: '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
};

for (const id of Object.keys(TOOL_FORMATS) as ToolFormatId[]) {
  Deno.test(`the forced ${id} grammar is valid GBNF, accepts a real call and refuses a bad one`, () => {
    const format = TOOL_FORMATS[id];
    const grammar = forcedToolGrammar(format, TOOLS, true);
    validateGrammar(grammar, {}, { isSingleToken: () => false });
    const matcher = new GbnfMatcher(grammar);
    ok(matcher.matches(WRITTEN[id]), grammar);
    ok(!matcher.matches(WRITTEN[id].replace("Oslo", "Oslo, far too long")), "maxLength holds");
    ok(!matcher.matches(WRITTEN[id].replace("get_weather", "get_time")), "only offered tools");
    const parsed = parseOutput(WRITTEN[id], { format, tools: TOOLS });
    equal(parsed.calls.length, 1);
    deepEqual(JSON.parse(parsed.calls[0]!.arguments), { city: "Oslo" });
  });
}

Deno.test("Kimi K2's forced grammar lets the model number a call past 9", () => {
  const matcher = new GbnfMatcher(forcedToolGrammar(TOOL_FORMATS.kimi_k2, TOOLS, true));
  ok(matcher.matches(WRITTEN.kimi_k2.replace(":0", ":12")));
  ok(!matcher.matches(WRITTEN.kimi_k2.replace(":0", ":")), "a number is written");
});

Deno.test("tools whose grammar would pass the size limit are refused as soon as it does, naming tools", () => {
  // 1,000 values that share little (a trie would fold `value_1`, `value_2`… into a few rules).
  const values = Array.from(
    { length: 1000 },
    (_, i) => ((i + 1) * 2654435761 % 2 ** 32).toString(36).repeat(4),
  );
  // Each tool's values differ, so that no conversion is remembered from another tool's.
  const toolOf = (i: number) => ({
    name: `tool_${i}`,
    parameters: {
      type: "object",
      properties: { v: { enum: values.map((value) => `${value}${i}`) } },
      required: ["v"],
    },
  });
  const tools = Array.from({ length: 128 }, (_, i) => toolOf(i));
  const started = performance.now();
  throws(
    () => forcedToolGrammar(TOOL_FORMATS.hermes, tools, true),
    (error) =>
      error instanceof StructuredOutputError && error.param === "tools" &&
      /longer than the limit of 262144 bytes \(after \d+ of 128 tools\)/.test(error.message),
  );
  const elapsed = performance.now() - started;
  const one = performance.now();
  forcedToolGrammar(TOOL_FORMATS.hermes, [toolOf(128)], true);
  ok(elapsed < (performance.now() - one) * 40, "it stops long before building all 128");
});

Deno.test("forced parallel calls to tools with many optional parameters pass the validator", () => {
  // Each optional parameter's rest is called from many places; the search had made a copy for
  // each and gave up (too complex) on 32 tools of 12 parameters when parallel calls were allowed.
  const properties = Object.fromEntries(
    Array.from({ length: 12 }, (_, j) => [`param_${j}`, { type: j % 3 ? "string" : "integer" }]),
  );
  const tools = Array.from({ length: 32 }, (_, i) => ({
    name: `tool_${i}`,
    parameters: { type: "object", properties },
  }));
  const started = performance.now();
  const { searchPaths } = validateGrammar(forcedToolGrammar(TOOL_FORMATS.hermes, tools, true));
  ok(searchPaths < 40_000 && performance.now() - started < 2_000, `${searchPaths}`);
});

Deno.test("forced grammars for 128 tools pass the validator's bounds on llama.cpp's work, in time", () => {
  const tools = Array.from({ length: 128 }, (_, i) => ({
    name: `tool_${i}`,
    parameters: {
      type: "object",
      properties: {
        city: { type: "string" },
        days: { type: "integer", minimum: 1, maximum: 14 },
        units: { enum: ["metric", "imperial"] },
      },
      required: ["city"],
    },
  }));
  for (const id of Object.keys(TOOL_FORMATS) as ToolFormatId[]) {
    const grammar = forcedToolGrammar(TOOL_FORMATS[id], tools, true);
    const started = performance.now();
    const summary = validateGrammar(grammar, {}, { isSingleToken: () => false });
    ok(performance.now() - started < 2_000, `${id}: ${performance.now() - started} ms`);
    // The names share their beginnings (a trie): a dozen stacks where a call's name starts, and
    // about 1,100 tries a token, where a stack per name made 128 and about 34,000.
    ok(summary.stackFanout < 16 && summary.searchPaths < 2_000, `${id}: ${summary.searchPaths}`);
  }
});

Deno.test("a named tool_choice allows only that tool", () => {
  const plan = planChatOutput(
    { tools: TOOLS, choice: { name: "tree" }, parallel: false, reasoningFormat: "auto" },
    { template: "{{ '<tool_call>' }}" },
  );
  const matcher = new GbnfMatcher(plan.grammar!);
  ok(!matcher.matches(WRITTEN.hermes));
  ok(
    matcher.matches(
      '<tool_call>\n{"name": "tree", "arguments": {"root": {"kids": [{}]}}}\n</tool_call>',
    ),
  );
});

Deno.test("auto gets a lazy grammar triggered by the call marker where the format allows", () => {
  const request = {
    tools: TOOLS,
    choice: "auto" as const,
    parallel: true,
    reasoningFormat: "auto" as const,
  };
  const hermes = planChatOutput(request, { template: "<tool_call>" });
  deepEqual(hermes.triggers, ["<tool_call>"]);
  ok(hermes.grammar);
  const mistral = planChatOutput(request, { template: "[TOOL_CALLS][ARGS]" });
  deepEqual(mistral.triggers, ["\\[TOOL_CALLS\\]"]);
  const llama3 = planChatOutput(request, { template: '<|start_header_id|> "parameters"' });
  equal(llama3.grammar, undefined, "calls that open with bare JSON cannot wait for a marker");
  const none = planChatOutput({ ...request, choice: "none" }, { template: "<tool_call>" });
  deepEqual(none, { read: {} });
  const required = planChatOutput({ ...request, choice: "required" }, { template: "<tool_call>" });
  equal(required.triggers, undefined);
});

Deno.test("reasoning is read when the template thinks, unless reasoning_format is none", () => {
  const request = {
    tools: [],
    choice: "none" as const,
    parallel: true,
    reasoningFormat: "auto" as const,
  };
  const opened = planChatOutput(request, { template: "<think>", promptTail: "Assistant<think>\n" });
  deepEqual(opened.read.reasoning, { open: "<think>", close: "</think>", startsOpen: true });
  const closed = planChatOutput(request, { template: "<think>", promptTail: "</think>\n\n" });
  equal(closed.read.reasoning?.startsOpen, false);
  equal(
    planChatOutput({ ...request, reasoningFormat: "none" }, { template: "<think>" }).read.reasoning,
    undefined,
  );
  equal(planChatOutput(request, { template: "plain" }).read.reasoning, undefined);
});

Deno.test("a tool schema the converter cannot honour loosens the call, or is a SchemaError for a strict tool", () => {
  // A format Shimmy does not write: OpenAI and Anthropic take such schemas for tools.
  const fetchTool = {
    name: "fetch",
    parameters: {
      type: "object",
      properties: {
        url: { type: "string", format: "uri-reference" },
        max_length: { type: "integer" },
      },
      required: ["url"],
    },
  };
  throws(
    () => forcedToolGrammar(TOOL_FORMATS.hermes, [{ ...fetchTool, strict: true }], false),
    SchemaError,
  );
  // Otherwise only what cannot be held is left out: the URL is any string, still required.
  const hermes = new GbnfMatcher(forcedToolGrammar(TOOL_FORMATS.hermes, [fetchTool], false));
  const call = (args: string) =>
    `<tool_call>\n{"name": "fetch", "arguments": ${args}}\n</tool_call>`;
  ok(hermes.matches(call('{"url": "https://example.com", "max_length": 5}')));
  ok(hermes.matches(call('{"url": "not a uri"}')));
  ok(!hermes.matches(call("{}")), "url is still required");
  ok(!hermes.matches(call('{"url": "x", "max_length": "5"}')), "the integer still holds");
  // Keywords of every kind that the converter cannot honour, each left out where it stands.
  const unusual = {
    type: "object",
    properties: {
      tags: { type: "array", items: { type: "string" }, uniqueItems: true },
      step: { type: "number", multipleOf: 0.5, minimum: 0.5 },
      mail: { type: "string", format: "email", pattern: "^[^@]+@[^@]+$", maxLength: 64 },
      other: { not: { type: "null" } },
    },
    required: ["tags"],
  };
  const loose = new GbnfMatcher(
    forcedToolGrammar(TOOL_FORMATS.hermes, [{ name: "fetch", parameters: unusual }], false),
  );
  ok(loose.matches(call('{"tags": ["a", "a"], "step": 0.7, "mail": "x@ab.io", "other": null}')));
  ok(!loose.matches(call('{"tags": [], "mail": "x@y"}')), "the format holds beside the pattern");
  ok(!loose.matches(call('{"tags": [], "mail": "x@@ab.io"}')), "and the pattern");
  ok(loose.matches(call('{"tags": [], "mail": "john.smith@example.com"}')));
  const long = `${"a".repeat(16)}.${"b".repeat(16)}.${"c".repeat(16)}@${"d".repeat(11)}.io`;
  ok(!loose.matches(call(`{"tags": [], "mail": "${long}"}`)), "and maxLength");
  ok(!loose.matches(call('{"step": 1}')), "tags is still required");
  ok(!loose.matches(call('{"tags": [1]}')), "its items are still strings");
});

Deno.test("renaming rules leaves literals and classes alone", () => {
  equal(
    prefixRules('root ::= "root" [a-z] x{1,2}\nx ::= "\\"x" root', "p-"),
    'p-root ::= "root" [a-z] p-x{1,2}\np-x ::= "\\"x" p-root',
  );
});
