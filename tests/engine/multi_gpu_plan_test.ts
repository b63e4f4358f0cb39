/**
 * The multi-GPU planner's decisions on made-up device lists: what it chooses when the user
 * says nothing, what it does with each flag, and the errors for splits that cannot work.
 */

import { deepEqual, equal, match, throws } from "node:assert/strict";
import {
  describePlan,
  layersPerDevice,
  MEMORY_HEADROOM,
  type PlanDevice,
  planMultiGpu,
  REPLICA_PARALLEL,
  SplitPlanError,
} from "../../src/engine/multi_gpu_plan.ts";

const GiB = 1024 ** 3;
/** Two 80 GiB GPUs, as ggml lists them after the CPU (indices 1 and 2). */
const TWO: PlanDevice[] = [
  { index: 1, name: "CUDA0", freeBytes: 80 * GiB },
  { index: 2, name: "CUDA1", freeBytes: 80 * GiB },
];
const ONE: PlanDevice[] = [TWO[0]!];

function planError(fn: () => unknown, pattern: RegExp): void {
  throws(fn, (error: unknown) => {
    equal((error as Error).name, "SplitPlanError");
    equal(error instanceof SplitPlanError, true);
    match((error as Error).message, pattern);
    return true;
  });
}

Deno.test("a model that fits one GPU stays on one GPU at low demand", () => {
  const plan = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, parallel: 4 });
  equal(plan.kind, "single");
  equal(plan.copies.length, 1);
  deepEqual(plan.copies[0]!.devices, [1]);
  equal(plan.copies[0]!.splitMode, "none");
  equal(plan.copies[0]!.mainGpu, 0);
});

Deno.test("the single GPU chosen is the one with the most free memory", () => {
  const devices = [{ ...TWO[0]!, freeBytes: 10 * GiB }, TWO[1]!];
  const plan = planMultiGpu({ devices, modelBytes: 8 * GiB });
  deepEqual(plan.copies[0]!.devices, [2]);
});

Deno.test("a model that fits one GPU gets a copy on every GPU at high demand", () => {
  const plan = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, parallel: REPLICA_PARALLEL });
  equal(plan.kind, "replicas");
  deepEqual(plan.copies.map((c) => c.devices), [[1], [2]]);
  deepEqual(plan.copies.map((c) => c.splitMode), ["none", "none"]);
  // Just below the threshold: one copy.
  equal(
    planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, parallel: REPLICA_PARALLEL - 1 }).kind,
    "single",
  );
  // One GPU, or one copy asked for: no replicas whatever the demand.
  equal(planMultiGpu({ devices: ONE, modelBytes: 8 * GiB, parallel: 64 }).kind, "single");
  const one = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, parallel: 64, replicas: 1 });
  equal(one.kind, "single");
  equal(one.copies.length, 1);
});

Deno.test("high demand puts copies only on the GPUs the model fits", () => {
  const devices = [...TWO, { index: 3, name: "CUDA2", freeBytes: 4 * GiB }];
  const plan = planMultiGpu({ devices, modelBytes: 8 * GiB, parallel: 16 });
  deepEqual(plan.copies.map((c) => c.devices), [[1], [2]]);
});

Deno.test("a model that fits no single GPU is split by layer in proportion to free memory", () => {
  const devices = [{ ...TWO[0]!, freeBytes: 60 * GiB }, { ...TWO[1]!, freeBytes: 20 * GiB }];
  const plan = planMultiGpu({ devices, modelBytes: 64 * GiB, layers: 80 });
  equal(plan.kind, "split");
  const copy = plan.copies[0]!;
  deepEqual(copy.devices, [1, 2]);
  equal(copy.splitMode, "layer");
  deepEqual(copy.tensorSplit, [0.75, 0.25]);
  deepEqual(copy.shares.map((s) => s.layers), [60, 20]);
  const needed = Math.ceil(64 * GiB * (1 + MEMORY_HEADROOM));
  equal(copy.shares[0]!.bytes, Math.round(needed * 0.75));
});

Deno.test("a model over the free memory of every GPU together is an error naming the sizes", () => {
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: 150 * GiB }),
    /needs about 168960 MiB and does not fit: CUDA0 would hold .* MiB with 81920 MiB free/,
  );
});

Deno.test("with some layers on the CPU the memory check is left to llama.cpp", () => {
  const plan = planMultiGpu({ devices: ONE, modelBytes: 150 * GiB, checkMemory: false });
  equal(plan.kind, "single");
});

Deno.test("--tensor-split splits over as many GPUs as it has entries, in its proportions", () => {
  const plan = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, tensorSplit: [3, 1], layers: 24 });
  equal(plan.kind, "split");
  deepEqual(plan.copies[0]!.tensorSplit, [0.75, 0.25]);
  deepEqual(plan.copies[0]!.shares.map((s) => s.layers), [18, 6]);
  const one = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, tensorSplit: [1] });
  deepEqual(one.copies[0]!.devices, [1]);
});

Deno.test("--split-mode row and layer split over every GPU; none uses --main-gpu", () => {
  const row = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, splitMode: "row", mainGpu: 1 });
  equal(row.copies[0]!.splitMode, "row");
  deepEqual(row.copies[0]!.devices, [1, 2]);
  equal(row.copies[0]!.mainGpu, 1);
  const none = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, splitMode: "none", mainGpu: 1 });
  equal(none.kind, "single");
  deepEqual(none.copies[0]!.devices, [2]);
  const main = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, mainGpu: 1, parallel: 32 });
  deepEqual(main.copies.map((c) => c.devices), [[2]]);
});

Deno.test("impossible splits are errors that say what to change", () => {
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, tensorSplit: [1, 1, 1] }),
    /--tensor-split has 3 entries but 2 GPUs are in use \(CUDA0, CUDA1\); give at most 2/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, tensorSplit: [0, 0] }),
    /--tensor-split must give some GPU a share above 0/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, mainGpu: 2 }),
    /--main-gpu 2 is out of range: 2 GPUs are in use \(CUDA0, CUDA1\), so use 0 to 1/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, replicas: 3 }),
    /--replicas 3 needs 3 GPUs \(one copy each\) but only 2 GPUs are in use/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, replicas: 2, tensorSplit: [1, 1] }),
    /does not combine with --tensor-split/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, gpus: [2] }),
    /--gpus 2 is out of range: 2 GPUs are present, numbered 0 to 1/,
  );
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: GiB, gpus: [1, 1] }),
    /--gpus names GPU 1 twice/,
  );
  planError(
    () => planMultiGpu({ devices: ONE, modelBytes: 100 * GiB, replicas: 1, splitMode: "none" }),
    /does not fit: CUDA0 would hold/,
  );
});

Deno.test("--replicas N puts one copy on each of the first N GPUs, or of --gpus", () => {
  const plan = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, replicas: 2 });
  equal(plan.kind, "replicas");
  deepEqual(plan.copies.map((c) => c.devices), [[1], [2]]);
  const second = planMultiGpu({ devices: TWO, modelBytes: 8 * GiB, replicas: 1, gpus: [1] });
  deepEqual(second.copies.map((c) => c.devices), [[2]]);
  planError(
    () => planMultiGpu({ devices: TWO, modelBytes: 90 * GiB, replicas: 2 }),
    /does not fit: CUDA0/,
  );
});

Deno.test("on the CPU the plan is N copies, and GPU-only flags are errors", () => {
  const plan = planMultiGpu({ devices: [], modelBytes: GiB, replicas: 2, parallel: 64 });
  equal(plan.kind, "cpu");
  equal(plan.copies.length, 2);
  deepEqual(plan.copies[0]!.devices, []);
  equal(planMultiGpu({ devices: [], modelBytes: GiB, parallel: 64 }).copies.length, 1);
  planError(
    () => planMultiGpu({ devices: [], modelBytes: GiB, tensorSplit: [1, 1] }),
    /--tensor-split needs GPUs and none is in use/,
  );
  planError(
    () => planMultiGpu({ devices: [], modelBytes: GiB, mainGpu: 1 }),
    /--main-gpu 1 is out of range: no GPU is in use/,
  );
});

Deno.test("layersPerDevice() adds up to the layer count, largest remainders first", () => {
  deepEqual(layersPerDevice(25, [3, 1]), [19, 6]);
  deepEqual(layersPerDevice(10, [1, 1, 1]), [4, 3, 3]);
  deepEqual(layersPerDevice(7, [0, 1]), [0, 7]);
});

Deno.test("describePlan() lists each device's layers and estimated memory", () => {
  const devices = [{ ...TWO[0]!, freeBytes: 60 * GiB }, { ...TWO[1]!, freeBytes: 20 * GiB }];
  const lines = describePlan(planMultiGpu({ devices, modelBytes: 64 * GiB }), 40);
  match(lines[0]!, /^Placement: split \(fits no single GPU/);
  match(lines[1]!, /CUDA0: 30 layers, ~54067 MiB of 61440 MiB free \(75 %\)/);
  match(lines[2]!, /CUDA1: 10 layers, ~18022 MiB of 20480 MiB free \(25 %\)/);
  const replicas = describePlan(planMultiGpu({ devices: TWO, modelBytes: GiB, replicas: 2 }));
  match(replicas[1]!, /copy 0: CUDA0: ~1126 MiB/);
  match(replicas[2]!, /copy 1: CUDA1/);
  deepEqual(describePlan(planMultiGpu({ devices: [], modelBytes: GiB })), [
    "Placement: CPU (no GPU in use)",
  ]);
});

Deno.test("a GPU that reports no free memory (its driver cannot tell) is taken to fit", () => {
  const unknown: PlanDevice[] = [{ index: 1, name: "Vulkan0", freeBytes: 0 }];
  const plan = planMultiGpu({ devices: unknown, modelBytes: 8 * GiB, parallel: 4 });
  equal(plan.kind, "single");
  deepEqual(plan.copies[0]!.devices, [1]);
  const split = planMultiGpu({ devices: unknown, modelBytes: 8 * GiB, tensorSplit: [1] });
  deepEqual(split.copies[0]!.devices, [1]);
});
