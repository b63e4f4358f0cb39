import { equal, ok } from "node:assert/strict";
import {
  contextThreads,
  flashAttention,
  GPU_HOST_THREADS,
  kvUnified,
  probesCpuAttention,
} from "../../src/engine/gpu.ts";

Deno.test("a model wholly on a GPU gets a few CPU threads by default; --threads always wins", () => {
  const allOnGpu = { offloaded: 17, total: 17 };
  equal(contextThreads(undefined, allOnGpu, 16), GPU_HOST_THREADS);
  equal(contextThreads(undefined, allOnGpu, 2), 2, "never more than the cores");
  equal(contextThreads(12, allOnGpu, 16), 12);
  equal(contextThreads(undefined, { offloaded: 10, total: 17 }, 16), 16, "partly on the CPU");
  equal(contextThreads(undefined, { offloaded: 0, total: 17 }, 16), 16, "on the CPU");
});

Deno.test("flash attention: the probe's kernel on the CPU, unless a shared cache, big scores or a GPU rule it out", () => {
  const lone = {
    offload: { offloaded: 0, total: 13 },
    heads: 12,
    slots: 1,
    unified: false,
    cells: 4096,
    microBatch: 512,
  };
  ok(probesCpuAttention("auto", lone));
  equal(flashAttention("auto", { ...lone, cpuKernel: "fused" }), "enabled");
  equal(flashAttention("auto", { ...lone, cpuKernel: "unfused" }), "disabled");
  equal(flashAttention("auto", lone), "disabled", "no verdict: the one-slot default");
  equal(flashAttention("on", { ...lone, cpuKernel: "unfused" }), "enabled");
  equal(flashAttention("off", { ...lone, cpuKernel: "fused" }), "disabled");
  ok(!probesCpuAttention("on", lone) && !probesCpuAttention("off", lone));
  // A KV stream per slot: the probe decides; without a verdict, llama.cpp's fused kernel.
  const perSlot = { ...lone, slots: 4 };
  ok(probesCpuAttention("auto", perSlot));
  equal(flashAttention("auto", { ...perSlot, cpuKernel: "unfused" }), "disabled");
  equal(flashAttention("auto", perSlot), "auto");
  // One cache shared by 4 slots: the fused kernel, whatever a probe said.
  const shared = { ...lone, slots: 4, unified: true, cells: 4 * 4096 };
  ok(!probesCpuAttention("auto", shared));
  equal(flashAttention("auto", { ...shared, cpuKernel: "unfused" }), "auto");
  equal(flashAttention("off", shared), "disabled");
  // 32 heads over 32768 cells: 2 GiB of scores, so llama.cpp's fused kernel stays.
  const big = { ...lone, heads: 32, cells: 32768 };
  ok(!probesCpuAttention("auto", big));
  equal(flashAttention("auto", { ...big, cpuKernel: "unfused" }), "auto");
  const onGpu = { ...lone, offload: { offloaded: 13, total: 13 } };
  ok(!probesCpuAttention("auto", onGpu));
  equal(flashAttention("auto", onGpu), "auto");
  equal(flashAttention("auto", { ...onGpu, offload: { offloaded: 6, total: 13 } }), "auto");
});

Deno.test("kvUnified(): a stream per slot unless one shared cache is asked for", () => {
  equal(kvUnified("auto", 8), false);
  equal(kvUnified("on", 8), true);
  equal(kvUnified("off", 8), false);
  equal(kvUnified("on", 1), false, "one slot: the same cache, without the 256-sequence check");
});
