import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { GenerationError } from "../../src/engine/errors.ts";
import { type DeviceSamplingMode, LoadedModel } from "../../src/engine/loaded_model.ts";
import type { GenerationRequest, GenerationResult } from "../../src/engine/scheduler.ts";
import { jsonObjectGrammar } from "../../src/engine/structured/json_schema.ts";
import { fixtureModel } from "../fixtures/models.ts";

const path = await fixtureModel("tiny-f32");

/** A model whose lone streams decode on the decode thread (or not), ready to run ahead. */
async function open(
  decodeThread: boolean,
  parallel = 2,
  deviceSampling: DeviceSamplingMode = "off",
): Promise<LoadedModel> {
  const loaded = await LoadedModel.open({
    path,
    decodeThread,
    parallel,
    ctxSize: 512,
    deviceSampling,
  });
  // The thread starts with the model; a first request may come before it is ready.
  for (let i = 0; decodeThread && !loaded.context.canDecodeAhead && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return loaded;
}

async function run(
  loaded: LoadedModel,
  request: GenerationRequest,
  onChunk: (count: number) => void = () => {},
): Promise<{ text: string; result: GenerationResult }> {
  const generation = loaded.scheduler.submit(request);
  let text = "";
  let count = 0;
  for await (const chunk of generation) {
    text += chunk.text;
    onChunk(++count);
  }
  return { text, result: await generation.result };
}

/** The tokens of `request` on a model without the decode thread: what every run must give. */
async function reference(
  request: GenerationRequest,
  deviceSampling: DeviceSamplingMode = "off",
): Promise<number[]> {
  await using plain = await open(false, 2, deviceSampling);
  const { result } = await run(plain, request);
  equal(plain.scheduler.stats().stepsAhead, 0);
  return result.tokens;
}

Deno.test("a lone stream decoded on the decode thread gives the event loop's greedy and seeded tokens", async () => {
  await using loaded = await open(true);
  const prompt = loaded.model.tokenize("once upon a time");
  for (
    const sampling of [{ temperature: 0 }, { temperature: 0.9, topK: 40, topP: 0.9, seed: 7 }]
  ) {
    const request = { prompt, maxTokens: 48, ignoreEos: true, sampling };
    const before = loaded.scheduler.stats().stepsAhead;
    const { text, result } = await run(loaded, request);
    deepEqual(result.tokens, await reference(request), JSON.stringify(sampling));
    equal(result.completionTokens, 48);
    equal(text, result.text, "the chunks stream exactly the final text");
    // The first token comes from the prompt's step; the thread decodes the next 47 steps.
    equal(loaded.scheduler.stats().stepsAhead - before, 47, "the steps ran on the decode thread");
  }
});

Deno.test("a lone stream whose chain samples inside the decode graph gives the same tokens on the decode thread", async () => {
  // On a GPU the chains of plain requests sample inside the graph; on the CPU too when asked.
  await using loaded = await open(true, 2, "on");
  const prompt = loaded.model.tokenize("once upon a time");
  const lines: string[] = [];
  const stopListening = loaded.model.llama.listen((text) => lines.push(text));
  try {
    for (
      const sampling of [{ temperature: 0 }, { temperature: 0.9, topK: 40, topP: 0.9, seed: 7 }]
    ) {
      const request = { prompt, maxTokens: 32, ignoreEos: true, sampling };
      const before = loaded.scheduler.stats();
      const { result } = await run(loaded, request);
      const after = loaded.scheduler.stats();
      equal(after.deviceSampledRequests - before.deviceSampledRequests, 1, "sampled in the graph");
      equal(after.stepsAhead - before.stepsAhead, 31, "the steps ran on the decode thread");
      deepEqual(result.tokens, await reference(request, "on"), JSON.stringify(sampling));
    }
  } finally {
    stopListening();
  }
  // The thread reads the graph's token itself: llama_sampler_sample would log a line for each
  // (a trip from the thread to the event loop through the log callback).
  deepEqual(lines.filter((line) => line.includes("Backend sampler selected")), []);
});

Deno.test("a stream that ends on a stop string or a stop token leaves a cache that holds its own tokens only", async () => {
  await using loaded = await open(true, 1); // one slot: sequence 0
  const prompt = loaded.model.tokenize("the weather today");
  const greedy = { prompt, maxTokens: 40, ignoreEos: true, sampling: { temperature: 0 } };
  const full = await reference(greedy);
  // A stop token: the thread halts by itself once it samples it.
  const stopToken = full[12] as number;
  const byToken = await run(loaded, { ...greedy, ignoreEos: false, stopTokens: [stopToken] });
  equal(byToken.result.finishReason, "stop");
  deepEqual(byToken.result.tokens, full.slice(0, full.indexOf(stopToken)));
  equal(loaded.context.maxPosition(0), prompt.length + byToken.result.tokens.length - 1);
  // A stop string, found while the event loop is held up: by then the thread has decoded far
  // past it, and those cells go once it halts (the token that completed the string was sampled,
  // never decoded).
  const stop = loaded.model.detokenize(full.slice(20, 22));
  const aheadBefore = loaded.scheduler.stats().stepsAhead;
  const byString = await run(loaded, { ...greedy, ignoreEos: false, stop: [stop] }, (count) => {
    // Long enough for the thread to decode on even when other processes load both cores (100 ms
    // had not been, beside a load test).
    const heldUntil = performance.now() + 500;
    while (count === 2 && performance.now() < heldUntil) { /* the thread runs on */ }
  });
  equal(byString.result.finishReason, "stop");
  const decoded = loaded.scheduler.stats().stepsAhead - aheadBefore;
  ok(decoded > byString.result.tokens.length, `${decoded} steps decoded`);
  while (loaded.context.busy) await new Promise((resolve) => setTimeout(resolve, 1));
  equal(loaded.context.maxPosition(0), prompt.length + byString.result.tokens.length - 2);
  // And the next request that goes on from it generates what a fresh model does.
  const onwards = Int32Array.from([...prompt, ...byString.result.tokens, ...full.slice(30, 34)]);
  const next = { ...greedy, prompt: onwards, maxTokens: 16 };
  const again = await run(loaded, next);
  ok(again.result.cachedTokens >= prompt.length + byString.result.tokens.length - 1);
  deepEqual(again.result.tokens, await reference(next));
});

Deno.test("a request that arrives while a stream runs ahead joins it, and both give their own tokens", async () => {
  await using loaded = await open(true);
  const first = {
    prompt: loaded.model.tokenize("once upon a time"),
    maxTokens: 80,
    ignoreEos: true,
    sampling: { temperature: 0 },
  };
  const second = { ...first, prompt: loaded.model.tokenize("a cat sat"), maxTokens: 12 };
  let joined: Promise<{ result: GenerationResult }> | undefined;
  let aheadWhenJoined = 0;
  const long = await run(loaded, first, (count) => {
    if (count !== 10) return;
    aheadWhenJoined = loaded.scheduler.stats().stepsAhead;
    joined = run(loaded, second);
  });
  const short = await (joined as Promise<{ result: GenerationResult }>);
  ok(aheadWhenJoined > 0, "the first stream ran ahead before the second came");
  deepEqual(long.result.tokens, await reference(first));
  deepEqual(short.result.tokens, await reference(second));
  ok(loaded.scheduler.stats().sharedSteps > 0, "the two shared steps");
});

Deno.test("a stream cancelled while it runs ahead ends as cancelled and its slot serves the next request", async () => {
  await using loaded = await open(true, 1);
  const request = {
    prompt: loaded.model.tokenize("hello there"),
    maxTokens: 200,
    ignoreEos: true,
    sampling: { temperature: 0 },
  };
  const abort = new AbortController();
  const cancelled = await run(
    loaded,
    { ...request, signal: abort.signal },
    (count) => count === 8 && abort.abort(),
  );
  equal(cancelled.result.finishReason, "cancelled");
  ok(cancelled.result.completionTokens < 200);
  const next = { ...request, maxTokens: 24 };
  deepEqual((await run(loaded, next)).result.tokens, await reference(next));
});

Deno.test("closing a model while a stream runs ahead ends the stream and frees the thread", async () => {
  const loaded = await open(true);
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("hello"),
    maxTokens: 400,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  let chunks = 0;
  for await (const _ of generation) if (++chunks === 5) break;
  await loaded.close();
  // The answer was cut off, and the request says so rather than ending as if complete.
  await rejects(generation.result, (error: unknown) => {
    ok(error instanceof GenerationError);
    equal(error.code, "closed");
    match(error.message, /before the answer was complete/);
    return true;
  });
  ok(loaded.scheduler.stats().stepsAhead > 0);
});

Deno.test("requests that need the logits between steps, or a model without the thread, decode on the event loop", async () => {
  await using loaded = await open(true);
  const prompt = loaded.model.tokenize("once upon a time");
  const base = { prompt, maxTokens: 10, ignoreEos: true, sampling: { temperature: 0 } };
  await run(loaded, { ...base, logprobs: 2 });
  equal(loaded.scheduler.stats().stepsAhead, 0);
});

Deno.test("streams under a grammar run on the decode thread and give the event loop's tokens, greedy and seeded", async () => {
  const grammar = jsonObjectGrammar();
  const samplings = [
    { temperature: 0, grammar },
    { temperature: 0.8, topK: 40, seed: 3, repeatPenalty: 1.3, grammar },
  ];
  for (const sampling of samplings) {
    await using loaded = await open(true);
    const request = { prompt: loaded.model.tokenize("JSON:"), maxTokens: 24, sampling };
    // The first constrained request runs ahead as well as the ones after it.
    const { result } = await run(loaded, request);
    const stats = loaded.scheduler.stats();
    ok(stats.stepsAhead > 0, "the stream ran on the decode thread");
    // The thread's picks were refused too (random weights write no JSON), and put back.
    ok(stats.grammarRefusals > 0 && stats.grammarRefusals <= stats.grammarTokens);
    deepEqual(result.tokens, await reference(request), JSON.stringify(sampling));
  }
});

Deno.test("concurrent streams decode their shared steps on the decode thread and give the tokens they give without it", async () => {
  const prompts = ["once upon a time", "a cat sat", "the weather today", "hello there"];
  const tokensOf = async (decodeThread: boolean) => {
    await using loaded = await open(decodeThread, 4);
    const requests = prompts.map((text) => ({
      prompt: loaded.model.tokenize(text),
      maxTokens: 24,
      ignoreEos: true,
      sampling: { temperature: 0 },
    }));
    const results = await Promise.all(requests.map((request) => run(loaded, request)));
    ok(loaded.scheduler.stats().sharedSteps > 0, "the streams shared steps");
    return {
      tokens: results.map(({ result }) => result.tokens),
      onThread: loaded.context.decodesOnThread,
    };
  };
  const threaded = await tokensOf(true);
  const plain = await tokensOf(false);
  deepEqual(threaded.tokens, plain.tokens);
  ok(threaded.onThread > 0, `${threaded.onThread} decodes on the thread`);
  equal(plain.onThread, 0);
});

Deno.test("a stream with more stop tokens than a run holds decodes through the event loop, stopping as asked", async () => {
  await using loaded = await open(true, 1);
  const prompt = loaded.model.tokenize("the weather today");
  const greedy = { prompt, maxTokens: 40, ignoreEos: true, sampling: { temperature: 0 } };
  const full = await reference(greedy);
  const stopToken = full[12] as number;
  const vocabulary = loaded.model.nVocab;
  // MAX_ENDS (64) and more: tokens the stream never samples, then the one it does.
  const unused = [...Array(vocabulary).keys()].filter((token) => !full.includes(token));
  const stopTokens = [...unused.slice(0, 70), stopToken];
  const aheadBefore = loaded.scheduler.stats().stepsAhead;
  const { result } = await run(loaded, { ...greedy, ignoreEos: false, stopTokens });
  equal(result.finishReason, "stop");
  deepEqual(result.tokens, full.slice(0, full.indexOf(stopToken)));
  equal(loaded.scheduler.stats().stepsAhead, aheadBefore, "no step ran ahead on the thread");
});
