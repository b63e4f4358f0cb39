/**
 * The multi-GPU flags: parsing and its errors on every command that takes them, the way a
 * placement becomes `llama_model_params` (`split_mode`, `main_gpu`, `tensor_split`, devices),
 * and the one-line errors of splits that cannot work on this (GPU-less) machine.
 */

import { deepEqual, equal, match, throws } from "node:assert/strict";
import { join } from "node:path";
import { gpusFlag, parseTensorSplit, splitFlags } from "../../src/cli/flags.ts";
import { parseGenerateArgs } from "../../src/cli/generate.ts";
import { parseProbeArgs } from "../../src/cli/probe.ts";
import { parseServeArgs } from "../../src/cli/serve.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import type { DevicePlan } from "../../src/engine/gpu.ts";
import { placeCopy } from "../../src/engine/loaded_model.ts";
import { planMultiGpu } from "../../src/engine/multi_gpu_plan.ts";
import { Llama } from "../../src/ffi/llama.ts";
import { buildModelParams, decodeModelParams } from "../../src/ffi/model.ts";
import { fixtureModel, REPO_ROOT } from "../fixtures/models.ts";
import { runShimmy } from "../helpers.ts";

function usageError(fn: () => unknown, pattern: RegExp): void {
  throws(fn, (error: unknown) => {
    equal(error instanceof UsageError, true, String(error));
    match((error as Error).message, pattern);
    return true;
  });
}

Deno.test("splitFlags() reads --split-mode, --tensor-split and --main-gpu", () => {
  deepEqual(splitFlags({}), {});
  deepEqual(splitFlags({ "split-mode": "row", "tensor-split": "3, 1", "main-gpu": "1" }), {
    splitMode: "row",
    tensorSplit: [3, 1],
    mainGpu: 1,
  });
  usageError(
    () => splitFlags({ "split-mode": "diagonal" }),
    /--split-mode must be none, layer, row/,
  );
  usageError(() => splitFlags({ "main-gpu": "-1" }), /--main-gpu must be a GPU number/);
  usageError(() => splitFlags({ "main-gpu": "x" }), /--main-gpu must be a GPU number/);
  usageError(
    () => splitFlags({ "split-mode": "none", "tensor-split": "1,1" }),
    /does not go with --split-mode none/,
  );
});

Deno.test("parseTensorSplit() and gpusFlag() reject what cannot be a split or a GPU list", () => {
  deepEqual(parseTensorSplit("0,1"), [0, 1]);
  usageError(() => parseTensorSplit("0,0"), /must give some GPU a share above 0/);
  usageError(() => parseTensorSplit("3,,1"), /must be numbers like 3,1/);
  usageError(() => parseTensorSplit("3,-1"), /must be numbers like 3,1/);
  deepEqual(gpusFlag("0, 1"), [0, 1]);
  equal(gpusFlag(undefined), undefined);
  usageError(() => gpusFlag("0,0"), /names a GPU twice/);
  usageError(() => gpusFlag("a"), /--gpus must be GPU numbers like 0,1/);
});

Deno.test("serve, generate and probe take the multi-GPU flags", () => {
  const serve = parseServeArgs(
    ["--replicas", "2", "--gpus", "0,1", "--split-mode", "none", "--main-gpu", "1"],
    () => undefined,
  )!;
  equal(serve.replicas, 2);
  deepEqual(serve.gpus, [0, 1]);
  equal(serve.splitMode, "none");
  equal(serve.mainGpu, 1);
  usageError(() => parseServeArgs(["--replicas", "0"], () => undefined), /--replicas must be a/);
  const generate = parseGenerateArgs(
    ["--model", "m", "--prompt", "p", "--tensor-split", "3,1", "--split-mode", "layer"],
    () => undefined,
  )!;
  deepEqual([generate.splitMode, generate.tensorSplit], ["layer", [3, 1]]);
  const probe = parseProbeArgs(["tiny", "--main-gpu", "0", "--split-mode", "row"])!;
  deepEqual([probe.splitMode, probe.mainGpu], ["row", 0]);
});

Deno.test("a copy's placement becomes llama_model_params: devices, split_mode, main_gpu, tensor_split", () => {
  const gpus = [
    { index: 1, name: "CUDA0", freeBytes: 8e10 },
    { index: 2, name: "CUDA1", freeBytes: 8e10 },
  ];
  const backend: DevicePlan = {
    backend: "cuda",
    devices: gpus.map((g) => ({
      ...g,
      description: "",
      backend: "CUDA",
      type: "gpu" as const,
      totalBytes: g.freeBytes,
    })),
    load: { devices: [1, 2], nGpuLayers: -1, mainGpu: 0 },
  };
  const split = placeCopy(
    backend,
    planMultiGpu({ devices: gpus, modelBytes: 1e9, tensorSplit: [3, 1], splitMode: "row" })
      .copies[0]!,
  );
  deepEqual(split.load, {
    devices: [1, 2],
    nGpuLayers: -1,
    mainGpu: 0,
    splitMode: "row",
    tensorSplit: [0.75, 0.25],
  });
  const replicas = planMultiGpu({ devices: gpus, modelBytes: 1e9, replicas: 2 });
  const second = placeCopy(backend, replicas.copies[1]!);
  deepEqual(second.load, { devices: [2], nGpuLayers: -1, mainGpu: 0, splitMode: "none" });
  deepEqual(second.devices.map((d) => d.name), ["CUDA1"]);
  // The fields land in the struct at the offsets the ABI test checks against llama.h.
  const llama = Llama.open({ gpuBackend: "cpu" });
  const { params } = buildModelParams(llama, { ...split.load, devices: [], mainGpu: 1 });
  const passed = decodeModelParams(llama, params);
  equal(passed.split_mode, 2);
  equal(passed.main_gpu, 1);
  deepEqual(passed.tensor_split?.slice(0, 3), [0.75, 0.25, 0]);
});

Deno.test("splits that cannot work here exit 1 with a one-line error", async () => {
  const model = await fixtureModel("tiny-f32");
  const base = ["--model", model, "--prompt", "hi", "--gpu-backend", "cpu"];
  const cases: [string[], RegExp][] = [
    [
      ["generate", ...base, "--tensor-split", "1,1"],
      /--tensor-split needs GPUs and none is in use/,
    ],
    [["generate", ...base, "--main-gpu", "1"], /--main-gpu 1 is out of range: no GPU is in use/],
    [["generate", ...base, "--tensor-split", "0,0"], /must give some GPU a share above 0/],
    [["bench", model, "--split-mode", "diagonal"], /--split-mode must be none, layer, row/],
    [["probe", model, "--gpu-backend", "cpu", "--main-gpu", "2"], /--main-gpu 2 is out of range/],
    [["serve", "--replicas", "x"], /--replicas must be a positive integer/],
  ];
  for (const [args, pattern] of cases) {
    const run = await runShimmy(args, { SHIMMY_BASE_GGUF: "" });
    equal(run.code, 1, `${args.join(" ")}: ${run.stderr}`);
    match(run.stderr, pattern);
    equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  }
});

Deno.test("generate --json reports the placement it loaded with", async () => {
  const model = await fixtureModel("tiny-f32");
  const run = await runShimmy([
    "generate",
    "--model",
    model,
    "--prompt",
    "hi",
    "--max-tokens",
    "2",
    "--gpu-backend",
    "cpu",
    "--json",
  ]);
  equal(run.code, 0, run.stderr);
  deepEqual(JSON.parse(run.stdout).placement, { kind: "cpu", reason: "no GPU in use" });
});

Deno.test("shimmy serve --replicas 2 loads two copies on the CPU and prints the plan", async () => {
  const model = await fixtureModel("tiny-f32");
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "main.ts"),
      "serve",
      "--model",
      model,
      "--bind",
      "127.0.0.1:0",
      "--gpu-backend",
      "cpu",
      "--replicas",
      "2",
      "--parallel",
      "1",
    ],
    cwd: REPO_ROOT,
    env: { SHIMMY_BIND_ADDRESS: "" },
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  // A server that never prints the plan must not hang the suite.
  const deadline = setTimeout(() => process.kill("SIGKILL"), 30_000);
  const reader = process.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/Placement: CPU, 2 copies/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) {
      clearTimeout(deadline);
      throw new Error(`shimmy serve exited without printing two copies:\n${seen}`);
    }
    seen += value;
  }
  try {
    const url = (/listening on (http:\/\/\S+)/.exec(seen) as RegExpExecArray)[1];
    const ps = (await (await fetch(`${url}/api/ps`)).json()).models[0];
    equal(ps.replicas.length, 2);
    equal(ps.slots, 2);
  } finally {
    clearTimeout(deadline);
    process.kill("SIGTERM");
    await process.status;
    await reader.cancel();
  }
});
