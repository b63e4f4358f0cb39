import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import {
  ARRIVAL_WINDOW_MS,
  type Generation,
  type RequestsOnTheWay,
} from "../../src/engine/scheduler.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** The tiny model with `parallel` slots, and the requests a server counts on their way to it. */
async function openTiny(
  parallel: number,
  requestsOnTheWay?: RequestsOnTheWay,
): Promise<LoadedModel> {
  return await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel,
    ...(requestsOnTheWay ? { requestsOnTheWay } : {}),
  });
}

/** A server's count of requests on their way, set by hand. */
class OnTheWay implements RequestsOnTheWay {
  requests = 0;
  readonly asked: number[] = [];
  readonly #listeners = new Set<() => void>();

  count(withinMs: number): number {
    this.asked.push(withinMs);
    return this.requests;
  }

  onceSettled(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** One of them gave up (its handler answered by itself). */
  settle(): void {
    this.requests--;
    for (const listener of this.#listeners) listener();
    this.#listeners.clear();
  }
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

/**
 * Runs the microtasks queued so far and those they queue, without a timer's turn of the event
 * loop (Deno may still settle a finished native call meanwhile).
 */
async function microtasks(): Promise<void> {
  for (let tick = 0; tick < 100; tick++) await null;
}

Deno.test("requests a server counts on their way hold the first step after an idle spell", async () => {
  const onTheWay = new OnTheWay();
  onTheWay.requests = 3;
  await using loaded = await openTiny(4, onTheWay);
  const { scheduler } = loaded;
  const submit = submitter(loaded);
  const stepsBefore = scheduler.stats().steps;
  // A burst reaches the scheduler over turns of the event loop (sockets, parsing, tokenizing).
  const first = submit("the first request");
  // Microtasks only, so the wait's 10 ms cannot run out on a busy machine.
  await microtasks();
  equal(scheduler.stats().steps - stepsBefore, 0, "the first request waits for the others");
  onTheWay.requests = 0;
  const rest = ["a second one", "and a third", "the fourth"].map(submit);
  for (const generation of [first, ...rest]) equal((await generation.result).completionTokens, 1);
  // One step evaluates the four prompts and samples each one's only token.
  equal(scheduler.stats().steps - stepsBefore, 1);
  equal(onTheWay.asked.every((withinMs) => withinMs === ARRIVAL_WINDOW_MS), true);
});

/** Three bursts of three requests, one after another, then an idle spell of the loop. */
async function burstsThenIdle(submit: (text: string) => Generation): Promise<void> {
  for (let burst = 0; burst < 3; burst++) {
    const words = ["one", "two", "three"];
    await Promise.all(words.map((word) => submit(`burst ${burst}, ${word}`).result));
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
}

/** The tiny model, and a first request it holds back for another one counted on its way. */
async function waitingForAnother() {
  const onTheWay = new OnTheWay();
  onTheWay.requests = 1;
  const loaded = await openTiny(4, onTheWay);
  const generation = submitter(loaded)("the first request");
  // Microtasks only, so the wait's 10 ms cannot run out on a busy machine.
  await microtasks();
  equal(loaded.scheduler.stats().steps, 0, "waiting for the other one");
  return { onTheWay, loaded, generation };
}

Deno.test("a request on its way that gives up ends the wait at once", async () => {
  const { onTheWay, loaded, generation } = await waitingForAnother();
  await using _loaded = loaded;
  onTheWay.settle();
  await microtasks();
  // Decoding, or already done on a busy machine; without the news, the wait would go on.
  equal(loaded.context.busy || loaded.scheduler.stats().steps === 1, true, "its prompt started");
  equal((await generation.result).completionTokens, 1);
});

Deno.test("a request on its way that stops being counted without news ends the wait soon", async () => {
  // A new connection that sent nothing counts for a few milliseconds, and nothing says when it
  // stops: the scheduler counts again while it waits.
  const { onTheWay, loaded, generation } = await waitingForAnother();
  await using _loaded = loaded;
  onTheWay.requests = 0;
  const result = await generation.result;
  equal(result.completionTokens, 1);
  const { queueMs } = result.timings;
  ok(queueMs < ARRIVAL_WINDOW_MS * 0.6, `queued ${queueMs} ms, not the whole arrival window`);
});

Deno.test("where requests come in bursts, one seen on its way a turn after the first joins its step", async () => {
  const onTheWay = new OnTheWay();
  await using loaded = await openTiny(4, onTheWay);
  const { scheduler } = loaded;
  const submit = submitter(loaded);
  await burstsThenIdle(submit);
  const stepsBefore = scheduler.stats().steps;
  // The second request's first bytes are read in the next turn of the event loop (this timer
  // comes before any the scheduler sets), and its handler submits it in the turn after.
  const second = new Promise<Generation>((resolve) => {
    setTimeout(() => {
      onTheWay.requests = 1;
      setTimeout(() => {
        onTheWay.requests = 0;
        resolve(submit("the second of a burst"));
      }, 0);
    }, 0);
  });
  const first = submit("the first of a burst");
  for (const generation of [first, await second]) {
    equal((await generation.result).completionTokens, 1);
  }
  equal(scheduler.stats().steps - stepsBefore, 1, "one step for both");
});

Deno.test("with the look by turns (a GPU's), the idle loop looks for a burst's others until one is queued or the time is up", async () => {
  const lookMs = 40; // far longer than a timer's look (about 2 ms), to tell them apart
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 4,
    requestsOnTheWay: new OnTheWay(),
    lookTurnsMs: lookMs,
  });
  const { scheduler } = loaded;
  const submit = submitter(loaded);
  await burstsThenIdle(submit);
  // Nothing follows it: the loop looked for the whole time.
  const lone = await submit("a lone request after bursts").result;
  ok(lone.timings.queueMs >= lookMs, `queued ${lone.timings.queueMs} ms`);
  await burstsThenIdle(submit);
  const stepsBefore = scheduler.stats().steps;
  const first = submit("the first of a burst");
  await new Promise((resolve) => setTimeout(resolve, 5));
  const second = submit("its second, 5 ms later");
  for (const generation of [first, second]) {
    equal((await generation.result).completionTokens, 1);
  }
  equal(scheduler.stats().steps - stepsBefore, 1, "one step for both");
  const { queueMs } = (await first.result).timings;
  ok(queueMs < lookMs, `the look ended once the second was queued: ${queueMs} ms`);
});

Deno.test("a lone request with nothing on its way starts before its submitter goes on", async () => {
  await using loaded = await openTiny(4, new OnTheWay());
  const submit = submitter(loaded);
  const generation = submit("a lone request");
  // One microtask later, as a server's handler resumes to answer the request's headers, the
  // prompt is already decoding.
  await null;
  equal(loaded.context.busy || loaded.scheduler.stats().steps === 1, true, "its prompt started");
  equal((await generation.result).completionTokens, 1);
});

Deno.test("a request whose grammar compiles on a worker thread is queued once it is built", async () => {
  await using loaded = await openTiny(4, new OnTheWay());
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("a constrained request"),
    maxTokens: 1,
    sampling: { temperature: 0, grammar: 'root ::= "a" | "b"' },
  });
  const result = await generation.result;
  equal(["a", "b"].includes(result.text), true, result.text);
});

Deno.test("an announced request being prepared holds the first step until it is submitted", async () => {
  await using loaded = await openTiny(2);
  const { model, scheduler } = loaded;
  const submit = submitter(loaded);
  // In 1 of 6-8 runs of this file every try below outlasted the window, most likely while what
  // the test before left starting up (its grammar's worker) took the 2 cores; a pause first
  // made 12 of 12 runs pass.
  await new Promise((resolve) => setTimeout(resolve, 300));
  // Up to five times: the wait is bounded by the arrival window (10 ms), which a hiccup of a
  // busy 2-core machine can outlast (fresh CI runs saw it once in one try, once in three in a
  // row); without the wait every try takes two steps.
  const steps: number[] = [];
  while (steps.length < 5 && !steps.includes(1)) {
    const stepsBefore = scheduler.stats().steps;
    const second = scheduler.expectArrival(); // e.g. its chat template is rendering
    const first = submit("the first request");
    for (let turn = 0; turn < 8; turn++) await model.llama.yieldToIo(); // longer than quiet turns
    const late = submit("the one that was being prepared");
    second[Symbol.dispose]();
    for (const generation of [first, late]) equal((await generation.result).completionTokens, 1);
    steps.push(scheduler.stats().steps - stepsBefore);
  }
  ok(steps.includes(1), `steps per pair: ${steps.join(", ")}`);
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

Deno.test("a request on its way while a stream generates on the CPU holds each step at most a generation step", async () => {
  const onTheWay = new OnTheWay();
  // Slots of 4,096 tokens: the stream outlasts the checks below (504 tokens took 54 ms).
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    parallel: 2,
    ctxSize: 8192,
    requestsOnTheWay: onTheWay,
  });
  const { model, scheduler } = loaded;
  const stop = new AbortController();
  // Until its slot's context is full, or it is stopped below.
  const stream = scheduler.submit({
    prompt: model.tokenize("a long stream"),
    ignoreEos: true,
    sampling: { temperature: 0 },
    signal: stop.signal,
  });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next(); // generating
  onTheWay.requests = 1; // a request's head has been read; its handler is on its way
  const deadline = performance.now() + 5_000;
  while (scheduler.stats().newcomerWaits === 0 && performance.now() < deadline) {
    await new Promise((wake) => setTimeout(wake, 1));
  }
  ok(scheduler.stats().newcomerWaits > 0, "a step waited for the request on its way");
  // The wait is bounded: the stream goes on while the request stays on its way.
  const stepsBefore = scheduler.stats().steps;
  await new Promise((wake) => setTimeout(wake, 50));
  ok(scheduler.stats().steps > stepsBefore, "the stream kept generating");
  const newcomer = submitter(loaded)("the request that was on its way");
  onTheWay.settle();
  equal((await newcomer.result).completionTokens, 1);
  equal((await newcomer.result).finishReason, "length");
  stop.abort();
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) { /* drain */ }
  ok((await stream.result).completionTokens > 1);
});
