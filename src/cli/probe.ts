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
import { ContextCreateError, ModelLoadError, type ModelLoadErrorCode } from "../ffi/errors.ts";
import { type GlobalFlags, parseGpuBackend } from "./global_flags.ts";
import { formatBytes, formatCount, formatTable } from "./model_table.ts";
import { discoveryOptions } from "./model_lookup.ts";
import { loadProgressPrinter } from "./progress.ts";
import { UsageError } from "./usage_error.ts";
import {
  gpuLayersFlag,
  KV_CACHE_FLAGS,
  KV_CACHE_FLAGS_USAGE,
  kvCacheFlags,
  kvCacheTypes,
  parseFlags,
  SPLIT_FLAGS,
  SPLIT_FLAGS_USAGE,
  type SplitFlags,
  splitFlags,
  switchFlag,
} from "./flags.ts";
import { probeModel, type ProbeReport } from "../engine/model_probe.ts";
import type { BufferKind } from "../engine/load_log.ts";
import type { Switch } from "../engine/gpu.ts";
import type { KvCacheTypes } from "../engine/kv_cache_type.ts";

/** Usage text of `shimmy probe`. */
export const PROBE_USAGE = `Usage: shimmy probe NAME [options]

Loads a model (by name, as shimmy list shows it, or by path) and reports its architecture,
parameters, quantization, context (trained and created), chat template family, the layers
on each device, the load time and the memory of each llama.cpp buffer. Exits with a one-line
message: 1 when the model cannot be found, 2 when it is found but does not load or its context
cannot be made.

Options:
  --gpu-backend B         auto | cpu | cuda | vulkan | metal (default auto)
  --n-gpu-layers N|all    Layers to offload (default: all on a GPU)
${SPLIT_FLAGS_USAGE}
  --ctx-size N            Context tokens to create (default: model's, at most 4096)
  --flash-attn M          auto | on | off: fused attention, as in shimmy serve (default auto)
${KV_CACHE_FLAGS_USAGE}
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
  /** `--flash-attn`. */
  flashAttn: Switch;
  /** `--cache-type-k`, `--cache-type-v`. */
  kvCache: Partial<KvCacheTypes>;
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
 * // { model: "tiny", json: false, models: [], flashAttn: "auto", kvCache: {}, nGpuLayers: -1 }
 * ```
 */
export function parseProbeArgs(args: string[]): ProbeArgs | undefined {
  const parsed = parseFlags(args, {
    json: { type: "boolean", default: false },
    "n-gpu-layers": { type: "string" },
    "ctx-size": { type: "string" },
    "flash-attn": { type: "string" },
    ...KV_CACHE_FLAGS,
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
  const out: ProbeArgs = {
    model,
    json: v.json,
    models: v.model ?? [],
    flashAttn: switchFlag("--flash-attn", v["flash-attn"]),
    kvCache: kvCacheFlags(v),
    ...splitFlags(v),
  };
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

/** The attention line: the kernel, and how the CPU attention probe chose it. */
function attentionLine(attention: ProbeReport["attention"]): string {
  const kernel = { enabled: "fused (flash attention)", disabled: "unfused" }[
    attention.flashAttn
  ] ?? "llama.cpp's choice";
  const probe = attention.probe;
  if (!probe) return kernel;
  if ("error" in probe) return `${kernel}; the CPU attention probe failed: ${probe.error}`;
  const times = (t: { promptMs: number; tokenMs: number }) =>
    `${t.promptMs.toFixed(1)} ms + ${t.tokenMs.toFixed(3)} ms a token`;
  const when = probe.elapsedMs > 0 ? `probed in ${Math.round(probe.elapsedMs)} ms` : "remembered";
  return `${kernel}, faster on this CPU (${when}: fused ${times(probe.fused)}, unfused ${
    times(probe.unfused)
  })`;
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
    field("Attention", attentionLine(report.attention)),
    field("KV cache", `keys ${report.kvCacheTypes.k}, values ${report.kvCacheTypes.v}`),
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
  let model: DiscoveredModel;
  let result: ProbeReport;
  try {
    model = probeTarget(report, options.model, discovery.cwd);
    result = await probeWith(model, options, globals);
  } catch (error) {
    const loadFailed = error instanceof ModelLoadError
      ? error.code !== "not_found"
      : error instanceof ContextCreateError;
    if (!loadFailed) throw error;
    // Found but not loadable: exit code 2, as the original Shimmy's probe answered.
    console.error(`shimmy: ${(error as Error).message}`);
    return PROBE_LOAD_FAILED;
  }
  if (options.json) console.log(JSON.stringify(result, null, 2));
  else {
    for (const line of formatProbeReport(result)) console.log(line);
    console.log(`ok: loaded ${model.name}`); // the original Shimmy's line, which scripts look for
  }
  return 0;
}

/** `shimmy probe`'s exit code for a model that was found but did not load. */
export const PROBE_LOAD_FAILED = 2;

async function probeWith(
  model: DiscoveredModel,
  options: ProbeArgs,
  globals: GlobalFlags,
): Promise<ProbeReport> {
  const progress = loadProgressPrinter(model.path, options.json);
  const ctxSize = options.ctxSize ?? globals.ctxSize;
  const kvTypes = kvCacheTypes(options.kvCache, globals);
  try {
    return await probeModel(model, {
      gpuBackend: options.gpuBackend ?? globals.gpuBackend ?? "auto",
      verbose: globals.verbose,
      onProgress: progress.update,
      ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
      ...(ctxSize !== undefined ? { ctxSize } : {}),
      ...(options.splitMode ? { splitMode: options.splitMode } : {}),
      ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
      ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
      flashAttn: options.flashAttn,
      ...(kvTypes ? { kvCacheTypes: kvTypes } : {}),
    });
  } finally {
    progress.done();
  }
}
