import { deepEqual, equal, ok } from "node:assert/strict";
import { type DeviceSamplingMode, LoadedModel } from "../../src/engine/loaded_model.ts";
import type { GenerationRequest } from "../../src/engine/scheduler.ts";
import type { Switch } from "../../src/engine/gpu.ts";
import { firstGroupSize } from "../../src/engine/prefill_budget.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** Four slots; the fused attention kernel unless asked, so both layouts compute alike. */
async function open(
  kvUnified: Switch,
  deviceSampling: DeviceSamplingMode = "off",
  flashAttn: Switch = "on",
) {
  return await LoadedModel.open({
    path: await fixtureModel("llama-spm"),
    parallel: 4,
    ctxSize: 256,
    kvUnified,
    deviceSampling,
    flashAttn,
  });
}

async function tokensOf(loaded: LoadedModel, request: GenerationRequest): Promise<number[]> {
  const generation = loaded.scheduler.submit(request);
  for await (const _ of generation) { /* drain */ }
  return (await generation.result).tokens;
}

function greedy(loaded: LoadedModel, text: string, maxTokens: number): GenerationRequest {
  return {
    prompt: loaded.model.tokenize(text),
    maxTokens,
    ignoreEos: true,
    sampling: { temperature: 0 },
  };
}

/** Greedy requests at once, whose prompts are the first `lengths[i]` tokens of `text`. */
function prefixesTogether(
  loaded: LoadedModel,
  text: Int32Array,
  lengths: readonly number[],
  maxTokens: number,
): Promise<number[][]> {
  return Promise.all(lengths.map((n) =>
    tokensOf(loaded, {
      prompt: text.slice(0, n),
      maxTokens,
      ignoreEos: true,
      sampling: { temperature: 0 },
    })
  ));
}

/** Four requests at once; the second ends first, inside the busy run of slots 0 to 3. */
async function staggeredBurst(loaded: LoadedModel): Promise<number[][]> {
  const lengths = [12, 4, 30, 20];
  return await Promise.all(
    lengths.map((n, i) => tokensOf(loaded, greedy(loaded, `The harbour log, entry ${i}:`, n))),
  );
}

Deno.test("auto gives each slot a KV stream, on the CPU too, with the kernel the attention probe chose", async () => {
  await using streams = await open("auto", "off", "auto");
  equal(streams.context.kvUnified, false, "every layer is on the CPU here");
  const probe = streams.attentionProbe;
  ok(probe && "kernel" in probe, JSON.stringify(probe));
  equal(streams.context.flashAttn, probe.kernel === "fused" ? "enabled" : "disabled");
  await using shared = await open("on", "off", "auto");
  equal(shared.context.kvUnified, true);
  equal(shared.context.flashAttn, "auto", "the fused kernel skips the cells of other slots");
});

for (const sampling of ["off", "on"] as const) {
  Deno.test(`with a stream per slot, requests ending at different times keep the busy slots one run (device sampling ${sampling})`, async () => {
    await using unified = await open("on", sampling);
    const expected = await staggeredBurst(unified);
    await using streams = await open("off", sampling);
    const tokens = await staggeredBurst(streams);
    deepEqual(tokens, expected, "a moved request goes on as it would have");
    const stats = streams.scheduler.stats();
    ok(stats.slotMoves >= 1, "the last request moved into the gap");
    equal(stats.brokenRunSteps, 0, "no step needed a second pass");
    equal(unified.scheduler.stats().slotMoves, 0, "a unified cache needs no moves");
  });
}

Deno.test("with a stream per slot, a prefix cached away from the busy run is copied next to it", async () => {
  await using loaded = await open("off");
  const story = "Once upon a time, in a lighthouse at the end of a long stone pier that ran far " +
    "into the grey northern sea, there lived";
  const withStory = (n: number) => greedy(loaded, `${story} keeper number ${n}`, 6);
  // Slots 0 to 3 cache four prompts; only slot 0's starts with the story.
  await Promise.all([
    tokensOf(loaded, withStory(1)),
    ...[1, 2, 3].map((i) => tokensOf(loaded, greedy(loaded, `A list of ${i} fruits:`, 6))),
  ]);
  // A long request takes slot 2 (its prompt matches that slot's best), so the busy run is
  // slot 2 alone; the next story request must go to slot 1 or 3, and its prefix comes along.
  const long = tokensOf(loaded, greedy(loaded, "A list of 2 fruits: apples, pears", 40));
  while (loaded.scheduler.stats().busySlots === 0) await new Promise((r) => setTimeout(r, 1));
  const evaluatedBefore = loaded.scheduler.stats().promptTokensEvaluated;
  const request = withStory(2);
  const story2 = await tokensOf(loaded, request);
  await long;
  const evaluated = loaded.scheduler.stats().promptTokensEvaluated - evaluatedBefore;
  const shared = loaded.model.tokenize(`${story} keeper number`).length;
  ok(shared >= 32, `the shared prefix (${shared} tokens) is worth a copy`);
  ok(
    evaluated <= request.prompt.length - shared + 1,
    `only the new part of the prompt was evaluated (${evaluated} of ${request.prompt.length})`,
  );
  equal(loaded.scheduler.stats().brokenRunSteps, 0);
  // The copied cache gives the same tokens as a prompt evaluated from scratch.
  await using fresh = await open("off");
  deepEqual(story2, await tokensOf(fresh, withStory(2)));
});

Deno.test("with a stream per slot, prompts of one length starting together evaluate as many tokens each", async () => {
  await using loaded = await open("off");
  const prompts = [0, 1, 2, 3].map((i) =>
    loaded.model.tokenize(`Entry ${i} of the harbour log, written at dawn by the keeper:`)
  );
  const length = prompts[0]!.length;
  ok(prompts.every((p) => p.length === length), "four prompts of one length");
  // Each slot keeps the first 2, 3, 4 or 5 tokens of one of them.
  await Promise.all(prompts.map((prompt, i) =>
    tokensOf(loaded, {
      prompt: prompt.slice(0, 2 + i),
      maxTokens: 1,
      ignoreEos: true,
      sampling: { temperature: 0 },
    })
  ));
  const before = loaded.scheduler.stats();
  const generations = prompts.map((prompt) =>
    loaded.scheduler.submit({ prompt, maxTokens: 6, ignoreEos: true, sampling: { temperature: 0 } })
  );
  const results = await Promise.all(generations.map((g) => g.result));
  const after = loaded.scheduler.stats();
  // Rests of 14, 13, 12 and 11 tokens would take four passes; given up, the cached 3 to 5 make
  // every rest as long as the longest, and one pass takes them.
  deepEqual(results.map((r) => r.cachedTokens), [2, 2, 2, 2]);
  equal(after.extraPasses - before.extraPasses, 0, "one pass for the four prompts");
  equal(after.promptTokensEvaluated - before.promptTokensEvaluated, 4 * (length - 2));
  // The tokens given up were evaluated again: each answer is the prompt's own.
  await using fresh = await open("off");
  for (const [i, prompt] of prompts.entries()) {
    deepEqual(
      results[i]!.tokens,
      await tokensOf(fresh, {
        prompt,
        maxTokens: 6,
        ignoreEos: true,
        sampling: { temperature: 0 },
      }),
    );
  }
});

Deno.test("with a stream per slot, a request whose device chain has a seed keeps its slot", async () => {
  await using loaded = await open("off", "on");
  const seeded = (i: number, maxTokens: number): GenerationRequest => ({
    ...greedy(loaded, `The harbour log, entry ${i}:`, maxTokens),
    sampling: { temperature: 0.8, seed: 7 }, // one seed: the chains' settings are the same
  });
  // The second ends first; the third would have to move into its gap, and its draws would then
  // come from the gap's chain: it stays, and the steps after are decoded in two passes. Run alone
  // on a context of its own: a prefix cached here would put the third first in line.
  await using reference = await open("off", "on");
  const alone = await tokensOf(reference, seeded(2, 24));
  const tokens = await Promise.all(
    [seeded(0, 24), seeded(1, 4), seeded(2, 24)].map((r) => tokensOf(loaded, r)),
  );
  const stats = loaded.scheduler.stats();
  equal(stats.slotMoves, 0);
  ok(stats.brokenRunSteps > 0, "the gap stayed");
  equal(stats.deviceSampledRequests, 3, "every request sampled on the device");
  deepEqual(tokens[2], alone, "its draws are those of its own seed");
});

Deno.test("with a stream per slot, requests that start together take slots shortest prompt first", async () => {
  await using unified = await open("on");
  await using streams = await open("off");
  // Prompts of 20, 6, 20 and 3 tokens, in that order. Taking slots in arrival order, their prompt
  // step would take four passes (the short ones end in the first two and break the run of the
  // others) and produce its outputs out of order.
  const burst = (loaded: LoadedModel) => {
    const text = loaded.model.tokenize(
      "The harbour log of a long winter, kept by the lighthouse keeper",
    );
    return prefixesTogether(loaded, text, [20, 6, 20, 3], 3);
  };
  const expected = await burst(unified);
  deepEqual(await burst(streams), expected, "each request's tokens are the same in either layout");
  const stats = streams.scheduler.stats();
  equal(stats.reorderedSteps, 0, "the outputs came in order");
  equal(stats.extraPasses, 2, "a pass per distinct length: three");
  equal(stats.brokenRunSteps, 0);
});

Deno.test("with a stream per slot, a burst after others takes its slots fewest tokens left first, whatever their age", async () => {
  await using loaded = await open("off");
  // Four requests end in the order of slots 3, 0, 2, 1 (4, 10, 20 and 40 tokens), so that is the
  // order of their caches' age, least recent first.
  await Promise.all(
    [10, 40, 20, 4].map((n, i) => tokensOf(loaded, greedy(loaded, `Log ${i}:`, n))),
  );
  equal(loaded.scheduler.stats().slotMoves, 0, "they ended at the end of the busy run");
  const text = loaded.model.tokenize(
    "The harbour log of a long winter, kept by the lighthouse keeper at the end of the pier",
  );
  const before = loaded.scheduler.stats();
  // Two prompts of 6 tokens and two of 20, a BOS in common with every cache. Taken in the caches'
  // age, the short ones went to slots 3 and 0: the step took two passes, and its outputs came out
  // of order (llama.cpp then swaps whole rows of logits).
  const rests = [5, 5, 19, 19]; // fewest tokens left first, the order of the slots they take
  // On a CPU they may go in two steps, as the step costs learnt so far decide (all four in one on
  // an idle machine); the second step's prompts then go beside the first's generated tokens.
  const first = firstGroupSize(rests, before.stepCosts);
  const passesBeyondOne = (counts: number[]) => new Set(counts).size - 1;
  const expectedExtraPasses = first === rests.length
    ? passesBeyondOne(rests)
    : passesBeyondOne(rests.slice(0, first)) + passesBeyondOne([1, ...rests.slice(first)]);
  await prefixesTogether(loaded, text, [20, 6, 20, 6], 2);
  const after = loaded.scheduler.stats();
  equal(after.reorderedSteps - before.reorderedSteps, 0, "the outputs came in order");
  equal(
    after.extraPasses - before.extraPasses,
    expectedExtraPasses,
    `a pass per distinct token count in a step (${first} of 4 in the first step)`,
  );
});

Deno.test("with a stream per slot, conversations that come back together each find their cache", async () => {
  await using loaded = await open("off");
  const opening = ["Ahoy", "Bonjour", "Ciao", "Dobry den"];
  const conversations = opening.map((word, i) =>
    greedy(loaded, `${word}! The harbour log of a long winter, entry ${i}, kept by the keeper`, 2)
  );
  await Promise.all(conversations.map((request) => tokensOf(loaded, request)));
  // Back in another order: placed one by one at the ends of the busy run, the second took the
  // slot next to the first by copying its own cache over another conversation's.
  const evaluatedBefore = loaded.scheduler.stats().promptTokensEvaluated;
  await Promise.all([3, 0, 1, 2].map((i) => tokensOf(loaded, conversations[i]!)));
  const evaluated = loaded.scheduler.stats().promptTokensEvaluated - evaluatedBefore;
  equal(evaluated, 4, "each evaluated only its last prompt token again");
  equal(loaded.scheduler.stats().brokenRunSteps, 0);
});

Deno.test("with a stream per slot, a request that moves into a finished one's slot leaves that cache to it", async () => {
  await using loaded = await open("off");
  const story = "in the harbour log of a long and bitter winter, kept by the old lighthouse " +
    "keeper at the far end of the long stone pier that ran into the grey sea";
  const prompt = (i: number) => `Entry ${i}, ${story}:`;
  const length = loaded.model.tokenize(prompt(1)).length;
  ok(length >= 32 && length + 20 < 64, `a prompt worth keeping, with room for 20 more (${length})`);
  // The second ends first, inside the busy run of slots 0 to 3: the fourth moves into its slot.
  await Promise.all(
    [12, 3, 20, 16].map((n, i) => tokensOf(loaded, greedy(loaded, prompt(i), n))),
  );
  ok(loaded.scheduler.stats().slotMoves >= 1, "a request moved");
  // The second conversation comes back: its cache went to the slot the fourth left (copied over,
  // it was lost, and the whole prompt was evaluated again).
  const evaluatedBefore = loaded.scheduler.stats().promptTokensEvaluated;
  await tokensOf(loaded, greedy(loaded, prompt(1), 3));
  equal(loaded.scheduler.stats().promptTokensEvaluated - evaluatedBefore, 1);
});

/** Four conversations' openings, each long enough that its cache is worth keeping. */
function conversations(loaded: LoadedModel, names: readonly string[]): GenerationRequest[] {
  const story = "in the harbour log of a long and bitter winter, kept by the old lighthouse " +
    "keeper at the far end of the long stone pier that ran into the grey sea";
  return names.map((name) => greedy(loaded, `${name}, ${story}:`, 2));
}

/** Prompt tokens the scheduler evaluates for `requests`, one after another. */
async function evaluatedFor(loaded: LoadedModel, requests: GenerationRequest[]): Promise<number> {
  const before = loaded.scheduler.stats().promptTokensEvaluated;
  for (const request of requests) await tokensOf(loaded, request);
  return loaded.scheduler.stats().promptTokensEvaluated - before;
}

Deno.test("conversations one after another each keep a slot's cache, the least recent lost first", async () => {
  await using loaded = await open("off");
  const [a, b, c, d, e] = conversations(loaded, ["Anna", "Boris", "Clara", "Dmitri", "Erik"]);
  await evaluatedFor(loaded, [a!, b!, c!, d!]);
  // Each found its cache: before, each new conversation took slot 0 and evicted the last.
  equal(await evaluatedFor(loaded, [a!, b!, c!, d!]), 4);
  // A fifth evicts the least recently used: the first.
  await evaluatedFor(loaded, [e!]);
  equal(await evaluatedFor(loaded, [b!, c!, d!]), 3);
});

Deno.test("with a stream per slot, a new conversation next to the busy run evicts the least recent cache", async () => {
  await using loaded = await open("off");
  const [d, c, b, x, e] = conversations(loaded, ["Dmitri", "Clara", "Boris", "Xavier", "Erik"]);
  // Slots 0 to 2 cache Dmitri, Clara and Boris, in that order of use; Xavier streams in slot 3.
  await evaluatedFor(loaded, [d!, c!, b!]);
  const streaming = tokensOf(loaded, { ...x!, maxTokens: 20, ignoreEos: true });
  while (loaded.scheduler.stats().busySlots === 0) await new Promise((r) => setTimeout(r, 1));
  // Erik must go next to the run, to slot 2, whose cache (Boris) is the most recent: Boris's
  // cache moves to slot 0, and Dmitri's, the oldest, is the one lost.
  await evaluatedFor(loaded, [e!]);
  await streaming;
  equal(await evaluatedFor(loaded, [b!]), 1);
  ok(await evaluatedFor(loaded, [d!]) > 30, "the oldest was evicted");
});

Deno.test("a prompt that arrives beside a generating stream goes in a pass apart from it, and both give their own tokens", async () => {
  await using alone = await open("on");
  const streamRequest = greedy(alone, "The lighthouse keeper wrote", 40);
  const newcomerRequest = greedy(alone, "A ship came in from the north with a cargo of salt", 6);
  const expected = [await tokensOf(alone, streamRequest), await tokensOf(alone, newcomerRequest)];
  await using streams = await open("off");
  const stream = streams.scheduler.submit(streamRequest);
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next(); // the stream generates in slot 0; the newcomer takes slot 1 beside it
  const newcomer = tokensOf(streams, newcomerRequest);
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) { /* drain */ }
  deepEqual([(await stream.result).tokens, await newcomer], expected);
  const stats = streams.scheduler.stats();
  equal(stats.mixedPasses, 0, "in id order the stream's token and the prompt's first share a pass");
  ok(stats.extraPasses >= 1, "the step of the prompt and the stream's token took two passes");
});
