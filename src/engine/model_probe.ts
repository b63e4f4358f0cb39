/**
 * Probing a model: load it the way `serve` would, record what llama.cpp made of it
 * (architecture, parameters, context, chat template family, layers per device, load time, the
 * memory of every buffer) and close it again. `shimmy probe` prints the report.
 *
 * @module
 */

import type { DiscoveredModel } from "../models/discovery.ts";
import { Llama } from "../ffi/llama.ts";
import type { GpuBackend } from "../ffi/library.ts";
import type { Switch } from "./gpu.ts";
import { type AttentionProbeOutcome, LoadedModel, type OpenModelOptions } from "./loaded_model.ts";
import { type BufferSize, LoadLogReader } from "./load_log.ts";
import { describePlan } from "./multi_gpu_plan.ts";
import { detectFamily } from "./templates.ts";
import type { KvCacheTypes } from "./kv_cache_type.ts";

/** Layers llama.cpp placed on one device. */
export interface DeviceLayers {
  /** ggml device name, e.g. `CPU` or `CUDA0`. */
  device: string;
  /** Human description (the GPU model), when known. */
  description?: string;
  /** Layers on it, the output layer counted as llama.cpp does. */
  layers: number;
  /** Free memory after the load, for GPUs. */
  freeBytes?: number;
  /** Total memory, for GPUs. */
  totalBytes?: number;
  /** Memory the load took on it (free before minus free after), for GPUs. */
  usedBytes?: number;
}

/** Where the chat format comes from. */
export interface TemplateInfo {
  /** Whether the GGUF carries `tokenizer.chat_template` (it is then rendered with Jinja). */
  embedded: boolean;
  /** The built-in family it corresponds to (`chatml` when nothing says otherwise). */
  family: string;
  /** What decided the family. */
  detectedFrom: "template" | "name" | "architecture" | "default";
}

/** Everything `shimmy probe` reports. */
export interface ProbeReport {
  /** The discovered name. */
  name: string;
  /** The file loaded (first shard). */
  path: string;
  /** Where discovery found it. */
  source: string;
  /** The precise place. */
  sourceDetail: string;
  /** `general.architecture`. */
  architecture: string;
  /** llama.cpp's description, e.g. `llama 1B Q4_0`. */
  description: string;
  /** Weights count. */
  parameters: number;
  /** `Q4_K_M`, `F16`…, when known. */
  quantization: string | undefined;
  /** File size of all shards. */
  fileBytes: number;
  /** Tensor bytes llama.cpp loaded. */
  weightsBytes: number;
  /** Context lengths. */
  context: { train: number; created: number };
  /** Repeating layers. */
  layers: number;
  /** Embedding width. */
  embeddingLength: number;
  /** The chat format. */
  template: TemplateInfo;
  /** Backend chosen (`cpu`, `cuda`…). */
  backend: string;
  /** The multi-GPU plan, as lines (choice, then layers and estimated memory per device). */
  placement: string[];
  /** Layers offloaded, in all and per device. */
  offload: { offloaded: number; total: number; devices: DeviceLayers[] };
  /** Load time (model and context), in milliseconds. */
  loadMs: number;
  /** Of which llama.cpp's model load, in milliseconds. */
  modelLoadMs: number;
  /** llama.cpp's buffers, and the process's resident memory after the load. */
  memory: { buffers: BufferSize[]; totalBytes: number; residentBytes: number };
  /**
   * The attention kernel the context got (`flash_attn_type`: `enabled`, `disabled`, or `auto`
   * for llama.cpp's choice) and, where `--flash-attn auto` left it to the CPU attention probe,
   * the probe's times and choice (or why it failed).
   */
  attention: { flashAttn: string; probe?: AttentionProbeOutcome };
  /** The KV cache's element types. */
  kvCacheTypes: KvCacheTypes;
  /** LoRA adapters discovery attached to the model. */
  adapters: string[];
}

/** Options for {@link probeModel} (multi-GPU fields: chosen by the planner when unset). */
export interface ProbeOptions
  extends Pick<OpenModelOptions, "splitMode" | "tensorSplit" | "mainGpu"> {
  /** GPU backend. Default `"auto"`. */
  gpuBackend?: GpuBackend;
  /** Layers to offload (-1 = all). Default: all on a GPU, none on the CPU. */
  nGpuLayers?: number;
  /** Context tokens. Default: the model's, at most 4096. */
  ctxSize?: number;
  /** Flash attention (see `flashAttention`). Default `"auto"`. */
  flashAttn?: Switch;
  /** The KV cache's element types. Default f16. */
  kvCacheTypes?: KvCacheTypes;
  /** Print llama.cpp's log. Default false. */
  verbose?: boolean;
  /** Load progress in [0, 1]. */
  onProgress?: (fraction: number) => void;
}

/**
 * Loads a discovered model, measures it and closes it again.
 *
 * @param model The model, from discovery.
 * @param options Backend, layers, context size.
 * @returns The report.
 * @throws {ModelLoadError} / {GpuUnavailableError} / {ContextCreateError} when it cannot load.
 * @example
 * ```ts
 * const report = await probeModel(resolveModel(await discoverModels(), "tiny"), {
 *   gpuBackend: "cpu",
 * });
 * console.log(report.offload);
 * ```
 */
export async function probeModel(
  model: DiscoveredModel,
  options: ProbeOptions = {},
): Promise<ProbeReport> {
  const gpuBackend = options.gpuBackend ?? "auto";
  const verbose = options.verbose ?? false;
  // The same shared runtime LoadedModel.open uses: listening to it first sees the whole load.
  const llama = Llama.open({ gpuBackend, verbose });
  const log = new LoadLogReader();
  const stop = llama.listen((text) => log.push(text));
  const started = performance.now();
  let loaded: LoadedModel;
  try {
    loaded = await LoadedModel.open({
      path: model.path,
      gpuBackend,
      verbose,
      parallel: 1,
      ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
      ...(options.ctxSize !== undefined ? { ctxSize: options.ctxSize } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.splitMode ? { splitMode: options.splitMode } : {}),
      ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
      ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
      ...(options.flashAttn ? { flashAttn: options.flashAttn } : {}),
      ...(options.kvCacheTypes ? { kvCacheTypes: options.kvCacheTypes } : {}),
    });
  } finally {
    stop();
    log.finish();
  }
  const loadMs = performance.now() - started;
  try {
    const m = loaded.model;
    const architecture = m.metadataValue("general.architecture") ?? model.architecture;
    const template = templateInfo(m.chatTemplate(), {
      name: m.metadataValue("general.name") ?? model.displayName ?? model.name,
      architecture,
    });
    const after = new Map(loaded.llama.devices().map((d) => [d.index, d]));
    const gpus = loaded.devices.devices.map((d) => {
      const now = after.get(d.index);
      return {
        device: d.name,
        description: d.description,
        freeBytes: now?.freeBytes ?? d.freeBytes,
        totalBytes: now?.totalBytes ?? d.totalBytes,
        usedBytes: Math.max(0, d.freeBytes - (now?.freeBytes ?? d.freeBytes)),
      };
    });
    const buffers = log.buffers;
    return {
      name: model.name,
      path: model.path,
      source: model.source,
      sourceDetail: model.sourceDetail,
      architecture,
      description: m.description,
      parameters: m.nParams,
      quantization: model.quantization ?? m.description.split(" ").at(-1),
      fileBytes: model.sizeBytes,
      weightsBytes: m.sizeBytes,
      context: { train: m.nCtxTrain, created: loaded.context.nCtx },
      layers: m.nLayer,
      embeddingLength: m.nEmbd,
      template,
      backend: loaded.devices.backend,
      placement: describePlan(loaded.plan, m.nLayer),
      offload: {
        offloaded: m.offload.offloaded,
        total: m.offload.total,
        devices: placeLayers(m.offload, log.layerDevice, gpus),
      },
      loadMs: Math.round(loadMs),
      modelLoadMs: Math.round(m.loadMs),
      memory: {
        buffers,
        totalBytes: buffers.reduce((sum, b) => sum + b.bytes, 0),
        residentBytes: Deno.memoryUsage().rss,
      },
      attention: {
        flashAttn: loaded.context.flashAttn,
        ...(loaded.attentionProbe ? { probe: loaded.attentionProbe } : {}),
      },
      kvCacheTypes: loaded.kvCacheTypes,
      adapters: model.adapters.map((a) => a.name),
    };
  } finally {
    await loaded.close();
  }
}

/** The chat format: the model's own template, else the family its name or architecture implies. */
function templateInfo(
  template: string | undefined,
  hints: { name: string; architecture: string },
): TemplateInfo {
  const embedded = template !== undefined && template.trim() !== "";
  const fromTemplate = embedded ? detectFamily(template) : undefined;
  if (fromTemplate) return { embedded, family: fromTemplate, detectedFrom: "template" };
  const fromName = detectFamily(undefined, { name: hints.name });
  if (fromName) return { embedded, family: fromName, detectedFrom: "name" };
  const fromArch = detectFamily(undefined, { architecture: hints.architecture });
  if (fromArch) return { embedded, family: fromArch, detectedFrom: "architecture" };
  return { embedded, family: "chatml", detectedFrom: "default" };
}

/**
 * Layers per device: from llama.cpp's own placement log when it was seen, else the offload
 * count split between the CPU and the chosen GPUs together. Every chosen GPU is listed (with
 * its memory), devices seen only in the log (the CPU) come first.
 *
 * @param offload Layers offloaded and in all (`Model.offload`).
 * @param assigned Device of each layer, from {@link LoadLogReader}.
 * @param gpus The GPUs the load was given.
 * @returns Layers per device.
 * @example
 * ```ts
 * placeLayers({ offloaded: 0, total: 3 }, new Map(), []); // [{ device: "CPU", layers: 3 }]
 * ```
 */
export function placeLayers(
  offload: { offloaded: number; total: number },
  assigned: ReadonlyMap<number, string>,
  gpus: readonly Omit<DeviceLayers, "layers">[],
): DeviceLayers[] {
  const counts = new Map<string, number>();
  if (assigned.size > 0) {
    for (const device of assigned.values()) counts.set(device, (counts.get(device) ?? 0) + 1);
  } else {
    const onGpu = offload.offloaded;
    if (offload.total - onGpu > 0) counts.set("CPU", offload.total - onGpu);
    if (onGpu > 0) {
      const name = gpus.length === 1 ? gpus[0]!.device : gpus.map((g) => g.device).join("+");
      counts.set(name || "GPU", onGpu);
    }
  }
  const out: DeviceLayers[] = [];
  for (const gpu of gpus) out.push({ ...gpu, layers: counts.get(gpu.device) ?? 0 });
  for (const [device, layers] of counts) {
    if (!gpus.some((g) => g.device === device)) out.unshift({ device, layers });
  }
  return out;
}
