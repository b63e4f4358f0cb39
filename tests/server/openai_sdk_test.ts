import { deepEqual, equal, ok } from "node:assert/strict";
import OpenAI from "openai";
import { startServer } from "./harness.ts";

Deno.test("the official openai SDK gets identical chat text streamed and not streamed", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = {
    model: "tiny-f32",
    messages: [{ role: "user" as const, content: "Tell me something" }],
    max_tokens: 24,
    temperature: 0,
  };
  const whole = await client.chat.completions.create(request);
  equal(whole.object, "chat.completion");
  equal(whole.choices[0]?.finish_reason, "length");
  equal(whole.usage?.completion_tokens, 24);
  ok((whole.usage?.prompt_tokens ?? 0) > 0);
  const text = whole.choices[0]?.message.content ?? "";
  ok(text.length > 0);
  equal(whole.choices[0]?.message.refusal, null, "there, as OpenAI's SDK types it");

  const stream = await client.chat.completions.create({
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  let streamed = "";
  let role = "";
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    equal(chunk.object, "chat.completion.chunk");
    const choice = chunk.choices[0];
    if (choice?.delta.role) role = choice.delta.role;
    streamed += choice?.delta.content ?? "";
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  equal(role, "assistant");
  equal(streamed, text);
  equal(finish, "length");
  equal(usage?.completion_tokens, 24);
  equal(usage?.total_tokens, (usage?.prompt_tokens ?? 0) + 24);
});

Deno.test("the official openai SDK gets identical completions streamed and not streamed", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = { model: "tiny-f32", prompt: "Once upon a time", max_tokens: 20, temperature: 0 };
  const whole = await client.completions.create(request);
  equal(whole.object, "text_completion");
  const text = whole.choices[0]?.text ?? "";
  ok(text.length > 0);
  equal(whole.usage?.completion_tokens, 20);
  let streamed = "";
  for await (const chunk of await client.completions.create({ ...request, stream: true })) {
    streamed += chunk.choices[0]?.text ?? "";
  }
  equal(streamed, text);
  const models = await client.models.list();
  equal(models.data[0]?.id, "tiny-f32");
});

Deno.test("the openai SDK retrieves one model, and works against a base URL without /v1", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const model = await client.models.retrieve("tiny-f32");
  equal(model.id, "tiny-f32");
  equal(model.object, "model");
  const missing = await client.models.retrieve("no-such-model").catch((error) => error);
  ok(missing instanceof OpenAI.NotFoundError, String(missing));
  equal(missing.code, "model_not_found");
  const bare = new OpenAI({ baseURL: server.url, apiKey: "unused" });
  const chat = await bare.chat.completions.create({
    model: "tiny-f32",
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 4,
    temperature: 0,
  });
  equal(chat.usage?.completion_tokens, 4);
  const completion = await bare.completions.create({
    model: "tiny-f32",
    prompt: "Hi",
    max_tokens: 3,
  });
  equal(completion.usage?.completion_tokens, 3);
  equal((await bare.models.list()).data[0]?.id, "tiny-f32");
  equal((await bare.models.retrieve("tiny-f32")).id, "tiny-f32");
});

Deno.test("usage reports the prompt tokens reused from the cache, and answers carry a system_fingerprint", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = {
    model: "tiny-f32",
    messages: [{ role: "user" as const, content: "Tell me about the lighthouse on the hill" }],
    max_tokens: 4,
    temperature: 0,
  };
  const first = await client.chat.completions.create(request);
  const second = await client.chat.completions.create(request);
  equal(first.usage?.prompt_tokens_details?.cached_tokens, 0);
  const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
  ok(cached > 0 && cached < (second.usage?.prompt_tokens ?? 0), `cached ${cached}`);
  ok(first.system_fingerprint?.startsWith("shimmy-"), String(first.system_fingerprint));
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    equal(chunk.system_fingerprint, first.system_fingerprint);
  }
});

Deno.test("completions take token ids and arrays of prompts, one choice per prompt, streamed and not", async () => {
  await using server = await startServer({ load: { parallel: 2 } });
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const base = { model: "tiny-f32", max_tokens: 6, temperature: 0 };
  const single = async (prompt: string) =>
    (await client.completions.create({ ...base, prompt })).choices[0]?.text;
  const expected = [await single("Once upon a time"), await single("The lighthouse")];
  const both = await client.completions.create({
    ...base,
    prompt: ["Once upon a time", "The lighthouse"],
  });
  deepEqual(both.choices.map((c) => c.index), [0, 1]);
  deepEqual(both.choices.map((c) => c.text), expected);
  equal(both.usage?.completion_tokens, 12);
  const streamed = ["", ""];
  let finished = 0;
  for await (
    const chunk of await client.completions.create({
      ...base,
      prompt: ["Once upon a time", "The lighthouse"],
      stream: true,
    })
  ) {
    for (const choice of chunk.choices) {
      streamed[choice.index] += choice.text;
      if (choice.finish_reason) finished++;
    }
  }
  deepEqual(streamed, expected);
  equal(finished, 2);
  // Token ids: the same tokens as the text, so the same answer.
  const outside = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...base, prompt: [[999999]] }),
  });
  equal(outside.status, 400, "an id outside the vocabulary");
  ok(/not in the vocabulary/.test((await outside.json()).error.message));
  const ids = await client.completions.create({ ...base, prompt: [1, 2, 3] });
  equal(ids.choices.length, 1);
  equal(ids.usage?.prompt_tokens, 3);
  const idLists = await client.completions.create({ ...base, prompt: [[1, 2, 3], [1, 2, 3]] });
  equal(idLists.choices[0]?.text, ids.choices[0]?.text);
  equal(idLists.choices[1]?.text, ids.choices[0]?.text);
});
