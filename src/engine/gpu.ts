/**
 * Turns `--gpu-backend` and `--n-gpu-layers` into model load options: which ggml devices the
 * model uses and how many layers go to them. `auto` prefers CUDA, then Metal, then Vulkan,
 * then the CPU; naming a backend that is not present is an error listing what is.
 *
 * @module
 */

import type { GpuBackend } from "../ffi/library.ts";
import type { DeviceInfo } from "../ffi/llama.ts";
import type { ModelLoadOptions, OffloadReport } from "../ffi/model.ts";
import type { AttentionKernel } from "./attention_probe.ts";

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
  /** Slots of the context. */
  slots: number;
  /** Whether the slots share one KV cache (see {@link kvUnified}). */
  unified: boolean;
  /** KV cells of a stream: the context's with a unified cache, else a slot's. */
  cells: number;
  /** Tokens of a micro-batch. */
  microBatch: number;
  /**
   * The CPU kernel the attention probe chose on this machine (`attention_probe.ts`), where
   * {@link probesCpuAttention} asked for one; undefined when no probe ran or it failed.
   */
  cpuKernel?: AttentionKernel;
}

/**
 * Whether `auto` lets the attention probe choose a context's CPU kernel: every layer on the CPU,
 * each slot's attention over its own cells (one slot, or a KV stream per slot), and scores of a
 * micro-batch over a stream's cells (`heads × cells × microBatch` floats, the compute memory the
 * unfused kernel reserves) within {@link CPU_ATTENTION_SCORES_LIMIT}. Slots that share one cache
 * keep the fused kernel: the cache also holds the idle slots' cached prompts, which the fused
 * kernel skips and the unfused one computes (served with 1,000-token prompts on 8 slots, one
 * stream fell from 96 to 21 tok/s without it).
 *
 * @param mode `--flash-attn`.
 * @param shape The context's shape (its `cpuKernel` is not read).
 * @returns Whether to probe.
 * @example
 * ```ts
 * const offload = { offloaded: 0, total: 13 };
 * const shape = { offload, heads: 12, slots: 8, unified: false, cells: 1024, microBatch: 512 };
 * probesCpuAttention("auto", shape); // true
 * probesCpuAttention("auto", { ...shape, unified: true }); // false
 * ```
 */
export function probesCpuAttention(mode: Switch, shape: AttentionShape): boolean {
  const scoresBytes = shape.heads * shape.cells * shape.microBatch * 4;
  return mode === "auto" && shape.offload.offloaded === 0 &&
    (shape.slots === 1 || !shape.unified) && scoresBytes <= CPU_ATTENTION_SCORES_LIMIT;
}

/**
 * Flash attention for a context. Forced on or off as asked. With `auto`, where
 * {@link probesCpuAttention} holds, the kernel the probe chose; if the probe failed, off for one
 * slot and on for several (the defaults before the probe, from the machine of 2026-12-03). Else
 * llama.cpp's own choice: on wherever the device supports it.
 *
 * Which CPU kernel is faster depends on the processor. On the machine of 2026-12-03 (125M
 * benchmark model, 2 cores) llama-bench's tg128 after 1,000 tokens of context was 44 tok/s fused
 * against 85 unfused, and pp1000 543 against 576. On the Zen 5 EPYC of 2026-12-04 tg64 was 313
 * fused against 269 unfused without context, 175 against 182 after 1,000 tokens, and pp1000 1159
 * against 930; served with a KV stream per slot (see {@link kvUnified}) the unfused kernel made
 * 0.84 / 0.86 / 0.83× llama-server's decode at 1 / 4 / 8 streams and first tokens 1.16–1.24×
 * later, against 0.96 / 1.07 / 1.13× and 0.93–1.00× fused.
 *
 * @param mode `--flash-attn`.
 * @param shape Where the layers are, the slots and their cache, the scores' size, the probe's
 *   verdict.
 * @returns llama.cpp's `flash_attn_type`.
 * @example
 * ```ts
 * const offload = { offloaded: 0, total: 13 };
 * const shape = { offload, heads: 12, slots: 1, unified: true, cells: 4096, microBatch: 512 };
 * flashAttention("auto", { ...shape, cpuKernel: "fused" }); // "enabled"
 * flashAttention("auto", shape); // "disabled" (no verdict: the one-slot default)
 * ```
 */
export function flashAttention(
  mode: Switch,
  shape: AttentionShape,
): "auto" | "enabled" | "disabled" {
  if (mode === "on") return "enabled";
  if (mode === "off") return "disabled";
  if (!probesCpuAttention(mode, shape)) return "auto";
  if (shape.cpuKernel) return shape.cpuKernel === "fused" ? "enabled" : "disabled";
  return shape.slots === 1 ? "disabled" : "auto";
}

/**
 * Whether a context's slots share one unified KV cache or each has a stream of its own. With one
 * slot the two are the same cache, and a stream of its own spares llama.cpp's check of every
 * batch against all 256 possible sequences. Forced as asked with several slots; with `auto`, a
 * stream per slot. Own streams spare each decode that check and the attention over other slots'
 * cells (an attention kernel reads every cell up to the highest one in use, including idle slots'
 * cached prompts). On an H200 with the 1.5B benchmark model, served one stream 916 tok/s against
 * 762, 8 streams 3,879 against 3,249, 32 streams 6,949 against 5,856. On 2 cores (a Zen 5 EPYC,
 * bench-125m, both servers alike, `bench/results/cpu-2core-2026-12-04b/`): 268.9 / 345.0 / 541.7
 * tok/s at 1 / 4 / 8 streams against 240–259 / 310–330 / 498–524 with one cache, 166.8 / 116.1 /
 * 109.5 against 117.1 / 86.3 / 85.5 with 1,000-token prompts, and 266.8 / 262.7 / 361.2 against
 * 250.4 / 250.1 / 332.3 with streams that end one by one (each end moves a request). The
 * scheduler keeps the busy slots one run of consecutive sequence ids, which llama.cpp needs to
 * decode them in one pass (`slot_placement.ts`), by copying whole streams: a memcpy of a slot's
 * cells on the CPU, far less than a further pass over the weights at every step. (Until
 * 2026-12-04 the CPU kept one cache: own streams measured no better there, with the unfused
 * attention kernel that `flashAttention` then chose for them.)
 *
 * @param mode `--kv-unified`.
 * @param slots Slots of the context.
 * @returns llama.cpp's `kv_unified`.
 * @example
 * ```ts
 * kvUnified("auto", 8); // false
 * kvUnified("on", 8); // true
 * ```
 */
export function kvUnified(mode: Switch, slots: number): boolean {
  return slots > 1 && mode === "on";
}
