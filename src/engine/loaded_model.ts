/**
 * `LoadedModel`: a model, its context and its scheduler, opened together and closed together
 * (scheduler first, then context, then model). This is the unit the CLI and the server share.
 *
 * @module
 */

import { Context, defaultThreads } from "../ffi/context.ts";
import type { GpuBackend } from "../ffi/library.ts";
import { Llama } from "../ffi/llama.ts";
import { LoraAdapter } from "../ffi/lora.ts";
import { GenerationError } from "./errors.ts";
import { Model } from "../ffi/model.ts";
import { Embedder, type PoolingName } from "./embedder.ts";
import { type AttentionProbe, modelAttentionDims } from "./attention_probe.ts";
import { cpuAttentionKernel } from "./attention_verdicts.ts";
import { checkKvFits } from "./kv_memory.ts";
import {
  DEFAULT_KV_CACHE_TYPES,
  isQuantized,
  KV_CACHE_GGML_TYPES,
  type KvCacheTypes,
} from "./kv_cache_type.ts";
import { ContextCreateError } from "../ffi/errors.ts";
import {
  type AttentionShape,
  contextThreads,
  type DevicePlan,
  flashAttention,
  kvUnified,
  planDevices,
  probesCpuAttention,
  type Switch,
} from "./gpu.ts";
import {
  type CopyPlacement,
  type MultiGpuPlan,
  planMultiGpu,
  type SplitModeName,
  type SplitRequest,
} from "./multi_gpu_plan.ts";
import {
  GPU_LOOK_TURNS_MS,
  type LoraChoice,
  type RequestsOnTheWay,
  Scheduler,
} from "./scheduler.ts";

/** How to open a model for generation. */
export interface OpenModelOptions {
  /** GGUF path. */
  path: string;
  /** GPU backend. Default `"auto"`. */
  gpuBackend?: GpuBackend;
  /** Layers to offload (-1 = all). Default: all on a GPU, none on the CPU. */
  nGpuLayers?: number;
  /** Proportions per GPU (`--tensor-split`). Default: by free memory when splitting. */
  tensorSplit?: number[];
  /** How to split over GPUs (`--split-mode`). Default: chosen by `planMultiGpu`. */
  splitMode?: SplitModeName;
  /** Position of the GPU that holds the model under split mode `none` (`--main-gpu`). */
  mainGpu?: number;
  /** Positions of the GPUs to use (`--gpus`). Default: all of the backend's. */
  gpus?: number[];
  /**
   * Where this copy goes and the plan it is part of (`ModelReplicas` sets it for each copy).
   * Default: planned here for one copy.
   */
  placement?: { plan: MultiGpuPlan; copy: CopyPlacement };
  /** Context tokens per request (slot). Default: min(model's training context, 4096). */
  ctxSize?: number;
  /** Parallel requests (slots). Default 1. */
  parallel?: number;
  /** Most tokens per decode step. Default 2048. */
  batchSize?: number;
  /** CPU threads. Default: `defaultThreads()` of the FFI context. */
  threads?: number;
  /** Most queued requests. Default 64. */
  maxQueue?: number;
  /** LoRA adapters to attach at load, with scales. Default none. */
  lora?: readonly { path: string; scale: number }[];
  /**
   * Where sampler chains run: `"on"` inside the decode graph whenever a request's chain
   * allows it, `"off"` always on the CPU, `"auto"` on when the model runs on a GPU. Default
   * `"auto"`.
   */
  deviceSampling?: DeviceSamplingMode;
  /**
   * Decode a lone stream's steps on a thread of their own that samples each token and starts
   * the next step by itself (`SchedulerOptions.decodeThread`), on a CPU or a GPU. Default false.
   */
  decodeThread?: boolean;
  /**
   * How long the idle loop turns looking for a burst's others (`SchedulerOptions.lookTurnsMs`).
   * Default: `GPU_LOOK_TURNS_MS` where the model computes on a GPU, 0 (a timer's wait) on a CPU.
   */
  lookTurnsMs?: number;
  /**
   * Flash attention: `"on"`, `"off"`, or `"auto"`: with every layer on the CPU and each slot's
   * attention over its own cells, the kernel the attention probe found faster on this machine
   * (`attention_probe.ts`), else llama.cpp's choice. See `flashAttention`. Default `"auto"`.
   */
  flashAttn?: Switch;
  /**
   * One KV cache for all slots (`"on"`), a stream per slot (`"off"`), or `"auto"`: a stream per
   * slot. See `kvUnified`. Default `"auto"`.
   */
  kvUnified?: Switch;
  /**
   * Element types of the KV cache's keys and values (`--cache-type-k`, `--cache-type-v`).
   * A quantized V needs fused attention: `flashAttn` `"auto"` then turns it on, and `"off"` is
   * refused. Default f16 for both.
   */
  kvCacheTypes?: KvCacheTypes;
  /** Requests on their way to the scheduler; see `SchedulerOptions.requestsOnTheWay`. */
  requestsOnTheWay?: RequestsOnTheWay;
  /**
   * Pooling of the embeddings context (`--pooling`). Default: the model's own from its GGUF,
   * none when it has none (as llama.cpp decides).
   */
  pooling?: PoolingName;
  /** Map the weights from the file (false: read them into memory). Default true. */
  useMmap?: boolean;
  /** Print llama.cpp's log. Default false. */
  verbose?: boolean;
  /** Load progress in [0, 1]. */
  onProgress?: (fraction: number) => void;
  /** Aborts the load. */
  signal?: AbortSignal;
}

/** Where sampler chains run; see {@link OpenModelOptions.deviceSampling}. */
export type DeviceSamplingMode = Switch;

/** Tokens of a micro-batch (llama.cpp's default `n_ubatch`). */
const MICRO_BATCH = 512;

/**
 * Plans the copies of a model on the devices of its backend (see `planMultiGpu`): the model
 * file's size is the estimate, checked against free memory unless some layers stay on the CPU.
 *
 * @param llama The runtime.
 * @param options Path, backend, layers, split flags and `--parallel`.
 * @param replicas `--replicas`; undefined lets the planner choose.
 * @returns The plan and the placement of its first copy.
 * @throws {SplitPlanError} when the request cannot work on these devices.
 * @throws {GpuUnavailableError} when a named backend has no device.
 * @example
 * ```ts
 * const { plan } = await planCopies(Llama.open(), { path: "model.gguf", parallel: 16 });
 * ```
 */
export async function planCopies(
  llama: Llama,
  options: OpenModelOptions,
  replicas: number | undefined = 1,
): Promise<{ plan: MultiGpuPlan; copy: CopyPlacement }> {
  const backend = planDevices(llama.devices(), options.gpuBackend ?? "auto", options.nGpuLayers);
  const modelBytes = await Deno.stat(options.path).then((i) => i.size, () => 0);
  const request: SplitRequest = {
    ...(options.splitMode ? { splitMode: options.splitMode } : {}),
    ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
    ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
    ...(options.gpus ? { gpus: options.gpus } : {}),
    ...(replicas !== undefined ? { replicas } : {}),
  };
  const plan = planMultiGpu({
    ...request,
    devices: backend.devices,
    modelBytes,
    parallel: options.parallel ?? 1,
    checkMemory: options.nGpuLayers === undefined || options.nGpuLayers < 0,
  });
  return { plan, copy: plan.copies[0] as CopyPlacement };
}

/**
 * Narrows the backend's device plan to one copy's placement: its devices, split mode, main GPU
 * and shares become the load options (on the CPU the plan stays as it is).
 *
 * @param backend The backend's plan, from `planDevices`.
 * @param copy Where the copy goes, from `planMultiGpu`.
 * @returns The plan to load this copy with.
 * @example
 * ```ts
 * placeCopy(planDevices(llama.devices()), plan.copies[1]!).load; // { devices: [2], splitMode: "none", … }
 * ```
 */
export function placeCopy(backend: DevicePlan, copy: CopyPlacement): DevicePlan {
  if (backend.backend === "cpu" || copy.devices.length === 0) return backend;
  const load: DevicePlan["load"] = {
    ...backend.load,
    devices: copy.devices,
    splitMode: copy.splitMode,
    mainGpu: copy.mainGpu,
  };
  if (copy.tensorSplit) load.tensorSplit = copy.tensorSplit;
  return {
    backend: backend.backend,
    devices: backend.devices.filter((d) => copy.devices.includes(d.index)),
    load,
  };
}

/**
 * The attention setting for these KV cache types: llama.cpp keeps a quantized V only beside
 * fused attention, so such a V refuses `"off"`; a quantized cache turns `"auto"` on, so that
 * the kernel (and with it whether a model's heads suit the type) does not hang on the CPU
 * attention probe's timing.
 *
 * @param types The KV cache's element types.
 * @param mode The asked setting.
 * @returns The setting to use.
 * @throws {ContextCreateError} for a quantized V with fused attention off.
 */
export function attentionFor(types: KvCacheTypes, mode: Switch): Switch {
  if (isQuantized(types.v) && mode === "off") {
    throw new ContextCreateError(
      `A ${types.v} V cache needs fused attention, which --flash-attn off turns off; use ` +
        "--flash-attn auto or on, or an f16 V cache",
    );
  }
  return mode === "auto" && (isQuantized(types.k) || isQuantized(types.v)) ? "on" : mode;
}

/** The attention probe's times and choice, or why it could not run. */
export type AttentionProbeOutcome = AttentionProbe | { error: string };

/**
 * The CPU attention kernel's probe for a model; a failure (llama.cpp refusing the probe model)
 * is reported, not thrown: the context then gets the kernel chosen without it.
 */
async function probeAttention(
  llama: Llama,
  model: Model,
  threads: number,
): Promise<AttentionProbeOutcome> {
  try {
    return await cpuAttentionKernel(llama, modelAttentionDims(model), { threads });
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/** A model ready to generate. */
export class LoadedModel {
  /** The runtime. */
  readonly llama: Llama;
  /** The model. */
  readonly model: Model;
  /** Its context. */
  readonly context: Context;
  /** Its scheduler. */
  readonly scheduler: Scheduler;
  /** Which devices were chosen. */
  readonly devices: DevicePlan;
  /** The multi-GPU plan this copy was placed by. */
  readonly plan: MultiGpuPlan;
  /**
   * How the CPU attention kernel was chosen, where `--flash-attn auto` left it to the probe
   * (`attention_probe.ts`): its times and choice, or why it failed. Undefined where no probe ran.
   */
  readonly attentionProbe: AttentionProbeOutcome | undefined;
  /** The KV cache's element types. */
  readonly kvCacheTypes: KvCacheTypes;
  readonly #adapters = new Map<string, Promise<LoraAdapter>>();
  readonly #embedderOptions: { pooling?: PoolingName; contextSize?: number; threads?: number };
  #embedder: Promise<Embedder> | undefined;
  #closed = false;

  /** Names of the devices that hold this copy: its GPUs, or `["CPU"]` when it uses none. */
  get deviceNames(): string[] {
    const gpus = this.devices.devices;
    return gpus.length > 0 ? gpus.map((d) => d.name) : ["CPU"];
  }

  private constructor(
    llama: Llama,
    model: Model,
    context: Context,
    scheduler: Scheduler,
    devices: DevicePlan,
    plan: MultiGpuPlan,
    options: OpenModelOptions,
    attentionProbe: AttentionProbeOutcome | undefined,
  ) {
    this.attentionProbe = attentionProbe;
    this.kvCacheTypes = options.kvCacheTypes ?? DEFAULT_KV_CACHE_TYPES;
    this.llama = llama;
    this.model = model;
    this.context = context;
    this.scheduler = scheduler;
    this.devices = devices;
    this.plan = plan;
    this.#embedderOptions = {
      ...(options.pooling ? { pooling: options.pooling } : {}),
      ...(options.ctxSize ? { contextSize: options.ctxSize } : {}),
      ...(options.threads ? { threads: options.threads } : {}),
    };
  }

  /**
   * Loads a model and creates its context and scheduler.
   *
   * @param options Path, devices, sizes.
   * @returns The loaded model; the caller closes it.
   * @throws {ModelLoadError} / {GpuUnavailableError} / {ContextCreateError}
   * @example
   * ```ts
   * await using lm = await LoadedModel.open({ path: "model.gguf", parallel: 4 });
   * ```
   */
  static async open(options: OpenModelOptions): Promise<LoadedModel> {
    const llama = Llama.open({
      gpuBackend: options.gpuBackend ?? "auto",
      verbose: options.verbose ?? false,
    });
    const placement = options.placement ?? await planCopies(llama, options);
    const plan = placeCopy(
      planDevices(llama.devices(), options.gpuBackend ?? "auto", options.nGpuLayers),
      placement.copy,
    );
    const model = await Model.load(llama, options.path, {
      ...plan.load,
      ...(options.useMmap !== undefined ? { useMmap: options.useMmap } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    try {
      const parallel = Math.max(1, options.parallel ?? 1);
      const slotContext = options.ctxSize ?? Math.min(model.nCtxTrain || 4096, 4096);
      const unified = kvUnified(options.kvUnified ?? "auto", parallel);
      const cacheTypes = options.kvCacheTypes ?? DEFAULT_KV_CACHE_TYPES;
      checkKvFits(model, slotContext * parallel, cacheTypes);
      const threads = contextThreads(options.threads, model.offload, defaultThreads());
      const attentionMode = attentionFor(cacheTypes, options.flashAttn ?? "auto");
      const shape: AttentionShape = {
        offload: model.offload,
        heads: model.nHead,
        slots: parallel,
        unified,
        // Attention sees one stream at a time: the whole cache when unified, else a slot's.
        cells: unified ? slotContext * parallel : slotContext,
        microBatch: MICRO_BATCH,
      };
      const attentionProbe = probesCpuAttention(attentionMode, shape)
        ? await probeAttention(llama, model, threads)
        : undefined;
      if (attentionProbe && "kernel" in attentionProbe) shape.cpuKernel = attentionProbe.kernel;
      const context = await Context.create(model, {
        nCtx: slotContext * parallel,
        nSeqMax: parallel,
        nBatch: options.batchSize ?? 2048,
        kvUnified: unified,
        nThreads: threads,
        nUbatch: MICRO_BATCH,
        flashAttn: flashAttention(attentionMode, shape),
        typeK: KV_CACHE_GGML_TYPES[cacheTypes.k],
        typeV: KV_CACHE_GGML_TYPES[cacheTypes.v],
      });
      try {
        const mode = options.deviceSampling ?? "auto";
        const scheduler = new Scheduler(context, {
          slotContext,
          deviceSampling: mode === "on" || (mode === "auto" && plan.backend !== "cpu"),
          stagePrompts: model.offload.offloaded === 0,
          decodeThread: options.decodeThread === true,
          lookTurnsMs: options.lookTurnsMs ?? (context.computesOnHost ? 0 : GPU_LOOK_TURNS_MS),
          ...(options.maxQueue ? { maxQueue: options.maxQueue } : {}),
          ...(options.requestsOnTheWay ? { requestsOnTheWay: options.requestsOnTheWay } : {}),
        });
        const loaded = new LoadedModel(
          llama,
          model,
          context,
          scheduler,
          plan,
          placement.plan,
          options,
          attentionProbe,
        );
        if (options.lora?.length) await loaded.setLora(options.lora);
        return loaded;
      } catch (error) {
        context.close();
        throw error;
      }
    } catch (error) {
      model.close();
      throw error;
    }
  }

  /**
   * Loads an adapter for this model once and keeps it (freed with the model).
   *
   * @param path The adapter's GGUF file.
   * @returns The adapter.
   */
  async adapter(path: string): Promise<LoraAdapter> {
    // Looked up before any await: a caller that awaited first could miss a load another started.
    const cached = this.#adapters.get(path);
    if (cached && !(await cached.catch(() => undefined))?.closed) return await cached;
    // Requests that ask for it together share one load (two would give two adapters).
    const loading = LoraAdapter.load(this.model, path);
    this.#adapters.set(path, loading);
    loading.catch(() => {
      if (this.#adapters.get(path) === loading) this.#adapters.delete(path);
    });
    return await loading;
  }

  /**
   * Resolves adapter files and scales to loaded adapters.
   *
   * @param set Paths and scales.
   * @returns The choices for a request or the default set.
   */
  async loraChoices(set: readonly { path: string; scale: number }[]): Promise<LoraChoice[]> {
    const choices: LoraChoice[] = [];
    for (const { path, scale } of set) choices.push({ adapter: await this.adapter(path), scale });
    return choices;
  }

  /**
   * Replaces the adapters attached for requests that choose none (hot swap: it takes effect
   * between decode steps, after running requests finish).
   *
   * @param set Paths and scales; [] detaches all.
   */
  async setLora(set: readonly { path: string; scale: number }[]): Promise<void> {
    this.scheduler.setDefaultLora(await this.loraChoices(set));
  }

  /** The attached adapters (paths and scales). */
  lora(): { path: string; scale: number }[] {
    return this.scheduler.defaultLora.map((c) => ({ path: c.adapter.path, scale: c.scale }));
  }

  /**
   * The model's embeddings context, created on first use (a model that is never asked for
   * embeddings never holds one) and freed with the model.
   *
   * @returns The embedder, shared by every caller.
   * @throws {ContextCreateError} when llama.cpp cannot allocate it (a later call tries again).
   */
  embedder(): Promise<Embedder> {
    if (this.#closed) {
      return Promise.reject(new GenerationError("closed", "The model has been unloaded"));
    }
    if (!this.#embedder) {
      const pending = Embedder.create(this.model, this.#embedderOptions);
      pending.catch(() => {
        if (this.#embedder === pending) this.#embedder = undefined;
      });
      this.#embedder = pending;
    }
    return this.#embedder;
  }

  /** Stops the scheduler and frees the contexts and model. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.scheduler.close();
    const embedder = await this.#embedder?.catch(() => undefined);
    embedder?.close();
    // An adapter still loading writes into the model: let it finish first.
    await this.model.gate.exclusive(() => Promise.resolve());
    this.context.close();
    this.model.close();
  }

  /** Same as {@link close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
