/**
 * Turns `--gpu-backend` and `--n-gpu-layers` into model load options: which ggml devices the
 * model uses and how many layers go to them. `auto` prefers CUDA, then Metal, then Vulkan,
 * then the CPU; naming a backend that is not present is an error listing what is.
 *
 * @module
 */

import { queuesOnly } from "../ffi/context.ts";
import type { GpuBackend } from "../ffi/library.ts";
import type { DeviceInfo } from "../ffi/llama.ts";
import type { ModelLoadOptions, OffloadReport } from "../ffi/model.ts";

/** Raised when the requested GPU backend has no device on this machine. */
export class GpuUnavailableError extends Error {
  /** @param message Human message. */
  constructor(message: string) {
    super(message);
    this.name = "GpuUnavailableError";
  }
}

const BACKEND_NAMES: Record<Exclude<GpuBackend, "auto" | "cpu">, RegExp> = {
  cuda: /^cuda/i,
  metal: /^(metal|mtl)/i,
  vulkan: /^vulkan/i,
};
const AUTO_ORDER = ["cuda", "metal", "vulkan"] as const;

/** The device plan for a model load. */
export interface DevicePlan {
  /** Backend actually chosen. */
  backend: Exclude<GpuBackend, "auto">;
  /** Devices (ggml indices) the model will use; [] for CPU only. */
  devices: DeviceInfo[];
  /** Load options to pass to `Model.load`. */
  load: Pick<
    ModelLoadOptions,
    "devices" | "nGpuLayers" | "mainGpu" | "tensorSplit" | "splitMode"
  >;
}

/**
 * Parses `--n-gpu-layers`: a non-negative integer, or `all`/-1 for every layer.
 *
 * @param value The flag value.
 * @returns The layer count, -1 meaning all; undefined when unset.
 */
export function parseGpuLayers(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  if (value === "all" || value === "-1") return -1;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new RangeError(`--n-gpu-layers must be a non-negative integer or "all", got "${value}"`);
  }
  return n;
}

function gpuDevices(devices: DeviceInfo[], backend: keyof typeof BACKEND_NAMES): DeviceInfo[] {
  return devices.filter((d) =>
    (d.type === "gpu" || d.type === "igpu") && BACKEND_NAMES[backend].test(d.backend || d.name)
  );
}

/**
 * Chooses the devices and GPU layer count for a load.
 *
 * @param available Devices from `Llama.devices()`.
 * @param backend The requested backend. Default `"auto"`.
 * @param nGpuLayers Requested layers (-1 = all); default all on a GPU, 0 on the CPU.
 * @param tensorSplit Optional proportions per chosen device.
 * @returns The plan.
 * @throws {GpuUnavailableError} when a named backend has no device here.
 * @example
 * ```ts
 * planDevices(llama.devices(), "cpu").load; // { devices: [], nGpuLayers: 0 }
 * ```
 */
export function planDevices(
  available: DeviceInfo[],
  backend: GpuBackend = "auto",
  nGpuLayers?: number,
  tensorSplit?: number[],
): DevicePlan {
  if (backend === "cpu") {
    return { backend: "cpu", devices: [], load: { devices: [], nGpuLayers: 0 } };
  }
  let chosen: Exclude<GpuBackend, "auto" | "cpu"> | undefined;
  if (backend === "auto") {
    chosen = AUTO_ORDER.find((b) => gpuDevices(available, b).length > 0);
    // No GPU: leave the device list to llama.cpp (CPU only) and pass the layer count as given.
    if (!chosen) return { backend: "cpu", devices: [], load: { nGpuLayers: nGpuLayers ?? 0 } };
  } else {
    chosen = backend;
    if (gpuDevices(available, chosen).length === 0) {
      const present = available.map((d) => `${d.name} (${d.backend || d.type})`).join(", ");
      throw new GpuUnavailableError(
        `GPU backend "${backend}" is not available: no ${backend} device found. ` +
          `Devices present: ${present || "none"}. Use --gpu-backend auto or cpu, or install ` +
          `the ${backend} build of the libraries (deno task setup --gpu ${backend}, or ` +
          `scripts/build-libllama.sh --${backend})`,
      );
    }
  }
  const devices = gpuDevices(available, chosen);
  const load: DevicePlan["load"] = {
    devices: devices.map((d) => d.index),
    nGpuLayers: nGpuLayers ?? -1,
    mainGpu: 0,
  };
  if (tensorSplit) load.tensorSplit = tensorSplit;
  return { backend: chosen, devices, load };
}

/** CPU threads a context gets by default when every layer of its model is on a GPU. */
export const GPU_HOST_THREADS = 4;

/**
 * The CPU threads of a model's context: the asked number, else one per core, but at most
 * {@link GPU_HOST_THREADS} when every layer is on a GPU. The CPU then only looks up the step's
 * token embeddings, and waking a pool of many threads for that each step costs more than the
 * work: on the H200 machine (16 cores, a 1.5B model) a `llama_decode` call took 1062 µs with 16
 * threads and 503 µs with 4, and tg128 went from 728 to 777 tok/s.
 *
 * @param asked `--threads`, when given.
 * @param offload Layers on GPUs, and in all (llama.cpp's count, output layer included).
 * @param cores Threads when nothing limits them.
 * @returns The thread count.
 * @example
 * ```ts
 * contextThreads(undefined, { offloaded: 17, total: 17 }, 16); // 4
 * ```
 */
export function contextThreads(
  asked: number | undefined,
  offload: OffloadReport,
  cores: number,
): number {
  if (asked !== undefined) return asked;
  const allOnGpu = offload.total > 0 && offload.offloaded >= offload.total;
  return allOnGpu ? Math.min(cores, GPU_HOST_THREADS) : cores;
}

/** A setting that is forced on, forced off, or chosen by Shimmy (`auto`). */
export type Switch = "auto" | "on" | "off";

/** The values of a {@link Switch}, for flag parsing. */
export const SWITCH_VALUES: readonly Switch[] = ["auto", "on", "off"];

/**
 * Most memory for the attention scores of one micro-batch over the whole KV cache (f32, every
 * head) that `auto` spends to keep flash attention off on the CPU.
 */
export const CPU_ATTENTION_SCORES_LIMIT = 1024 ** 3;

/** What a context needs to know to choose its flash attention. */
export interface AttentionShape {
  /** Layers on GPUs, and in all. */
  offload: OffloadReport;
  /** Attention heads. */
  heads: number;
  /** Sequences (slots) sharing a KV stream: all of them with a unified cache, else 1. */
  sequences: number;
  /** KV cells of a stream: the context's with a unified cache, else a slot's. */
  cells: number;
  /** Tokens of a micro-batch. */
  microBatch: number;
}

/**
 * Flash attention for a context. Forced on or off as asked; with `auto`, off for a context of one
 * sequence with every layer on the CPU whose attention scores of a micro-batch over the whole cache
 * (`heads × cells × microBatch` floats, the compute memory the unfused path reserves) fit in
 * {@link CPU_ATTENTION_SCORES_LIMIT}, else llama.cpp's own choice (on wherever the device
 * supports it). On the CPU, ggml's fused kernel was the slower one for a lone sequence on the
 * machine it was measured on: with the 125M benchmark model on 2 cores, llama-bench's tg128 after
 * 1,000 tokens of context was 44 tok/s with it against 85 without, and pp1000 543 against 576. It
 * depends on the processor: on a Zen 5 EPYC it cost nothing (tg128 182 against 185) and made
 * pp1000 faster (1159 against 930; README, "Flash attention is off for one slot on the CPU").
 * With several slots the cache also holds the idle slots' cached prompts; the fused kernel skips
 * the cells a sequence cannot see and the unfused one computes them all: served with 1,000-token
 * prompts on 8 slots, one stream fell from 96 to 21 tok/s without it.
 *
 * @param mode `--flash-attn`.
 * @param shape Where the layers are, how many sequences share the cache, how large the scores get.
 * @returns llama.cpp's `flash_attn_type`.
 * @example
 * ```ts
 * const shape = {
 *   offload: { offloaded: 0, total: 13 },
 *   heads: 12,
 *   sequences: 1,
 *   cells: 4096,
 *   microBatch: 512,
 * };
 * flashAttention("auto", shape); // "disabled"
 * ```
 */
export function flashAttention(
  mode: Switch,
  shape: AttentionShape,
): "auto" | "enabled" | "disabled" {
  if (mode === "on") return "enabled";
  if (mode === "off") return "disabled";
  const onCpu = shape.offload.offloaded === 0;
  const scoresBytes = shape.heads * shape.cells * shape.microBatch * 4;
  const unfused = onCpu && shape.sequences === 1 && scoresBytes <= CPU_ATTENTION_SCORES_LIMIT;
  return unfused ? "disabled" : "auto";
}

/**
 * Whether a context's slots share one unified KV cache or each has a stream of its own. With one
 * slot the two are the same cache, and a stream of its own spares llama.cpp's check of every
 * batch against all 256 possible sequences. Forced as asked with several slots; with `auto`, a
 * stream per slot when every layer is on a GPU, else unified. Own streams spare each decode that
 * check and the attention over other slots' cells (a GPU's attention kernel reads every cell up
 * to the highest one in use, including idle slots' cached prompts): on an H200 with the 1.5B
 * benchmark model, served one stream 916 tok/s against 762, 8 streams 3,879 against 3,249, 32
 * streams 6,949 against 5,856. The scheduler keeps the busy slots one run of consecutive
 * sequence ids, which llama.cpp needs to decode them in one pass (`slot_placement.ts`), by
 * copying whole streams, cheap on a GPU. On the CPU the cache stays unified: with 1,000-token
 * prompts own streams decoded 1.7-2.6x faster on 2 cores, but a burst of 8 short prompts got its
 * first tokens 1.2x later (not from the extra passes of prompts of different lengths: evening
 * their chunks out changed nothing), and with short prompts a lone stream gained nothing.
 *
 * @param mode `--kv-unified`.
 * @param slots Slots of the context.
 * @param offload Where the layers are.
 * @returns llama.cpp's `kv_unified`.
 * @example
 * ```ts
 * kvUnified("auto", 8, { offloaded: 17, total: 17 }); // false
 * kvUnified("auto", 8, { offloaded: 0, total: 13 }); // true
 * ```
 */
export function kvUnified(mode: Switch, slots: number, offload: OffloadReport): boolean {
  if (slots <= 1 || mode === "off") return false;
  return mode === "on" || !queuesOnly(offload);
}
