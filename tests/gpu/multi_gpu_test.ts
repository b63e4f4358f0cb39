/**
 * Several GPUs. They run where two or more CUDA devices are present (an `nvidia-h100-x2`
 * machine, with the libraries of `scripts/build-libllama.sh --cuda` in SHIMMY_LIB_DIR) and are
 * skipped with a printed reason elsewhere. The planner, the flags and replica routing are tested
 * on the CPU (`tests/engine/multi_gpu_plan_test.ts`, `tests/server/replicas_test.ts`).
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { fixtureModel } from "../fixtures/models.ts";
import { runShimmy, skipBecause } from "../helpers.ts";
import { postJson, startServer } from "../server/harness.ts";
import { cudaDevices, greedyGenerate } from "./helpers.ts";

const ignore = cudaDevices.length < 2 &&
  skipBecause("multi-gpu", `${cudaDevices.length} CUDA device(s) here; these need two`);
const MODEL = "bench-125m";
/** `llama_split_mode`'s values. */
const SPLIT_NONE = 0;
const SPLIT_LAYER = 1;

async function shimmyJson(args: string[]) {
  const run = await runShimmy(args);
  equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

Deno.test({
  name: "shimmy gpu-info lists every GPU of the machine, and auto takes CUDA",
  ignore,
  async fn() {
    const info = await shimmyJson(["gpu-info", "--json"]);
    const gpus = info.devices.filter((d: { backend: string }) =>
      d.backend.toUpperCase().startsWith("CUDA")
    );
    equal(gpus.length, cudaDevices.length, JSON.stringify(info.devices));
    ok(gpus.every((d: { total_bytes: number }) => d.total_bytes > 0));
    equal(info.auto.backend, "cuda");
  },
});

Deno.test({
  name: "a model split by layer over two GPUs has layers on both and the greedy tokens of one GPU",
  ignore,
  async fn() {
    const model = await fixtureModel(MODEL);
    const probe = await shimmyJson([
      "probe",
      model,
      "--gpu-backend",
      "cuda",
      "--tensor-split",
      "1,1",
      "--json",
    ]);
    const used = probe.offload.devices.filter((d: { device: string; layers: number }) =>
      d.device.startsWith("CUDA") && d.layers > 0
    );
    equal(used.length, 2, JSON.stringify(probe.offload));
    const generate = (flags: string[]) =>
      greedyGenerate({
        backend: "cuda",
        tokens: 32,
        prompt: "Hello world, the quick brown fox",
        model: MODEL,
        flags,
      });
    const one = await generate(["--split-mode", "none", "--main-gpu", "0"]);
    const split = await generate(["--tensor-split", "1,1"]);
    equal(one.load_params.split_mode, SPLIT_NONE);
    equal(split.load_params.split_mode, SPLIT_LAYER);
    equal(split.load_params.devices.length, 2, JSON.stringify(split.load_params));
    equal(split.offload.offloaded, split.offload.total);
    equal(one.tokens.length, 32);
    deepEqual(split.tokens, one.tokens);
  },
});

Deno.test({
  name: "serve --replicas 2 puts a copy on each GPU, and concurrent requests use both",
  ignore,
  async fn() {
    await using server = await startServer({
      fixtures: [MODEL],
      load: { replicas: 2, parallel: 2, gpuBackend: "cuda", ctxSize: 512 },
    });
    const complete = () =>
      postJson(`${server.url}/v1/completions`, {
        prompt: "once upon a time",
        max_tokens: 32,
        temperature: 0,
      });
    const responses = await Promise.all([complete(), complete(), complete(), complete()]);
    const bodies = await Promise.all(responses.map((r) => r.json()));
    deepEqual(responses.map((r) => r.status), [200, 200, 200, 200], JSON.stringify(bodies));
    ok(bodies.every((b) => b.usage.completion_tokens === 32));
    const ps = (await (await fetch(`${server.url}/api/ps`)).json()).models[0];
    deepEqual(ps.replicas.map((r: { devices: string[] }) => r.devices), [["CUDA0"], ["CUDA1"]]);
    const group = server.ctx.registry.replicas().get(MODEL)!;
    for (const copy of group.copies) {
      ok(copy.scheduler.stats().promptTokensEvaluated > 0, "each copy evaluated a prompt");
    }
  },
});
