/**
 * GPU cases. They run where a CUDA device is present (the H100 machine, with the libraries
 * from `scripts/build-libllama.sh --cuda --reference-tools` in SHIMMY_LIB_DIR) and are skipped
 * with a printed reason elsewhere.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import type { Llama } from "../../src/ffi/llama.ts";
import { Batch, Context, Model } from "../../src/ffi/mod.ts";
import { queuesOnly } from "../../src/ffi/context.ts";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import type { GenerationRequest, SchedulerStats } from "../../src/engine/scheduler.ts";
import { jsonObjectGrammar } from "../../src/engine/structured/json_schema.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";
import { cudaDevices, cudaLlama as llama, greedyGenerate } from "./helpers.ts";

const cuda = cudaDevices[0];
const ignore = cuda === undefined &&
  skipBecause("gpu", "no CUDA device here (these run on the GPU machine, see README)");
const MODEL = Deno.env.get("SHIMMY_GPU_TEST_MODEL") ?? "bench-125m";
/** A model big enough for the GPU to matter (a 125M model is CPU-friendly on 16 cores). */
const SPEED_MODEL = Deno.env.get("SHIMMY_GPU_SPEED_MODEL") ?? "bench-1b";

function generate(
  backend: string,
  tokens: number,
  prompt = "Hello world, the quick",
  model = MODEL,
) {
  return greedyGenerate({ backend, tokens, prompt, model });
}

Deno.test({
  name: "--gpu-backend cuda puts every layer on the CUDA device",
  ignore,
  async fn() {
    const result = await generate("cuda", 8);
    equal(result.backend, "cuda");
    ok(result.offload.offloaded > 0);
    equal(result.offload.offloaded, result.offload.total, JSON.stringify(result.offload));
    equal(result.load_params.n_gpu_layers, -1);
    console.log(
      `offloaded ${result.offload.offloaded}/${result.offload.total} layers to ${cuda?.description}`,
    );
  },
});

Deno.test({
  name: "generation on the GPU is many times faster than on the CPU",
  ignore,
  async fn() {
    const prompt = "Hello world, the quick";
    await generate("cuda", 16, prompt, SPEED_MODEL); // warm-up
    const gpu = await generate("cuda", 256, prompt, SPEED_MODEL);
    const cpu = await generate("cpu", 32, prompt, SPEED_MODEL);
    const speedup = gpu.timings.generate_per_second / cpu.timings.generate_per_second;
    console.log(
      `decode: GPU ${gpu.timings.generate_per_second} tok/s, CPU ${cpu.timings.generate_per_second} tok/s, ${
        speedup.toFixed(1)
      }x`,
    );
    ok(speedup >= 3, `speed-up ${speedup}`);
  },
});

Deno.test({
  name: "the greedy token stream on the GPU equals llama-simple's on the GPU",
  ignore,
  async fn() {
    const prompt = "Hello world, the quick brown fox";
    const ours = await generate("cuda", 32, prompt);
    const tool = join((llama as Llama).libDir, "bin", "llama-simple");
    const out = await new Deno.Command(tool, {
      args: ["-m", await fixtureModel(MODEL), "-ngl", "99", "-n", "32", prompt],
      stderr: "piped",
    }).output();
    equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const oracle = new TextDecoder().decode(out.stdout).replace(/\n$/, "");
    equal(ours.tokens.length, 32);
    ok(oracle.endsWith(ours.text), `llama-simple: ${oracle}\nshimmy: ${ours.text}`);
  },
});

Deno.test({
  name:
    "with every layer on the GPU, decodes shaped like the last one run on the event loop, which keeps turning while the GPU computes",
  ignore,
  async fn() {
    using model = await Model.load(llama as Llama, await fixtureModel(MODEL), { nGpuLayers: -1 });
    ok(queuesOnly(model.offload), JSON.stringify(model.offload));
    using ctx = await Context.create(model, { nCtx: 256, nBatch: 64 });
    using batch = new Batch(llama as Llama, 64);
    for (let i = 0; i < 8; i++) batch.add(100 + i, i, 0, i === 7);
    await ctx.decode(batch); // a new shape: on a worker thread
    for (let step = 0; step < 6; step++) {
      batch.clear();
      batch.add(200 + step, 8 + step, 0, true);
      await ctx.decode(batch); // the first 1-token step is a new shape, then the same one
      ok(ctx.logits(0).some((value) => value !== 0));
    }
    equal(ctx.decodeCount, 7);
    equal(ctx.decodesOnEventLoop, 5);
    // Every wait for the GPU takes at least one turn of the event loop instead of sleeping.
    ok(ctx.deviceWaitTurns >= 7, `${ctx.deviceWaitTurns} turns`);
  },
});

Deno.test({
  name:
    "with the decode thread, a GPU step is waited for there while the event loop turns, and gives the pool's logits",
  ignore,
  async fn() {
    using model = await Model.load(llama as Llama, await fixtureModel(MODEL), { nGpuLayers: -1 });
    using plain = await Context.create(model, { nCtx: 256, nBatch: 64 });
    using threaded = await Context.create(model, { nCtx: 256, nBatch: 64 });
    threaded.startDecodeThread();
    for (let i = 0; !threaded.canDecodeAhead && i < 500; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    ok(threaded.canDecodeAhead, "the thread is ready");
    using batch = new Batch(llama as Llama, 64);
    for (let i = 0; i < 8; i++) batch.add(100 + i, i, 0, i === 7);
    await plain.decode(batch);
    await threaded.decode(batch); // a new shape: on the decode thread, which waits for the GPU
    equal(threaded.decodesOnThread, 1);
    deepEqual([...threaded.logits(7)], [...plain.logits(7)]);
    ok(threaded.deviceWaitTurns >= 1, `${threaded.deviceWaitTurns} turns`);
    equal(threaded.decodeTimes().deviceWaitMs, 0, "no wait for the GPU after the thread's step");
  },
});

/** One lone stream on the GPU, its steps on the decode thread or not: its tokens and the stats. */
async function loneStream(
  decodeThread: boolean,
  request: (model: Model) => GenerationRequest,
): Promise<{ tokens: number[]; stats: SchedulerStats }> {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel(MODEL),
    gpuBackend: "cuda",
    decodeThread,
    parallel: 2,
    ctxSize: 512,
  });
  // The thread starts with the model; wait until it can take a run.
  for (let i = 0; decodeThread && !loaded.context.canDecodeAhead && i < 500; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const generation = loaded.scheduler.submit(request(loaded.model));
  for await (const _ of generation) { /* streamed */ }
  return { tokens: (await generation.result).tokens, stats: loaded.scheduler.stats() };
}

Deno.test({
  name:
    "on the GPU a lone stream runs on the decode thread, reading the token sampled in the graph, and gives the event loop's tokens",
  ignore,
  async fn() {
    const request = (model: Model) => ({
      prompt: model.tokenize("Hello world, the quick brown fox"),
      maxTokens: 64,
      ignoreEos: true,
      sampling: { temperature: 0 },
    });
    const threaded = await loneStream(true, request);
    const plain = await loneStream(false, request);
    for (const { stats } of [threaded, plain]) {
      equal(stats.deviceSampledRequests, 1, "the chain sampled inside the graph");
    }
    equal(threaded.stats.stepsAhead, 63);
    equal(plain.stats.stepsAhead, 0);
    deepEqual(threaded.tokens, plain.tokens);
  },
});

Deno.test({
  name:
    "on the GPU a lone stream under a grammar runs on the decode thread, sampling on the CPU, and gives the event loop's tokens",
  ignore,
  async fn() {
    const request = (model: Model) => ({
      prompt: model.tokenize("Answer in JSON:"),
      maxTokens: 48,
      sampling: { temperature: 0.8, topK: 40, seed: 5, grammar: jsonObjectGrammar() },
    });
    const threaded = await loneStream(true, request);
    const plain = await loneStream(false, request);
    equal(threaded.stats.deviceSampledRequests, 0, "a grammar samples on the CPU");
    ok(threaded.stats.stepsAhead > 0, `${threaded.stats.stepsAhead} steps ahead`);
    equal(plain.stats.stepsAhead, 0);
    deepEqual(threaded.tokens, plain.tokens);
  },
});
