import { deepEqual, equal, ok } from "node:assert/strict";
import OpenAI from "openai";
import { postJson, startServer } from "./harness.ts";

const MODEL = "tiny-f32";

function promptTokensEvaluated(server: Awaited<ReturnType<typeof startServer>>): number {
  return server.ctx.registry.loaded().get(MODEL)?.scheduler.stats().promptTokensEvaluated ?? -1;
}

Deno.test("the openai SDK gets chat logprobs in OpenAI's shape, the same streamed and not", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = {
    model: MODEL,
    messages: [{ role: "user" as const, content: "Tell me something" }],
    max_tokens: 16,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  };
  const whole = await client.chat.completions.create(request);
  const choice = whole.choices[0];
  const content = choice?.logprobs?.content ?? [];
  equal(content.length, 16, "one entry per generated token");
  equal(content.map((e) => e.token).join(""), choice?.message.content);
  for (const entry of content) {
    ok(entry.logprob <= 0);
    equal(new TextDecoder().decode(Uint8Array.from(entry.bytes ?? [])), entry.token);
    equal(entry.top_logprobs.length, 3);
    // Greedy: the chosen token is the most likely one.
    equal(entry.top_logprobs[0]?.token, entry.token);
    ok(Math.abs((entry.top_logprobs[0]?.logprob ?? 1) - entry.logprob) < 1e-9);
  }
  const streamed = [];
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    streamed.push(...chunk.choices[0]?.logprobs?.content ?? []);
  }
  // The same tokens; values agree to float precision (the second request reuses cached prompt).
  deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));
  streamed.forEach((e, i) => ok(Math.abs(e.logprob - (content[i]?.logprob ?? 0)) < 1e-4));

  const { top_logprobs: _, ...withoutTop } = request;
  const plain = await client.chat.completions.create({ ...withoutTop, logprobs: false });
  equal(plain.choices[0]?.logprobs, null);
  const noTop = await client.chat.completions.create(withoutTop);
  equal(noTop.choices[0]?.logprobs?.content?.[0]?.top_logprobs.length, 0);
});

Deno.test("completions logprobs: tokens, token_logprobs, top_logprobs and text_offset", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = { model: MODEL, prompt: "Once upon a time", max_tokens: 12, temperature: 0 };
  const whole = await client.completions.create({ ...request, logprobs: 2 });
  const choice = whole.choices[0];
  const logprobs = choice?.logprobs;
  equal(logprobs?.tokens?.join(""), choice?.text);
  equal(logprobs?.token_logprobs?.length, 12);
  let offset = 0;
  for (const [i, token] of (logprobs?.tokens ?? []).entries()) {
    equal(logprobs?.text_offset?.[i], offset);
    offset += token.length;
    const top: Record<string, number> = logprobs?.top_logprobs?.[i] ?? {};
    ok(Object.keys(top).length >= 1 && Object.keys(top).length <= 2);
    equal(Math.max(...Object.values(top)), logprobs?.token_logprobs?.[i], "greedy: the top one");
  }
  const streamed: string[] = [];
  const offsets: number[] = [];
  for await (
    const chunk of await client.completions.create({ ...request, logprobs: 2, stream: true })
  ) {
    streamed.push(...chunk.choices[0]?.logprobs?.tokens ?? []);
    offsets.push(...chunk.choices[0]?.logprobs?.text_offset ?? []);
  }
  deepEqual(streamed, logprobs?.tokens);
  deepEqual(offsets, logprobs?.text_offset);
  equal((await client.completions.create(request)).choices[0]?.logprobs, null);
});

Deno.test("logprobs fields out of range or without logprobs: true are a 400 naming the field", async () => {
  await using server = await startServer();
  const chat = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
  for (
    const [path, body, param] of [
      ["/v1/chat/completions", { ...chat, top_logprobs: 2 }, "top_logprobs"],
      ["/v1/chat/completions", { ...chat, logprobs: true, top_logprobs: 21 }, "top_logprobs"],
      ["/v1/completions", { model: MODEL, prompt: "a", logprobs: 21 }, "logprobs"],
      ["/v1/completions", { model: MODEL, prompt: "a", logprobs: true }, "logprobs"],
    ] as const
  ) {
    const response = await postJson(`${server.url}${path}`, body);
    equal(response.status, 400);
    equal((await response.json()).error.param, param);
  }
});

Deno.test("n: 3 returns three choices from one evaluation of the prompt; usage counts it once", async () => {
  await using server = await startServer();
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const request = {
    model: MODEL,
    messages: [{ role: "user" as const, content: "Write a story about a lighthouse keeper" }],
    max_tokens: 10,
    temperature: 1.5,
    seed: 3,
  };
  const single = await client.chat.completions.create(request);
  const before = promptTokensEvaluated(server);
  const three = await client.chat.completions.create({ ...request, n: 3 });
  const evaluated = promptTokensEvaluated(server) - before;
  deepEqual(three.choices.map((c) => c.index), [0, 1, 2]);
  equal(three.usage?.prompt_tokens, single.usage?.prompt_tokens, "the prompt is counted once");
  equal(three.usage?.completion_tokens, 30);
  // At most the whole prompt once (the slots' caches may hold part of it already).
  ok(evaluated >= 1 && evaluated <= (single.usage?.prompt_tokens ?? 0), `${evaluated} evaluated`);
  equal(three.choices[0]?.message.content, single.choices[0]?.message.content, "choice 0 = seed");
  equal(new Set(three.choices.map((c) => c.message.content)).size, 3);

  const streamed = ["", ""];
  const finished = [false, false];
  for await (
    const chunk of await client.chat.completions.create({ ...request, n: 2, stream: true })
  ) {
    for (const c of chunk.choices) {
      streamed[c.index] += c.delta.content ?? "";
      if (c.finish_reason) finished[c.index] = true;
    }
  }
  deepEqual(finished, [true, true]);
  deepEqual(streamed, three.choices.slice(0, 2).map((c) => c.message.content));
});

Deno.test("n with several prompts numbers the choices prompt by prompt", async () => {
  await using server = await startServer();
  const response = await postJson(`${server.url}/v1/completions`, {
    model: MODEL,
    prompt: ["Once upon a time", "The lighthouse"],
    n: 2,
    max_tokens: 4,
    temperature: 0,
  });
  equal(response.status, 200);
  const body = await response.json();
  deepEqual(body.choices.map((c: { index: number }) => c.index), [0, 1, 2, 3]);
  // Greedy: both choices of a prompt are the same text; the two prompts differ.
  equal(body.choices[0].text, body.choices[1].text);
  equal(body.choices[2].text, body.choices[3].text);
});

Deno.test("n beyond the slots, or on an endpoint without choices, is a 400", async () => {
  await using server = await startServer({ load: { parallel: 2 } });
  const chat = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
  const tooMany = await postJson(`${server.url}/v1/chat/completions`, { ...chat, n: 3 });
  equal(tooMany.status, 400);
  const error = (await tooMany.json()).error;
  ok(/at most 2 generations at once/.test(error.message));
  equal(error.param, "n");
  const native = await postJson(`${server.url}/api/generate`, {
    model: MODEL,
    prompt: "hi",
    max_tokens: 2,
    n: 2,
  });
  equal(native.status, 400);
  equal((await native.json()).error.param, "n");
});
