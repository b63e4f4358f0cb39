import { deepEqual, equal, notDeepEqual, ok, throws } from "node:assert/strict";
import { GenerationError } from "../../src/engine/errors.ts";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import type { Batch } from "../../src/ffi/batch.ts";
import type { Context } from "../../src/ffi/context.ts";
import type { GenerationRequest, GenerationResult } from "../../src/engine/scheduler.ts";
import { fixtureModel } from "../fixtures/models.ts";

async function collect(
  loaded: LoadedModel,
  request: GenerationRequest,
): Promise<{ chunks: string[]; result: GenerationResult }> {
  const generation = loaded.scheduler.submit(request);
  const chunks: string[] = [];
  for await (const chunk of generation) chunks.push(chunk.text);
  return { chunks, result: await generation.result };
}

/** Calls `onDecode` before each decode of the context, until the result is disposed. */
function watchDecodes(context: Context, onDecode: (batch: Batch) => void): Disposable {
  const decode = context.decode.bind(context);
  context.decode = (batch) => {
    onDecode(batch);
    return decode(batch);
  };
  return { [Symbol.dispose]: () => (context.decode = decode) };
}

/**
 * Runs a burst of named requests at once and tells, for each, how many decodes came before its
 * first token (the scheduler's decodes counted from the burst's start).
 */
async function firstTokenSteps(
  loaded: LoadedModel,
  burst: { word: string; prompt: Int32Array }[],
): Promise<{ order: string[]; decodesBefore: Map<string, number>; log: string }> {
  let decodes = 0;
  const events: string[] = [];
  using _watch = watchDecodes(loaded.scheduler.context, () => {
    decodes++;
    events.push("decode");
  });
  const order: string[] = [];
  const decodesBefore = new Map<string, number>();
  await Promise.all(burst.map(async ({ word, prompt }) => {
    const generation = loaded.scheduler.submit({
      prompt,
      maxTokens: 2,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    for await (const _ of generation) {
      if (decodesBefore.has(word)) continue;
      decodesBefore.set(word, decodes);
      order.push(word);
      events.push(`first token of ${word}`);
    }
  }));
  return { order, decodesBefore, log: events.join(", ") };
}

Deno.test("greedy generation is identical on a second run and streams exactly its final text", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const prompt = loaded.model.tokenize("once upon a time");
  const request = { prompt, maxTokens: 40, sampling: { temperature: 0 } };
  const first = await collect(loaded, request);
  const second = await collect(loaded, request);
  equal(first.result.completionTokens, 40);
  equal(first.result.finishReason, "length");
  deepEqual(first.result.tokens, second.result.tokens);
  equal(first.chunks.join(""), first.result.text);
  equal(first.result.promptTokens, prompt.length);
  ok(second.result.cachedTokens > 0, "the second run reuses the cached prompt prefix");
});

Deno.test("seeded sampling is repeatable and the seed changes the output", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const prompt = loaded.model.tokenize("the weather today");
  const run = async (seed: number) =>
    (await collect(loaded, {
      prompt,
      maxTokens: 32,
      sampling: { temperature: 1.5, topK: 0, topP: 1, minP: 0, seed },
    })).result.tokens;
  deepEqual(await run(1), await run(1));
  notDeepEqual(await run(1), await run(2));
});

Deno.test("on the CPU a first token is handed on before the next step computes", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const context = loaded.scheduler.context;
  equal(context.computesOnHost, true);
  const events: string[] = [];
  using _watch = watchDecodes(context, (batch) => events.push(`decode of ${batch.length}`));
  const prompt = loaded.model.tokenize("once upon a time");
  const generation = loaded.scheduler.submit({
    prompt,
    maxTokens: 3,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  for await (const chunk of generation) events.push(`text ${chunk.completionTokens}`);
  equal((await generation.result).completionTokens, 3);
  // Its decode threads would hold up the event loop, which writes the token to the client.
  deepEqual(events.slice(0, 3), [`decode of ${prompt.length}`, "text 1", "decode of 1"]);
});

/** Microtask hops that stand for an answer's work on a chunk (framing, JSON, the write). */
const HOPS = 100;

Deno.test("on the CPU a first token's whole way out runs before the next step computes", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  ok(loaded.context.computesOnHost);
  const startedEarly: number[] = [];
  for (let request = 0; request < 40; request++) {
    const generation = loaded.scheduler.submit({
      prompt: loaded.model.tokenize(`request ${request} once upon a time`),
      maxTokens: 4,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    // The way an HTTP answer takes its chunks: a ReadableStream fed by the generation.
    const body = new ReadableStream<string>({
      async start(controller) {
        for await (const chunk of generation) controller.enqueue(chunk.text);
        controller.close();
      },
    });
    let first = true;
    for await (const _text of body) {
      if (!first) continue;
      first = false;
      for (let hop = 0; hop < HOPS; hop++) {
        const until = performance.now() + 0.01;
        while (performance.now() < until); // some work in each hop
        await Promise.resolve();
      }
      if (loaded.context.busy) startedEarly.push(request);
    }
    await generation.result;
  }
  deepEqual(startedEarly, [], "requests whose second step started before their first chunk left");
});

Deno.test("a prompt longer than the batch size is evaluated in chunks instead of crashing", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    batchSize: 32,
    ctxSize: 512,
  });
  const prompt = loaded.model.tokenize("the quick brown fox jumps over the lazy dog ".repeat(12));
  ok(prompt.length > 100);
  const { result } = await collect(loaded, { prompt, maxTokens: 8, sampling: { temperature: 0 } });
  equal(result.completionTokens, 8);
  await using wide = await LoadedModel.open({ path: await fixtureModel("tiny-f32"), ctxSize: 512 });
  const reference = await collect(wide, { prompt, maxTokens: 8, sampling: { temperature: 0 } });
  deepEqual(result.tokens, reference.result.tokens);
});

Deno.test("the prompts of a burst are evaluated in the order they came, whatever their slots", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 3,
    ctxSize: 256,
    batchSize: 64,
  });
  const sentence = (word: string) =>
    loaded.model.tokenize(`${word} jumps over the lazy dog `.repeat(14));
  // Two requests leave prompts cached in slots 0 and 1, so that the burst below takes the slots
  // out of order: "fox" shares the start of slot 1's, then "cat" gets slot 0 and "owl" slot 2.
  await firstTokenSteps(loaded, [
    { word: "ant", prompt: sentence("ant") },
    { word: "fox", prompt: sentence("fox").slice(0, 10) },
  ]);
  const burst = ["fox", "cat", "owl"].map((word) => ({ word, prompt: sentence(word) }));
  ok(burst.every(({ prompt }) => prompt.length > loaded.scheduler.context.nBatch));
  const { order, decodesBefore, log } = await firstTokenSteps(loaded, burst);
  deepEqual(order, ["fox", "cat", "owl"], log);
  // Each first token comes with its own prompt's last step, not with the others'.
  const steps = order.map((word) => decodesBefore.get(word) as number);
  ok(steps[0]! < steps[1]! && steps[1]! < steps[2]!, log);
});

// First tokens' steps of ant, bee, cat, dog and owl, sent in that order. With one shared cache,
// ant and bee share the first step; cat's step does not wait for dog's prompt, but the short one,
// which came after dog, joins it. With a stream per slot, requests that start together take slots
// shortest prompt first (one pass per length, see slot_placement.ts), so owl and the two shorter
// long prompts (bee and dog, 290 tokens against 314) fill the first step, then one long prompt a
// step.
for (
  const [kvUnified, steps] of [["on", [1, 1, 2, 3, 2]], ["off", [2, 1, 3, 1, 1]]] as const
) {
  Deno.test(`once streams generate, a step finishes one long prompt of a burst at a time (kv-unified ${kvUnified})`, async () => {
    await using loaded = await LoadedModel.open({
      path: await fixtureModel("tiny-f32"),
      parallel: 5,
      ctxSize: 512,
      batchSize: 700,
      kvUnified,
    });
    const sentence = (word: string, times: number) =>
      loaded.model.tokenize(`${word} jumps over the lazy fox `.repeat(times));
    const long = ["ant", "bee", "cat", "dog"].map((word) => ({ word, prompt: sentence(word, 24) }));
    // Two fit the batch, four do not; each is longer than a short prompt (256 tokens).
    const { nBatch } = loaded.scheduler.context;
    ok(long.every(({ prompt }) => prompt.length > 256 && 2 * prompt.length <= nBatch));
    const short = { word: "owl", prompt: sentence("owl", 3) };
    const { decodesBefore, log } = await firstTokenSteps(loaded, [...long, short]);
    deepEqual(
      ["ant", "bee", "cat", "dog", "owl"].map((word) => decodesBefore.get(word)),
      steps,
      log,
    );
  });
}

Deno.test("a prompt that cannot fit the context is refused with a clear error", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    ctxSize: 64,
  });
  const prompt = loaded.model.tokenize("word ".repeat(80));
  throws(() => loaded.scheduler.submit({ prompt, maxTokens: 4 }), (error: unknown) => {
    ok(error instanceof GenerationError);
    equal(error.code, "context_overflow");
    ok(/more than the context of 64 tokens/.test(error.message));
    return true;
  });
  equal(loaded.scheduler.stats().busySlots, 0);
});

Deno.test("a max_tokens beyond the rest of the context is clamped and ends with length", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    ctxSize: 64,
  });
  const prompt = loaded.model.tokenize("once upon a time");
  const { result } = await collect(loaded, {
    prompt,
    maxTokens: 1000,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  equal(result.finishReason, "length");
  equal(result.completionTokens, 64 - prompt.length, "generated until the context was full");
});

Deno.test("multi-byte UTF-8 split across byte tokens streams as whole characters", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const prompt = loaded.model.tokenize("symbols:");
  const { chunks, result } = await collect(loaded, {
    prompt,
    maxTokens: 32,
    // The tiny vocabulary has no piece for these characters: they come out as byte tokens.
    sampling: { temperature: 0, grammar: 'root ::= "€ 日本 😀"' },
  });
  equal(result.text, "€ 日本 😀");
  ok(result.completionTokens > [...result.text].length, "characters were split over tokens");
  for (const chunk of chunks) ok(!chunk.includes("\uFFFD"), `chunk ${JSON.stringify(chunk)}`);
  equal(result.finishReason, "stop");
});

Deno.test("a stop string spread over several tokens ends generation and is never emitted", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const { chunks, result } = await collect(loaded, {
    prompt: loaded.model.tokenize("say:"),
    maxTokens: 40,
    stop: ["stop here"],
    sampling: { temperature: 0, grammar: 'root ::= "hello world stop here and more"' },
  });
  equal(result.text, "hello world ");
  equal(chunks.join(""), "hello world ");
  equal(result.finishReason, "stop");
  equal(result.stoppedBy, "stop here");
});

Deno.test("aborting a generation ends it as cancelled and frees its slot", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const abort = new AbortController();
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("tell me a long story"),
    maxTokens: 400,
    sampling: { temperature: 0 },
    signal: abort.signal,
  });
  let seen = 0;
  for await (const _ of generation) {
    if (++seen === 3) abort.abort();
  }
  const result = await generation.result;
  equal(result.finishReason, "cancelled");
  ok(result.completionTokens < 400);
  equal(loaded.scheduler.stats().busySlots, 0);
});

Deno.test("a single slot uses a per-sequence KV cache and generates what a unified one does", async () => {
  const path = await fixtureModel("tiny-f32");
  const request = (loaded: LoadedModel) => ({
    prompt: loaded.model.tokenize("once upon a time"),
    maxTokens: 24,
    sampling: { temperature: 0 },
  });
  // A unified cache makes llama.cpp check every batch against all 256 possible sequences.
  await using single = await LoadedModel.open({ path, parallel: 1 });
  equal(single.context.kvUnified, false);
  await using shared = await LoadedModel.open({ path, parallel: 2, kvUnified: "on" });
  equal(shared.context.kvUnified, true);
  const one = await collect(single, request(single));
  const two = await collect(shared, request(shared));
  deepEqual(one.chunks.join(""), two.chunks.join(""));
});
