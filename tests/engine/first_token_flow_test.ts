import { deepEqual, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** Microtask hops that stand for an answer's work on a chunk (framing, JSON, the write). */
const HOPS = 100;

Deno.test("on a CPU, a first token's way out runs to its end before the next step computes", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  ok(loaded.context.computesOnHost);
  const startedEarly: number[] = [];
  for (let request = 0; request < 40; request++) {
    const generation = loaded.scheduler.submit({
      prompt: loaded.model.tokenize(`request ${request} once upon a time`),
      maxTokens: 4,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    // The way an HTTP answer takes its chunks: a ReadableStream fed by the generation.
    const body = new ReadableStream<string>({
      async start(controller) {
        for await (const chunk of generation) controller.enqueue(chunk.text);
        controller.close();
      },
    });
    let first = true;
    for await (const _text of body) {
      if (!first) continue;
      first = false;
      for (let hop = 0; hop < HOPS; hop++) {
        const until = performance.now() + 0.01;
        while (performance.now() < until); // some work in each hop
        await Promise.resolve();
      }
      if (loaded.context.busy) startedEarly.push(request);
    }
    await generation.result;
  }
  deepEqual(startedEarly, [], "requests whose second step started before their first chunk left");
});
