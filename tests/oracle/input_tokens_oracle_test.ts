/**
 * Counting input tokens: OpenAI's SDK's `responses.inputTokens.count` gets the prompt size that
 * `responses.create` then reports as `usage.input_tokens` (with instructions, tools and a
 * continued conversation), and `/v1/chat/completions/input_tokens` gives what a chat completion
 * reports as `usage.prompt_tokens` and what llama.cpp's own server counts for the same body.
 */

import { equal, ok } from "node:assert/strict";
import OpenAI from "openai";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { startReferenceServer } from "./reference_server.ts";

const WEATHER = {
  type: "function" as const,
  name: "get_weather",
  description: "Weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
};

Deno.test("responses.inputTokens.count gives the input tokens responses.create uses", async () => {
  await using server = await startServer({ fixtures: ["qwen2"] });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = {
    model: "qwen2",
    instructions: "Answer briefly.",
    input: "What is the weather in Paris?",
    tools: [WEATHER],
  };
  const counted = await client.responses.inputTokens.count(request);
  equal(counted.object, "response.input_tokens");
  const created = await client.responses.create({ ...request, max_output_tokens: 1 });
  equal(counted.input_tokens, created.usage?.input_tokens);
  // A continued conversation counts the earlier turns too.
  const followUp = {
    model: "qwen2",
    previous_response_id: created.id,
    input: "And in Rome?",
    tools: [WEATHER], // (described in the prompt: the fixture's template knows no tools)
  };
  const more = await client.responses.inputTokens.count(followUp);
  ok(more.input_tokens > counted.input_tokens, `${more.input_tokens} > ${counted.input_tokens}`);
  const next = await client.responses.create({ ...followUp, max_output_tokens: 1 });
  equal(more.input_tokens, next.usage?.input_tokens);
  const bad = await postJson(`${server.url}/v1/responses/input_tokens`, { model: "qwen2" });
  equal(bad.status, 400);
  await bad.body?.cancel();
});

Deno.test("/v1/chat/completions/input_tokens counts what a chat completion and llama-server count", async () => {
  await using server = await startServer({ fixtures: ["qwen2"] });
  const body = {
    model: "qwen2",
    messages: [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Name three colours." },
    ],
  };
  const counted = await (await postJson(`${server.url}/v1/chat/completions/input_tokens`, body))
    .json();
  equal(counted.object, "response.input_tokens");
  const completion = await (await postJson(`${server.url}/v1/chat/completions`, {
    ...body,
    max_tokens: 1,
  })).json();
  equal(counted.input_tokens, completion.usage.prompt_tokens);
  const reference = referenceDir();
  if (reference === undefined) return;
  await using llama = await startReferenceServer(reference, await fixtureModel("qwen2"), [
    "--jinja",
  ]);
  const theirs = await (await postJson(`${llama.url}/v1/chat/completions/input_tokens`, body))
    .json();
  equal(counted.input_tokens, theirs.input_tokens);
});
