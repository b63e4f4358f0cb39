import { equal } from "node:assert/strict";
import { contextThreads, flashAttention, GPU_HOST_THREADS } from "../../src/engine/gpu.ts";

Deno.test("a model wholly on a GPU gets a few CPU threads by default; --threads always wins", () => {
  const allOnGpu = { offloaded: 17, total: 17 };
  equal(contextThreads(undefined, allOnGpu, 16), GPU_HOST_THREADS);
  equal(contextThreads(undefined, allOnGpu, 2), 2, "never more than the cores");
  equal(contextThreads(12, allOnGpu, 16), 12);
  equal(contextThreads(undefined, { offloaded: 10, total: 17 }, 16), 16, "partly on the CPU");
  equal(contextThreads(undefined, { offloaded: 0, total: 17 }, 16), 16, "on the CPU");
});

Deno.test("flash attention: off by default with every layer on the CPU, unless its scores grow past 1 GiB", () => {
  const onCpu = {
    offload: { offloaded: 0, total: 13 },
    heads: 12,
    cells: 4 * 4096,
    microBatch: 512,
  };
  equal(flashAttention("auto", onCpu), "disabled");
  equal(flashAttention("on", onCpu), "enabled");
  // 32 heads over 8 slots of 4096 cells: 2 GiB of scores, so llama.cpp's fused kernel stays.
  equal(flashAttention("auto", { ...onCpu, heads: 32, cells: 8 * 4096 }), "auto");
  equal(flashAttention("off", { ...onCpu, heads: 32, cells: 8 * 4096 }), "disabled");
  const onGpu = { ...onCpu, offload: { offloaded: 13, total: 13 } };
  equal(flashAttention("auto", onGpu), "auto");
  equal(flashAttention("auto", { ...onGpu, offload: { offloaded: 6, total: 13 } }), "auto");
});
