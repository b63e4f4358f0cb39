import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { Batch, Context, Llama, Model } from "../../src/ffi/mod.ts";
import { type DecodedStep, type DecodeRun, DecodeThread } from "../../src/ffi/decode_thread.ts";
import { Sampler, type SamplerStage } from "../../src/ffi/sampler.ts";
import { Command, CONTROL_LENGTH, Field, MAX_ENDS } from "../../src/ffi/decode_thread_control.ts";
import { fixtureModel } from "../fixtures/models.ts";

const llama = Llama.open();

/** A context whose decode thread is ready. */
async function contextWithThread(model: Model, nSeqMax = 1): Promise<Context> {
  const ctx = await Context.create(model, { nCtx: 256, nBatch: 32, nSeqMax });
  ctx.startDecodeThread();
  for (let i = 0; !ctx.canDecodeAhead && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  ok(ctx.canDecodeAhead, "the thread is ready");
  return ctx;
}

async function allSteps(run: DecodeRun): Promise<DecodedStep[]> {
  const steps: DecodedStep[] = [];
  for (let next = await run.next(); next; next = await run.next()) steps.push(...next);
  return steps;
}

/**
 * Decodes `prompt` on sequence 0 through the event loop and samples its first token, which the
 * batch then holds alone, ready to start a run.
 */
async function afterPrompt(
  ctx: Context,
  batch: Batch,
  sampler: Sampler,
  prompt: number[],
): Promise<number> {
  batch.clear();
  prompt.forEach((token, i) => batch.add(token, i, 0, i === prompt.length - 1));
  await ctx.decode(batch);
  const first = sampler.sample(ctx, prompt.length - 1);
  batch.clear();
  batch.add(first, prompt.length, 0, true);
  return first;
}

/** Greedy tokens after `prompt`, one decode at a time on the event loop's side. */
async function greedyOnLoop(
  model: Model,
  prompt: number[],
  count: number,
  stages: SamplerStage[] = [{ type: "greedy" }],
): Promise<number[]> {
  using ctx = await Context.create(model, { nCtx: 256, nBatch: 32 });
  using batch = new Batch(llama, 32);
  using sampler = await Sampler.build(model, stages);
  prompt.forEach((token, i) => batch.add(token, i, 0, i === prompt.length - 1));
  await ctx.decode(batch);
  const tokens = [sampler.sample(ctx, prompt.length - 1)];
  while (tokens.length < count) {
    batch.clear();
    batch.add(tokens.at(-1) as number, prompt.length + tokens.length - 1, 0, true);
    await ctx.decode(batch);
    tokens.push(sampler.sample(ctx, 0));
  }
  return tokens;
}

Deno.test("the decode thread samples and decodes step after step what the event loop's decodes give", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await contextWithThread(model);
  using batch = new Batch(llama, 32);
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  const prompt = [...model.tokenize("once upon a time")];
  const first = await afterPrompt(ctx, batch, sampler, prompt);
  const run = await ctx.decodeAhead(batch, sampler, 20, []);
  ok(!ctx.canDecodeAhead, "one run at a time, and no other decode beside it");
  await rejects(ctx.decode(batch), /already decoding/);
  const steps = await allSteps(run);
  equal(run.status, 0);
  equal(steps.length, 20, "the budget");
  ok(steps.every((step) => step.decodeMs > 0), "each step's decode is timed");
  deepEqual(
    [first, ...steps.map((step) => step.token)],
    await greedyOnLoop(model, prompt, 21),
  );
  equal(run.steps, 20);
  equal(ctx.decodeCount, 21, "the prompt's decode and the run's steps");
  ok(ctx.canDecodeAhead, "the context is free again");
});

Deno.test("a run with a grammar picks as the event loop does, and halts after a token whose text ends on a marked byte", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const prompt = [...model.tokenize("once upon a time")];
  const stages: SamplerStage[] = [
    { type: "grammar", grammar: "root ::= [a-z ]*" },
    { type: "penalties", lastN: 64, repeat: 1.5, frequency: 0, presence: 0 },
    { type: "greedy" },
  ];
  const expected = await greedyOnLoop(model, prompt, 13, stages);
  const lastByte = (token: number) => model.tokenBytes(token).at(-1) ?? 256;
  const halting = new Uint8Array(256);
  for (const halt of [false, true]) {
    using ctx = await contextWithThread(model);
    using batch = new Batch(llama, 32);
    using sampler = await Sampler.build(model, stages);
    await rejects(ctx.decodeAhead(batch, sampler, 12, []), RangeError, "256 bytes");
    const first = await afterPrompt(ctx, batch, sampler, prompt);
    halting.fill(0);
    if (halt) halting[lastByte(expected[4] as number)] = 1;
    // The run's tokens follow the host's first one: it halts after the first that ends so.
    const haltsAfter = expected.findIndex((token, i) => i > 0 && halting[lastByte(token)] === 1);
    const run = await ctx.decodeAhead(batch, sampler, 12, [], halting);
    const steps = await allSteps(run);
    equal(run.status, 0);
    const tokens = [first, ...steps.map((step) => step.token)];
    deepEqual(tokens, expected.slice(0, halt ? haltsAfter + 1 : 13), `halt ${halt}`);
    ok(!halt || (haltsAfter > 0 && haltsAfter <= 4), `halts after ${haltsAfter}`);
    // Random weights pick letters and more: some picks were refused, and put back.
    ok(run.refusals > 0, `${run.refusals} refusals`);
  }
});

Deno.test("a run halts on an end token, when stopped, and on a failed decode, and the thread goes on", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await contextWithThread(model);
  using batch = new Batch(llama, 32);
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  const prompt = [...model.tokenize("the weather")];
  const expected = await greedyOnLoop(model, prompt, 12);
  await afterPrompt(ctx, batch, sampler, prompt);
  const end = expected[4] as number;
  const ended = await allSteps(await ctx.decodeAhead(batch, sampler, 50, [end]));
  deepEqual(ended.map((step) => step.token), expected.slice(1, expected.indexOf(end, 1) + 1));

  // Stopped as soon as it started: it halts after the step under way, far from its budget.
  ctx.removeTokens(0);
  batch.clear();
  batch.add(prompt[0] as number, 0, 0, true);
  const stopped = await ctx.decodeAhead(batch, sampler, 200, []);
  stopped.stop();
  const steps = await allSteps(stopped);
  ok(steps.length < 200, `${steps.length} steps`);
  equal(stopped.status, 0);

  // A token outside the vocabulary: llama_decode refuses the batch.
  batch.clear();
  batch.add(model.nVocab + 10, 0, 0, true);
  const failed = await ctx.decodeAhead(batch, sampler, 5, []);
  equal((await allSteps(failed)).length, 0);
  ok(failed.status !== 0 && !failed.threadFailed, `status ${failed.status}`);
  ok(ctx.canDecodeAhead, "the thread takes the next run");
});

Deno.test("a decode thread whose library cannot be opened is never ready, and says so once", async () => {
  const warnings: string[] = [];
  const warn = console.error;
  console.error = (message: string) => warnings.push(message);
  try {
    using thread = new DecodeThread("/nonexistent/libllama.so");
    for (let i = 0; warnings.length === 0 && i < 500; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    ok(!thread.ready);
    equal(warnings.length, 1);
    ok(warnings[0]?.includes("the decode thread failed"), warnings[0]);
  } finally {
    console.error = warn;
  }
});

/** A two-sequence step after a prompt on each: the batches a scheduler decodes between runs. */
function fillSteps(batch: Batch, prompt: number[], step: number): void {
  batch.clear();
  if (step === 0) {
    for (const seq of [0, 1]) {
      prompt.forEach((token, i) => batch.add(token + seq, i, seq, i === prompt.length - 1));
    }
    return;
  }
  for (const seq of [0, 1]) batch.add(100 + step + seq, prompt.length + step - 1, seq, true);
}

Deno.test("a context's decodes go one at a time to its ready decode thread and give what Deno's pool gives", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await contextWithThread(model, 2);
  using plain = await Context.create(model, { nCtx: 256, nBatch: 32, nSeqMax: 2 });
  using batch = new Batch(llama, 32);
  const prompt = [...model.tokenize("once upon a time")];
  for (let step = 0; step < 4; step++) {
    fillSteps(batch, prompt, step);
    await ctx.decode(batch);
    const threaded = [...ctx.logits(batch.length - 1)];
    await plain.decode(batch);
    deepEqual(threaded, [...plain.logits(batch.length - 1)], `step ${step}`);
  }
  equal(ctx.decodesOnThread, 4);
  equal(plain.decodesOnThread, 0);
  ok(ctx.decodeTimes().llamaDecodeMs > 0);
  // A run between steps takes the thread; the steps after it go there again.
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  batch.clear();
  batch.add(prompt[0] as number, prompt.length + 3, 0, true);
  await allSteps(await ctx.decodeAhead(batch, sampler, 3, []));
  batch.clear();
  batch.add(prompt[0] as number, prompt.length + 3, 1, true);
  await ctx.decode(batch);
  equal(ctx.decodesOnThread, 5);
  // A batch the library refuses is a DecodeError that quotes its log line (the log callback is
  // reachable from the thread), and the thread takes the next one.
  batch.clear();
  batch.add(model.nVocab + 10, 0, 1, true);
  await rejects(ctx.decode(batch), /invalid token/);
  ok(ctx.canDecodeAhead, "the thread is still ready");
});

Deno.test("DecodeThread.step() that waits for the backends, and one whose host turns meanwhile, give a plain step's logits", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using plain = await Context.create(model, { nCtx: 256, nBatch: 32 });
  using batch = new Batch(llama, 32);
  const prompt = [...model.tokenize("once upon a time")];
  prompt.forEach((token, i) => batch.add(token, i, 0, i === prompt.length - 1));
  await plain.decode(batch);
  const expected = [...plain.logits(prompt.length - 1)];
  using thread = new DecodeThread(llama.llamaFile);
  for (let i = 0; !thread.ready && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  let turns = 0;
  const turn = () => new Promise<void>((resolve) => setTimeout(() => (turns++, resolve()), 0));
  for (const options of [{ synchronize: true }, { synchronize: true, turn }, { turn }]) {
    using ctx = await Context.create(model, { nCtx: 256, nBatch: 32 });
    const { status, decodeMs } = await thread.step(ctx.pointer, batch, options);
    ok(status === 0 && decodeMs > 0, `status ${status}, ${decodeMs} ms`);
    deepEqual([...ctx.logits(prompt.length - 1)], expected, JSON.stringify(Object.keys(options)));
  }
  ok(turns > 0, "the host turned while the thread decoded");
});

Deno.test("DecodeThread.step() is refused by a thread that failed to start, a closed one, and one whose step is under way", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 256, nBatch: 32 });
  using batch = new Batch(llama, 32);
  batch.add(1, 0, 0, true);
  const warn = console.error;
  console.error = () => {};
  try {
    using broken = new DecodeThread("/nonexistent/libllama.so");
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    await rejects(broken.step(ctx.pointer, batch), /not ready/);
  } finally {
    console.error = warn;
  }
  const thread = new DecodeThread(llama.llamaFile);
  for (let i = 0; !thread.ready && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // Looked at from a turn taken while the step is under way: a one-token step of this model can
  // be over before the call returns (a loaded machine may pause the host that long), so a step
  // without any such turn is tried again, on an empty cache (a position decoded twice would fail
  // and log). Later turns let the event loop run: a log line from the thread waits for it.
  let seenBusy = 0;
  for (let tries = 0; seenBusy === 0 && tries < 50; tries++) {
    ctx.clearMemory();
    const { status, decodeMs } = await thread.step(ctx.pointer, batch, {
      turn: async () => {
        if (seenBusy > 0) return await new Promise((resolve) => setTimeout(resolve, 0));
        seenBusy++;
        ok(!thread.ready, "busy while its step is decoded");
        await rejects(thread.step(ctx.pointer, batch), /not ready/);
      },
    });
    ok(status === 0 && decodeMs > 0, `status ${status}, ${decodeMs} ms`);
    ok(thread.ready);
  }
  equal(seenBusy, 1, "a step was seen under way");
  thread.close();
  await rejects(thread.step(ctx.pointer, batch), /not ready/);
});

Deno.test("the decode thread's worker leaves its loop on the close command, woken or not", async () => {
  for (const wake of [true, false]) {
    const control = new Int32Array(new SharedArrayBuffer(CONTROL_LENGTH * 4));
    const worker = new Worker(new URL("../../src/ffi/decode_thread_main.ts", import.meta.url), {
      type: "module",
    });
    try {
      worker.postMessage({ kind: "open", llamaFile: llama.llamaFile, control: control.buffer });
      for (let i = 0; Atomics.load(control, Field.ready) !== 1 && i < 500; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      equal(Atomics.load(control, Field.ready), 1, "the worker waits for commands");
      const start = performance.now();
      Atomics.store(control, Field.command, Command.close);
      if (wake) Atomics.notify(control, Field.command);
      const left = Atomics.waitAsync(control, Field.ready, 1, 2000);
      // "not-equal": woken, the worker had left before the wait began.
      const outcome = left.async ? await left.value : left.value;
      ok(outcome !== "timed-out", "the loop ended");
      equal(Atomics.load(control, Field.ready), 0, "the loop ended");
      const ms = performance.now() - start;
      ok(ms < (wake ? 50 : 500), `left after ${ms.toFixed(1)} ms`);
    } finally {
      worker.terminate();
    }
  }
});

Deno.test("DecodeThread.start() takes at most MAX_ENDS distinct end tokens, and a refused plan leaves the thread ready", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await contextWithThread(model);
  using batch = new Batch(llama, 32);
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  const prompt = [...model.tokenize("the weather")];
  const expected = await greedyOnLoop(model, prompt, 6);
  await afterPrompt(ctx, batch, sampler, prompt);
  const tooMany = Array.from({ length: MAX_ENDS + 1 }, (_, i) => model.nVocab + i);
  await rejects(ctx.decodeAhead(batch, sampler, 10, tooMany), RangeError);
  ok(ctx.canDecodeAhead, "the thread is still ready");
  // Repeated tokens count once: the last of MAX_ENDS distinct ones still ends the run.
  const end = expected[3] as number;
  const ends = [...tooMany.slice(0, MAX_ENDS - 1), ...tooMany.slice(0, MAX_ENDS - 1), end];
  const steps = await allSteps(await ctx.decodeAhead(batch, sampler, 10, ends));
  deepEqual(steps.map((step) => step.token), expected.slice(1, expected.indexOf(end, 1) + 1));
});
