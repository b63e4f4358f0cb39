import { equal, ok } from "node:assert/strict";
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
