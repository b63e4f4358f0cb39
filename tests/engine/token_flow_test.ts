import { equal, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { fixtureModel } from "../fixtures/models.ts";

Deno.test("on a CPU, a step's tokens go through an answer's stream before the next step computes", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  ok(loaded.context.computesOnHost);
  const generation = loaded.scheduler.submit({
    prompt: loaded.model.tokenize("once upon a time"),
    maxTokens: 24,
    ignoreEos: true,
    sampling: { temperature: 0 },
  });
  // The way an HTTP answer takes its chunks: a ReadableStream fed by the generation, read by the
  // loop that writes them to the socket.
  const body = new ReadableStream<string>({
    async start(controller) {
      for await (const chunk of generation) controller.enqueue(chunk.text);
      controller.close();
    },
  });
  let read = 0;
  const decodingWhenRead: number[] = [];
  for await (const _text of body) {
    read++;
    if (loaded.context.busy) decodingWhenRead.push(read);
  }
  ok(read > 10, `${read} chunks`);
  // The last step's chunk comes after the last decode; every other one must leave before the
  // decode of the step after it starts, not while that step computes beside it.
  equal(
    decodingWhenRead.length,
    0,
    `chunks read while the next step computed: ${decodingWhenRead}`,
  );
  equal((await generation.result).completionTokens, 24);
});
