/**
 * `shimmy probe NAME`: loads a model the way `serve` would and reports what llama.cpp made of
 * it: architecture, parameters, quantization, context (trained and created), chat template
 * family, layers per device, load time and the memory of every buffer.
 *
 * @module
 */

import { basename, resolve } from "node:path";
import {
  type DiscoveredModel,
  discoverModels,
  type DiscoveryOptions,
  type DiscoveryReport,
  findAdapter,
  findModel,
  resolveModel,
} from "../models/discovery.ts";
import { LoadedModel } from "../engine/loaded_model.ts";
import { detectFamily } from "../engine/templates.ts";
import { ModelLoadError, type ModelLoadErrorCode } from "../ffi/errors.ts";
import { Llama } from "../ffi/llama.ts";
import { type GlobalFlags, parseGpuBackend } from "./global_flags.ts";
import { formatBytes, formatCount, formatTable } from "./model_table.ts";
import { discoveryOptions } from "./model_lookup.ts";
import { loadProgressPrinter } from "./progress.ts";
import { UsageError } from "./usage_error.ts";
import {
  gpuLayersFlag,
  parseFlags,
  SPLIT_FLAGS,
  SPLIT_FLAGS_USAGE,
  type SplitFlags,
  splitFlags,
} from "./flags.ts";
import { describePlan } from "../engine/multi_gpu_plan.ts";

/** Usage text of `shimmy probe`. */
export const PROBE_USAGE = `Usage: shimmy probe NAME [options]

Loads a model (by name, as shimmy list shows it, or by path) and reports its architecture,
parameters, quantization, context (trained and created), chat template family, the layers
on each device, the load time and the memory of each llama.cpp buffer. Exits with 1 and a
one-line message when the model cannot be found or loaded.

Options:
  --gpu-backend B         auto | cpu | cuda | vulkan | metal (default auto)
  --n-gpu-layers N|all    Layers to offload (default: all on a GPU)
${SPLIT_FLAGS_USAGE}
  --ctx-size N            Context tokens to create (default: model's, at most 4096)
  --json                  Print one JSON object
  --model PATH            Also look at this file or folder; repeatable
  --model-dirs DIRS       Extra model folders, ';'-separated
  --verbose               Show llama.cpp's log

Examples:
  shimmy probe phi3
  shimmy probe ./models/qwen2.5-0.5b-instruct-q4_k_m.gguf --gpu-backend cpu
  shimmy probe llama3:latest --n-gpu-layers 10 --json`;

/** Parsed `probe` options (with the multi-GPU flags that were set). */
export interface ProbeArgs extends SplitFlags {
  /** The model's name or path. */
  model: string;
  /** `--json`. */
  json: boolean;
  /** `--n-gpu-layers` (-1 = all). */
  nGpuLayers?: number;
  /** `--ctx-size`. */
  ctxSize?: number;
  /** `--gpu-backend` given after the command (it normally arrives as a global flag). */
  gpuBackend?: GlobalFlags["gpuBackend"];
  /** `--model PATH` values. */
  models: string[];
}

/**
 * Parses `probe`'s arguments (global flags already removed).
 *
 * @param args Arguments after the command name.
 * @returns The options, or undefined when `--help` was asked.
 * @throws {UsageError} on bad flags, or when NAME is missing.
 * @example
 * ```ts
 * parseProbeArgs(["tiny", "--n-gpu-layers", "all"]);
 * // { model: "tiny", json: false, nGpuLayers: -1, models: [] }
 * ```
 */
export function parseProbeArgs(args: string[]): ProbeArgs | undefined {
  const parsed = parseFlags(args, {
    json: { type: "boolean", default: false },
    "n-gpu-layers": { type: "string" },
    "ctx-size": { type: "string" },
    ...SPLIT_FLAGS,
    "gpu-backend": { type: "string" },
    model: { type: "string", short: "m", multiple: true },
    help: { type: "boolean", short: "h", default: false },
  }, 1);
  const v = parsed.values;
  if (v.help) return undefined;
  const model = parsed.positionals[0];
  if (model === undefined || model.trim() === "") {
    throw new UsageError('No model given: shimmy probe NAME (see "shimmy list")');
  }
  const out: ProbeArgs = { model, json: v.json, models: v.model ?? [], ...splitFlags(v) };
  const layers = gpuLayersFlag(v["n-gpu-layers"]);
  if (layers !== undefined) out.nGpuLayers = layers;
  if (v["ctx-size"] !== undefined) {
    const n = Number(v["ctx-size"]);
    if (!Number.isInteger(n) || n < 1) {
      throw new UsageError(`--ctx-size must be a positive integer, got "${v["ctx-size"]}"`);
    }
    out.ctxSize = n;
  }
  if (v["gpu-backend"] !== undefined) out.gpuBackend = parseGpuBackend(v["gpu-backend"]);
  return out;
}

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

/** What a llama.cpp buffer holds. */
export type BufferKind = "weights" | "kv" | "compute" | "output";

/** One llama.cpp buffer, as its log reports it. */
export interface BufferSize {
  /** Buffer type name, e.g. `CPU_Mapped`, `CUDA0`, `CUDA_Host`. */
  buffer: string;
  /** What it holds. */
  kind: BufferKind;
  /** Size in bytes (llama.cpp prints MiB with two decimals). */
  bytes: number;
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
  /** LoRA adapters discovery attached to the model. */
  adapters: string[];
}

/** Options for {@link probeModel} (multi-GPU fields: chosen by the planner when unset). */
export interface ProbeOptions extends SplitFlags {
  /** GPU backend. Default `"auto"`. */
  gpuBackend?: GlobalFlags["gpuBackend"];
  /** Layers to offload (-1 = all). Default: all on a GPU, none on the CPU. */
  nGpuLayers?: number;
  /** Context tokens. Default: the model's, at most 4096. */
  ctxSize?: number;
  /** Print llama.cpp's log. Default false. */
  verbose?: boolean;
  /** Load progress in [0, 1]. */
  onProgress?: (fraction: number) => void;
}

/**
 * Reads llama.cpp's log while a model loads: where each layer went (`load_tensors: layer 3
 * assigned to device CUDA0`) and each buffer's size (`CUDA0 model buffer size = 12.5 MiB`,
 * `CPU KV buffer size`, `compute buffer size`, `output buffer size`).
 *
 * @example
 * ```ts
 * const log = new LoadLogReader();
 * const stop = llama.listen((text) => log.push(text));
 * // … load …
 * stop();
 * log.finish();
 * ```
 */
export class LoadLogReader {
  /** Device of each layer, by layer index (the output layer is the last index). */
  readonly layerDevice: Map<number, string> = new Map();
  /** Buffers in the order they were logged. */
  readonly buffers: BufferSize[] = [];
  #partial = "";

  /** @param text Log text as the callback delivers it (lines, or pieces of one). */
  push(text: string): void {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) this.#line(line);
  }

  /** Reads a last line that had no newline. */
  finish(): void {
    if (this.#partial !== "") this.#line(this.#partial);
    this.#partial = "";
  }

  #line(line: string): void {
    const layer = /\blayer\s+(\d+) assigned to device ([^\s,]+)/.exec(line);
    if (layer) {
      this.layerDevice.set(Number(layer[1]), layer[2]!);
      return;
    }
    const buffer = /(\S+)\s+(model|KV|compute|output) buffer size =\s*([\d.]+) MiB/.exec(line);
    if (buffer) {
      const kinds: Record<string, BufferKind> = {
        model: "weights",
        KV: "kv",
        compute: "compute",
        output: "output",
      };
      this.buffers.push({
        buffer: buffer[1]!,
        kind: kinds[buffer[2]!]!,
        bytes: Math.round(Number(buffer[3]) * 1024 * 1024),
      });
    }
  }
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

/**
 * Formats a probe report for the terminal.
 *
 * @param report The report.
 * @returns The lines to print.
 * @example
 * ```ts
 * console.log(formatProbeReport(report).join("\n"));
 * ```
 */
export function formatProbeReport(report: ProbeReport): string[] {
  const t = report.template;
  const how = {
    template: "from its chat template",
    name: "from its name",
    architecture: "from its architecture",
    default: "default",
  }[t.detectedFrom];
  const templateLine = t.embedded
    ? `the model's own Jinja template (${t.family} style, ${how})`
    : `none in the file; built-in ${t.family} (${how})`;
  const field = (label: string, value: string) => `${`${label}:`.padEnd(15)}${value}`;
  const lines = [
    field("Model", report.name),
    field("Path", report.path),
    field("Found by", `${report.source}: ${report.sourceDetail}`),
    field("Architecture", `${report.architecture} (${report.description})`),
    field("Parameters", `${formatCount(report.parameters)} (${report.parameters})`),
    field("Quantization", report.quantization ?? "unknown"),
    field(
      "Size",
      `${formatBytes(report.fileBytes)} on disk, ${formatBytes(report.weightsBytes)} of weights`,
    ),
    field(
      "Context",
      `${report.context.train} trained, ${report.context.created} created`,
    ),
    field("Layers", `${report.layers} (embedding width ${report.embeddingLength})`),
    field("Chat template", templateLine),
    field("Backend", report.backend),
    ...report.placement,
    field(
      "Offloaded",
      `${report.offload.offloaded}/${report.offload.total} layers to GPU`,
    ),
    ...report.offload.devices.map((d) => {
      const memory = d.totalBytes !== undefined
        ? `, ${formatBytes(d.usedBytes ?? 0)} used by this load, ${
          formatBytes(d.freeBytes ?? 0)
        } free of ${formatBytes(d.totalBytes)}`
        : "";
      const what = d.description ? ` (${d.description})` : "";
      return `  ${d.device}${what}: ${d.layers} ${d.layers === 1 ? "layer" : "layers"}${memory}`;
    }),
    field("Load time", `${report.loadMs} ms (model ${report.modelLoadMs} ms)`),
    field(
      "Memory",
      `${formatBytes(report.memory.totalBytes)} in llama.cpp buffers, ` +
        `${formatBytes(report.memory.residentBytes)} resident in this process`,
    ),
  ];
  if (report.memory.buffers.length > 0) {
    const byBuffer = new Map<string, Record<BufferKind, number>>();
    for (const b of report.memory.buffers) {
      const row = byBuffer.get(b.buffer) ?? { weights: 0, kv: 0, compute: 0, output: 0 };
      row[b.kind] += b.bytes;
      byBuffer.set(b.buffer, row);
    }
    const cell = (n: number) => n === 0 ? "-" : formatBytes(n);
    lines.push(...formatTable(
      ["BUFFER", "WEIGHTS", "KV CACHE", "COMPUTE", "OUTPUT"],
      [...byBuffer].map(([name, r]) => [
        name,
        cell(r.weights),
        cell(r.kv),
        cell(r.compute),
        cell(r.output),
      ]),
      "  ",
    ));
  }
  if (report.adapters.length > 0) lines.push(field("Adapters", report.adapters.join(", ")));
  return lines;
}

/**
 * Finds the model `probe` was asked for. A name or path discovery lists is returned; a LoRA
 * adapter, or a file discovery skipped, gives a {@link ModelLoadError} saying why; anything
 * else a `ModelNotFoundError` listing the names.
 *
 * @param report A discovery report (with the path added as `--model` when NAME is a path).
 * @param nameOrPath What the user typed.
 * @param cwd Folder a relative path is taken from. Default `Deno.cwd()`.
 * @returns The model.
 * @throws {ModelLoadError} / {ModelNotFoundError}
 * @example
 * ```ts
 * const model = probeTarget(await discoverModels(), "tiny-f32");
 * ```
 */
export function probeTarget(
  report: DiscoveryReport,
  nameOrPath: string,
  cwd: string = Deno.cwd(),
): DiscoveredModel {
  const model = findModel(report, nameOrPath);
  if (model !== undefined) return model;
  const adapter = findAdapter(report, nameOrPath);
  if (adapter !== undefined) {
    const base = adapter.baseModels.length > 0
      ? `; probe its base model (${adapter.baseModels.join(", ")}) instead`
      : "";
    throw new ModelLoadError(
      "invalid_file",
      adapter.path,
      `Cannot probe "${nameOrPath}": ${adapter.path} is a LoRA adapter, not a model${base}`,
    );
  }
  const wanted = nameOrPath.trim();
  const asPath = resolve(cwd, wanted);
  const stem = (path: string) => basename(path).replace(/\.gguf$/i, "").toLowerCase();
  const skipped =
    report.skipped.find((s) => s.kind !== "limit" && (s.path === wanted || s.path === asPath)) ??
      report.skipped.find((s) => s.kind !== "limit" && stem(s.path) === wanted.toLowerCase());
  if (skipped !== undefined) {
    const codes: Partial<Record<string, ModelLoadErrorCode>> = {
      "not-found": "not_found",
      "broken-link": "not_found",
      unreadable: "not_readable",
    };
    throw new ModelLoadError(
      codes[skipped.kind] ?? "invalid_file",
      skipped.path,
      `Cannot probe "${nameOrPath}": ${skipped.reason}`,
    );
  }
  return resolveModel(report, nameOrPath); // throws ModelNotFoundError with the names
}

/** True when what the user typed is meant as a file path rather than a model name. */
function looksLikePath(value: string): boolean {
  return /[\\/]/.test(value) || value.toLowerCase().endsWith(".gguf");
}

/**
 * Runs `shimmy probe`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags (`--model-dirs`, `--gpu-backend`, `--verbose`).
 * @param discovery Discovery options to start from. Default `{}` (the process environment and
 *   home folder); tests pass `env`, `home` and `cwd`.
 * @returns The exit code.
 * @throws {ModelNotFoundError} / {ModelLoadError} / {GpuUnavailableError} /
 *   {ContextCreateError}: `main` prints them as one line.
 * @example
 * ```ts
 * Deno.exit(await probeMain(["tiny-f32"], { gpuBackend: "cpu", verbose: false }));
 * ```
 */
export async function probeMain(
  args: string[],
  globals: GlobalFlags,
  discovery: DiscoveryOptions = {},
): Promise<number> {
  const options = parseProbeArgs(args);
  if (!options) {
    console.log(PROBE_USAGE);
    return 0;
  }
  const extra = looksLikePath(options.model) ? [options.model] : [];
  const report = await discoverModels(
    discoveryOptions(globals, [...options.models, ...extra], discovery),
  );
  const model = probeTarget(report, options.model, discovery.cwd);
  const progress = loadProgressPrinter(model.path, options.json);
  let result: ProbeReport;
  try {
    result = await probeModel(model, {
      gpuBackend: options.gpuBackend ?? globals.gpuBackend ?? "auto",
      verbose: globals.verbose,
      onProgress: progress.update,
      ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
      ...(options.ctxSize !== undefined ? { ctxSize: options.ctxSize } : {}),
      ...(options.splitMode ? { splitMode: options.splitMode } : {}),
      ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
      ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
    });
  } finally {
    progress.done();
  }
  if (options.json) console.log(JSON.stringify(result, null, 2));
  else for (const line of formatProbeReport(result)) console.log(line);
  return 0;
}
