import { deepEqual, equal, match, ok } from "node:assert/strict";
import { join } from "node:path";
import { detectToolFormat, type ToolFormatId } from "../../src/engine/tools/formats.ts";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { postJson, readSse, startServer, type TestServer } from "./harness.ts";
import { WEATHER_PARAMETERS } from "../fixtures/tool_fixtures.ts";

const MODEL = "tiny-f32";
const SOURCE = llamaSourceDir();
/** llama.cpp's copies of real chat templates (tests that need them are skipped without). */
const TEMPLATES = join(SOURCE ?? ".", "models", "templates");
const haveTemplates = SOURCE !== undefined;

/** One real template per supported format (and the families that share a format). */
const FAMILIES: readonly [file: string, format: ToolFormatId][] = [
  ["Qwen-Qwen2.5-7B-Instruct", "hermes"],
  ["Qwen-Qwen3-0.6B", "hermes"],
  ["NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "hermes"],
  ["Qwen3-Coder", "qwen3_coder"],
  ["GLM-4.6", "glm4"],
  ["meta-llama-Llama-3.1-8B-Instruct", "llama3"],
  ["meta-llama-Llama-3.3-70B-Instruct", "llama3"],
  ["mistralai-Mistral-Nemo-Instruct-2407", "mistral_nemo"],
  ["unsloth-mistral-Devstral-Small-2507", "mistral"],
  ["Mistral-Small-3.2-24B-Instruct-2506", "mistral"],
  ["deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "deepseek_r1"],
  ["deepseek-ai-DeepSeek-V3.1", "deepseek_v3_1"],
  ["ibm-granite-granite-3.3-2B-Instruct", "granite"],
  ["CohereForAI-c4ai-command-r7b-12-2024-tool_use", "command_r7b"],
  ["meetkai-functionary-medium-v3.1", "functionary_v3_1"],
  ["moonshotai-Kimi-K2", "kimi_k2"],
  ["openai-gpt-oss-120b", "gpt_oss"],
  ["meetkai-functionary-medium-v3.2", "functionary_v3_2"],
  ["microsoft-Phi-3.5-mini-instruct", "generic"],
];

const WEATHER = WEATHER_PARAMETERS;
const ADD = {
  type: "object",
  properties: {
    a: { type: "integer", minimum: 0, maximum: 99 },
    b: { type: "integer", minimum: 0, maximum: 99 },
  },
  required: ["a", "b"],
  additionalProperties: false,
};
const TOOLS = [
  {
    type: "function",
    function: { name: "get_weather", description: "Weather", parameters: WEATHER },
  },
  { type: "function", function: { name: "add", description: "Adds", parameters: ADD } },
];
const VALIDATE: Record<string, ReturnType<typeof compileSchema>> = {
  get_weather: compileSchema(WEATHER),
  add: compileSchema(ADD),
};
const MESSAGES = [{ role: "user", content: "What is the weather in Paris?" }];

interface Call {
  id: string;
  name: string;
  arguments: string;
}

async function chat(server: TestServer, body: Record<string, unknown>) {
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    model: MODEL,
    messages: MESSAGES,
    max_tokens: 250,
    seed: 7,
    ...body,
  });
  return response;
}

/** A forced call, not streamed: the message and finish reason. */
async function forced(server: TestServer, body: Record<string, unknown>) {
  const response = await chat(server, body);
  const text = await response.text();
  equal(response.status, 200, text);
  const choice = JSON.parse(text).choices[0];
  const calls: Call[] = (choice.message.tool_calls ?? []).map((
    c: { id: string; type: string; function: { name: string; arguments: string } },
  ) => {
    equal(c.type, "function");
    return { id: c.id, name: c.function.name, arguments: c.function.arguments };
  });
  return { choice, calls };
}

/** The same, streamed: deltas joined as the OpenAI SDK joins them. */
async function forcedStream(server: TestServer, body: Record<string, unknown>) {
  const response = await chat(server, { ...body, stream: true });
  equal(response.status, 200);
  const { events } = await readSse(response);
  equal(events.at(-1), "[DONE]");
  const calls: Call[] = [];
  let content = "";
  let finish: string | null = null;
  for (const event of events.slice(0, -1)) {
    const choice = JSON.parse(event).choices[0];
    if (!choice) continue;
    finish = choice.finish_reason ?? finish;
    content += choice.delta.content ?? "";
    for (const d of choice.delta.tool_calls ?? []) {
      if (d.id !== undefined) {
        equal(d.index, calls.length);
        equal(d.type, "function");
        ok(d.function.name, "the first fragment names the function");
        calls.push({ id: d.id, name: d.function.name, arguments: d.function.arguments ?? "" });
      } else {
        ok(calls[d.index], "fragments follow their call's header");
        equal(d.function.name, undefined);
        calls[d.index]!.arguments += d.function.arguments;
      }
    }
  }
  return { calls, content, finish };
}

function checkCalls(calls: Call[], only?: string) {
  ok(calls.length >= 1, "at least one call");
  for (const call of calls) {
    ok(call.id.length > 0);
    if (only) equal(call.name, only);
    const validate = VALIDATE[call.name];
    ok(validate, `a known tool: ${call.name}`);
    const args = JSON.parse(call.arguments);
    ok(validate(args), `${call.name} ${call.arguments}: ${JSON.stringify(validate.errors)}`);
  }
}

Deno.test({
  name: "forced tool calls (required and named) on every family's template validate, " +
    "and streamed deltas reassemble to the same calls",
  ignore: !haveTemplates,
  fn: async (t) => {
    await using server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
    for (const [file, format] of FAMILIES) {
      const template = Deno.readTextFileSync(join(TEMPLATES, `${file}.jinja`));
      equal(detectToolFormat(template).id, format, `${file} is read as ${format}`);
      await t.step(`${file} (${format})`, async () => {
        server.ctx.settings.chatTemplate = { template, path: `${file}.jinja` };
        const choices: [unknown, string | undefined][] = [
          ["required", undefined],
          [{ type: "function", function: { name: "add" } }, "add"],
        ];
        for (const [choice, only] of choices) {
          const body = { tools: TOOLS, tool_choice: choice, parallel_tool_calls: false };
          const whole = await forced(server, body);
          equal(whole.choice.finish_reason, "tool_calls", JSON.stringify(whole.choice));
          checkCalls(whole.calls, only);
          equal(whole.calls.length, 1, "parallel_tool_calls: false makes one call");
          if (only) continue; // streaming is checked once per template
          const streamed = await forcedStream(server, body);
          equal(streamed.finish, "tool_calls");
          checkCalls(streamed.calls, only);
          deepEqual(
            streamed.calls.map((c) => [c.name, c.arguments]),
            whole.calls.map((c) => [c.name, c.arguments]),
          );
          equal(streamed.content, "", "no call markup in the content");
        }
      });
    }
    server.ctx.settings.chatTemplate = undefined;
  },
});

/** A server of tiny-f32 with Qwen 2.5's template (Hermes calls). */
async function qwenServer(): Promise<TestServer> {
  const server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
  const template = Deno.readTextFileSync(join(TEMPLATES, "Qwen-Qwen2.5-7B-Instruct.jinja"));
  server.ctx.settings.chatTemplate = { template, path: "qwen2.5.jinja" };
  return server;
}

Deno.test({
  name: "parallel_tool_calls lets a forced answer hold several valid calls",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await qwenServer();
    for (const seed of [1, 2, 3]) {
      const { choice, calls } = await forced(server, {
        tools: TOOLS,
        tool_choice: "required",
        seed,
        max_tokens: 600,
      });
      equal(choice.finish_reason, "tool_calls");
      checkCalls(calls);
      equal(new Set(calls.map((c) => c.id)).size, calls.length, "ids are unique");
    }
  },
});

Deno.test({
  name: "stop strings do not cut a forced call, which is markup, not text",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await qwenServer();
    const body = { tools: TOOLS, tool_choice: "required", stop: ["\n", '"'], max_tokens: 300 };
    const { choice, calls } = await forced(server, { ...body, seed: 1 });
    equal(choice.finish_reason, "tool_calls");
    checkCalls(calls);
    const streamed = await forcedStream(server, { ...body, seed: 1 });
    equal(streamed.finish, "tool_calls");
  },
});

Deno.test({
  name: "Kimi K2's call ids go on counting the conversation's calls, as its template numbers them",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
    const template = Deno.readTextFileSync(join(TEMPLATES, "moonshotai-Kimi-K2.jinja"));
    server.ctx.settings.chatTemplate = { template, path: "kimi-k2.jinja" };
    const earlier = (n: number) => ({
      id: `functions.add:${n}`,
      type: "function",
      function: { name: "add", arguments: '{"a": 1, "b": 2}' },
    });
    const messages = [
      ...MESSAGES,
      { role: "assistant", content: null, tool_calls: [earlier(0), earlier(1)] },
      { role: "tool", tool_call_id: "functions.add:0", content: "3" },
      { role: "tool", tool_call_id: "functions.add:1", content: "3" },
      { role: "user", content: "And 2 + 2?" },
    ];
    const body = {
      messages,
      tools: TOOLS,
      tool_choice: { type: "function", function: { name: "add" } },
    };
    const { calls } = await forced(server, { ...body, parallel_tool_calls: false });
    deepEqual(calls.map((c) => c.id), ["functions.add:2"]);
    const streamed = await forcedStream(server, { ...body, parallel_tool_calls: false });
    deepEqual(streamed.calls.map((c) => c.id), ["functions.add:2"]);
  },
});

Deno.test({
  name: "a forced call cut off by max_tokens is no call and no crash, whole or streamed",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await qwenServer();
    for (const max_tokens of [5, 20, 35]) {
      const body = { tools: TOOLS, tool_choice: "required", max_tokens };
      const { choice, calls } = await forced(server, body);
      equal(choice.finish_reason, "length");
      deepEqual(calls, []);
      equal(choice.message.content, "", "no markup, not even a partial marker");
      const streamed = await forcedStream(server, body);
      equal(streamed.finish, "length");
      equal(streamed.content, "");
    }
  },
});

Deno.test("tool requests Shimmy cannot honour are 400s naming the field", async () => {
  await using server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [
      { tools: TOOLS, tool_choice: { type: "function", function: { name: "nope" } } },
      "tool_choice",
      /not in "tools"/,
    ],
    [{ tool_choice: "required" }, "tool_choice", /needs "tools"/],
    [{ tools: TOOLS, tool_choice: "sometimes" }, "tool_choice", /must be/],
    [{ tools: [{ type: "code_interpreter" }] }, "tools", /only function tools/],
    [{ tools: [{ type: "function", function: { name: "a b" } }] }, "tools", /letters/],
    [{ tools: [TOOLS[0], TOOLS[0]] }, "tools", /two functions/],
    [{ tools: {} }, "tools", /array/],
    [{ tools: TOOLS, parallel_tool_calls: "yes" }, "parallel_tool_calls", /boolean/],
    [{ reasoning_format: "verbose" }, "reasoning_format", /reasoning_format/],
    [{ functions: [{ name: "f" }] }, "functions", /use "tools"/],
    [
      {
        tools: [{
          type: "function",
          function: { name: "f", parameters: { not: {} }, strict: true },
        }],
        tool_choice: "required",
      },
      "tools",
      /not/,
    ],
    [
      { tools: [{ type: "function", function: { name: "f", parameters: { type: "array" } } }] },
      "tools",
      /must describe an object/,
    ],
    [
      { tools: [{ type: "function", function: { name: "f", strict: "yes" } }] },
      "tools",
      /strict must be a boolean/,
    ],
    [
      { tools: TOOLS, tool_choice: "required", response_format: { type: "json_object" } },
      "tool_choice",
      /cannot be combined/,
    ],
  ];
  for (const [body, param, message] of cases) {
    const response = await chat(server, body);
    const json = await response.json();
    equal(response.status, 400, JSON.stringify(body));
    equal(json.error.param, param, JSON.stringify(json));
    match(json.error.message, message);
  }
});

Deno.test({
  name:
    "tool_choice none and auto (lazy grammar waiting for a marker) answer text when the model " +
    "calls nothing",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
    for (
      const file of [undefined, "Qwen-Qwen2.5-7B-Instruct", "mistralai-Mistral-Nemo-Instruct-2407"]
    ) {
      server.ctx.settings.chatTemplate = file
        ? { template: Deno.readTextFileSync(join(TEMPLATES, `${file}.jinja`)), path: file }
        : undefined;
      for (const tool_choice of ["none", "auto"]) {
        for (const stream of [false, true]) {
          const body = { tools: TOOLS, tool_choice, max_tokens: 24 };
          if (!stream) {
            const { choice, calls } = await forced(server, body);
            deepEqual(calls, []);
            equal(typeof choice.message.content, "string");
            equal(choice.finish_reason, "length");
          } else {
            const streamed = await forcedStream(server, body);
            deepEqual(streamed.calls, []);
            equal(streamed.finish, "length");
            ok(streamed.content.length > 0);
          }
        }
      }
    }
  },
});

Deno.test({
  name: "reasoning goes to reasoning_content per reasoning_format, and enable_thinking is honoured",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await startServer({ load: { ctxSize: 8192, threads: 1 } });
    // The R1 template opens <think> in the prompt: everything the model writes is reasoning.
    const r1 = Deno.readTextFileSync(
      join(TEMPLATES, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"),
    );
    server.ctx.settings.chatTemplate = { template: r1, path: "r1.jinja" };
    const body = { max_tokens: 16, temperature: 0 };
    const auto = (await forced(server, body)).choice.message;
    ok(auto.reasoning_content.length > 0);
    equal(auto.content, "");
    const none = (await forced(server, { ...body, reasoning_format: "none" })).choice.message;
    equal(none.reasoning_content, undefined);
    equal(none.content, auto.reasoning_content, "the same text, left in the content");
    const streamed = await chat(server, { ...body, stream: true });
    const { events } = await readSse(streamed);
    let reasoning = "";
    let content = "";
    const finishes = [];
    for (const event of events.slice(0, -1)) {
      const choice = JSON.parse(event).choices[0];
      const delta = choice?.delta ?? {};
      reasoning += delta.reasoning_content ?? "";
      content += delta.content ?? "";
      if (choice) finishes.push(choice.finish_reason);
    }
    // null on every chunk but the last (a chunk's index once leaked into it: 0).
    deepEqual(finishes.slice(0, -1).filter((finish) => finish !== null), []);
    equal(finishes.at(-1), "length");
    equal(reasoning, auto.reasoning_content);
    equal(content, "");

    // Qwen 3 with enable_thinking false closes the think block in the prompt: plain content.
    const qwen3 = Deno.readTextFileSync(join(TEMPLATES, "Qwen-Qwen3-0.6B.jinja"));
    server.ctx.settings.chatTemplate = { template: qwen3, path: "qwen3.jinja" };
    const off = (await forced(server, {
      ...body,
      chat_template_kwargs: { enable_thinking: false },
    })).choice.message;
    equal(off.reasoning_content, undefined);
    ok(off.content.length > 0);
  },
});
