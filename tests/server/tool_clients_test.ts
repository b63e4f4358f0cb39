import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import OpenAI from "openai";
import { z } from "zod";
import { generateText, tool } from "ai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { ChatOpenAI } from "@langchain/openai";
import { compileSchema } from "../engine/json_schema_ajv.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { startServer, type TestServer } from "./harness.ts";
import { WEATHER_PARAMETERS } from "../fixtures/tool_fixtures.ts";

const MODEL = "tiny-f32";

const WEATHER = WEATHER_PARAMETERS;
const Weather = z.object({ city: z.string().max(10), unit: z.enum(["celsius", "fahrenheit"]) });
const validate = compileSchema(WEATHER);

/** Serves tiny-f32 with Qwen 2.5's template (Hermes calls) when llama.cpp's copy is at hand. */
async function serve(): Promise<TestServer> {
  const server = await startServer({ load: { ctxSize: 4096, threads: 1 } });
  const source = llamaSourceDir();
  if (source) {
    const file = join(source, "models", "templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
    server.ctx.settings.chatTemplate = { template: Deno.readTextFileSync(file), path: file };
  } // else the model's own template: the generic JSON format
  return server;
}

Deno.test("the openai SDK gets tool_calls for tool_choice required, whole and streamed", async () => {
  await using server = await serve();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const tools = [{
    type: "function" as const,
    function: { name: "get_weather", description: "Weather in a city", parameters: WEATHER },
  }];
  const messages = [{ role: "user" as const, content: "Weather in Paris?" }];
  for (const seed of [1, 2]) {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages,
      tools,
      tool_choice: "required",
      seed,
      max_tokens: 300,
    });
    const choice = completion.choices[0]!;
    equal(choice.finish_reason, "tool_calls");
    const calls = choice.message.tool_calls ?? [];
    ok(calls.length >= 1);
    for (const call of calls) {
      equal(call.type, "function");
      if (call.type !== "function") continue;
      equal(call.function.name, "get_weather");
      ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
    }

    // The SDK's stream helper joins the deltas into the same calls.
    const runner = client.chat.completions.stream({
      model: MODEL,
      messages,
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: false,
      seed,
      max_tokens: 300,
    });
    const final = await runner.finalChatCompletion();
    const streamed = final.choices[0]!;
    equal(streamed.finish_reason, "tool_calls");
    equal(streamed.message.tool_calls?.length, 1);
    const call = streamed.message.tool_calls![0]!;
    ok(call.type === "function" && validate(JSON.parse(call.function.arguments)));
  }
});

Deno.test("the AI SDK's generateText() with toolChoice required gets valid tool calls", async () => {
  await using server = await serve();
  const shimmy = createOpenAICompatible({ name: "shimmy", baseURL: `${server.url}/v1` });
  for (const seed of [3, 4]) {
    const result = await generateText({
      model: shimmy.chatModel(MODEL),
      prompt: "Weather in Paris?",
      tools: { get_weather: tool({ description: "Weather in a city", inputSchema: Weather }) },
      toolChoice: "required",
      seed,
      maxOutputTokens: 300,
    });
    equal(result.finishReason, "tool-calls");
    ok(result.toolCalls.length >= 1);
    for (const call of result.toolCalls) {
      equal(call.toolName, "get_weather");
      Weather.parse(call.input);
    }
  }
});

Deno.test("the AI SDK's tools with zod formats the grammar cannot hold (z.url(), z.email()) still work", async () => {
  await using server = await serve();
  const shimmy = createOpenAICompatible({ name: "shimmy", baseURL: `${server.url}/v1` });
  const tools = {
    fetch_page: tool({ description: "Fetch a page", inputSchema: z.object({ url: z.url() }) }),
    send_mail: tool({ description: "Send a mail", inputSchema: z.object({ to: z.email() }) }),
  };
  // tool_choice auto: the grammar only waits for a call marker, no call needs to come.
  const answer = await generateText({
    model: shimmy.chatModel(MODEL),
    prompt: "Fetch example.com",
    tools,
    seed: 1,
    maxOutputTokens: 8,
  });
  ok(answer.finishReason === "length" || answer.finishReason === "tool-calls");
  // Forced: the call comes with its required url, a string the grammar cannot hold to a URL
  // (the AI SDK then finds it invalid, as it would a hosted model's mistake).
  const forced = await generateText({
    model: shimmy.chatModel(MODEL),
    prompt: "Fetch example.com",
    // A bound, so that random weights end the string in time.
    tools: {
      fetch_page: tool({ description: "Fetch", inputSchema: z.object({ url: z.url().max(40) }) }),
    },
    toolChoice: "required",
    seed: 1,
    maxOutputTokens: 300,
  });
  equal(forced.finishReason, "tool-calls");
  ok(forced.toolCalls.length >= 1);
  for (const call of forced.toolCalls) {
    equal(call.toolName, "fetch_page");
    equal(typeof (call.input as { url?: unknown }).url, "string", JSON.stringify(call.input));
  }
});

Deno.test("LangChain's bindTools() with a forced tool gets a valid tool call", async () => {
  await using server = await serve();
  const model = new ChatOpenAI({
    model: MODEL,
    apiKey: "unused",
    configuration: { baseURL: `${server.url}/v1` },
    maxTokens: 300,
  });
  const bound = model.bindTools([{
    type: "function",
    function: { name: "get_weather", description: "Weather in a city", parameters: WEATHER },
  }], { tool_choice: "get_weather" });
  for (let i = 0; i < 2; i++) {
    const message = await bound.invoke("Weather in Paris?");
    ok((message.tool_calls?.length ?? 0) >= 1, JSON.stringify(message));
    for (const call of message.tool_calls!) {
      equal(call.name, "get_weather");
      Weather.parse(call.args);
      ok(call.id);
    }
  }
});
