import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { Embedder, normalizeL2 } from "../../src/engine/embedder.ts";
import { GenerationError } from "../../src/engine/errors.ts";
import { Llama } from "../../src/ffi/llama.ts";
import { Model } from "../../src/ffi/model.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { assertNearlyEqual } from "../helpers.ts";

Deno.test("normalizeL2() scales to unit length and leaves a zero vector zero", () => {
  deepEqual(Array.from(normalizeL2(Float32Array.of(3, 4))), [
    0.6000000238418579,
    0.800000011920929,
  ]);
  deepEqual(Array.from(normalizeL2(Float32Array.of(0, 0))), [0, 0]);
});

Deno.test("Embedder.embed() runs concurrent calls one after another on its one context", async () => {
  using model = await Model.load(Llama.open({ gpuBackend: "cpu" }), await fixtureModel("tiny-f32"));
  using embedder = await Embedder.create(model, { pooling: "mean", maxSequences: 2 });
  equal(embedder.pooling, "mean");
  equal(embedder.dimensions, 64);
  equal(embedder.contextSize, 512);
  const inputs = ["hello world", "the dog", "yes", "a cat"].map((t) => model.tokenize(t));
  const batched = await embedder.embed(inputs);
  equal(embedder.decodeCount, 2, "four inputs, two sequences per decode");
  const alone: Float32Array[] = [];
  for (const input of inputs) alone.push((await embedder.embed([input]))[0]!);
  equal(embedder.decodeCount, 6, "one decode for each input alone");
  batched.forEach((vector, i) => assertNearlyEqual(vector, alone[i]!));
  const together = await Promise.all(inputs.map((input) => embedder.embed([input])));
  equal(embedder.decodeCount, 10, "one call after another, each alone");
  together.forEach(([vector], i) => deepEqual(Array.from(vector!), Array.from(alone[i]!)));
  ok(!embedder.busy);
});

Deno.test("Embedder refuses inputs it cannot pool or fit, and ranking on a model without rank pooling", async () => {
  using model = await Model.load(Llama.open({ gpuBackend: "cpu" }), await fixtureModel("tiny-f32"));
  using none = await Embedder.create(model);
  equal(none.pooling, "none", "llama.cpp's default for a model whose GGUF names no pooling");
  await rejects(async () => await none.embed([model.tokenize("a")]), GenerationError);
  using mean = await Embedder.create(model, { pooling: "mean", contextSize: 16 });
  await rejects(
    () => mean.embed([model.tokenize("a"), new Int32Array(17).fill(5)]),
    /Input 1 has 17 tokens; the embedding context holds 16/,
  );
  await rejects(async () => await mean.rank([model.tokenize("a")]), /not a reranker/);
});
