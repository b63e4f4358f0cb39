import { equal } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { ARRIVAL_WINDOW_MS } from "../../src/engine/scheduler.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** The tiny model with `parallel` slots, and a count of requests on their way to it. */
async function openTiny(
  parallel: number,
  requestsOnTheWay?: (withinMs: number) => number,
): Promise<LoadedModel> {
  return await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel,
    ...(requestsOnTheWay ? { requestsOnTheWay } : {}),
  });
}

/** Submits a one-token greedy request for `text`. */
function submitter(loaded: LoadedModel) {
  return (text: string) =>
    loaded.scheduler.submit({
      prompt: loaded.model.tokenize(text),
      maxTokens: 1,
      sampling: { temperature: 0 },
    });
}

Deno.test("requests a server counts on their way hold the first step after an idle spell", async () => {
  let onTheWay = 3;
  const asked: number[] = [];
  await using loaded = await openTiny(4, (withinMs) => (asked.push(withinMs), onTheWay));
  const { model, scheduler } = loaded;
  const submit = submitter(loaded);
  const stepsBefore = scheduler.stats().steps;
  // A burst reaches the scheduler over turns of the event loop (sockets, parsing, tokenizing).
  const first = submit("the first request");
  for (let turn = 0; turn < 4; turn++) await model.llama.yieldToIo();
  equal(loaded.context.busy, false, "the first request waits for the others");
  const rest = ["a second one", "and a third", "the fourth"].map(submit);
  onTheWay = 0;
  for (const generation of [first, ...rest]) equal((await generation.result).completionTokens, 1);
  // One step evaluates the four prompts and samples each one's only token.
  equal(scheduler.stats().steps - stepsBefore, 1);
  equal(asked.every((withinMs) => withinMs === ARRIVAL_WINDOW_MS), true);
});

Deno.test("a lone request with nothing on its way starts without a turn of the event loop", async () => {
  await using loaded = await openTiny(4, () => 0);
  const submit = submitter(loaded);
  const generation = submit("a lone request");
  // Microtasks only: a turn of the event loop would let the decode's worker thread answer.
  for (let tick = 0; tick < 100 && !loaded.context.busy; tick++) await null;
  equal(loaded.context.busy, true, "its prompt is decoding");
  equal((await generation.result).completionTokens, 1);
});

Deno.test("an announced request being prepared holds the first step until it is submitted", async () => {
  await using loaded = await openTiny(2);
  const { model, scheduler } = loaded;
  const submit = submitter(loaded);
  const stepsBefore = scheduler.stats().steps;
  const second = scheduler.expectArrival(); // e.g. its chat template is rendering
  const first = submit("the first request");
  for (let turn = 0; turn < 8; turn++) await model.llama.yieldToIo(); // longer than quiet turns
  const late = submit("the one that was being prepared");
  second[Symbol.dispose]();
  for (const generation of [first, late]) equal((await generation.result).completionTokens, 1);
  equal(scheduler.stats().steps - stepsBefore, 1);
});

Deno.test("a lone request after an idle spell does not sit out the arrival window", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const { model, scheduler } = loaded;
  const prompt = model.tokenize("a lone request");
  const generation = scheduler.submit({ prompt, maxTokens: 1, sampling: { temperature: 0 } });
  const result = await generation.result;
  equal(result.completionTokens, 1);
  // It does not sit out the whole window that a burst may take to arrive.
  const { queueMs } = result.timings;
  equal(queueMs < ARRIVAL_WINDOW_MS * 0.8, true, `queued ${queueMs} ms`);
});

Deno.test("inFlight counts the requests being prepared, queued and generating", async () => {
  await using loaded = await openTiny(2);
  const { model, scheduler } = loaded;
  equal(scheduler.inFlight(), 0);
  const arrival = scheduler.expectArrival();
  equal(scheduler.inFlight(), 1);
  const generation = scheduler.submit({
    prompt: model.tokenize("a request that keeps generating"),
    maxTokens: 200,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  arrival[Symbol.dispose]();
  equal(scheduler.inFlight(), 1, "queued once its preparation is over");
  // Its first text, with most of its 200 tokens still to come.
  await generation[Symbol.asyncIterator]().next();
  equal(scheduler.inFlight(), 1, "still in flight while it generates");
  await generation.result;
  equal(scheduler.inFlight(), 0);
});
