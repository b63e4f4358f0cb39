/**
 * llama-server's further samplers (Mirostat, top-n-sigma, XTC, dynamic temperature, DRY) through
 * the scheduler and real libllama. Each is driven to a setting whose outcome is known without
 * running it (the greedy pick, or the same tokens for any seed), and the same request without the
 * sampler shows the outcome is not what the plain chain gives anyway.
 */

import { deepEqual, equal, notDeepEqual, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import type { GenerationRequest } from "../../src/engine/scheduler.ts";
import {
  INFILL_MAX_CANDIDATES,
  samplerStages,
  type SamplingParams,
} from "../../src/engine/sampling.ts";
import { fixtureModel, llamaSourceDir } from "../fixtures/models.ts";

const TOKENS = 32;

async function open(): Promise<LoadedModel> {
  return await LoadedModel.open({
    path: await fixtureModel("llama-spm"),
    parallel: 1,
    ctxSize: 256,
  });
}

async function tokensOf(loaded: LoadedModel, sampling: SamplingParams): Promise<number[]> {
  const request: GenerationRequest = {
    prompt: loaded.model.tokenize("The lighthouse keeper counted the ships"),
    maxTokens: TOKENS,
    ignoreEos: true,
    sampling,
  };
  const generation = loaded.scheduler.submit(request);
  for await (const _ of generation) { /* drain */ }
  return (await generation.result).tokens;
}

/** A wide-open draw: every token stays a candidate unless the sampler under test cuts it. */
const OPEN: SamplingParams = { temperature: 1.5, topK: 0, topP: 1, minP: 0, seed: 7 };

/** The longest run of one token repeated back to back. */
function longestRun(tokens: readonly number[]): number {
  let longest = 0;
  let run = 0;
  tokens.forEach((token, i) => {
    run = i > 0 && tokens[i - 1] === token ? run + 1 : 1;
    longest = Math.max(longest, run);
  });
  return longest;
}

Deno.test("Mirostat, top-n-sigma and dynamic temperature narrowed to their limit pick the greedy tokens", async () => {
  await using loaded = await open();
  const greedy = await tokensOf(loaded, { temperature: 0 });
  notDeepEqual(await tokensOf(loaded, OPEN), greedy, "the open draw alone is not greedy");
  // A target surprise of 0 keeps only the best token (Mirostat 2.0) or the best few, the best
  // nearly always (Mirostat 1, whose k follows the same target).
  deepEqual(await tokensOf(loaded, { ...OPEN, mirostat: 2, mirostatTau: 0 }), greedy, "mirostat 2");
  deepEqual(await tokensOf(loaded, { ...OPEN, mirostat: 1, mirostatTau: 0 }), greedy, "mirostat 1");
  // Within a hair of the best logit only the best token is left.
  deepEqual(await tokensOf(loaded, { ...OPEN, topNSigma: 1e-6 }), greedy, "top-n-sigma");
  // The temperature moves from 0 (at the range's bottom) as entropy to the 1000th power: ~0.
  deepEqual(
    await tokensOf(loaded, {
      ...OPEN,
      temperature: 0.5,
      dynatempRange: 0.5,
      dynatempExponent: 1000,
    }),
    greedy,
    "dynamic temperature",
  );
  notDeepEqual(await tokensOf(loaded, { ...OPEN, temperature: 0.5 }), greedy);
});

Deno.test("XTC that always cuts every likely token leaves the least likely one, whatever the seed", async () => {
  await using loaded = await open();
  const xtc: SamplingParams = { ...OPEN, xtcProbability: 1, xtcThreshold: 0 };
  const first = await tokensOf(loaded, xtc);
  deepEqual(await tokensOf(loaded, { ...xtc, seed: 8 }), first);
  notDeepEqual(await tokensOf(loaded, { ...OPEN, seed: 8 }), await tokensOf(loaded, OPEN));
});

Deno.test("DRY breaks a repeat that grows, as its penalty grows with it", async () => {
  await using loaded = await open();
  // A bias of 100 makes one token the greedy pick every time: one run of every token.
  const repeated = new Map([[loaded.model.tokenize(" ships", { addSpecial: false })[0]!, 100]]);
  const biased: SamplingParams = { temperature: 0, logitBias: repeated };
  equal(longestRun(await tokensOf(loaded, biased)), TOKENS);
  // DRY's penalty, 8 × 1.75^(run - 2), passes the bias after a run of about eight.
  const dry = await tokensOf(loaded, { ...biased, dryMultiplier: 8, dryAllowedLength: 1 });
  ok(longestRun(dry) < TOKENS / 2, `DRY tokens: ${dry}`);
});

Deno.test("the penalties' and DRY's look-back is capped at the context", () => {
  const stages = samplerStages(
    {
      temperature: 0,
      repeatPenalty: 1.1,
      repeatLastN: 2 ** 31 - 1,
      dryMultiplier: 1,
      dryPenaltyLastN: 2 ** 31 - 1,
    },
    4096,
  );
  equal(stages.find((s) => s.type === "penalties")?.lastN, 4096);
  equal(stages.find((s) => s.type === "dry")?.lastN, 4096);
});

Deno.test("Mirostat takes the place of the cut-offs, after the penalties", () => {
  const types = samplerStages({ temperature: 0.8, mirostat: 2, repeatPenalty: 1.1, seed: 1 }).map((
    s,
  ) => s.type);
  deepEqual(types, ["penalties", "temp", "mirostat_v2"]);
  const all = samplerStages({
    temperature: 0.8,
    topNSigma: 2,
    xtcProbability: 0.5,
    dynatempRange: 0.2,
    dryMultiplier: 0.8,
    typicalP: 0.9,
    seed: 1,
  }).map((s) => s.type);
  deepEqual(all, [
    "dry",
    "top_n_sigma",
    "top_k",
    "typical",
    "top_p",
    "min_p",
    "xtc",
    "temp_ext",
    "dist",
  ]);
});

Deno.test("infill gets at most 1,000 candidates: a top-k of 1,000 runs right before it unless a smaller one runs first", () => {
  equal(INFILL_MAX_CANDIDATES, 1000);
  const chain = (params: SamplingParams) =>
    samplerStages({ temperature: 1, seed: 1, ...params }).map((s) =>
      s.type === "top_k" ? `top_k ${s.k}` : s.type
    );
  deepEqual(chain({ samplers: ["infill"] }), ["top_k 1000", "infill", "dist"]);
  deepEqual(chain({ samplers: ["top_k", "infill"], topK: 0 }), ["top_k 1000", "infill", "dist"]);
  deepEqual(chain({ samplers: ["top_k", "temperature", "infill"], topK: 5000 }), [
    "top_k 5000",
    "temp",
    "top_k 1000",
    "infill",
    "dist",
  ]);
  deepEqual(chain({ samplers: ["infill", "top_k"], topK: 40 }), [
    "top_k 1000",
    "infill",
    "top_k 40",
    "dist",
  ]);
  // A top-k of at most 1,000 before it, however far, is bound enough.
  deepEqual(chain({ samplers: ["top_k", "top_p", "infill"], topK: 1000, topP: 0.9 }), [
    "top_k 1000",
    "top_p",
    "infill",
    "dist",
  ]);
  deepEqual(chain({ samplers: ["top_k", "infill"], topK: 40, temperature: 0 }), [
    "top_k 40",
    "infill",
    "greedy",
  ]);
});

Deno.test({
  name:
    "infill over a 152k vocabulary with the end tokens banned picks four tokens in seconds, not minutes each",
  ignore: llamaSourceDir() === undefined,
  fn: async () => {
    await using loaded = await LoadedModel.open({
      path: await fixtureModel("qwen2"),
      parallel: 1,
      ctxSize: 256,
    });
    const logitBias = new Map(loaded.model.eogTokens.map((token) => [token, -100]));
    const started = performance.now();
    const generation = loaded.scheduler.submit({
      prompt: loaded.model.tokenize("def add(a, b):"),
      maxTokens: 4,
      ignoreEos: true,
      sampling: { samplers: ["infill"], temperature: 1, topK: 0, logitBias, seed: 3 },
    });
    for await (const _ of generation) { /* drain */ }
    equal((await generation.result).tokens.length, 4);
    // Without a bound before it, infill compared 152k candidates pairwise: minutes a token.
    const elapsed = performance.now() - started;
    ok(elapsed < 10_000, `4 tokens took ${elapsed.toFixed(0)} ms`);
  },
});

/** The process's peak resident memory so far, in bytes (Linux). */
async function peakResidentBytes(): Promise<number> {
  const status = await Deno.readTextFile("/proc/self/status");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

Deno.test({
  name: "a request's look-back of 2^31 tokens does not allocate for them",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using loaded = await open();
    const before = await peakResidentBytes();
    // The penalties keep a buffer of their look-back: 8 GB at 2^31 tokens (DRY's, capped the
    // same way, is checked above).
    await tokensOf(loaded, { temperature: 0, repeatPenalty: 1.1, repeatLastN: 2 ** 31 - 1 });
    const grown = await peakResidentBytes() - before;
    ok(grown < 2 ** 30, `the peak grew by ${(grown / 2 ** 20).toFixed(0)} MiB`);
  },
});

Deno.test("repetition penalties count the prompt's tokens from the first pick, as llama-server's do", async () => {
  await using loaded = await open();
  const first = async (prompt: Int32Array, sampling: SamplingParams) => {
    const generation = loaded.scheduler.submit({ prompt, maxTokens: 1, sampling });
    for await (const _ of generation) { /* drain */ }
    return (await generation.result).tokens[0]!;
  };
  // A prompt whose greedy continuation repeats one of its own tokens: greedy text on random
  // weights soon repeats itself, so a prefix of it ends where the next token is an earlier one.
  const start = loaded.model.tokenize("The lighthouse keeper counted the ships");
  const generation = loaded.scheduler.submit({
    prompt: start,
    maxTokens: 48,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  for await (const _ of generation) { /* drain */ }
  const text = [...start, ...(await generation.result).tokens];
  for (let end = start.length + 1; end < text.length; end++) {
    const prompt = Int32Array.from(text.slice(0, end));
    if (!prompt.includes(text[end]!)) continue;
    const greedy = await first(prompt, { temperature: 0 });
    if (!prompt.includes(greedy)) continue;
    const penalized = await first(prompt, {
      temperature: 0,
      repeatPenalty: 1e6,
      repeatLastN: 64,
    });
    ok(!prompt.includes(penalized), `${penalized} is one of the prompt's tokens`);
    return;
  }
  throw new Error("no prompt whose greedy continuation repeats one of its tokens");
});
