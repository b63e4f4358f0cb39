import { deepEqual, equal, ok } from "node:assert/strict";
import { TOOL_FORMATS, type ToolFormatId } from "../../src/engine/tools/formats.ts";
import { parseOutput, THINK_TAGS } from "../../src/engine/tools/parse.ts";
import {
  type ChatDelta,
  type ChatOutputOptions,
  ChatOutputStream,
} from "../../src/engine/tools/output_stream.ts";
import type { ToolSpec } from "../../src/engine/tools/tool_types.ts";
import { scanJson, scanObjectMembers } from "../../src/engine/tools/json_scan.ts";

const TOOLS: ToolSpec[] = [
  {
    name: "get_weather",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "integer" } },
      required: ["city"],
    },
  },
  { name: "ping", parameters: { type: "object", properties: {} } },
];

interface Case {
  format: ToolFormatId;
  text: string;
  content: string | null;
  calls: { name: string; arguments: unknown; id?: string }[];
}

/** Real-format outputs, written the way each family's template writes its own calls. */
const CASES: Case[] = [
  {
    format: "hermes",
    text: 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n' +
      '</tool_call>\n<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>',
    content: "Let me check.",
    calls: [{ name: "get_weather", arguments: { city: "Paris" } }, {
      name: "ping",
      arguments: {},
    }],
  },
  {
    format: "qwen3_coder",
    text: "I will look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n" +
      "</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    content: "I will look.",
    calls: [{ name: "get_weather", arguments: { city: "New York", days: 3 } }],
  },
  {
    format: "glm4",
    text: "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n" +
      "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>",
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Rome", days: 2 } }],
  },
  {
    format: "llama3",
    text: '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 1}}',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Oslo", days: 1 } }],
  },
  {
    format: "llama3",
    text: '<|python_tag|>{"name": "ping", "parameters": {}}',
    content: null,
    calls: [{ name: "ping", arguments: {} }],
  },
  {
    format: "mistral_nemo",
    text: '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "a1b2c3d4e"}]',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Lyon" }, id: "a1b2c3d4e" }],
  },
  {
    format: "mistral",
    text: 'Sure[TOOL_CALLS]get_weather[ARGS]{"city": "Nice"}[TOOL_CALLS]ping[ARGS]{}',
    content: "Sure",
    calls: [{ name: "get_weather", arguments: { city: "Nice" } }, { name: "ping", arguments: {} }],
  },
  {
    format: "mistral",
    text: '[TOOL_CALLS]get_weather[CALL_ID]abcdefghi[ARGS]{"city": "Nice"}',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Nice" }, id: "abcdefghi" }],
  },
  {
    format: "deepseek_r1",
    text:
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" +
      '{"city": "Tokyo"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Tokyo" } }],
  },
  {
    format: "deepseek_v3_1",
    text: "Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>" +
      '{"city": "Seoul"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>ping<｜tool▁sep｜>{}' +
      "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    content: "Checking.",
    calls: [{ name: "get_weather", arguments: { city: "Seoul" } }, { name: "ping", arguments: {} }],
  },
  {
    format: "granite",
    text: '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Bern"}}]',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Bern" } }],
  },
  {
    format: "command_r7b",
    text: '<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "get_weather", ' +
      '"parameters": {"city": "Kyiv"}}\n]<|END_ACTION|>',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Kyiv" } }],
  },
  {
    format: "functionary_v3_1",
    text: 'Hmm.<function=get_weather>{"city": "Lima"}</function>',
    content: "Hmm.",
    calls: [{ name: "get_weather", arguments: { city: "Lima" } }],
  },
  {
    format: "kimi_k2",
    text: "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0" +
      '<|tool_call_argument_begin|>{"city": "Quito"}<|tool_call_end|><|tool_calls_section_end|>',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Quito" }, id: "functions.get_weather:0" }],
  },
  {
    format: "gpt_oss",
    text: "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant" +
      "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" +
      '{"city": "Oslo"}<|call|>',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Oslo" } }],
  },
  {
    format: "gpt_oss",
    text: "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant to=functions.ping" +
      "<|channel|>commentary json<|message|>{}",
    content: null,
    calls: [{ name: "ping", arguments: {} }],
  },
  {
    format: "functionary_v3_2",
    text: 'all\nLet me look.>>>get_weather\n{"city": "Riga"}>>>ping\n{}',
    content: "Let me look.",
    calls: [{ name: "get_weather", arguments: { city: "Riga" } }, { name: "ping", arguments: {} }],
  },
  {
    format: "generic",
    text: '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Cairo"}}]}',
    content: null,
    calls: [{ name: "get_weather", arguments: { city: "Cairo" } }],
  },
];

function streamAll(text: string, options: ChatOutputOptions, step = 1) {
  const stream = new ChatOutputStream(options);
  const deltas: ChatDelta[] = [];
  for (let i = 0; i < text.length; i += step) deltas.push(...stream.push(text.slice(i, i + step)));
  const end = stream.finish();
  deltas.push(...end.deltas);
  return { deltas, output: end.output };
}

/** Joins deltas the way the OpenAI SDK does. */
function reassemble(deltas: ChatDelta[]) {
  let content = "";
  let reasoning = "";
  const calls: { id?: string; name: string; arguments: string }[] = [];
  for (const delta of deltas) {
    content += delta.content ?? "";
    reasoning += delta.reasoning_content ?? "";
    for (const call of delta.tool_calls ?? []) {
      if (call.id !== undefined) {
        equal(call.index, calls.length, "a new call gets the next index");
        equal(call.function.arguments, "", "a call's header comes before its arguments");
        calls.push({ id: call.id, name: call.function.name!, arguments: "" });
      } else {
        calls[call.index]!.arguments += call.function.arguments;
      }
    }
  }
  return { content, reasoning, calls };
}

for (const c of CASES) {
  Deno.test(`the ${c.format} parser reads ${c.calls.length} call(s) from real-format text`, () => {
    const options = { format: TOOL_FORMATS[c.format], tools: TOOLS, idStyle: "openai" as const };
    const { output } = streamAll(c.text, options, c.text.length);
    equal(output.content, c.content);
    deepEqual(
      output.toolCalls.map((t) => ({
        name: t.function.name,
        arguments: JSON.parse(t.function.arguments),
        ...(c.calls.some((x) => x.id) ? { id: t.id } : {}),
      })),
      c.calls,
    );
  });

  Deno.test(`the ${c.format} parser streams deltas that reassemble to the final message`, () => {
    const options = { format: TOOL_FORMATS[c.format], tools: TOOLS };
    for (const step of [1, 3, 7]) {
      const { deltas, output } = streamAll(c.text, options, step);
      const joined = reassemble(deltas);
      deepEqual(
        joined.calls,
        output.toolCalls.map((t) => ({ id: t.id, ...t.function })),
      );
      equal(joined.content, output.content ?? "", "the same content, space around calls left out");
      for (const marker of TOOL_FORMATS[c.format].markers) {
        ok(!joined.content.includes(marker), `no ${marker} in the content`);
      }
      ok(!joined.content.includes('{"'), "no call JSON in the content");
    }
  });

  Deno.test(`the ${c.format} parser streams no call that max_tokens cuts off`, () => {
    // Cut anywhere: what was streamed equals the whole answer, whose calls are only whole ones.
    const options = { format: TOOL_FORMATS[c.format], tools: TOOLS };
    for (let cut = 1; cut < c.text.length; cut += 2) {
      const stream = new ChatOutputStream(options);
      const deltas: ChatDelta[] = [];
      for (let i = 0; i < cut; i += 3) {
        deltas.push(...stream.push(c.text.slice(i, Math.min(i + 3, cut))));
      }
      const end = stream.finish(true);
      deltas.push(...end.deltas);
      deepEqual(
        reassemble(deltas).calls,
        end.output.toolCalls.map((t) => ({ id: t.id, ...t.function })),
        `cut at ${cut}: ${JSON.stringify(c.text.slice(0, cut))}`,
      );
    }
  });

  Deno.test(`the ${c.format} parser makes no call of output cut anywhere inside a call`, () => {
    const options = { format: TOOL_FORMATS[c.format], tools: TOOLS };
    const first = c.text.length - 1;
    for (let cut = 0; cut <= first; cut++) {
      const parsed = parseOutput(c.text.slice(0, cut), { ...options, final: true });
      for (const call of parsed.calls) {
        ok(call.complete);
        JSON.parse(call.arguments);
      }
      ok(parsed.calls.length <= c.calls.length);
    }
  });
}

Deno.test("malformed call markup stays content and is never a call", () => {
  const cases: [ToolFormatId, string][] = [
    ["hermes", "<tool_call>\nnot json at all\n</tool_call>"],
    ["hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>'],
    ["hermes", '<tool_call>\n{"name": "f", "arguments": [1]}\n</tool_call>'],
    ["mistral_nemo", "[TOOL_CALLS] sorry, no"],
    ["deepseek_v3_1", "<｜tool▁calls▁begin｜>oops"],
    ["llama3", '{"city": "Paris"}'],
    ["functionary_v3_1", "<function=get weather>{}</function>"],
  ];
  for (const [format, text] of cases) {
    const parsed = parseOutput(text, { format: TOOL_FORMATS[format], tools: TOOLS });
    deepEqual(parsed.calls, [], `${format}: ${text}`);
    ok(parsed.content.length > 0, `${format} keeps the text`);
  }
});

Deno.test("a half-written call at max_tokens is dropped, the text before it kept", () => {
  const parsed = parseOutput('Let me see.<tool_call>\n{"name": "get_weather", "arguments": {"ci', {
    format: TOOL_FORMATS.hermes,
  });
  deepEqual(parsed, { content: "Let me see.", reasoning: "", calls: [] });
});

Deno.test("text that may start a call marker is held back while streaming", () => {
  const stream = new ChatOutputStream({ format: TOOL_FORMATS.hermes });
  deepEqual(stream.push("Hello <tool_"), [{ content: "Hello" }]);
  deepEqual(stream.push("box>"), [{ content: " <tool_box>" }]);
  const end = stream.finish();
  equal(end.output.content, "Hello <tool_box>");
});

Deno.test("<think> goes to reasoning, opened by the prompt or by the model", () => {
  const opened = parseOutput("Hmm, 2+2.\n</think>\n\nIt is 4.", {
    reasoning: { ...THINK_TAGS, startsOpen: true },
  });
  deepEqual(opened, { content: "It is 4.", reasoning: "Hmm, 2+2.", calls: [] });
  const written = parseOutput(
    '<think>\nweather?\n</think>\n<tool_call>\n{"name": "ping"}\n</tool_call>',
    {
      reasoning: { ...THINK_TAGS, startsOpen: false },
      format: TOOL_FORMATS.hermes,
    },
  );
  equal(written.reasoning, "weather?");
  equal(written.calls[0]?.name, "ping");
  equal(written.calls[0]?.arguments, "{}");
  const unfinished = parseOutput("still thinking", {
    reasoning: { ...THINK_TAGS, startsOpen: true },
  });
  deepEqual(unfinished, { content: "", reasoning: "still thinking", calls: [] });
  const none = parseOutput("no tags here", { reasoning: { ...THINK_TAGS, startsOpen: false } });
  deepEqual(none, { content: "no tags here", reasoning: "", calls: [] });
});

Deno.test("reasoning streams as reasoning_content, never with the tags", () => {
  const text = "<think>\nI should call.\n</think>\nOK";
  const { deltas, output } = streamAll(text, { reasoning: { ...THINK_TAGS, startsOpen: false } });
  const joined = reassemble(deltas);
  equal(joined.reasoning, "I should call.");
  equal(joined.content, "OK");
  equal(output.reasoning, "I should call.");
  ok(!joined.content.includes("think>") && !joined.reasoning.includes("think>"));
});

Deno.test("the JSON scanners tell complete, unfinished and invalid values apart", () => {
  deepEqual(scanJson(' {"a": "}"}', 0), { state: "complete", start: 1, end: 11 });
  equal(scanJson('{"a": [1, 2', 0).state, "incomplete");
  equal(scanJson("{]", 0).state, "invalid");
  equal(scanJson("tru", 0).state, "incomplete");
  equal(scanJson("12", 0).state, "incomplete");
  equal(scanJson("12 ", 0).state, "complete");
  const members = scanObjectMembers('{"name": "f", "arguments": {"x": 1', 0);
  equal(members.state, "incomplete");
  deepEqual(members.members.get("arguments"), { start: 27 });
});

Deno.test("GPT-OSS channels: analysis is reasoning, final is content, streamed without markup", () => {
  const text = "<|channel|>analysis<|message|>The user greets.<|end|><|start|>assistant" +
    "<|channel|>final<|message|>Hello there!<|return|>";
  const options = { format: TOOL_FORMATS.gpt_oss, tools: [] };
  deepEqual(parseOutput(text, options), {
    content: "Hello there!",
    reasoning: "The user greets.",
    calls: [],
  });
  for (const step of [1, 4]) {
    const { deltas } = streamAll(text, options, step);
    const joined = reassemble(deltas);
    equal(joined.reasoning, "The user greets.");
    equal(joined.content, "Hello there!");
  }
  // Without tools, a message to a function is not a call.
  const call = "<|channel|>commentary to=functions.ping <|constrain|>json<|message|>{}<|call|>";
  deepEqual(parseOutput(call, options).calls, []);
});

Deno.test("Kimi K2's call ids count the conversation's calls, whatever number the model wrote", () => {
  const call = (name: string, n: number, args: string) =>
    `<|tool_call_begin|>functions.${name}:${n}<|tool_call_argument_begin|>${args}<|tool_call_end|>`;
  const text = "<|tool_calls_section_begin|>" + call("get_weather", 0, '{"city": "Oslo"}') +
    call("ping", 0, "{}") + "<|tool_calls_section_end|>";
  const { deltas, output } = streamAll(text, {
    format: TOOL_FORMATS.kimi_k2,
    idStyle: TOOL_FORMATS.kimi_k2.idStyle,
    callsBefore: 3,
  }, 7);
  const ids = ["functions.get_weather:3", "functions.ping:4"];
  deepEqual(output.toolCalls.map((c) => c.id), ids);
  deepEqual(reassemble(deltas).calls.map((c) => c.id), ids, "streamed ids are the same");
});

Deno.test("ChatOutputStream keeps up with a long thinking stream: 20,000 pieces in well under 3 s", () => {
  // Each piece re-reads the output so far; comparing what was sent with the new read char by
  // char (`startsWith`) had made this 6 s on 2 cores, 0.5 ms a token by the end: 4 ms a step of
  // eight such streams. It takes about 0.5 s now.
  const stream = new ChatOutputStream({
    format: TOOL_FORMATS.hermes,
    tools: [{ name: "lookup", parameters: {} }],
    reasoning: { ...THINK_TAGS, startsOpen: true },
  });
  const words = [" The", " quick", " fox", ",", " thinking", " again", ".", "\n"];
  let reasoning = "";
  const started = performance.now();
  for (let i = 0; i < 20_000; i++) {
    for (const delta of stream.push(words[i % words.length] as string)) {
      reasoning += delta.reasoning_content ?? "";
    }
  }
  const ms = performance.now() - started;
  ok(ms < 3000, `${Math.round(ms)} ms`);
  ok(reasoning.length > 75_000, `the reasoning streamed as it grew: ${reasoning.length} chars`);
});

Deno.test("GPT-OSS output of 8,000 messages reads in well under 100 ms", () => {
  // Looking for each message's end with every end marker searched to the end of the text took
  // 1.5 to 2 s a read here, and the streamed output is read again on every token.
  const text = "<|channel|>analysis<|message|>x<|end|>".repeat(8000);
  const started = performance.now();
  const parsed = parseOutput(text, { format: TOOL_FORMATS.gpt_oss, tools: TOOLS, final: false });
  const ms = performance.now() - started;
  ok(ms < 100, `${Math.round(ms)} ms`);
  deepEqual(parsed, { content: "", reasoning: "x".repeat(8000), calls: [] });
});

Deno.test("Mistral output with 14,000 markers that start no call reads in well under 100 ms", () => {
  // Each marker looked for `[ARGS]` to the end of the text: 0.5 to 1 s a read of these 350 KB.
  const sentence = "[TOOL_CALLS] is not a call. ";
  const started = performance.now();
  const parsed = parseOutput(sentence.repeat(14_000), {
    format: TOOL_FORMATS.mistral,
    tools: TOOLS,
    final: false,
  });
  const ms = performance.now() - started;
  ok(ms < 100, `${Math.round(ms)} ms`);
  deepEqual(parsed.calls, []);
  // The last few markers may still become a call: those within 256 characters of the end.
  ok(parsed.content.startsWith(sentence.repeat(13_990)), "the markers are content");
});
