import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { stepLogprobs } from "../../src/engine/logprobs.ts";
import type { GenerationResult } from "../../src/engine/scheduler.ts";
import { Batch } from "../../src/ffi/batch.ts";
import { Context } from "../../src/ffi/context.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** log-softmax of one row, in float64, written independently of the engine's code. */
function logSoftmax(row: Float32Array): Float64Array {
  const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
  const lse = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
  return Float64Array.from(row, (v) => v - lse);
}

async function generate(loaded: LoadedModel, prompt: Int32Array, sampling = {}, logprobs = 5) {
  const generation = loaded.scheduler.submit({
    prompt,
    maxTokens: 12,
    ignoreEos: true,
    sampling,
    logprobs,
  });
  for await (const _ of generation) { /* drain */ }
  return await generation.result;
}

/** llama-spm with `parallel` slots, on a context of `ctxSize` tokens. */
async function openSpm(parallel: number, ctxSize: number, deviceSampling?: "on") {
  return await LoadedModel.open({
    path: await fixtureModel("llama-spm"),
    parallel,
    ctxSize,
    ...(deviceSampling ? { deviceSampling } : {}),
  });
}

/** The log-softmax of each step's logits, from a second context that decodes the same tokens. */
async function referenceRows(loaded: LoadedModel, prompt: Int32Array, result: GenerationResult) {
  // The same attention kernel as the served context, so the logits are the same computation.
  using ctx = await Context.create(loaded.model, {
    nCtx: 256,
    flashAttn: loaded.context.flashAttn,
  });
  using batch = new Batch(loaded.model.llama, 256);
  const rows: Float64Array[] = [];
  const tokens = [...prompt, ...result.tokens];
  let position = 0;
  for (const [i, token] of tokens.entries()) {
    batch.clear();
    const index = batch.add(token, position++, 0, true);
    await ctx.decode(batch);
    if (i >= prompt.length - 1 && rows.length < result.tokens.length) {
      rows.push(logSoftmax(ctx.logits(index)));
    }
  }
  return rows;
}

Deno.test("logprobs equal a log-softmax of llama_get_logits_ith, greedy and sampled, beside a device-sampled request", async () => {
  await using loaded = await openSpm(2, 512, "on");
  const prompt = loaded.model.tokenize("The lighthouse keeper counted the ships");
  // A device-sampled request runs beside the ones that ask for log-probabilities.
  const beside = loaded.scheduler.submit({ prompt, maxTokens: 40, ignoreEos: true });
  const greedy = await generate(loaded, prompt, { temperature: 0 });
  const sampled = await generate(loaded, prompt, { temperature: 1.2, seed: 7 }, 3);
  await beside.result;
  equal(loaded.scheduler.stats().deviceSampledRequests, 1, "only the request without logprobs");
  for (const [name, result, top] of [["greedy", greedy, 5], ["sampled", sampled, 3]] as const) {
    const steps = result.logprobs ?? [];
    equal(steps.length, result.tokens.length, name);
    const rows = await referenceRows(loaded, prompt, result);
    for (const [i, step] of steps.entries()) {
      const row = rows[i] as Float64Array;
      equal(step.token, result.tokens[i]);
      ok(Math.abs(step.logprob - (row[step.token] as number)) < 1e-4, `${name} step ${i}`);
      equal(step.top.length, top);
      for (const alt of step.top) {
        ok(Math.abs(alt.logprob - (row[alt.token] as number)) < 1e-4, `${name} step ${i} alt`);
      }
      const best = row.reduce((b, v, t) => (v > (row[b] as number) ? t : b), 0);
      equal(step.top[0]?.token, best, `${name} step ${i}: the top entry is the argmax`);
      if (name === "greedy") {
        equal(step.token, best, `greedy picks the top token at step ${i}`);
        ok(step.top.some((alt) => alt.token === step.token));
      }
    }
  }
});

Deno.test("stepLogprobs() lists the top tokens most likely first and sums to one", () => {
  const logits = Float32Array.from([0.5, 3, -1, 3, 2]);
  const step = stepLogprobs(logits, 4, 3);
  const ids = step.top.map((t) => t.token);
  equal(ids.join(","), "1,3,4");
  const total = [0, 1, 2, 3, 4].reduce(
    (s, t) => s + Math.exp(stepLogprobs(logits, t, 0).logprob),
    0,
  );
  ok(Math.abs(total - 1) < 1e-12);
  equal(stepLogprobs(logits, 0, 0).top.length, 0);
});

Deno.test("n choices evaluate the prompt once, share its cache entries and differ when sampled", async () => {
  await using loaded = await openSpm(4, 1024);
  const prompt = loaded.model.tokenize("The lighthouse keeper counted the ships in the harbour");
  const before = loaded.scheduler.stats().promptTokensEvaluated;
  const choices = loaded.scheduler.submitChoices({
    prompt,
    maxTokens: 16,
    ignoreEos: true,
    sampling: { temperature: 1.5, seed: 11 },
  }, 3);
  const results = await Promise.all(choices.map(async (g) => {
    for await (const _ of g) { /* drain */ }
    return await g.result;
  }));
  equal(loaded.scheduler.stats().promptTokensEvaluated - before, prompt.length, "evaluated once");
  equal(results.length, 3);
  equal(results.filter((r) => r.sharedPrompt).length, 2);
  for (const r of results) equal(r.completionTokens, 16);
  equal(new Set(results.map((r) => r.tokens.join(","))).size, 3, "three different choices");

  // Each later choice continues from the shared prompt exactly as a lone request would.
  for (const [i, r] of results.entries()) {
    const alone = loaded.scheduler.submit({
      prompt,
      maxTokens: 16,
      ignoreEos: true,
      sampling: { temperature: 1.5, seed: 11 + i },
    });
    for await (const _ of alone) { /* drain */ }
    equal((await alone.result).tokens.join(","), r.tokens.join(","), `choice ${i}`);
  }
});

Deno.test("n above the slot count is refused, and cancelling a request ends all its choices", async () => {
  await using loaded = await openSpm(2, 512);
  const prompt = loaded.model.tokenize("Hello there");
  let refused = "";
  try {
    loaded.scheduler.submitChoices({ prompt }, 3);
  } catch (error) {
    refused = (error as Error).message;
  }
  ok(/Cannot run 3 choices of one prompt at once on 2 slots/.test(refused), refused);
  const abort = new AbortController();
  const choices = loaded.scheduler.submitChoices({
    prompt,
    maxTokens: 200,
    ignoreEos: true,
    signal: abort.signal,
  }, 2);
  for await (const _ of choices[0] as AsyncIterable<unknown>) {
    abort.abort();
  }
  const results = await Promise.all(choices.map((g) => g.result));
  for (const r of results) equal(r.finishReason, "cancelled");
  equal(loaded.scheduler.stats().busySlots, 0);
});

Deno.test("the token that completes a stop string is not reported, also where it brings text before it", async () => {
  await using loaded = await openSpm(1, 512);
  const prompt = loaded.model.tokenize("The lighthouse keeper counted the ships");
  const free = await generate(loaded, prompt, { temperature: 0 });
  // A token of several characters whose last character the output has not shown before: as a
  // stop string, that character ends the text inside the token.
  const decoder = new TextDecoder();
  let before = "";
  let at = -1;
  for (const [i, token] of free.tokens.entries()) {
    const text = decoder.decode(loaded.model.tokenBytes(token));
    const last = text.at(-1) ?? "";
    if (i > 0 && text.length >= 2 && !text.includes("\ufffd") && !before.includes(last)) {
      at = i;
      break;
    }
    before += text;
  }
  ok(at > 0, "such a token in the greedy output");
  const tokenText = decoder.decode(loaded.model.tokenBytes(free.tokens[at]!));
  const generation = loaded.scheduler.submit({
    prompt,
    maxTokens: 12,
    sampling: { temperature: 0 },
    logprobs: 2,
    stop: [tokenText.at(-1)!],
  });
  const streamed: number[] = [];
  for await (const chunk of generation) {
    streamed.push(...(chunk.logprobs ?? []).map((l) => l.token));
  }
  const stopped = await generation.result;
  equal(stopped.text, before + tokenText.slice(0, -1));
  const reported = free.tokens.slice(0, at);
  equal(JSON.stringify(stopped.logprobs?.map((l) => l.token)), JSON.stringify(reported));
  equal(JSON.stringify(streamed), JSON.stringify(reported));
});
