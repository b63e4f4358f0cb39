import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { fixtureModel } from "../fixtures/models.ts";

const open = async (parallel = 1) =>
  await LoadedModel.open({ path: await fixtureModel("tiny-f32"), parallel, ctxSize: 512 });

Deno.test("a request is scheduled once the step that takes its prompt has started", async () => {
  await using loaded = await open();
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("once upon a time"),
    maxTokens: 4,
    sampling: { temperature: 0 },
  });
  await generation.scheduled;
  ok(loaded.context.busy, "its prompt step is under way");
  equal((await generation.result).completionTokens, 4);
});

Deno.test("a request waiting for a slot is scheduled at the next step, still queued", async () => {
  await using loaded = await open();
  const prompt = loaded.model.tokenize("once upon a time");
  const first = loaded.scheduler.submit({ prompt, maxTokens: 64, ignoreEos: true });
  await first.scheduled;
  const second = loaded.scheduler.submit({ prompt, maxTokens: 2, sampling: { temperature: 0 } });
  await second.scheduled;
  let firstDone = false;
  void first.result.then(() => (firstDone = true));
  ok(!firstDone, "the first request still holds the only slot");
  equal((await second.result).completionTokens, 2);
});

Deno.test("while a request is still on its way, the others are not scheduled before the step", async () => {
  await using loaded = await open(2);
  const prompt = loaded.model.tokenize("once upon a time");
  const arrival = loaded.scheduler.expectArrival();
  const early = loaded.scheduler.submit({ prompt, maxTokens: 2, sampling: { temperature: 0 } });
  let scheduled = false;
  void early.scheduled.then(() => (scheduled = true));
  await new Promise((resolve) => setTimeout(resolve, 3));
  ok(!scheduled, "the first step waits for the request on its way, and so does the answer");
  const late = loaded.scheduler.submit({ prompt, maxTokens: 2, sampling: { temperature: 0 } });
  arrival[Symbol.dispose]();
  await Promise.all([early.scheduled, late.scheduled]);
  ok(scheduled);
  equal(loaded.scheduler.stats().sharedSteps > 0, true, "both prompts went in one step");
  await Promise.all([early.result, late.result]);
});

Deno.test("requests that end before any step are scheduled at once", async () => {
  await using loaded = await open();
  const prompt = loaded.model.tokenize("once upon a time");
  const none = loaded.scheduler.submit({ prompt, maxTokens: 0 });
  await none.scheduled;
  const abort = new AbortController();
  abort.abort();
  const aborted = loaded.scheduler.submit({ prompt, maxTokens: 4, signal: abort.signal });
  await aborted.scheduled;
  equal((await aborted.result).completionTokens, 0);
});

Deno.test("a queued request whose client gave up holds no place in a full queue, even before the next step", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 1,
    ctxSize: 512,
    maxQueue: 1,
  });
  const prompt = loaded.model.tokenize("once upon a time");
  const running = loaded.scheduler.submit({ prompt, maxTokens: 64, ignoreEos: true });
  await running.scheduled;
  const gaveUp = new AbortController();
  const abandoned = loaded.scheduler.submit({ prompt, maxTokens: 2, signal: gaveUp.signal });
  equal(loaded.scheduler.stats().queued, 1);
  gaveUp.abort();
  // No step has run since (no await): the abandoned request is still in the queue.
  equal(loaded.scheduler.stats().queued, 0, "it no longer shows as waiting");
  const next = loaded.scheduler.submit({ prompt, maxTokens: 2, sampling: { temperature: 0 } });
  equal((await next.result).completionTokens, 2);
  equal((await abandoned.result).completionTokens, 0);
  await running.result;
});
