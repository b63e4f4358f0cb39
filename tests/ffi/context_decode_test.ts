import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { Batch, Context, Llama, Model } from "../../src/ffi/mod.ts";
import { queuesOnly } from "../../src/ffi/context.ts";
import { fixtureModel } from "../fixtures/models.ts";

const llama = Llama.open();

Deno.test("a context decodes off the event loop, and counts where the time went", async () => {
  using model = await Model.load(llama, await fixtureModel("bench-125m"));
  using ctx = await Context.create(model, { nCtx: 512, nBatch: 256 });
  using batch = new Batch(llama, 256);
  for (let i = 0; i < 256; i++) batch.add(100 + i, i, 0, i === 255);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = performance.now();
  await ctx.decode(batch);
  const elapsed = performance.now() - started;
  clearInterval(timer);
  // A blocking decode on this thread would let no timer fire until it returned.
  ok(elapsed < 20 || ticks >= 2, `${ticks} timer ticks in a ${elapsed.toFixed(0)} ms decode`);
  ok(ctx.logits(255).some((value) => value !== 0));
  const times = ctx.decodeTimes();
  ok(times.llamaDecodeMs > 0 && times.llamaDecodeMs <= elapsed, JSON.stringify(times));
  // On the CPU there is no device to wait for, and no call to wait for it.
  ok(times.deviceWaitMs === 0, JSON.stringify(times));
  // Nor a decode on the event loop's thread.
  ok(times.llamaDecodeOnLoopMs === 0, JSON.stringify(times));
});

Deno.test("queuesOnly() holds only when every layer, the output layer included, is on a GPU", () => {
  ok(queuesOnly({ offloaded: 17, total: 17 }));
  ok(!queuesOnly({ offloaded: 16, total: 17 }));
  ok(!queuesOnly({ offloaded: 0, total: 13 }));
  ok(!queuesOnly({ offloaded: 0, total: 0 }));
});

Deno.test("on the CPU every decode runs on a worker thread, however alike the batches", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 128, nBatch: 16 });
  using batch = new Batch(llama, 16);
  for (let step = 0; step < 4; step++) {
    batch.clear();
    batch.add(10 + step, step, 0, true);
    await ctx.decode(batch);
  }
  ok(ctx.decodeCount === 4 && ctx.decodesOnEventLoop === 0, `${ctx.decodesOnEventLoop}`);
});

Deno.test("with a KV stream per sequence, a whole sequence is copied and a part is an error", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 128, nSeqMax: 2, kvUnified: false });
  using batch = new Batch(llama, 16);
  for (let i = 0; i < 4; i++) batch.add(100 + i, i, 0, i === 3);
  await ctx.decode(batch);
  // llama.cpp would abort the process here: a part of a stream is not copied.
  throws(() => ctx.copySequence(0, 1, 0, 2), /Only whole sequences/);
  ctx.copySequence(0, 1);
  equal(ctx.maxPosition(1), 3);
  batch.clear();
  batch.add(200, 4, 1, true);
  await ctx.decode(batch); // applies the pending copy of the stream, then decodes after it
  equal(ctx.maxPosition(1), 4);
});

Deno.test("with a KV stream per sequence, two sequences swap their cells and decode on from them", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 128, nSeqMax: 2, kvUnified: false });
  using batch = new Batch(llama, 16);
  const prompts = [[101, 102, 103, 104, 105], [201, 202, 203]];
  /** Evaluates both prompts, each in the sequence given; returns each prompt's last logits. */
  const evaluate = async (seqOf: number[]) => {
    batch.clear();
    const rows: number[] = [];
    prompts.forEach((tokens, p) => {
      tokens.forEach((token, i) => {
        const row = batch.add(token, i, seqOf[p] as number, i === tokens.length - 1);
        if (i === tokens.length - 1) rows[p] = row;
      });
    });
    await ctx.decode(batch);
    return rows.map((row) => [...ctx.logits(row)]);
  };
  /** One more token for each prompt, in the sequence that holds it now. */
  const next = async (seqOf: number[]) => {
    batch.clear();
    const rows = prompts.map((tokens, p) =>
      batch.add(300 + p, tokens.length, seqOf[p] as number, true)
    );
    await ctx.decode(batch);
    return rows.map((row) => [...ctx.logits(row)]);
  };
  await evaluate([0, 1]);
  const expected = await next([0, 1]);
  ctx.removeTokens(0);
  ctx.removeTokens(1);
  await evaluate([0, 1]);
  const refused = ctx.swapSequences(0, 1, 1);
  deepEqual([refused.moved, refused.kept], [false, false]);
  ok(refused.bytes > 1, `the two states' bytes (${refused.bytes}) are over the bound`);
  const swap = ctx.swapSequences(0, 1);
  deepEqual(swap, { moved: true, kept: true, bytes: refused.bytes });
  equal(ctx.maxPosition(0), prompts[1]!.length - 1);
  equal(ctx.maxPosition(1), prompts[0]!.length - 1);
  const swapped = await next([1, 0]);
  // Each prompt's next logits, from its cells in the other stream (rows in another order of the
  // batch round differently in the last bits).
  for (const p of [0, 1]) {
    const drift = Math.max(...swapped[p]!.map((v, i) => Math.abs(v - (expected[p]![i] as number))));
    ok(drift < 1e-4, `prompt ${p}: logits differ by up to ${drift}`);
  }
  // Not over a copy still pending: it would read cells the copy is about to replace.
  ctx.copySequence(0, 1);
  deepEqual(ctx.swapSequences(0, 1), { moved: false, kept: false, bytes: 0 });
});
