import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import OpenAI from "openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { WEATHER_PARAMETERS } from "../fixtures/tool_fixtures.ts";
import { postJson, startServer, type TestServer, waitFor } from "./harness.ts";
import { ResponseStore } from "../../src/server/response_store.ts";
import { chatMessagesOf } from "../../src/server/responses_items.ts";

const MODEL = "tiny-f32";
const validate = compileSchema(WEATHER_PARAMETERS);
const WEATHER_TOOL = {
  type: "function" as const,
  name: "get_weather",
  description: "Weather in a city",
  parameters: WEATHER_PARAMETERS as unknown as Record<string, unknown>,
  strict: true,
};

/** Serves tiny-f32 with Qwen 2.5's template (Hermes calls) when llama.cpp's copy is at hand. */
async function serve(options: { decodeThread?: boolean } = {}): Promise<TestServer> {
  const server = await startServer({
    load: { ctxSize: 4096, threads: 1, parallel: 2, ...options },
  });
  const source = llamaSourceDir();
  if (source) {
    const file = join(source, "models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
  } // else the model's own template: the generic JSON format
  return server;
}

function client(server: TestServer): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
}

Deno.test("responses.create() answers with a completed message, usage and the echoed settings", async () => {
  await using server = await serve();
  const response = await client(server).responses.create({
    model: MODEL,
    instructions: "Be brief.",
    input: "Say hi",
    max_output_tokens: 12,
    temperature: 0,
    metadata: { run: "1" },
  });
  match(response.id, /^resp_[0-9a-f]{48}$/);
  equal(response.object, "response");
  equal(response.model, MODEL);
  ok(response.status === "completed" || response.status === "incomplete");
  equal(response.output.length, 1);
  const message = response.output[0]!;
  equal(message.type, "message");
  if (message.type !== "message") return;
  match(message.id, /^msg_/);
  equal(message.role, "assistant");
  const part = message.content[0]!;
  equal(part.type, "output_text");
  if (part.type !== "output_text") return;
  deepEqual(part.annotations, []);
  equal(response.output_text, part.text);
  const usage = response.usage!;
  ok(usage.input_tokens > 0 && usage.output_tokens > 0);
  equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);
  equal(usage.output_tokens_details.reasoning_tokens, 0);
  equal(typeof usage.input_tokens_details.cached_tokens, "number");
  equal(response.instructions, "Be brief.");
  equal(response.max_output_tokens, 12);
  equal(response.temperature, 0);
  deepEqual(response.metadata, { run: "1" });
  deepEqual(response.text?.format, { type: "text" });
  equal((response as unknown as { store: boolean }).store, true);
  equal(response.previous_response_id, null);
});

/** One SSE event of a Responses stream: its `event:` name and its data. */
interface NamedEvent {
  name: string;
  data: Record<string, unknown> & { type: string; sequence_number: number };
}

/** Reads a Responses stream, checking that each event's name is its data's `type`. */
async function readEvents(response: Response): Promise<NamedEvent[]> {
  const raw = await response.text();
  return raw.split("\n\n").filter((block) => block !== "").map((block) => {
    const [event, data, ...rest] = block.split("\n");
    deepEqual(rest, [], block);
    match(event!, /^event: /, block);
    match(data!, /^data: /, block);
    const parsed = JSON.parse(data!.slice("data: ".length));
    equal(parsed.type, event!.slice("event: ".length));
    return { name: parsed.type, data: parsed };
  });
}

Deno.test("a streamed response sends typed events in OpenAI's order, and its deltas make the text", async () => {
  await using server = await serve();
  const response = await postJson(`${server.url}/v1/responses`, {
    model: MODEL,
    input: [{ role: "user", content: [{ type: "input_text", text: "Say hi" }] }],
    max_output_tokens: 8,
    temperature: 0,
    stream: true,
  });
  equal(response.status, 200);
  match(response.headers.get("content-type")!, /^text\/event-stream/);
  const events = await readEvents(response);
  deepEqual(events.map((e) => e.data.sequence_number), events.map((_, i) => i));
  const names = events.map((e) => e.name);
  const deltas = events.filter((e) => e.name === "response.output_text.delta");
  ok(deltas.length > 0);
  deepEqual(names, [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    ...deltas.map(() => "response.output_text.delta"),
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    names.at(-1) === "response.completed" ? "response.completed" : "response.incomplete",
  ]);
  const text = deltas.map((e) => e.data.delta).join("");
  const item = events[2]!.data.item as { id: string };
  for (const delta of deltas) {
    equal(delta.data.item_id, item.id);
    equal(delta.data.output_index, 0);
    equal(delta.data.content_index, 0);
  }
  equal(events.at(-4)!.data.text, text);
  const final = events.at(-1)!.data.response as OpenAI.Responses.Response;
  equal(final.output_text, text);
  equal(final.status, names.at(-1) === "response.completed" ? "completed" : "incomplete");
  ok(final.usage!.output_tokens > 0);

  // The SDK's stream helper accumulates the same events into the same response.
  const stream = client(server).responses.stream({
    model: MODEL,
    input: "Say hi",
    max_output_tokens: 8,
    temperature: 0,
  });
  let joined = "";
  stream.on("response.output_text.delta", (event) => joined += event.delta);
  const streamed = await stream.finalResponse();
  equal(streamed.output_text, joined);
  ok(joined.length > 0);
  equal(streamed.output[0]?.type, "message");
});

Deno.test("a small max_output_tokens ends the response incomplete, streamed or not", async () => {
  await using server = await serve();
  const openai = client(server);
  const response = await openai.responses.create({
    model: MODEL,
    input: "Tell me a long story",
    max_output_tokens: 2,
    temperature: 0,
  });
  equal(response.status, "incomplete");
  deepEqual(response.incomplete_details, { reason: "max_output_tokens" });
  equal(response.usage!.output_tokens, 2);
  equal((response.output[0] as OpenAI.Responses.ResponseOutputMessage).status, "incomplete");

  const events: string[] = [];
  const stream = openai.responses.stream({
    model: MODEL,
    input: "Tell me a long story",
    max_output_tokens: 2,
    temperature: 0,
  });
  for await (const event of stream) events.push(event.type);
  equal(events.at(-1), "response.incomplete");
  const final = await stream.finalResponse();
  equal(final.status, "incomplete");
  equal(final.output_text, response.output_text);
});

Deno.test("a forced function call comes back as a function_call item, and its output continues the stored conversation", async () => {
  await using server = await serve();
  const openai = client(server);
  const asked = {
    model: MODEL,
    instructions: "Use the tools.",
    input: "Weather in Paris?",
    tools: [WEATHER_TOOL],
    tool_choice: { type: "function" as const, name: "get_weather" },
    parallel_tool_calls: false,
    max_output_tokens: 300,
    // Greedy, so the test is repeatable: sampled random weights can pick byte tokens that spell
    // overlong UTF-8, which llama.cpp's grammar decodes as characters the schema allows.
    temperature: 0,
  };
  const first = await openai.responses.create(asked);
  equal(first.status, "completed");
  equal(first.output.length, 1);
  const call = first.output[0]!;
  equal(call.type, "function_call");
  if (call.type !== "function_call") return;
  match(call.id!, /^fc_/);
  match(call.call_id, /^call_/);
  equal(call.name, "get_weather");
  equal(call.status, "completed");
  ok(validate(JSON.parse(call.arguments)), call.arguments);
  deepEqual(first.tool_choice, { type: "function", name: "get_weather" });
  equal(first.tools[0]?.type, "function");

  // The tool's answer, continuing the stored response.
  const output = { type: "function_call_output" as const, call_id: call.call_id, output: "21 C" };
  const second = await openai.responses.create({
    model: MODEL,
    instructions: "Use the tools.",
    previous_response_id: first.id,
    input: [output],
    tools: [WEATHER_TOOL],
    tool_choice: "none",
    max_output_tokens: 8,
    temperature: 0,
  });
  equal(second.previous_response_id, first.id);
  equal(second.output[0]?.type, "message");
  // The same conversation sent whole renders to the same prompt.
  const whole = await openai.responses.create({
    model: MODEL,
    instructions: "Use the tools.",
    input: [
      { role: "user", content: "Weather in Paris?" },
      { type: "function_call", call_id: call.call_id, name: call.name, arguments: call.arguments },
      output,
    ],
    tools: [WEATHER_TOOL],
    tool_choice: "none",
    max_output_tokens: 8,
    temperature: 0,
    store: false,
  });
  equal(second.usage!.input_tokens, whole.usage!.input_tokens);
  equal(second.output_text, whole.output_text);

  // Streamed: the argument deltas join into the call's arguments.
  const events = await readEvents(
    await postJson(`${server.url}/v1/responses`, { ...asked, stream: true }),
  );
  const added = events.find((e) => e.name === "response.output_item.added")!;
  equal((added.data.item as { type: string }).type, "function_call");
  const args = events.filter((e) => e.name === "response.function_call_arguments.delta")
    .map((e) => e.data.delta).join("");
  const done = events.find((e) => e.name === "response.function_call_arguments.done")!;
  equal(done.data.arguments, args);
  equal(done.data.name, "get_weather");
  ok(validate(JSON.parse(args)), args);
  const final = events.at(-1)!;
  equal(final.name, "response.completed");
  equal((final.data.response as { output: { arguments: string }[] }).output[0]?.arguments, args);
});

Deno.test("a failure after the stream began ends it with an error event and response.failed", async () => {
  // The failure is injected into the decodes made through the event loop.
  await using server = await serve({ decodeThread: false });
  const asked = { model: MODEL, input: "Tell me a long story", temperature: 0 };
  await client(server).responses.create({ ...asked, max_output_tokens: 1 }); // loads the model
  // The prompt decodes, the first token too, and then the backend fails.
  const context = new Map(server.ctx.registry.loaded()).get(MODEL)!.context as unknown as {
    decode: (batch: unknown) => Promise<void>;
  };
  const decode = context.decode.bind(context);
  let calls = 0;
  context.decode = (batch) =>
    ++calls > 2 ? Promise.reject(new Error("device lost")) : decode(batch);
  const response = await postJson(`${server.url}/v1/responses`, {
    ...asked,
    max_output_tokens: 50,
    stream: true,
  });
  equal(response.status, 200);
  const events = await readEvents(response);
  deepEqual(events.slice(0, 2).map((e) => e.name), ["response.created", "response.in_progress"]);
  deepEqual(events.slice(-2).map((e) => e.name), ["error", "response.failed"]);
  deepEqual(events.map((e) => e.data.sequence_number), events.map((_, i) => i));
  const error = events.at(-2)!.data;
  equal(error.code, "backend_error");
  match(error.message as string, /device lost/);
  const failed = events.at(-1)!.data.response as OpenAI.Responses.Response;
  equal(failed.status, "failed");
  deepEqual(failed.error, { code: "backend_error", message: error.message });
  await rejects(client(server).responses.retrieve(failed.id), OpenAI.NotFoundError);
});

Deno.test("stored responses can be retrieved and deleted; store false keeps one out", async () => {
  await using server = await serve();
  const openai = client(server);
  const created = await openai.responses.create({
    model: MODEL,
    input: "Hi",
    max_output_tokens: 4,
  });
  const retrieved = await openai.responses.retrieve(created.id);
  deepEqual(retrieved, created);
  // An item_reference to a stored output item stands for that item.
  const message = created.output[0] as OpenAI.Responses.ResponseOutputMessage;
  const [referenced, whole] = await Promise.all(
    [{ type: "item_reference" as const, id: message.id }, message].map((item) =>
      openai.responses.create({
        model: MODEL,
        input: [{ role: "user", content: "Hi" }, item, { role: "user", content: "And?" }],
        max_output_tokens: 4,
        temperature: 0,
        store: false,
      })
    ),
  );
  equal(referenced!.usage!.input_tokens, whole!.usage!.input_tokens);
  equal(referenced!.output_text, whole!.output_text);
  const deleted = await (await fetch(`${server.url}/v1/responses/${created.id}`, {
    method: "DELETE",
  })).json();
  deepEqual(deleted, { id: created.id, object: "response.deleted", deleted: true });
  await rejects(openai.responses.retrieve(created.id), OpenAI.NotFoundError);
  await rejects(openai.responses.delete(created.id), OpenAI.NotFoundError);

  const unstored = await openai.responses.create({
    model: MODEL,
    input: "Hi",
    max_output_tokens: 4,
    store: false,
  });
  await rejects(openai.responses.retrieve(unstored.id), OpenAI.NotFoundError);
  const response = await postJson(`${server.url}/responses`, {
    model: MODEL,
    input: "Again",
    previous_response_id: unstored.id,
  });
  equal(response.status, 404);
  const body = await response.json();
  equal(body.error.code, "previous_response_not_found");
  equal(body.error.param, "previous_response_id");
  equal(body.error.type, "not_found_error");
});

Deno.test("inputItems.list() pages through a stored response's input items, which get ids", async () => {
  await using server = await serve();
  const openai = client(server);
  const input = [
    { role: "user" as const, content: "One" },
    { role: "assistant" as const, content: "Two" },
    { role: "user" as const, content: [{ type: "input_text" as const, text: "Three" }] },
  ];
  const created = await openai.responses.create({ model: MODEL, input, max_output_tokens: 2 });
  const page = await openai.responses.inputItems.list(created.id);
  const texts = (items: typeof page.data) =>
    items.map((item) => {
      const message = item as { role: string; content: { type: string; text: string }[] };
      return `${message.role}:${message.content.map((c) => `${c.type}=${c.text}`).join()}`;
    });
  // Newest first by default.
  deepEqual(texts(page.data), [
    "user:input_text=Three",
    "assistant:output_text=Two",
    "user:input_text=One",
  ]);
  ok(page.data.every((item) => /^msg_[0-9a-f]{48}$/.test(item.id)), JSON.stringify(page.data));
  equal(page.has_more, false);
  const ids = page.data.map((item) => item.id);

  // Pages of one, oldest first: the SDK follows `after` to the end.
  const seen: string[] = [];
  for await (
    const item of openai.responses.inputItems.list(created.id, { order: "asc", limit: 1 })
  ) seen.push(item.id);
  deepEqual(seen, [...ids].reverse());
  const middle = await (await fetch(
    `${server.url}/v1/responses/${created.id}/input_items?order=asc&after=${ids[2]}&before=${
      ids[0]
    }`,
  )).json();
  deepEqual(middle.data.map((item: { id: string }) => item.id), [ids[1]]);
  equal(middle.first_id, ids[1]);
  equal(middle.has_more, false);

  // The ids stand for their items in a later request.
  const again = await openai.responses.create({
    model: MODEL,
    input: [{ type: "item_reference", id: ids[2]! }],
    max_output_tokens: 2,
    temperature: 0,
    store: false,
  });
  const direct = await openai.responses.create({
    model: MODEL,
    input: "One",
    max_output_tokens: 2,
    temperature: 0,
    store: false,
  });
  equal(again.usage!.input_tokens, direct.usage!.input_tokens);

  const status = async (query: string) => {
    const response = await fetch(`${server.url}/v1/responses/${created.id}/input_items${query}`);
    await response.body?.cancel();
    return response.status;
  };
  deepEqual(
    await Promise.all(
      ["?limit=0", "?limit=101", "?order=up", "?after=msg_x", "?page=2"].map(status),
    ),
    [400, 400, 400, 400, 400],
  );
  await rejects(openai.responses.inputItems.list("resp_unknown"), OpenAI.NotFoundError);
});

Deno.test("background responses run without a client: retrieve shows them, their events resume after a sequence number, cancel stops them", async () => {
  await using server = await serve();
  const openai = client(server);
  const busy = () => server.ctx.registry.loaded().get(MODEL)?.scheduler.stats().busySlots ?? -1;
  const long = { model: MODEL, input: "Go on", max_output_tokens: 2000, temperature: 0 };
  const created = await openai.responses.create({ ...long, background: true });
  equal(created.status, "in_progress");
  equal(created.background, true);
  equal(busy(), 1, "it runs with no one waiting");
  // Its events after the 5th, then live, as the SDK reads them.
  const events: { type: string; sequence_number: number }[] = [];
  for await (
    const event of await openai.responses.retrieve(created.id, { stream: true, starting_after: 5 })
  ) events.push(event);
  equal(events[0]?.sequence_number, 6);
  ok(events.every((e, i) => i === 0 || e.sequence_number === events[i - 1]!.sequence_number + 1));
  equal(events.at(-1)?.type, "response.incomplete");
  const done = await openai.responses.retrieve(created.id);
  equal(done.status, "incomplete");
  equal(done.usage?.output_tokens, 2000);
  const all: { type: string; delta?: string }[] = [];
  for await (
    const event of await openai.responses.retrieve(created.id, { stream: true })
  ) all.push(event);
  equal(all[0]?.type, "response.created");
  equal(
    all.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join(""),
    done.output_text,
  );

  // A streamed background response goes on when its reader leaves.
  const stream = await openai.responses.create({ ...long, background: true, stream: true });
  let id = "";
  for await (const event of stream) {
    if (event.type === "response.created") id = event.response.id;
    if (event.type === "response.output_text.delta") break;
  }
  ok(
    await waitFor(
      async () => (await openai.responses.retrieve(id)).status === "incomplete",
      30_000,
    ),
  );

  // Cancel.
  const doomed = await openai.responses.create({ ...long, background: true });
  const cancelled = await openai.responses.cancel(doomed.id);
  equal(cancelled.status, "cancelled");
  ok(await waitFor(() => busy() === 0, 2000), "the slot is free");
  equal((await openai.responses.retrieve(doomed.id)).status, "cancelled");
  equal((await openai.responses.cancel(doomed.id)).status, "cancelled", "again: as it is");

  // One still running cannot be continued yet, and deleting it stops it.
  const running = await openai.responses.create({ ...long, background: true });
  await rejects(
    openai.responses.create({ model: MODEL, input: "And?", previous_response_id: running.id }),
    OpenAI.BadRequestError,
  );
  await openai.responses.delete(running.id);
  ok(await waitFor(() => busy() === 0, 2000), "deleting it stopped it");
  await rejects(openai.responses.retrieve(running.id), OpenAI.NotFoundError);

  // Refusals.
  const plain = await openai.responses.create({ model: MODEL, input: "Hi", max_output_tokens: 2 });
  await rejects(openai.responses.cancel(plain.id), OpenAI.BadRequestError);
  await rejects(
    openai.responses.retrieve(plain.id, { stream: true }).then(async (s) => {
      for await (const _ of s) { /* drained */ }
    }),
    OpenAI.BadRequestError,
  );
  await rejects(
    openai.responses.create({ ...long, background: true, store: false }),
    OpenAI.BadRequestError,
  );
  await rejects(openai.responses.cancel("resp_unknown"), OpenAI.NotFoundError);
});

Deno.test("what /v1/responses cannot honour is a 400 naming the field, in OpenAI's error shape", async () => {
  await using server = await serve();
  const base = { model: MODEL, input: "Hi", max_output_tokens: 4 };
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ tools: [{ type: "web_search" }] }, "tools", /only function tools/],
    [
      {
        input: [{
          role: "user",
          content: [{ type: "input_image", image_url: "data:image/png;base64,AA==" }],
        }],
      },
      "input",
      /only text parts/,
    ],
    [{ input: [{ type: "input_file", file_id: "f" }] }, "input", /"input_file" item/],
    [{ input: [{ type: "web_search_call", id: "ws_1" }] }, "input", /not supported/],
    [{ frequency_penalty: 1 }, "frequency_penalty", /Unknown field/],
    [{ conversation: "conv_1" }, "conversation", /Unknown field/],
    [{ background: true, store: false }, "background", /needs the response stored/],
    [{ reasoning: { summary: "brief" } }, "reasoning", /reasoning\.summary/],
    [{ reasoning: { context: "all" } }, "reasoning", /reasoning\.context/],
    [{ reasoning: { effort: "extreme" } }, "reasoning", /reasoning\.effort/],
    [{ include: ["message.output_text.logprobs"] }, "include", /not supported/],
    [{ text: { format: { type: "json_schema", name: "x" } } }, "text", /schema/],
    [{ text: { format: { type: "xml" } } }, "text", /Unsupported text.format/],
    [
      { text: { format: { type: "json_schema", name: "x", schema: { not: { type: "string" } } } } },
      "text",
      /^(?!.*response_format).*not/,
    ],
    [{ tool_choice: { type: "allowed_tools", tools: [] } }, "tool_choice", /tool_choice/],
    [
      { tools: [WEATHER_TOOL], tool_choice: { type: "function", name: "nope" } },
      "tool_choice",
      /not in/,
    ],
    [{ temperature: 3 }, "temperature", /at most 2/],
    [
      { stream: true, stream_options: { include_obfuscation: true } },
      "stream_options",
      /true is not/,
    ],
    [
      { stream: true, stream_options: { include_usage: true } },
      "stream_options",
      /"include_usage"/,
    ],
    [{ stream_options: { include_obfuscation: false } }, "stream_options", /only for streamed/],
    [{ input: [{ type: "item_reference", id: "msg_unknown" }] }, "input", /not stored/],
    [{ input: [] }, "input", /required/],
  ];
  for (const [body, param, message] of cases) {
    const response = await postJson(`${server.url}/v1/responses`, { ...base, ...body });
    const json = await response.json();
    equal(response.status, 400, JSON.stringify(body));
    deepEqual(Object.keys(json.error).sort(), ["code", "message", "param", "type"]);
    equal(json.error.param, param, JSON.stringify(json));
    equal(json.error.type, "invalid_request_error");
    match(json.error.message, message);
  }
});

Deno.test("text.format json_schema holds the output to the schema", async () => {
  await using server = await serve();
  const response = await client(server).responses.create({
    model: MODEL,
    input: "Weather in Paris as JSON",
    temperature: 0,
    text: {
      format: {
        type: "json_schema",
        name: "weather",
        schema: WEATHER_TOOL.parameters,
        strict: true,
      },
    },
    max_output_tokens: 300,
  });
  equal(response.status, "completed");
  ok(validate(JSON.parse(response.output_text)), response.output_text);
  deepEqual(response.text?.format, {
    type: "json_schema",
    name: "weather",
    schema: WEATHER_TOOL.parameters,
    strict: true,
  });
});

Deno.test({
  name:
    "a model that reasons gets a reasoning item counted in reasoning_tokens; effort none turns it off",
  ignore: !llamaSourceDir(),
  fn: async () => {
    await using server = await serve();
    // The R1 template opens <think> in the prompt: everything the model writes is reasoning.
    const file = join(
      llamaSourceDir()!,
      "models",
      "templates",
      "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    );
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
    const asked = { model: MODEL, input: "Think", max_output_tokens: 16, temperature: 0 };
    const response = await client(server).responses.create(asked);
    const reasoning = response.output[0]!;
    equal(reasoning.type, "reasoning");
    if (reasoning.type !== "reasoning") return;
    match(reasoning.id, /^rs_/);
    const text = reasoning.content?.[0]?.text ?? "";
    ok(text.length > 0);
    ok(response.usage!.output_tokens_details.reasoning_tokens > 0);
    equal(response.output[1]?.type, "message");
    equal(response.output_text, "");

    const events = await readEvents(
      await postJson(`${server.url}/v1/responses`, { ...asked, stream: true }),
    );
    const deltas = events.filter((e) => e.name === "response.reasoning_text.delta");
    equal(deltas.map((e) => e.data.delta).join(""), text);
    equal(events.filter((e) => e.name.includes("summary")).length, 0, "no summary unasked");

    // reasoning.summary (Codex asks for it): the reasoning text whole, as one summary part.
    const summarized = await client(server).responses.create({
      ...asked,
      reasoning: { summary: "auto" },
    });
    deepEqual(summarized.reasoning, { effort: null, summary: "auto" });
    const item = summarized.output[0]!;
    equal(item.type, "reasoning");
    if (item.type !== "reasoning") return;
    deepEqual(item.summary, [{ type: "summary_text", text }]);
    deepEqual(item.content, [{ type: "reasoning_text", text }]);
    const summaryEvents = await readEvents(
      await postJson(`${server.url}/v1/responses`, {
        ...asked,
        reasoning: { summary: "detailed" },
        stream: true,
      }),
    );
    const names = summaryEvents.map((e) => e.name);
    const at = (name: string) => names.indexOf(name);
    ok(at("response.output_item.added") < at("response.reasoning_summary_part.added"));
    ok(at("response.reasoning_summary_part.added") < at("response.reasoning_summary_text.delta"));
    ok(at("response.reasoning_summary_text.done") < at("response.reasoning_summary_part.done"));
    ok(at("response.reasoning_summary_part.done") < at("response.output_item.done"));
    equal(
      summaryEvents.filter((e) => e.name === "response.reasoning_summary_text.delta")
        .map((e) => e.data.delta).join(""),
      text,
    );
    const done = summaryEvents.find((e) => e.name === "response.reasoning_summary_part.done");
    deepEqual(done?.data.part, { type: "summary_text", text });
    // The SDK's stream helper assembles the same item.
    const final = await client(server).responses.stream({
      ...asked,
      reasoning: { summary: "concise" },
    }).finalResponse();
    deepEqual((final.output[0] as { summary: unknown }).summary, [{ type: "summary_text", text }]);

    // reasoning.effort "none" reaches the template: Qwen 3 closes the think block in the prompt.
    const qwen3 = join(llamaSourceDir()!, "models", "templates", "Qwen-Qwen3-0.6B.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(qwen3), path: qwen3 };
    const thinking = await client(server).responses.create(asked);
    const off = await client(server).responses.create({ ...asked, reasoning: { effort: "none" } });
    deepEqual(off.reasoning, { effort: "none", summary: null });
    ok(off.usage!.input_tokens > thinking.usage!.input_tokens);
    equal(off.output.length, 1);
    equal(off.output[0]?.type, "message");
  },
});

Deno.test("the AI SDK's OpenAI provider (Responses API) generates and streams text and tool calls", async () => {
  await using server = await serve();
  const sent: unknown[] = [];
  const openai = createOpenAI({
    baseURL: `${server.url}/v1`,
    apiKey: "unused",
    fetch: (url, init) => {
      sent.push(JSON.parse(String(init?.body)));
      return fetch(url, init);
    },
  });
  const generated = await generateText({
    model: openai(MODEL),
    system: "Be brief.",
    prompt: "Say hi",
    maxOutputTokens: 8,
    temperature: 0,
  });
  ok(generated.text.length > 0);
  ok(generated.usage.inputTokens! > 0 && generated.usage.outputTokens! > 0);
  ok(["stop", "length"].includes(generated.finishReason));
  match(generated.response.id, /^resp_/);

  const streamed = streamText({
    model: openai.responses(MODEL),
    system: "Be brief.",
    prompt: "Say hi",
    maxOutputTokens: 8,
    temperature: 0,
  });
  let joined = "";
  for await (const piece of streamed.textStream) joined += piece;
  equal(joined, generated.text);
  equal(await streamed.text, generated.text);

  // A tool loop: a forced call, its result sent back (function_call_output), then an answer.
  const called = await generateText({
    model: openai(MODEL),
    prompt: "Weather in Paris?",
    tools: {
      get_weather: tool({
        description: "Weather in a city",
        inputSchema: jsonSchema<{ city: string; unit: string }>(WEATHER_PARAMETERS),
        execute: () => "21 C",
      }),
    },
    prepareStep: ({ stepNumber }) => ({
      toolChoice: stepNumber === 0 ? { type: "tool", toolName: "get_weather" } : "none",
    }),
    stopWhen: stepCountIs(2),
    providerOptions: { openai: { parallelToolCalls: false } },
    maxOutputTokens: 300,
    temperature: 0,
  });
  equal(called.steps.length, 2);
  const [first, second] = called.steps;
  equal(first!.finishReason, "tool-calls");
  equal(first!.toolCalls.length, 1);
  equal(first!.toolCalls[0]?.toolName, "get_weather");
  ok(validate(first!.toolCalls[0]?.input), JSON.stringify(first!.toolCalls[0]?.input));
  equal(first!.toolResults[0]?.output, "21 C");
  // The second request carried the call and its result, as Responses items.
  const input = (sent.at(-1) as { input: { type?: string; call_id?: string }[] }).input;
  const callId = first!.toolCalls[0]?.toolCallId;
  deepEqual(
    input.filter((item) => item.call_id === callId).map((item) => item.type),
    ["function_call", "function_call_output"],
  );
  ok(["stop", "length"].includes(second!.finishReason));

  // Streamed, the same forced call arrives through the function_call events.
  const streamedCall = streamText({
    model: openai(MODEL),
    prompt: "Weather in Paris?",
    tools: {
      get_weather: tool({
        description: "Weather in a city",
        inputSchema: jsonSchema<{ city: string; unit: string }>(WEATHER_PARAMETERS),
      }),
    },
    toolChoice: { type: "tool", toolName: "get_weather" },
    providerOptions: { openai: { parallelToolCalls: false } },
    maxOutputTokens: 300,
    temperature: 0,
  });
  const streamedCalls = await streamedCall.toolCalls;
  equal(await streamedCall.finishReason, "tool-calls");
  equal(streamedCalls.length, 1);
  deepEqual(streamedCalls[0]?.input, first!.toolCalls[0]?.input);
});

Deno.test("ResponseStore drops the oldest response when full and forgets expired ones", () => {
  let now = 0;
  const store = new ResponseStore({ maxResponses: 2, ttlMs: 1000, now: () => now });
  const put = (id: string) =>
    store.put(id, { response: { id, output: [{ id: `msg_${id}` }] }, input: [], items: [] });
  put("a");
  put("b");
  put("c");
  equal(store.get("a"), undefined);
  equal(store.get("b")?.response.id, "b");
  deepEqual(store.item("msg_c"), { id: "msg_c" });
  now = 999;
  equal(store.size, 2);
  now = 1000;
  equal(store.get("c"), undefined);
  equal(store.size, 0);
  equal(store.delete("c"), false);
});

Deno.test("ResponseStore finds an item by id at once, however many are stored; a dropped response's items go", () => {
  const store = new ResponseStore();
  const input = Array.from({ length: 250_000 }, (_, i) => ({ id: `msg_${i}`, type: "message" }));
  store.put("a", { response: { id: "a", output: [{ id: "fc_out" }] }, input, items: [] });
  const started = performance.now();
  for (let i = 0; i < 1000; i++) equal(store.item(`msg_${i * 250}`)?.id, `msg_${i * 250}`);
  ok(performance.now() - started < 100, `${performance.now() - started} ms for 1,000 lookups`);
  deepEqual(store.item("fc_out"), { id: "fc_out" });
  store.delete("a");
  equal(store.item("msg_0"), undefined);
});

Deno.test("40,000 function calls in Responses input become one assistant turn in linear time", () => {
  const items = Array.from({ length: 40_000 }, (_, i) => ({
    type: "function_call",
    call_id: `call_${i}`,
    name: "f",
    arguments: "{}",
  }));
  const started = performance.now();
  const messages = chatMessagesOf(items);
  ok(performance.now() - started < 1000, `${performance.now() - started} ms`);
  equal(messages[0]?.tool_calls?.length, 40_000);
});

Deno.test("ResponseStore keeps at most maxBytes of conversations, dropping the oldest", () => {
  const store = new ResponseStore({ maxBytes: 2500 });
  const text = "x".repeat(1000);
  const put = (id: string) =>
    store.put(id, { response: { id }, input: [], items: [{ type: "message", text }] });
  put("a");
  put("b");
  equal(store.size, 2);
  put("c"); // three of about 1,050 bytes do not fit 2,500
  equal(store.get("a"), undefined);
  equal(store.get("b")?.response.id, "b");
  equal(store.delete("b"), true);
  put("d");
  equal(store.size, 2, "what a deleted response held is free again");
});

Deno.test("ResponseStore counts the items a chain's responses share once: a chain does not push out others", () => {
  const store = new ResponseStore({ maxBytes: 5000 });
  const item = (text: string) => ({ type: "message", text });
  store.put("other", { response: { id: "other" }, input: [], items: [item("o".repeat(500))] });
  // Ten steps, each continuing the last with 300 more characters: about 3,300 held.
  let items: Record<string, unknown>[] = [];
  for (let step = 0; step < 10; step++) {
    items = [...items, item(String(step).repeat(300))];
    store.put(`step${step}`, { response: { id: `step${step}` }, input: [], items });
  }
  equal(store.size, 11, "counted with every step, the chain had passed 16,000");
  equal(store.get("other")?.response.id, "other");
  // Items go once no response holds them: a 4,000-character response now fits beside the last
  // step only once the chain's other steps (which hold nothing the last does not) are gone.
  store.put("big", { response: { id: "big" }, input: [], items: [item("b".repeat(4000))] });
  equal(store.get("other"), undefined, "the oldest went first");
  equal(store.get("big")?.response.id, "big");
  equal(store.get("step9"), undefined, "the chain's items were still held by its last step");
});

Deno.test("a stored response whose conversation is more than the store keeps is a 400 naming store, before generating", async () => {
  await using server = await startServer();
  server.ctx.responses = new ResponseStore({ maxBytes: 2 ** 20 });
  const big = "word ".repeat(300_000);
  const refused = await postJson(`${server.url}/v1/responses`, {
    input: big,
    max_output_tokens: 1,
  });
  const error = (await refused.json()).error;
  equal(refused.status, 400);
  equal(error.param, "store");
  match(error.message, /is 1\.4 MiB, more than the 1\.0 MiB the server keeps.*"store": false/);
  const unstored = await postJson(`${server.url}/v1/responses`, {
    input: big,
    max_output_tokens: 1,
    store: false,
    truncation: "auto",
  });
  equal(unstored.status, 200, await unstored.text());
});

Deno.test("a conversation of more than 16 MiB of items is a 400 before any work, however it was put together", async () => {
  await using server = await startServer();
  // A reasoning item before a user message: kept in the conversation, never in the prompt.
  const reasoning = (text: string) => ({
    type: "reasoning",
    summary: [],
    content: [{ type: "reasoning_text", text }],
  });
  const first = await postJson(`${server.url}/v1/responses`, {
    input: [reasoning("r".repeat(7_000_000)), { role: "user", content: "hi" }],
    max_output_tokens: 1,
  });
  equal(first.status, 200, await first.clone().text());
  const stored = await first.json();
  const second = await postJson(`${server.url}/v1/responses`, {
    previous_response_id: stored.id,
    input: [reasoning("s".repeat(7_000_000)), { role: "user", content: "again" }],
    max_output_tokens: 1,
  });
  equal(second.status, 200, "14 MB of items is within the bound");
  const next = await second.json();
  const started = performance.now();
  const third = await postJson(`${server.url}/v1/responses`, {
    previous_response_id: next.id,
    input: [reasoning("t".repeat(7_000_000)), { role: "user", content: "more" }],
    max_output_tokens: 1,
  });
  const error = (await third.json()).error;
  equal(third.status, 400);
  equal(error.code, "context_length_exceeded");
  equal(error.param, "input");
  match(error.message, /This conversation is 2\d\.\d MiB of items, more than the 16\.0 MiB/);
  ok(performance.now() - started < 5000);
  // References to one stored item count each time they are sent.
  const input = server.ctx.responses?.get(stored.id)?.input;
  const id = input?.find((item) => item.type === "reasoning")?.id;
  ok(typeof id === "string", "the stored reasoning item has an id");
  const referenced = await postJson(`${server.url}/v1/responses`, {
    input: [
      ...Array.from({ length: 3 }, () => ({ type: "item_reference", id })),
      { role: "user", content: "hi" },
    ],
    max_output_tokens: 1,
  });
  equal(referenced.status, 400);
  equal((await referenced.json()).error.code, "context_length_exceeded");
});

Deno.test("Responses items map to chat messages: calls join the assistant turn, outputs are tool messages", () => {
  const messages = chatMessagesOf([
    { role: "developer", content: "Rules" },
    { type: "message", role: "user", content: [{ type: "input_text", text: "Weather?" }] },
    { type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "Look it up" }] },
    { type: "message", role: "assistant", content: [{ type: "output_text", text: "Checking" }] },
    { type: "function_call", call_id: "call_1", name: "get_weather", arguments: "{}" },
    { type: "function_call", call_id: "call_2", name: "get_time", arguments: "{}" },
    { type: "function_call_output", call_id: "call_1", output: "21 C" },
    {
      type: "function_call_output",
      call_id: "call_2",
      output: [{ type: "input_text", text: "9" }],
    },
  ], "Be brief");
  deepEqual(messages, [
    { role: "system", content: "Be brief" },
    { role: "system", content: "Rules" },
    { role: "user", content: [{ type: "text", text: "Weather?" }] },
    {
      role: "assistant",
      content: "Checking",
      reasoning_content: "Look it up",
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } },
        { id: "call_2", type: "function", function: { name: "get_time", arguments: "{}" } },
      ],
    },
    { role: "tool", tool_call_id: "call_1", content: "21 C", name: "get_weather" },
    { role: "tool", tool_call_id: "call_2", content: "9", name: "get_time" },
  ]);
});
