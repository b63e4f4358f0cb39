import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { betaTool } from "@anthropic-ai/sdk/helpers/beta/json-schema";
import { Sampler } from "../../src/ffi/sampler.ts";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { WEATHER_PARAMETERS } from "../fixtures/tool_fixtures.ts";
import { postJson, startServer, type TestServer } from "./harness.ts";

const MODEL = "tiny-f32";
const SOURCE = llamaSourceDir();
/** llama.cpp's copies of real chat templates (tests that need them are skipped without). */
const TEMPLATES = join(SOURCE ?? ".", "models", "templates");
const haveTemplates = SOURCE !== undefined;

const validateWeather = compileSchema(WEATHER_PARAMETERS);
const WEATHER_TOOL = {
  name: "get_weather",
  description: "Weather in a city",
  input_schema: WEATHER_PARAMETERS as unknown as Anthropic.Tool.InputSchema,
};

/** Serves tiny-f32, with a real chat template from llama.cpp's copies when given. */
async function serve(template?: string, apiKey?: string): Promise<TestServer> {
  const server = await startServer({
    load: { ctxSize: 4096, threads: 1 },
    ...(apiKey ? { settings: { apiKey } } : {}),
  });
  if (template) {
    const file = join(TEMPLATES, `${template}.jinja`);
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
  }
  return server;
}

function client(server: TestServer, options: Record<string, unknown> = {}): Anthropic {
  return new Anthropic({ baseURL: server.url, apiKey: "unused", maxRetries: 0, ...options });
}

/** The text of a message's text blocks. */
function textOf(message: Anthropic.Message): string {
  return message.content.map((b) => b.type === "text" ? b.text : "").join("");
}

/** Reads a raw SSE body into `[event name, data object]` pairs, checking each names its type. */
async function readEvents(response: Response): Promise<[string, Record<string, unknown>][]> {
  const raw = await response.text();
  return raw.split("\n\n").filter((block) => block !== "").map((block) => {
    const [eventLine, dataLine, ...rest] = block.split("\n");
    equal(rest.length, 0, block);
    match(eventLine!, /^event: \w+$/);
    match(dataLine!, /^data: /);
    const name = eventLine!.slice("event: ".length);
    const data = JSON.parse(dataLine!.slice("data: ".length));
    equal(data.type, name, "each event's data names its type");
    return [name, data];
  });
}

/** The error body an SDK error carries. */
function bodyOf(error: unknown): { type: string; error: { type: string; message: string } } {
  ok(error instanceof Anthropic.APIError, String(error));
  return error.error as { type: string; error: { type: string; message: string } };
}

Deno.test("messages.create() answers with text, real usage and a stop reason", async () => {
  await using server = await serve();
  const message = await client(server).messages.create({
    model: MODEL,
    max_tokens: 8,
    system: [{ type: "text", text: "You are terse." }],
    messages: [{ role: "user", content: [{ type: "text", text: "Hello there" }] }],
  });
  equal(message.type, "message");
  equal(message.role, "assistant");
  equal(message.model, MODEL);
  match(message.id, /^msg_/);
  equal(message.content[0]?.type, "text");
  ok(textOf(message).length > 0);
  ok(message.usage.input_tokens > 0);
  equal(message.usage.output_tokens, 8);
  equal(message.stop_reason, "max_tokens");
  equal(message.stop_sequence, null);

  // Also at /messages, without /v1.
  const bare = await postJson(`${server.url}/messages`, {
    model: MODEL,
    max_tokens: 2,
    messages: [{ role: "user", content: "Hi" }],
  });
  equal(bare.status, 200);
  equal((await bare.json()).usage.output_tokens, 2);
});

Deno.test("messages.stream() sends Anthropic's event sequence and its deltas make the message", async () => {
  await using server = await serve();
  const body = {
    model: MODEL,
    max_tokens: 12,
    temperature: 0,
    messages: [{ role: "user" as const, content: "Tell me a story" }],
  };
  const stream = client(server).messages.stream(body);
  let streamed = "";
  let startUsage = -1;
  stream.on("streamEvent", (event) => {
    if (event.type === "message_start") startUsage = event.message.usage.input_tokens;
  });
  stream.on("text", (delta) => streamed += delta);
  const final = await stream.finalMessage();
  equal(textOf(final), streamed);
  ok(streamed.length > 0);
  equal(final.stop_reason, "max_tokens");
  equal(final.usage.output_tokens, 12);
  ok(final.usage.input_tokens > 0, "message_delta carries the prompt's size");
  equal(
    startUsage,
    final.usage.input_tokens + (final.usage.cache_read_input_tokens ?? 0),
    "message_start carries the prompt's size",
  );

  // The same request, not streamed (greedy): the same text.
  const whole = await client(server).messages.create(body);
  equal(textOf(whole), streamed);

  // On the wire: `event:` lines, in Anthropic's order.
  const response = await postJson(`${server.url}/v1/messages`, { ...body, stream: true });
  match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events = await readEvents(response);
  const names = events.map(([name]) => name);
  deepEqual(names.slice(0, 3), ["message_start", "ping", "content_block_start"]);
  deepEqual(names.slice(-3), ["content_block_stop", "message_delta", "message_stop"]);
  ok(names.slice(3, -3).every((n) => n === "content_block_delta"));
  const start = events[0]![1].message as Record<string, unknown>;
  deepEqual(start.content, []);
  equal(start.stop_reason, null);
  deepEqual(events[2]![1], {
    type: "content_block_start",
    index: 0,
    content_block: { type: "text", text: "" },
  });
  const text = events.slice(3, -3).map(([, data]) => {
    const delta = data.delta as { type: string; text: string };
    equal(delta.type, "text_delta");
    return delta.text;
  }).join("");
  equal(text, streamed);
  const end = events.at(-2)![1];
  deepEqual(end.delta, { stop_reason: "max_tokens", stop_sequence: null });
  equal((end.usage as { output_tokens: number }).output_tokens, 12);
});

Deno.test("stop_sequences end the answer with stop_reason stop_sequence", async () => {
  await using server = await serve();
  const anthropic = client(server);
  const body = {
    model: MODEL,
    max_tokens: 24,
    temperature: 0,
    messages: [{ role: "user" as const, content: "Count for me" }],
  };
  const full = textOf(await anthropic.messages.create(body));
  // A piece of the greedy answer, past its start: the answer stops just before it.
  const sequence = full.slice(4, 7);
  ok(sequence.trim().length > 0, JSON.stringify(full));
  const expected = full.slice(0, full.indexOf(sequence));
  const stopped = await anthropic.messages.create({ ...body, stop_sequences: [sequence] });
  equal(stopped.stop_reason, "stop_sequence");
  equal(stopped.stop_sequence, sequence);
  equal(textOf(stopped), expected);

  const streamed = await anthropic.messages.stream({ ...body, stop_sequences: [sequence] })
    .finalMessage();
  equal(streamed.stop_reason, "stop_sequence");
  equal(streamed.stop_sequence, sequence);
  equal(textOf(streamed), expected);
});

Deno.test({
  name: "a forced tool gives a tool_use block, and its tool_result is taken in the next turn",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await serve("Qwen-Qwen2.5-7B-Instruct");
    const anthropic = client(server);
    const question = { role: "user" as const, content: "Weather in Paris?" };
    const request = {
      model: MODEL,
      max_tokens: 300,
      tools: [WEATHER_TOOL],
      tool_choice: { type: "tool" as const, name: "get_weather" },
      messages: [question],
      // Greedy, so the test is repeatable: sampled random weights can pick byte tokens that
      // spell overlong UTF-8, which llama.cpp's grammar decodes as characters the schema allows.
      temperature: 0,
    };
    const message = await anthropic.messages.create(request);
    equal(message.stop_reason, "tool_use");
    const uses = message.content.filter((b) => b.type === "tool_use");
    ok(uses.length >= 1, JSON.stringify(message.content));
    const use = uses[0]!;
    match(use.id, /^toolu_/);
    equal(use.name, "get_weather");
    ok(validateWeather(use.input), JSON.stringify(use.input));

    // Streamed, one call: input_json_delta pieces join into the same kind of input.
    const stream = anthropic.messages.stream({
      ...request,
      tool_choice: { ...request.tool_choice, disable_parallel_tool_use: true },
    });
    let json = "";
    stream.on("inputJson", (partial) => json += partial);
    const streamed = await stream.finalMessage();
    equal(streamed.stop_reason, "tool_use");
    const streamedUses = streamed.content.filter((b) => b.type === "tool_use");
    equal(streamedUses.length, 1);
    match(streamedUses[0]!.id, /^toolu_/);
    ok(validateWeather(streamedUses[0]!.input));
    deepEqual(JSON.parse(json), streamedUses[0]!.input);

    // The next turn: the call and its result reach the template as OpenAI's tool messages
    // would, so the prompt has exactly the OpenAI conversation's size.
    const next = {
      model: MODEL,
      tools: [WEATHER_TOOL],
      messages: [
        question,
        { role: "assistant" as const, content: [use] },
        {
          role: "user" as const,
          content: [{ type: "tool_result" as const, tool_use_id: use.id, content: "Sunny, 25 C" }],
        },
      ],
    };
    const answer = await anthropic.messages.create({ ...next, max_tokens: 4 });
    equal(answer.usage.output_tokens, 4);
    const counted = await anthropic.messages.countTokens(next);
    equal(counted.input_tokens, answer.usage.input_tokens + answer.usage.cache_read_input_tokens!);
    const openai = await postJson(`${server.url}/v1/chat/completions`, {
      model: MODEL,
      max_tokens: 1,
      tools: [{
        type: "function",
        function: {
          name: "get_weather",
          description: WEATHER_TOOL.description,
          parameters: WEATHER_PARAMETERS,
        },
      }],
      messages: [
        question,
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: use.id,
            type: "function",
            function: { name: "get_weather", arguments: JSON.stringify(use.input) },
          }],
        },
        { role: "tool", tool_call_id: use.id, content: "Sunny, 25 C" },
      ],
    });
    equal(counted.input_tokens, (await openai.json()).usage.prompt_tokens);
  },
});

Deno.test({
  name:
    "the SDK's tool runner goes on without a thread, which Shimmy refuses as Anthropic's API does",
  ignore: !haveTemplates,
  fn: async () => {
    await using server = await serve("Qwen-Qwen2.5-7B-Instruct");
    const bodies: Record<string, unknown>[] = [];
    const anthropic = client(server, {
      fetch: (url: string, init: RequestInit) => {
        bodies.push(JSON.parse(String(init.body)));
        return fetch(url, init);
      },
    });
    const inputs: unknown[] = [];
    const tool = betaTool({
      name: "get_weather",
      description: "Weather in a city",
      inputSchema: { type: "object", properties: { city: { type: "string", maxLength: 8 } } },
      run: (input) => {
        inputs.push(input);
        return "Sunny, 25 C";
      },
    });
    const final = await anthropic.beta.messages.toolRunner({
      model: MODEL,
      max_tokens: 100,
      max_iterations: 2,
      // Greedy, so that the calls are repeatable (the runner's types leave sampling out).
      ...({ temperature: 0 } as object),
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [tool],
      tool_choice: { type: "tool", name: "get_weather", disable_parallel_tool_use: true },
    }).runUntilDone();
    // Its first request asked for a thread and was refused; it sent the turn again without.
    deepEqual(bodies[0]!.thread, { type: "create" });
    equal(bodies[1]!.thread, undefined);
    equal(inputs.length, 2, "the tool ran in each of the two iterations");
    equal(final.stop_reason, "tool_use");
    const refused = await postJson(`${server.url}/v1/messages`, { ...bodies[0], max_tokens: 1 });
    equal(refused.status, 400);
    deepEqual((await refused.json()).error.details, {
      error_code: "thread_unsupported_request",
      unsupported: ["thread"],
    });
  },
});

Deno.test("the SDK's models.list() and models.retrieve() read the models in Anthropic's shape", async () => {
  await using server = await serve();
  const anthropic = client(server);
  const listed = [];
  for await (const model of anthropic.models.list()) listed.push(model);
  equal(listed.length, 1);
  equal(listed[0]!.id, MODEL);
  equal(listed[0]!.type, "model");
  equal(listed[0]!.display_name, MODEL);
  ok(!Number.isNaN(Date.parse(listed[0]!.created_at)));
  equal((await anthropic.models.retrieve(MODEL)).display_name, MODEL);
});

Deno.test("output_config.format constrains the answer to its JSON schema", async () => {
  await using server = await serve();
  for (const seed of [1, 2]) {
    // This SDK's types leave out the sampling fields; the API still takes them.
    const request = {
      model: MODEL,
      max_tokens: 200,
      temperature: 1,
      top_k: 40 + seed,
      messages: [{ role: "user" as const, content: "Weather in Paris, as JSON" }],
      output_config: {
        format: {
          type: "json_schema" as const,
          schema: WEATHER_PARAMETERS as Record<string, unknown>,
        },
      },
    };
    const message = await client(server).messages.create(request);
    equal(message.stop_reason, "end_turn");
    const text = textOf(message);
    ok(validateWeather(JSON.parse(text)), text);
  }
});

Deno.test("count_tokens counts the prompt that messages.create() evaluates", async () => {
  await using server = await serve();
  const anthropic = client(server);
  const conversation = {
    model: MODEL,
    system: "Be brief.",
    messages: [
      { role: "user" as const, content: "What is two plus two?" },
      { role: "assistant" as const, content: "Four." },
      { role: "user" as const, content: "And three plus three?" },
    ],
  };
  const counted = await anthropic.messages.countTokens(conversation);
  ok(counted.input_tokens > 10);
  const message = await anthropic.messages.create({ ...conversation, max_tokens: 2 });
  equal(
    message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0),
    counted.input_tokens,
  );
  const longer = await anthropic.messages.countTokens({
    ...conversation,
    system: "Be brief, and answer in French.",
  });
  ok(longer.input_tokens > counted.input_tokens);
});

Deno.test("with --api-key, x-api-key and Authorization: Bearer are accepted, others refused", async () => {
  await using server = await serve(undefined, "sekrit");
  const body = {
    model: MODEL,
    max_tokens: 1,
    messages: [{ role: "user" as const, content: "Hi" }],
  };
  // This SDK sends its apiKey as a Bearer token; x-api-key goes as a header of its own.
  const viaXApiKey = await client(server, {
    apiKey: null,
    defaultHeaders: { "x-api-key": "sekrit" },
  }).messages.create(body);
  equal(viaXApiKey.usage.output_tokens, 1);
  const raw = await postJson(`${server.url}/v1/messages`, body, { "x-api-key": "sekrit" });
  equal(raw.status, 200);
  equal((await raw.json()).usage.output_tokens, 1);
  const viaBearer = await client(server, { apiKey: "sekrit" }).messages.create(body);
  equal(viaBearer.usage.output_tokens, 1);

  const error = await client(server, { apiKey: "wrong" }).messages.create(body).then(
    () => undefined,
    (e) => e,
  );
  ok(error instanceof Anthropic.AuthenticationError, String(error));
  equal(error.status, 401);
  deepEqual(Object.keys(bodyOf(error)), ["type", "error"]);
  equal(bodyOf(error).error.type, "authentication_error");
  for (const headers of [{}, { "x-api-key": "wrong" }] as Record<string, string>[]) {
    const refused = await postJson(`${server.url}/v1/messages`, body, headers);
    equal(refused.status, 401);
    equal((await refused.json()).error.type, "authentication_error");
  }
});

Deno.test("errors on the Messages routes have Anthropic's shape and status", async () => {
  await using server = await serve();
  const post = async (path: string, body: Record<string, unknown>) => {
    const response = await postJson(`${server.url}${path}`, body);
    const json = await response.json();
    deepEqual(Object.keys(json), ["type", "error"]);
    equal(json.type, "error");
    deepEqual(Object.keys(json.error), ["type", "message"]);
    return { status: response.status, type: json.error.type, message: json.error.message };
  };
  const hi = [{ role: "user", content: "Hi" }];
  const missing = await post("/v1/messages", { model: MODEL, messages: hi });
  deepEqual([missing.status, missing.type], [400, "invalid_request_error"]);
  match(missing.message, /max_tokens/);
  const image = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: [{
      role: "user",
      content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "" } }],
    }],
  });
  deepEqual([image.status, image.type], [400, "invalid_request_error"]);
  match(image.message, /"image" block/);
  const unknownField = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: hi,
    context_management: { edits: [] },
  });
  equal(unknownField.status, 400);
  match(unknownField.message, /context_management/);
  const effort = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: hi,
    output_config: { effort: "extreme" },
  });
  equal(effort.status, 400);
  match(effort.message, /effort/);
  const serverTool = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: hi,
    tools: [{ type: "web_search_20250305", name: "web_search" }],
  });
  equal(serverTool.status, 400);
  match(serverTool.message, /server tool/);
  const badThinking = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 2000,
    messages: hi,
    thinking: { type: "enabled", budget_tokens: 10 },
  });
  equal(badThinking.status, 400);
  match(badThinking.message, /budget_tokens/);
  // A prefill is continued (prefill_test.ts); two assistant messages at the end cannot be.
  const twoAssistants = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: [...hi, { role: "assistant", content: "Well," }, {
      role: "assistant",
      content: "So,",
    }],
  });
  equal(twoAssistants.status, 400);
  match(twoAssistants.message, /two assistant messages/);
  // 50,000 tool results in one message: the message limit's 400, not a stack overflow's 500
  // (130,000 are now refused sooner, by the body's count of strings, arrays and objects).
  const results = await post("/v1/messages", {
    model: MODEL,
    max_tokens: 1,
    messages: [{
      role: "user",
      content: Array.from({ length: 50_000 }, () => ({ type: "tool_result", tool_use_id: "t" })),
    }],
  });
  deepEqual([results.status, results.type], [400, "invalid_request_error"]);
  match(results.message, /messages/);
  const countMissingModel = await post("/v1/messages/count_tokens", { messages: hi });
  equal(countMissingModel.status, 400);
  const noRoute = await post("/v1/messages/batches", {});
  deepEqual([noRoute.status, noRoute.type], [404, "not_found_error"]);

  // The SDK reads them as its typed errors.
  const error = await client(server).messages.create({
    model: "no-such-model",
    max_tokens: 1,
    messages: [{ role: "user", content: "Hi" }],
  }).then(() => undefined, (e) => e);
  ok(error instanceof Anthropic.NotFoundError, String(error));
  equal(bodyOf(error).error.type, "not_found_error");
  match(bodyOf(error).error.message, /no-such-model/);
  await rejects(
    client(server).messages.countTokens({
      model: "no-such-model",
      messages: [{ role: "user", content: "Hi" }],
    }),
    Anthropic.NotFoundError,
  );

  // The OpenAI routes keep OpenAI's shape.
  const openai = await postJson(`${server.url}/v1/chat/completions`, { model: MODEL });
  equal(openai.status, 400);
  equal((await openai.json()).error.type, "invalid_request_error");
});

Deno.test("a stream that fails after it began ends with Anthropic's error event", async () => {
  await using server = await serve();
  const sample = Sampler.prototype.sample;
  Sampler.prototype.sample = () => {
    throw new RangeError("injected fault");
  };
  try {
    const response = await postJson(`${server.url}/v1/messages`, {
      model: MODEL,
      max_tokens: 4,
      stream: true,
      messages: [{ role: "user", content: "Hi" }],
    });
    equal(response.status, 200);
    const events = await readEvents(response);
    deepEqual(events.map(([name]) => name), ["message_start", "ping", "error"]);
    const error = events[2]![1];
    deepEqual(Object.keys(error), ["type", "error"]);
    equal((error.error as { type: string }).type, "api_error");
    match((error.error as { message: string }).message, /injected fault/);
  } finally {
    Sampler.prototype.sample = sample;
  }
});

Deno.test({
  name: "a reasoning template's thinking comes back as thinking blocks, whole and streamed",
  ignore: !haveTemplates,
  fn: async () => {
    // The R1 template opens <think> in the prompt: everything the model writes is thinking.
    await using server = await serve("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B");
    const anthropic = client(server);
    const body = {
      model: MODEL,
      max_tokens: 16,
      temperature: 0,
      messages: [{ role: "user" as const, content: "Think about it" }],
    };
    const message = await anthropic.messages.create(body);
    equal(message.content.length, 1);
    const block = message.content[0]!;
    ok(block.type === "thinking" && block.thinking.length > 0, JSON.stringify(block));
    let thinking = "";
    const stream = anthropic.messages.stream(body);
    stream.on("thinking", (delta) => thinking += delta);
    const streamed = await stream.finalMessage();
    deepEqual(streamed.content, message.content);
    equal(thinking, block.thinking);

    // display "omitted": the block is there, its text is not.
    const omitted = await anthropic.messages.create({
      ...body,
      thinking: { type: "adaptive", display: "omitted" },
    });
    deepEqual(omitted.content, [{ type: "thinking", thinking: "", signature: "" }]);

    // Qwen 3 closes an empty think block in the prompt when thinking is off; "thinking" turns
    // it off or on over the server's --chat-template-kwargs.
    const qwen3 = join(TEMPLATES, "Qwen-Qwen3-0.6B.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(qwen3), path: qwen3 };
    server.ctx.settings.chatTemplateKwargs = { enable_thinking: false };
    const count = async (thinking?: Anthropic.ThinkingConfigParam) =>
      (await anthropic.messages.countTokens({
        model: MODEL,
        messages: body.messages,
        ...(thinking ? { thinking } : {}),
      })).input_tokens;
    const off = await count();
    equal(await count({ type: "disabled" }), off);
    const on = await count({ type: "enabled", budget_tokens: 1024 });
    ok(on < off, `${on} < ${off}`);
    equal(await count({ type: "adaptive" }), on);
    server.ctx.settings.chatTemplateKwargs = undefined;
    equal(await count(), on);
    equal(await count({ type: "disabled" }), off);
    const plain = await anthropic.messages.create({ ...body, thinking: { type: "disabled" } });
    equal(plain.content[0]?.type, "text");
  },
});

Deno.test("Claude Code's per-request billing stamp does not defeat the prompt cache", async () => {
  await using server = await serve();
  const instructions = "You are a careful coding assistant. ".repeat(30);
  const stamped = (cch: string) =>
    `x-anthropic-billing-header: cc_version=2.1.101.e51; cc_entrypoint=cli; cch=${cch};` +
    instructions;
  const ask = async (system: unknown) => {
    const response = await postJson(`${server.url}/v1/messages`, {
      model: MODEL,
      max_tokens: 1,
      system,
      messages: [{ role: "user", content: "Hi" }],
    });
    equal(response.status, 200);
    return (await response.json()).usage;
  };
  await ask(stamped("a5145"));
  // Claude Code sends its system prompt as blocks; each request has another stamp.
  for (const system of [stamped("b7c21"), [{ type: "text", text: stamped("c0d9e") }]]) {
    const usage = await ask(system);
    const total = usage.input_tokens + usage.cache_read_input_tokens;
    ok(
      usage.cache_read_input_tokens >= total - 2,
      `the prompt came from the cache: ${JSON.stringify(usage)}`,
    );
  }
  // A system prompt that only looks like it is left alone.
  const other = await ask(`x-other-header: cch=a5145;${instructions}`);
  ok(other.input_tokens > 0);
});
