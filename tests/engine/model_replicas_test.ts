/**
 * `ModelReplicas` on the CPU: two copies of a tiny model, each with its own scheduler, and
 * the least-loaded routing between them.
 */

import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { ModelReplicas } from "../../src/engine/model_replicas.ts";
import { fixtureLora, fixtureModel } from "../fixtures/models.ts";

async function twoCopies(parallel = 1): Promise<ModelReplicas> {
  return await ModelReplicas.open({
    path: await fixtureModel("tiny-f32"),
    gpuBackend: "cpu",
    replicas: 2,
    parallel,
    ctxSize: 256,
    threads: 1,
  });
}

Deno.test("ModelReplicas.open() opens independent copies, each with its own context and scheduler", async () => {
  await using group = await twoCopies();
  equal(group.copies.length, 2);
  equal(group.plan.kind, "cpu");
  const [a, b] = group.copies;
  notEqual(a!.model, b!.model);
  notEqual(a!.context, b!.context);
  notEqual(a!.scheduler, b!.scheduler);
  deepEqual(group.stats(), { slots: 2, busySlots: 0, queued: 0, steps: 0 });
  deepEqual(group.replicaInfo().map((r) => r.devices), [["CPU"], ["CPU"]]);
});

Deno.test("pick() hands out the copy with the fewest holders, first on ties", async () => {
  await using group = await twoCopies();
  const first = group.pick();
  const second = group.pick();
  const third = group.pick();
  deepEqual([first.index, second.index, third.index], [0, 1, 0]);
  first.release();
  third.release();
  first.release(); // twice is harmless
  equal(group.pick().index, 0);
  deepEqual(group.replicaInfo().map((r) => r.holders), [1, 1]);
});

Deno.test("pick() avoids a copy whose slots are busy even when nobody holds it", async () => {
  await using group = await twoCopies();
  const abort = new AbortController();
  const prompt = group.primary.model.tokenize("once upon a time");
  // Busy copy 0 behind pick()'s back: its load is its busy slots and queue.
  const running = group.copies[0]!.scheduler.submit({
    prompt,
    maxTokens: 10_000,
    ignoreEos: true,
    signal: abort.signal,
  });
  for (let i = 0; i < 200 && group.copies[0]!.scheduler.stats().busySlots === 0; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  equal(group.copies[0]!.scheduler.stats().busySlots, 1);
  using picked = group.pick();
  equal(picked.index, 1);
  abort.abort();
  await running.result.catch(() => {});
});

Deno.test("concurrent requests through pick() land on both copies, with the same greedy text", async () => {
  await using group = await twoCopies();
  const prompt = group.primary.model.tokenize("once upon a time");
  const results = await Promise.all([0, 1, 2, 3].map(async () => {
    using picked = group.pick();
    const generation = picked.model.scheduler.submit({
      prompt,
      maxTokens: 24,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    const result = await generation.result;
    return { index: picked.index, text: result.text };
  }));
  deepEqual(results.map((r) => r.index), [0, 1, 0, 1]);
  for (const copy of group.copies) ok(copy.scheduler.stats().steps > 0, "every copy decoded");
  equal(new Set(results.map((r) => r.text)).size, 1, "copies of one model agree");
});

Deno.test("setLora() attaches adapters on every copy", async () => {
  const adapter = await fixtureLora("tiny-f32-lora");
  await using group = await twoCopies();
  await group.setLora([{ path: adapter, scale: 0.5 }]);
  for (const copy of group.copies) deepEqual(copy.lora(), [{ path: adapter, scale: 0.5 }]);
  deepEqual(group.lora(), [{ path: adapter, scale: 0.5 }]);
});
