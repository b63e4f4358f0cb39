import { equal } from "node:assert/strict";
import {
  contextThreads,
  flashAttention,
  GPU_HOST_THREADS,
  kvUnified,
} from "../../src/engine/gpu.ts";

Deno.test("a model wholly on a GPU gets a few CPU threads by default; --threads always wins", () => {
  const allOnGpu = { offloaded: 17, total: 17 };
  equal(contextThreads(undefined, allOnGpu, 16), GPU_HOST_THREADS);
  equal(contextThreads(undefined, allOnGpu, 2), 2, "never more than the cores");
  equal(contextThreads(12, allOnGpu, 16), 12);
  equal(contextThreads(undefined, { offloaded: 10, total: 17 }, 16), 16, "partly on the CPU");
  equal(contextThreads(undefined, { offloaded: 0, total: 17 }, 16), 16, "on the CPU");
});

Deno.test("flash attention: off by default for one slot on the CPU, unless its scores grow past 1 GiB", () => {
  const lone = {
    offload: { offloaded: 0, total: 13 },
    heads: 12,
    sequences: 1,
    cells: 4096,
    microBatch: 512,
  };
  equal(flashAttention("auto", lone), "disabled");
  equal(flashAttention("on", lone), "enabled");
  // Several slots share a cache that keeps the idle ones' prompts: the fused kernel skips them.
  equal(flashAttention("auto", { ...lone, sequences: 4, cells: 4 * 4096 }), "auto");
  equal(flashAttention("off", { ...lone, sequences: 4, cells: 4 * 4096 }), "disabled");
  // 32 heads over 32768 cells: 2 GiB of scores, so llama.cpp's fused kernel stays.
  equal(flashAttention("auto", { ...lone, heads: 32, cells: 32768 }), "auto");
  const onGpu = { ...lone, offload: { offloaded: 13, total: 13 } };
  equal(flashAttention("auto", onGpu), "auto");
  equal(flashAttention("auto", { ...onGpu, offload: { offloaded: 6, total: 13 } }), "auto");
});

Deno.test("kvUnified(): a stream per slot with every layer on a GPU, one shared cache elsewhere", () => {
  const gpu = { offloaded: 17, total: 17 };
  const cpu = { offloaded: 0, total: 13 };
  equal(kvUnified("auto", 8, gpu), false);
  equal(kvUnified("auto", 8, cpu), true);
  equal(kvUnified("auto", 8, { offloaded: 16, total: 17 }), true, "a layer on the CPU");
  equal(kvUnified("on", 8, gpu), true);
  equal(kvUnified("off", 8, cpu), false);
  equal(kvUnified("on", 1, cpu), false, "one slot: the same cache, without the 256-sequence check");
});
