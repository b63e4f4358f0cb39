import { deepEqual, equal, notEqual, ok } from "node:assert/strict";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { SpareChains } from "../../src/engine/spare_chains.ts";
import { samplerStages } from "../../src/engine/sampling.ts";
import { openHandles } from "../../src/ffi/handle.ts";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { fixtureModel } from "../fixtures/models.ts";

const llama = Llama.open();
const openSamplers = () => openHandles.Sampler ?? 0;

Deno.test("a kept chain goes back to a request with the same stages, reset; others get new ones", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const spare = new SpareChains(model, 4);
  try {
    const greedy = samplerStages({ temperature: 0 });
    const first = spare.take(greedy, false);
    spare.keep(first, false);
    equal(spare.size, 1);
    equal(spare.take(greedy, false), first, "the same chain");
    equal(spare.size, 0);
    const penalised = samplerStages({ temperature: 0, repeatPenalty: 1.2 });
    const other = spare.take(penalised, false);
    notEqual(other, first);
    spare.keep(first, false);
    spare.keep(other, false);
    equal(spare.size, 2);
    // A seeded draw is kept for the same seed only.
    const seeded = spare.take(samplerStages({ temperature: 0.8, seed: 7 }), true);
    spare.keep(seeded, true);
    equal(spare.take(samplerStages({ temperature: 0.8, seed: 7 }), true), seeded);
    notEqual(spare.take(samplerStages({ temperature: 0.8, seed: 8 }), true), seeded);
  } finally {
    spare.close();
  }
});

Deno.test("chains that a later request could not use as new are freed, not kept", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const before = openSamplers();
  const spare = new SpareChains(model, 4);
  // An unseeded draw: its stages carry a seed drawn for its request alone.
  const unseeded = spare.take(samplerStages({ temperature: 0.8 }), false);
  spare.keep(unseeded, false);
  ok(unseeded.closed);
  const grammar = spare.take(samplerStages({ temperature: 0, grammar: 'root ::= "a"' }), false);
  spare.keep(grammar, false);
  ok(grammar.closed);
  const biased = spare.take(
    samplerStages({ temperature: 0, logitBias: new Map([[5, -1]]) }),
    false,
  );
  spare.keep(biased, false);
  ok(biased.closed);
  equal(spare.size, 0);
  equal(openSamplers(), before);
});

Deno.test("spare chains are bounded, the oldest freed first, and all freed on close", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const before = openSamplers();
  const spare = new SpareChains(model, 2);
  const stages = [0, 1, 2].map((k) =>
    samplerStages({ temperature: 0, repeatLastN: 10 + k, repeatPenalty: 1.1 })
  );
  const chains = stages.map((s) => spare.take(s, false));
  for (const chain of chains) spare.keep(chain, false);
  equal(spare.size, 2);
  deepEqual(chains.map((c) => c.closed), [true, false, false]);
  // One closed by someone else meanwhile is dropped, not handed out.
  (chains[1] as { close(): void }).close();
  notEqual(spare.take(stages[1] as never, false), chains[1]);
  spare.close();
  equal(spare.size, 0);
  ok(chains[2]?.closed);
  equal(openSamplers(), before + 1, "only the chain taken above is left");
});

Deno.test("a greedy request takes the chain of the last one instead of building one", async () => {
  await using loaded = await LoadedModel.open({ path: await fixtureModel("tiny-f32") });
  const before = openSamplers();
  const prompt = loaded.model.tokenize("the weather today");
  const run = async () => {
    const generation = loaded.scheduler.submit({
      prompt,
      maxTokens: 4,
      sampling: { temperature: 0 },
    });
    const during = openSamplers();
    return { during, tokens: (await generation.result).tokens };
  };
  const first = await run();
  equal(openSamplers() - before, 1, "kept once the request ended");
  const second = await run();
  equal(second.during - before, 1, "the second request built no chain");
  deepEqual(second.tokens, first.tokens);
  // Reset, a kept chain forgets the tokens its penalties saw: the same output again.
  const penalised = async () =>
    (await loaded.scheduler.submit({
      prompt,
      maxTokens: 24,
      sampling: { temperature: 0, repeatPenalty: 1.5, repeatLastN: 64 },
    }).result).tokens;
  deepEqual(await penalised(), await penalised());
});
