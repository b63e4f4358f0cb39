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
    slots: 1,
    cells: 4096,
    microBatch: 512,
  };
  equal(flashAttention("auto", lone), "disabled");
  equal(flashAttention("on", lone), "enabled");
  // Several slots: llama.cpp's fused kernel, with a shared cache or a stream per slot.
  equal(flashAttention("auto", { ...lone, slots: 4, cells: 4 * 4096 }), "auto");
  equal(flashAttention("auto", { ...lone, slots: 4 }), "auto");
  equal(flashAttention("off", { ...lone, slots: 4, cells: 4 * 4096 }), "disabled");
  // 32 heads over 32768 cells: 2 GiB of scores, so llama.cpp's fused kernel stays.
  equal(flashAttention("auto", { ...lone, heads: 32, cells: 32768 }), "auto");
  const onGpu = { ...lone, offload: { offloaded: 13, total: 13 } };
  equal(flashAttention("auto", onGpu), "auto");
  equal(flashAttention("auto", { ...onGpu, offload: { offloaded: 6, total: 13 } }), "auto");
});

Deno.test("kvUnified(): a stream per slot unless one shared cache is asked for", () => {
  equal(kvUnified("auto", 8), false);
  equal(kvUnified("on", 8), true);
  equal(kvUnified("off", 8), false);
  equal(kvUnified("on", 1), false, "one slot: the same cache, without the 256-sequence check");
});
