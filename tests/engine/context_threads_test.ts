import { equal } from "node:assert/strict";
import { contextThreads, GPU_HOST_THREADS } from "../../src/engine/gpu.ts";

Deno.test("a model wholly on a GPU gets a few CPU threads by default; --threads always wins", () => {
  const allOnGpu = { offloaded: 17, total: 17 };
  equal(contextThreads(undefined, allOnGpu, 16), GPU_HOST_THREADS);
  equal(contextThreads(undefined, allOnGpu, 2), 2, "never more than the cores");
  equal(contextThreads(12, allOnGpu, 16), 12);
  equal(contextThreads(undefined, { offloaded: 10, total: 17 }, 16), 16, "partly on the CPU");
  equal(contextThreads(undefined, { offloaded: 0, total: 17 }, 16), 16, "on the CPU");
});
