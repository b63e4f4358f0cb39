import { deepEqual, equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import type { Generation } from "../../src/engine/scheduler.ts";
import {
  firstGroupSize,
  GENERATION_STEP_REFRESH,
  MIN_PREFILL_CHUNK,
  PrefillBudget,
  PROMPT_PACE_SLOWDOWN,
} from "../../src/engine/prefill_budget.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("PrefillBudget keeps a step with prompt tokens near 1.5x a generation-only step", () => {
  const budget = new PrefillBudget();
  equal(budget.tokens(), 64, "a modest chunk before anything is timed");
  budget.observe(20, 4, 0);
  budget.observe(70, 4, 100); // 0.5 ms per prompt token
  equal(budget.tokens(), 20);
  for (let i = 0; i < 50; i++) budget.observe(1000, 4, 10); // very slow prompt tokens
  equal(budget.tokens(), MIN_PREFILL_CHUNK, "never below the floor");
});

Deno.test("PrefillBudget learns nothing from a step with prompt tokens no slower than generation", () => {
  const budget = new PrefillBudget();
  budget.observe(20, 4, 0);
  budget.observe(70, 4, 100); // 0.5 ms per prompt token
  // A busy machine slows one generation step: the average rises to 36 ms, and the next step, with
  // 100 prompt tokens in it, takes less than that. The tokens were not free.
  budget.observe(100, 4, 0);
  budget.observe(30, 4, 100);
  equal(budget.stepCosts()?.msPerPromptToken, 0.5);
  equal(budget.tokens(), 36, "a chunk, not the whole of a long prompt");
});

Deno.test("PrefillBudget asks for a step of generation alone now and then while prompts go in chunks", () => {
  const budget = new PrefillBudget();
  budget.observe(20, 4, 0);
  for (let i = 0; i < GENERATION_STEP_REFRESH; i++) {
    equal(budget.generationStepDue(), false, `after ${i} steps with prompt tokens`);
    budget.observe(30, 4, 10);
  }
  equal(budget.generationStepDue(), true, "the streams' step is timed again");
  // Their contexts grew: the step is slower now, and what prompt tokens add is judged against it.
  budget.observe(40, 4, 0);
  equal(budget.generationStepDue(), false);
  equal(budget.stepCosts()?.generationStepMs, 24);
  budget.observe(10, 0, 100); // prompts alone do not make it due
  equal(budget.generationStepDue(), false);
  for (let i = 0; i < GENERATION_STEP_REFRESH; i++) budget.observe(30, 4, 10);
  equal(budget.generationStepDue(), true);
  budget.observe(30, 4, 10); // short prompts went in all the same: the chunks sat out in vain
  equal(budget.generationStepDue(), false, "they do not sit out the next step too");
});

Deno.test("PrefillBudget keeps a long prompt's pace, its chunks doubling at most a step", () => {
  const budget = new PrefillBudget();
  const prompt = { elapsedMs: 1000, evaluated: 0, rest: 4000, lastChunk: 0, streamSteps: 3000 };
  budget.observe(20, 4, 0);
  budget.observe(1000, 4, 10); // beside streams, a prompt token seems to cost 98 ms
  equal(budget.paceTokens(prompt), 0, "no pace before prompts alone were timed");
  budget.observe(100, 0, 100); // alone, 1 ms a token
  const due = 1000 / PROMPT_PACE_SLOWDOWN;
  equal(budget.paceTokens({ ...prompt, evaluated: due, lastChunk: 64 }), 0, "on pace");
  equal(budget.paceTokens({ ...prompt, evaluated: due - 3, lastChunk: 64 }), 3, "three behind");
  equal(budget.paceTokens(prompt), 2 * MIN_PREFILL_CHUNK, "far behind: from the floor up");
  equal(budget.paceTokens({ ...prompt, lastChunk: 32 }), 64);
  equal(budget.tokens(), MIN_PREFILL_CHUNK, "while the stall alone would allow the floor");
  // 533 steps left of the streams, each 30 ms (20 lengthened by half), end within 16 s, and the
  // prompt then takes 4 s alone: 20 s, within 5x its time alone.
  equal(
    budget.paceTokens({ ...prompt, elapsedMs: 0, streamSteps: 533 }),
    0,
    "the streams end soon",
  );
  equal(budget.paceTokens({ ...prompt, elapsedMs: 0, streamSteps: 534 }), 0, "nothing due yet");
  equal(budget.paceTokens({ ...prompt, streamSteps: 534 }), 4, "they end too late: keep the pace");
});

Deno.test("PrefillBudget sets a long prompt's pace by prompt tokens, not by steps", () => {
  const budget = new PrefillBudget();
  budget.observe(20, 4, 0);
  // A short prompt's step stretched by a hiccup (0.33 ms a token), then a long prompt's two
  // steps at 0.06 ms a token: the pace reckons about 0.07, not the short step's 0.33.
  budget.observe(30, 0, 90);
  budget.observe(123, 0, 2048);
  budget.observe(57, 0, 952);
  const prompt = { elapsedMs: 1000, evaluated: 0, rest: 3000, lastChunk: 32, streamSteps: 3000 };
  // 1,000 ms at 5 times 0.07 ms a token is about 2,900 tokens due: the chunk doubles. Reckoned
  // at 0.33 ms a token, the 600 due would also double it, so ask at 2,600 evaluated.
  equal(budget.paceTokens(prompt), 64, "far behind");
  equal(budget.paceTokens({ ...prompt, evaluated: 2600, rest: 400 }), 64, "still behind");
});

/**
 * Streams a request and, once it has 5 tokens, submits one with `lateText` as its prompt.
 *
 * @returns The late prompt's length, and how many tokens the first request got before the late
 *   one's first token.
 */
async function tokensBeforeLateFirstToken(
  lateText: string,
): Promise<{ lateLength: number; waited: number }> {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 2,
    ctxSize: 1024,
  });
  const model = loaded.model;
  const streaming = loaded.scheduler.submit({
    prompt: model.tokenize("once upon a time"),
    maxTokens: 400,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  const latePrompt = model.tokenize(lateText);
  let tokensSeen = 0;
  let waited = -1;
  let late: Generation | undefined;
  for await (const chunk of streaming) {
    tokensSeen = chunk.completionTokens;
    if (tokensSeen !== 5) continue;
    late = loaded.scheduler.submit({
      prompt: latePrompt,
      maxTokens: 1,
      sampling: { temperature: 0 },
    });
    void (async () => {
      for await (const _ of late) if (waited < 0) waited = tokensSeen - 5;
    })();
  }
  await late?.result;
  return { lateLength: latePrompt.length, waited };
}

Deno.test("a long prompt is evaluated in chunks while another request keeps streaming", async () => {
  const { lateLength, waited } = await tokensBeforeLateFirstToken(
    "the quick brown fox jumps over the lazy dog ".repeat(30),
  );
  ok(lateLength > 500 && lateLength < 1000);
  ok(
    waited >= 5,
    `the streaming request got ${waited} tokens while a ${lateLength}-token prompt was ` +
      `evaluated (evaluated in one step, it gets about 2)`,
  );
});

Deno.test("a short prompt is evaluated whole, in the next step, while another request streams", async () => {
  const { lateLength, waited } = await tokensBeforeLateFirstToken(
    "the quick brown fox jumps over the lazy dog ".repeat(10),
  );
  ok(lateLength > 100 && lateLength <= 256);
  ok(waited >= 0 && waited <= 2, `its first token came after ${waited} tokens of the other`);
});

Deno.test("requests that arrive together are not chunked behind each other's streams", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 2,
    ctxSize: 2048,
    batchSize: 512,
  });
  const prompt = loaded.model.tokenize("the quick brown fox jumps over the lazy dog ".repeat(30));
  ok(prompt.length > 512 && prompt.length < 1000, `${prompt.length} tokens`);
  const submit = (maxTokens: number) =>
    loaded.scheduler.submit({ prompt, maxTokens, ignoreEos: true, sampling: { temperature: 0 } });
  // The first fills the first step's batch and starts streaming while the second still waits.
  const first = submit(400);
  const second = submit(1);
  let firstTokens = 0;
  let tokensBeforeSecond = -1;
  const watching = (async () => {
    for await (const _ of second) if (tokensBeforeSecond < 0) tokensBeforeSecond = firstTokens;
  })();
  for await (const chunk of first) firstTokens = chunk.completionTokens;
  await watching;
  ok(
    tokensBeforeSecond >= 0 && tokensBeforeSecond <= 2,
    `the first request streamed ${tokensBeforeSecond} tokens before the second's first token`,
  );
});

Deno.test("firstGroupSize splits a burst of prompts in two where a prompt costs more than a step", () => {
  const cpu = { generationStepMs: 12, msPerPromptToken: 0.77 };
  // A half would give the least sum of first-token times; a majority's sum is 1% and 4% larger.
  equal(firstGroupSize(Array(8).fill(34), cpu), 5, "a majority first");
  equal(firstGroupSize(Array(4).fill(34), cpu), 3, "a majority first");
  equal(firstGroupSize(Array(3).fill(34), cpu), 2);
  equal(firstGroupSize(Array(2).fill(34), cpu), 1, "a majority of two is all of them: a half");
  // Where a majority first costs more than a tenth (a long prompt would join it), the least sum
  // wins.
  equal(firstGroupSize([34, 34, 300, 300], cpu), 2);
  // Where the second group would not go in one step (long prompts), the least sum.
  equal(firstGroupSize(Array(4).fill(1000), cpu, false), 2);
  equal(firstGroupSize(Array(4).fill(1000), cpu), 3);
  equal(firstGroupSize([10, 20, 300], cpu), 2, "the long last prompt waits");
  equal(firstGroupSize(Array(4).fill(2), cpu), 4, "short rests: one step");
  equal(firstGroupSize(Array(8).fill(34), undefined), 8, "nothing timed yet: one step");
  equal(firstGroupSize([34], cpu), 1);
  const gpu = { generationStepMs: 1.1, msPerPromptToken: 0.002 };
  equal(firstGroupSize(Array(8).fill(29), gpu), 8);
});

Deno.test("PrefillBudget times prompt tokens only from steps where the pass does not dominate", () => {
  const budget = new PrefillBudget();
  equal(budget.stepCosts(), undefined);
  budget.observe(4, 1, 0);
  budget.observe(4, 0, 1); // a cached prompt's last token: a pass, not a prompt token's cost
  equal(budget.stepCosts(), undefined);
  budget.observe(100, 0, 100);
  deepEqual(budget.stepCosts(), { generationStepMs: 4, msPerPromptToken: 1 });
});

/** First tokens per step where the first `first` of `n` prompts go in the first step. */
function stepsOf(first: number, n: number): number[] {
  return first < n ? [first, n - first] : [n];
}

/**
 * How many of a burst of prompts had their first token in each step the burst took: read as each
 * result settles, which is before the next step starts (the scheduler drains the microtasks after
 * a step with first tokens on the CPU).
 */
async function firstTokensPerStep(
  loaded: LoadedModel,
  prompts: readonly Int32Array[],
): Promise<number[]> {
  const before = loaded.scheduler.stats().steps;
  const steps = await Promise.all(prompts.map((prompt) => {
    const generation = loaded.scheduler.submit({
      prompt,
      maxTokens: 1,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    return generation.result.then(() => loaded.scheduler.stats().steps - before);
  }));
  const perStep = Array<number>(loaded.scheduler.stats().steps - before).fill(0);
  for (const step of steps) perStep[step - 1] = (perStep[step - 1] ?? 0) + 1;
  return perStep;
}

Deno.test("on the CPU, long prompts that start together go in two steps, short rests in one", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    gpuBackend: "cpu",
    parallel: 4,
    ctxSize: 4096,
  });
  const model = loaded.model;
  // Times a prompt step and generation steps.
  const warmUp = loaded.scheduler.submit({
    prompt: model.tokenize("the quick brown fox jumps over the lazy dog ".repeat(5)),
    maxTokens: 8,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  await warmUp.result;
  const words = ["apple", "river", "stone", "cloud"];
  const prompts = words.map((word) =>
    model.tokenize(`${word} ${"the quick brown fox jumps over the lazy dog ".repeat(10)}`)
  );
  ok(prompts.every((p) => p.length > 150 && p.length <= 256), `${prompts.map((p) => p.length)}`);
  // Where a prompt costs more than a generation step, a majority first (a half first gives a sum
  // of first-token times at most 9% smaller): three, then the last. The split follows the costs
  // the scheduler learnt, which a busy machine skews; on an idle one it is three, then one.
  const costs = loaded.scheduler.stats().stepCosts;
  ok(costs !== undefined, "the warm-up timed the steps");
  const first = firstGroupSize(prompts.map((p) => p.length), costs);
  ok(first >= 3, `${first} first of 4 (${JSON.stringify(costs)})`);
  deepEqual(await firstTokensPerStep(loaded, prompts), stepsOf(first, 4), JSON.stringify(costs));
  // The same prompts again: each slot has all but the last token cached, and such short rests
  // cost less than the extra step (on an idle machine: all four in one step).
  const again = loaded.scheduler.stats().stepCosts;
  const evaluatedBefore = loaded.scheduler.stats().promptTokensEvaluated;
  deepEqual(
    await firstTokensPerStep(loaded, prompts),
    stepsOf(firstGroupSize([1, 1, 1, 1], again), 4),
    JSON.stringify(again),
  );
  equal(loaded.scheduler.stats().promptTokensEvaluated - evaluatedBefore, 4);
});

Deno.test("a long prompt behind a long stream keeps its pace", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 2,
    ctxSize: 2 * 4096,
  });
  const { model, scheduler } = loaded;
  const text = "the quick brown fox jumps over the lazy dog ";
  // A prompt alone, long enough to time what a prompt token costs.
  await scheduler.submit({ prompt: model.tokenize(text.repeat(4)), maxTokens: 1 }).result;
  const stop = new AbortController();
  const streaming = scheduler.submit({
    prompt: model.tokenize("once upon a time"),
    maxTokens: 3500,
    ignoreEos: true,
    sampling: { temperature: 0 },
    signal: stop.signal,
  });
  const latePrompt = model.tokenize(text.repeat(300)).slice(0, 3000);
  // Its time alone, timed on the same tokens reversed (no prefix of them is cached then).
  const aloneStart = performance.now();
  await scheduler.submit({ prompt: latePrompt.toReversed(), maxTokens: 1 }).result;
  const aloneMs = performance.now() - aloneStart;
  let steps = -1;
  let lateMs = -1;
  for await (const chunk of streaming) {
    if (chunk.completionTokens < 20 || steps >= 0) continue;
    const stepsBefore = scheduler.stats().steps;
    const lateStart = performance.now();
    steps = 0;
    void scheduler.submit({ prompt: latePrompt, maxTokens: 1 }).result.then(() => {
      steps = scheduler.stats().steps - stepsBefore;
      lateMs = performance.now() - lateStart;
      stop.abort();
    });
  }
  // Kept to its pace, it is evaluated within PROMPT_PACE_SLOWDOWN times its time alone. On the
  // first 2-core machine chunks sized by the stall budget alone took 1,080-1,340 steps of the
  // stream (the pass of each chunk of a few tokens counted as their cost), against 360-430 with
  // the pace. On a faster one (Zen 5) the smallest chunks already keep it: 1,500 steps, about
  // 3 times its time alone, with or without the pace. On an AVX2 2-core host, 3.7-4.6 times
  // (520-970 steps) with the pace, 5.8-8.1 times (1,360-1,540 steps) without; a short prompt's
  // step stretched by a hiccup once set the pace too slow there (8 times, 1,395 steps), which
  // the unit test above covers.
  ok(steps > 0, "the stream went on beside it");
  ok(
    lateMs <= PROMPT_PACE_SLOWDOWN * aloneMs * 1.5,
    `its first token after ${lateMs.toFixed(0)} ms (${steps} steps of the stream), ` +
      `${(lateMs / aloneMs).toFixed(1)} times its ${aloneMs.toFixed(0)} ms alone`,
  );
});
