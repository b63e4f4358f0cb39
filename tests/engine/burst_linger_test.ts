import { equal } from "node:assert/strict";
import { BURST_QUIET_MS, BurstLinger } from "../../src/engine/burst_linger.ts";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { ARRIVAL_WINDOW_MS } from "../../src/engine/scheduler.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("requests that come alone are never waited for", () => {
  const linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  equal(linger.bursty(), false, "nothing known");
  for (let i = 0; i < 5; i++) linger.observe(1, 300);
  equal(linger.bursty(), false);
  equal(linger.quietMs(), 0);
});

Deno.test("after bursts, the wait is a short gap, within a tenth of the first step", () => {
  const linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 3; i++) linger.observe(8, 300);
  equal(linger.quietMs(), BURST_QUIET_MS);
  equal(linger.limitMs(), ARRIVAL_WINDOW_MS);
  const shorter = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 3; i++) shorter.observe(2, 50);
  equal(shorter.quietMs(), 2);
  equal(shorter.limitMs(), 5);
});

Deno.test("after bursts, a lone request waits once and the lone requests after it do not", () => {
  const linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 3; i++) linger.observe(8, 300);
  equal(linger.quietMs(), BURST_QUIET_MS);
  linger.observe(1, 60);
  equal(linger.bursty(), false, "the latest came alone");
  equal(linger.quietMs(), 0);
});

Deno.test("a burst whose stragglers missed its first step still counts as a burst", () => {
  const linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 3; i++) linger.observe(8, 300);
  linger.observe(1, 60, 7);
  equal(linger.quietMs(), BURST_QUIET_MS);
});

Deno.test("bursts whose first step takes a few milliseconds a request (a GPU) are not waited for", () => {
  const gpu = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 5; i++) gpu.observe(8, 6);
  equal(gpu.quietMs(), 0);
  equal(gpu.bursty(), true, "bursts all the same: the loop looks once more for their others");
  // 32 prompts in 25 ms: a long step, but under a millisecond for each request.
  const many = new BurstLinger(ARRIVAL_WINDOW_MS);
  for (let i = 0; i < 5; i++) many.observe(32, 25);
  equal(many.quietMs(), 0);
});

Deno.test("slow first steps after a load do not keep a fast device waiting", () => {
  // The H200 machine: a burst's first step took 80 ms right after the load, then 8.
  const gpu = new BurstLinger(ARRIVAL_WINDOW_MS);
  gpu.observe(2, 80);
  equal(gpu.quietMs(), BURST_QUIET_MS);
  gpu.observe(2, 8);
  equal(gpu.quietMs(), 0);
});

Deno.test("a GPU's first step after an idle spell waits for a majority of a burst of 8 or more", () => {
  const linger = new BurstLinger(ARRIVAL_WINDOW_MS);
  equal(linger.majorityOfBurst(), Infinity, "nothing known: every request on its way");
  for (let i = 0; i < 3; i++) linger.observe(32, 25);
  equal(linger.majorityOfBurst(), 17);
  linger.observe(17, 15, 15); // the majority started, the rest came in while it ran
  equal(linger.majorityOfBurst(), 17);
  linger.observe(8, 10);
  equal(linger.majorityOfBurst(), 5, "the latest burst caps the average");
  linger.observe(4, 6);
  equal(linger.majorityOfBurst(), Infinity, "small bursts go in one step");
});

/** Submits 1-token greedy requests to the benchmark model, whose prompt steps take milliseconds. */
async function openBench(): Promise<
  { loaded: LoadedModel; submit: (text: string) => Promise<void> }
> {
  const loaded = await LoadedModel.open({ path: await fixtureModel("bench-125m"), parallel: 4 });
  const submit = async (text: string) => {
    const generation = loaded.scheduler.submit({
      prompt: loaded.model.tokenize(text),
      maxTokens: 1,
      sampling: { temperature: 0 },
    });
    equal((await generation.result).completionTokens, 1);
  };
  return { loaded, submit };
}

/** Lets the scheduler's loop go idle, as it does between a client's requests. */
function pause(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 20));
}

/**
 * After an idle spell, submits one request, then another a turn of the event loop later; counts
 * their steps.
 */
async function stepsOfStraggler(loaded: LoadedModel, submit: (text: string) => Promise<void>) {
  await pause();
  const before = loaded.scheduler.stats().steps;
  const first = submit("the first of a burst");
  // The next request's bytes arrive a moment later: a turn of the event loop, without the
  // thread hop of a nonblocking call, which on a busy machine alone outlasts the linger's quiet.
  await new Promise((resolve) => setImmediate(resolve));
  const straggler = submit("the straggler");
  await Promise.all([first, straggler]);
  return loaded.scheduler.stats().steps - before;
}

Deno.test("where requests come in bursts, a straggler joins the first step after an idle spell", async () => {
  const { loaded, submit } = await openBench();
  await using _loaded = loaded;
  // Prompts long enough that a burst's first step takes tens of milliseconds on any machine.
  const long = (words: string) => Array(50).fill(words).join(" ");
  for (let burst = 0; burst < 3; burst++) {
    await pause();
    await Promise.all(
      ["one", "two", "three"].map((word) => submit(long(`burst ${burst} ${word}`))),
    );
  }
  equal(await stepsOfStraggler(loaded, submit), 1, "one step for both");
});

Deno.test("where requests come alone, a request does not wait for one that follows", async () => {
  const { loaded, submit } = await openBench();
  await using _loaded = loaded;
  for (let i = 0; i < 3; i++) {
    await pause();
    await submit(`lone request ${i}`);
  }
  equal(await stepsOfStraggler(loaded, submit), 2, "the first started at once");
});
