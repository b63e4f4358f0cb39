import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import type { Generation } from "../../src/engine/scheduler.ts";
import { MIN_PREFILL_CHUNK, PrefillBudget } from "../../src/engine/prefill_budget.ts";
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
