/**
 * Where the copies of a model go when a machine has several GPUs. One function,
 * {@link planMultiGpu}, turns the GPUs in use (each with its free memory), an estimate of the
 * model's size and what the user asked (`--split-mode`, `--tensor-split`, `--main-gpu`,
 * `--replicas`, `--gpus`, `--parallel`) into placements: one per copy of the model, each a
 * device list, a llama.cpp split mode, a main GPU and the share of the model per device. Said
 * nothing, it chooses: a model that fits one GPU stays on the GPU with the most free memory,
 * or gets one copy on every GPU when `--parallel` is at least {@link REPLICA_PARALLEL}; a
 * model that fits no single GPU is split by layer in proportion to free memory; one that does
 * not fit all of them together is a {@link SplitPlanError}. The function is pure (no FFI), so
 * its decisions are tested on made-up device lists.
 *
 * @module
 */

/** How llama.cpp splits a model over several devices (`enum llama_split_mode`). */
export type SplitModeName = "none" | "layer" | "row";

/** The split modes, for flag parsing. */
export const SPLIT_MODES: readonly SplitModeName[] = ["none", "layer", "row"];

/**
 * `--parallel` from which a model that fits one GPU gets a copy on every GPU when the user
 * chose nothing: a copy per GPU serves independent streams in parallel, and below this many
 * streams one GPU is rarely the bottleneck.
 */
export const REPLICA_PARALLEL = 8;

/**
 * Memory a model needs beyond its weights, as a fraction of them (KV cache, compute and output
 * buffers at default context sizes): the plan counts `modelBytes × (1 + MEMORY_HEADROOM)`.
 */
export const MEMORY_HEADROOM = 0.1;

/** Raised when the requested split cannot work on these devices, or the model fits nowhere. */
export class SplitPlanError extends Error {
  /** @param message Human message. */
  constructor(message: string) {
    super(message);
    this.name = "SplitPlanError";
  }
}

/** A GPU the plan may use. */
export interface PlanDevice {
  /** Index in ggml's device list. */
  index: number;
  /** Device name, e.g. `CUDA0`. */
  name: string;
  /** Free memory in bytes. */
  freeBytes: number;
}

/** What the user asked for; every field is optional (unset: the planner chooses). */
export interface SplitRequest {
  /** `--split-mode`. Default: chosen. */
  splitMode?: SplitModeName;
  /** `--tensor-split`: share of the model per GPU in use. Default: by free memory. */
  tensorSplit?: readonly number[];
  /** `--main-gpu`: position in the GPUs in use of the GPU for `none`. Default 0. */
  mainGpu?: number;
  /** `--replicas`: independent copies, one per GPU. Default: chosen (1 on the CPU). */
  replicas?: number;
  /** `--gpus`: positions in the GPU list to use. Default: all. */
  gpus?: readonly number[];
}

/** Input of {@link planMultiGpu}. */
export interface PlanInput extends SplitRequest {
  /** GPUs of the chosen backend, in order; [] when the model runs on the CPU. */
  devices: readonly PlanDevice[];
  /** Size of the model's weights in bytes (its file size is a good estimate). */
  modelBytes: number;
  /** Layers in the model, for the layers-per-device estimate; unknown when unset. */
  layers?: number;
  /** Requests generated at once per copy (`--parallel`). Default 1. */
  parallel?: number;
  /** Check the estimate against free memory. Default true (false: partial offload). */
  checkMemory?: boolean;
}

/** One device's part of one copy. */
export interface DeviceShare {
  /** Index in ggml's device list. */
  index: number;
  /** Device name. */
  name: string;
  /** Share of the model on it, in [0, 1]. */
  share: number;
  /** Estimated bytes it holds (weights plus headroom). */
  bytes: number;
  /** Its free memory before the load. */
  freeBytes: number;
  /** Estimated layers on it, when the layer count is known. */
  layers?: number;
}

/** Where one copy of the model goes. */
export interface CopyPlacement {
  /** ggml device indices to pass to the load, in order; [] for the CPU. */
  devices: number[];
  /** llama.cpp's split mode. */
  splitMode: SplitModeName;
  /** Index into `devices` of the main GPU. */
  mainGpu: number;
  /** Share per entry of `devices`, when the plan sets it (split modes). */
  tensorSplit?: number[];
  /** The devices' parts. */
  shares: DeviceShare[];
}

/** The plan for a model. */
export interface MultiGpuPlan {
  /** `cpu`: no GPU; `single`: one GPU; `split`: one copy over several; `replicas`: a copy each. */
  kind: "cpu" | "single" | "split" | "replicas";
  /** One placement per copy. */
  copies: CopyPlacement[];
  /** Why, in a few words (printed at load). */
  reason: string;
}

/**
 * Plans where the copies of a model go.
 *
 * @param input Devices, model size and the user's request.
 * @returns The plan.
 * @throws {SplitPlanError} for a request these devices cannot honour (a `--tensor-split` with
 *   more entries than GPUs or summing to 0, a `--main-gpu` or `--gpus` entry out of range,
 *   more replicas than GPUs) or a model over the free memory.
 * @example
 * ```ts
 * const gpus = [
 *   { index: 1, name: "CUDA0", freeBytes: 80e9 },
 *   { index: 2, name: "CUDA1", freeBytes: 80e9 },
 * ];
 * planMultiGpu({ devices: gpus, modelBytes: 100e9 }).kind; // "split"
 * planMultiGpu({ devices: gpus, modelBytes: 8e9, parallel: 16 }).kind; // "replicas"
 * ```
 */
export function planMultiGpu(input: PlanInput): MultiGpuPlan {
  const devices = selectGpus(input.devices, input.gpus);
  const replicas = input.replicas;
  if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1)) {
    throw new SplitPlanError(`--replicas must be a positive integer, got ${replicas}`);
  }
  if (devices.length === 0) return cpuPlan(input, replicas ?? 1);
  const split = input.tensorSplit;
  if (split !== undefined) {
    if (split.length > devices.length) {
      throw new SplitPlanError(
        `--tensor-split has ${split.length} entries but ${gpuCount(devices.length)} in use ` +
          `(${names(devices)}); give at most ${devices.length}`,
      );
    }
    if (split.some((n) => !Number.isFinite(n) || n < 0) || sum(split) <= 0) {
      throw new SplitPlanError(
        `--tensor-split must give some GPU a share above 0, got ${split.join(",")}`,
      );
    }
  }
  const mainGpu = input.mainGpu ?? 0;
  if (!Number.isInteger(mainGpu) || mainGpu < 0 || mainGpu >= devices.length) {
    throw new SplitPlanError(
      `--main-gpu ${mainGpu} is out of range: ${gpuCount(devices.length)} in use ` +
        `(${names(devices)}), so use 0 to ${devices.length - 1}`,
    );
  }
  const needed = Math.ceil(input.modelBytes * (1 + MEMORY_HEADROOM));
  const check = input.checkMemory ?? true;
  if (replicas !== undefined && replicas > 1) {
    if (split !== undefined || (input.splitMode !== undefined && input.splitMode !== "none")) {
      throw new SplitPlanError(
        "--replicas puts one whole copy on each GPU; it does not combine with --tensor-split " +
          "or --split-mode layer|row",
      );
    }
    if (replicas > devices.length) {
      throw new SplitPlanError(
        `--replicas ${replicas} needs ${replicas} GPUs (one copy each) but only ` +
          `${gpuCount(devices.length)} in use (${names(devices)})`,
      );
    }
    const used = devices.slice(0, replicas);
    if (check) { for (const d of used) fitOrThrow([d], [1], needed); }
    return {
      kind: "replicas",
      copies: used.map((d) => wholeOn(d, needed, input.layers)),
      reason: `${replicas} copies, one per GPU (--replicas)`,
    };
  }
  const explicitSplit = split !== undefined || input.splitMode === "layer" ||
    input.splitMode === "row";
  if (input.splitMode === "none" || input.mainGpu !== undefined && !explicitSplit) {
    const d = devices[mainGpu] as PlanDevice;
    if (check) fitOrThrow([d], [1], needed);
    return { kind: "single", copies: [wholeOn(d, needed, input.layers)], reason: "on one GPU" };
  }
  if (explicitSplit) {
    const used = split ? devices.slice(0, split.length) : devices;
    const weights = split ? [...split] : used.map((d) => d.freeBytes);
    if (check) fitOrThrow(used, weights, needed);
    const mode = input.splitMode === "row" ? "row" : "layer";
    return {
      kind: used.length > 1 ? "split" : "single",
      copies: [splitOver(used, weights, needed, mode, mainGpu, input.layers)],
      reason: `split by ${mode} as asked`,
    };
  }
  return autoPlan(devices, needed, input, check, replicas === undefined);
}

/** The choice when the user asked for nothing. */
function autoPlan(
  devices: readonly PlanDevice[],
  needed: number,
  input: PlanInput,
  check: boolean,
  mayReplicate: boolean,
): MultiGpuPlan {
  // A device that reports no free memory (some drivers cannot tell) is taken to fit.
  const fitting = devices.filter((d) => !check || d.freeBytes <= 0 || d.freeBytes >= needed);
  const parallel = input.parallel ?? 1;
  if (mayReplicate && fitting.length > 1 && parallel >= REPLICA_PARALLEL) {
    return {
      kind: "replicas",
      copies: fitting.map((d) => wholeOn(d, needed, input.layers)),
      reason: `fits one GPU and --parallel ${parallel} ≥ ${REPLICA_PARALLEL}: a copy per GPU`,
    };
  }
  if (fitting.length > 0) {
    const best = [...fitting].sort((a, b) => b.freeBytes - a.freeBytes)[0] as PlanDevice;
    return {
      kind: "single",
      copies: [wholeOn(best, needed, input.layers)],
      reason: devices.length > 1 ? "fits one GPU: the one with the most free memory" : "one GPU",
    };
  }
  const weights = devices.map((d) => d.freeBytes);
  fitOrThrow(devices, weights, needed);
  return {
    kind: "split",
    copies: [splitOver(devices, weights, needed, "layer", 0, input.layers)],
    reason: "fits no single GPU: split by layer in proportion to free memory",
  };
}

function cpuPlan(input: PlanInput, replicas: number): MultiGpuPlan {
  if (input.tensorSplit !== undefined) {
    throw new SplitPlanError(
      "--tensor-split needs GPUs and none is in use (CPU only); drop it or use a GPU backend",
    );
  }
  if (input.mainGpu !== undefined && input.mainGpu !== 0) {
    throw new SplitPlanError(
      `--main-gpu ${input.mainGpu} is out of range: no GPU is in use (CPU only)`,
    );
  }
  const copy: CopyPlacement = { devices: [], splitMode: "none", mainGpu: 0, shares: [] };
  return {
    kind: "cpu",
    copies: Array.from({ length: replicas }, () => ({ ...copy, shares: [] })),
    reason: replicas > 1 ? `${replicas} copies on the CPU` : "no GPU in use",
  };
}

function selectGpus(
  devices: readonly PlanDevice[],
  gpus: readonly number[] | undefined,
): readonly PlanDevice[] {
  if (gpus === undefined) return devices;
  if (gpus.length === 0) throw new SplitPlanError("--gpus names no GPU");
  const seen = new Set<number>();
  return gpus.map((g) => {
    const device = devices[g];
    if (!Number.isInteger(g) || !device) {
      throw new SplitPlanError(
        `--gpus ${g} is out of range: ${gpuCount(devices.length)} present` +
          (devices.length > 0 ? `, numbered 0 to ${devices.length - 1}` : ""),
      );
    }
    if (seen.has(g)) throw new SplitPlanError(`--gpus names GPU ${g} twice`);
    seen.add(g);
    return device;
  });
}

function wholeOn(d: PlanDevice, needed: number, layers: number | undefined): CopyPlacement {
  return {
    devices: [d.index],
    splitMode: "none",
    mainGpu: 0,
    shares: [{
      index: d.index,
      name: d.name,
      share: 1,
      bytes: needed,
      freeBytes: d.freeBytes,
      ...(layers !== undefined ? { layers } : {}),
    }],
  };
}

function splitOver(
  used: readonly PlanDevice[],
  weights: readonly number[],
  needed: number,
  mode: SplitModeName,
  mainGpu: number,
  layers: number | undefined,
): CopyPlacement {
  const total = sum(weights);
  const perLayer = layers !== undefined ? layersPerDevice(layers, weights) : undefined;
  return {
    devices: used.map((d) => d.index),
    splitMode: mode,
    mainGpu: Math.min(mainGpu, used.length - 1),
    tensorSplit: weights.map((w) => w / total),
    shares: used.map((d, i) => ({
      index: d.index,
      name: d.name,
      share: (weights[i] ?? 0) / total,
      bytes: Math.round(needed * (weights[i] ?? 0) / total),
      freeBytes: d.freeBytes,
      ...(perLayer ? { layers: perLayer[i] ?? 0 } : {}),
    })),
  };
}

function fitOrThrow(used: readonly PlanDevice[], weights: readonly number[], needed: number) {
  const total = sum(weights);
  const over = used.filter((d, i) =>
    d.freeBytes > 0 && needed * (weights[i] ?? 0) / total > d.freeBytes
  );
  if (over.length === 0) return;
  const free = sum(used.map((d) => d.freeBytes));
  throw new SplitPlanError(
    `The model needs about ${mib(needed)} MiB and does not fit: ` +
      over.map((d, i) =>
        `${d.name} would hold ${mib(needed * (weights[used.indexOf(d)] ?? 0) / total)} MiB ` +
        `with ${mib(d.freeBytes)} MiB free${i < over.length - 1 ? "; " : ""}`
      ).join("") +
      ` (${mib(free)} MiB free on ${names(used)} together). Use a smaller quantization, ` +
      "fewer --n-gpu-layers, or more GPUs",
  );
}

/**
 * Splits `layers` over devices in proportion to `weights`, largest remainders first, so the
 * counts add up to `layers`.
 *
 * @param layers Layers in the model.
 * @param weights Share of each device (any scale).
 * @returns Layers per device.
 * @example
 * ```ts
 * layersPerDevice(25, [3, 1]); // [19, 6]
 * ```
 */
export function layersPerDevice(layers: number, weights: readonly number[]): number[] {
  const total = sum(weights);
  if (total <= 0) return weights.map(() => 0);
  const exact = weights.map((w) => layers * w / total);
  const counts = exact.map(Math.floor);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  let left = layers - sum(counts);
  for (const [, i] of order) {
    if (left-- <= 0) break;
    counts[i] = (counts[i] ?? 0) + 1;
  }
  return counts;
}

/**
 * The plan as lines to print at load: the choice, then each copy's devices with their layers
 * and estimated memory.
 *
 * @param plan The plan.
 * @param layers Layers in the model, once known (fills in the layers per device).
 * @returns The lines.
 * @example
 * ```ts
 * describePlan(planMultiGpu({ devices: [], modelBytes: 1e6 })); // ["Placement: CPU (no GPU in use)"]
 * ```
 */
export function describePlan(plan: MultiGpuPlan, layers?: number): string[] {
  if (plan.kind === "cpu") {
    return [
      `Placement: CPU${plan.copies.length > 1 ? `, ${plan.copies.length} copies` : ""} ` +
      `(${plan.reason})`,
    ];
  }
  const lines = [`Placement: ${plan.kind} (${plan.reason})`];
  plan.copies.forEach((copy, i) => {
    const prefix = plan.copies.length > 1 ? `copy ${i}: ` : "";
    const estimated = layers !== undefined
      ? layersPerDevice(layers, copy.shares.map((s) => s.share))
      : [];
    copy.shares.forEach((s, j) => {
      const count = s.layers ?? estimated[j];
      const layerText = count !== undefined ? `${count} layers, ` : "";
      lines.push(
        `  ${prefix}${s.name}: ${layerText}~${mib(s.bytes)} MiB of ${mib(s.freeBytes)} MiB ` +
          `free` + (copy.shares.length > 1 ? ` (${Math.round(s.share * 100)} %)` : ""),
      );
    });
  });
  return lines;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

function names(devices: readonly PlanDevice[]): string {
  return devices.map((d) => d.name).join(", ") || "none";
}

function gpuCount(n: number): string {
  return n === 1 ? "1 GPU is" : `${n} GPUs are`;
}
