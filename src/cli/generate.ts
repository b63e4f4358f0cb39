/**
 * `shimmy generate [NAME] --prompt TEXT …`: one generation from the shell, streamed to stdout,
 * timings to stderr (or one JSON object with `--json`).
 *
 * @module
 */

import { I32_MAX } from "../util/limits.ts";
import { LoadedModel } from "../engine/loaded_model.ts";
import { describePlan } from "../engine/multi_gpu_plan.ts";
import { chatPrompt, type PreparedPrompt, rawPrompt, renderChatPrompt } from "../engine/prompt.ts";
import { loadTemplateOverride } from "../engine/templates.ts";
import type { GenerationResult } from "../engine/scheduler.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { findModelPath } from "./model_lookup.ts";
import { loadProgressPrinter } from "./progress.ts";
import { UsageError } from "./usage_error.ts";
import {
  gpuLayersFlag,
  KV_CACHE_FLAGS,
  KV_CACHE_FLAGS_USAGE,
  kvCacheFlags,
  kvCacheTypes,
  numberFlag,
  parseFlags,
  SPLIT_FLAGS,
  SPLIT_FLAGS_USAGE,
  type SplitFlags,
  splitFlags,
  switchFlag,
  threadsFlag,
} from "./flags.ts";
import type { Switch } from "../engine/gpu.ts";
import type { KvCacheTypes } from "../engine/kv_cache_type.ts";

/** Usage text of `shimmy generate`. */
export const GENERATE_USAGE = `Usage: shimmy generate [NAME] --prompt TEXT [options]

Runs one generation and streams the text to stdout; timings go to stderr.

Model (one of): NAME (positional), --name NAME, --model PATH_OR_NAME, or SHIMMY_BASE_GGUF.

Options:
  --prompt, -p TEXT       Prompt text (required)
  --max-tokens N          Most tokens to generate (default 64)
  --temperature T         0 = greedy; > 0 samples with --seed (default 0.7)
  --top-k K               Keep the K most likely tokens (default 40; 0 = off)
  --top-p P               Nucleus threshold (default 0.9; 1 = off)
  --min-p P               Minimum relative probability (default 0.05; 0 = off)
  --repeat-penalty R      Repetition penalty (default 1 = off)
  --seed S                Random seed (default: random)
  --stop STR              Stop string; repeatable
  --ctx-size N            Context tokens (default: model's, at most 4096)
  --threads N             CPU threads (default: one per physical core; at most 4 with every
                          layer on a GPU)
  --gpu-backend B         auto | cpu | cuda | vulkan | metal (default auto)
  --n-gpu-layers N|all    Layers to offload (default: all on a GPU)
${SPLIT_FLAGS_USAGE}
  --flash-attn M          auto | on | off: fused attention (default auto: on the CPU, the
                          faster of the two kernels on this machine, timed once at load)
${KV_CACHE_FLAGS_USAGE}
  --json                  Print one JSON object (text, tokens, usage, timings)
  --raw                   Send the prompt untouched (no chat template)
  --chat-template T       chatml, llama3, llama2, mistral, gemma, phi3, openchat, zephyr,
                          raw, or a .jinja file (default: the model's own template)
  --chat-template-kwargs J  Template variables as a JSON object, e.g. '{"enable_thinking":false}'
  --show-prompt           Print the prompt exactly as the chat template renders it, and stop
  --verbose               Show llama.cpp's log
  --model-dirs DIRS       Extra model folders, ';'-separated

Examples:
  shimmy generate phi3 --prompt "Say hi" --max-tokens 32
  shimmy generate --model ./models/tiny.gguf --prompt "Once upon" --temperature 0 --json
  shimmy generate qwen3 --prompt "Hi" --chat-template ./my.jinja --show-prompt`;

/** Parsed `generate` options (with the multi-GPU flags that were set). */
export interface GenerateArgs extends SplitFlags {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  stop: string[];
  ctxSize?: number;
  threads?: number;
  nGpuLayers?: number;
  /** `--flash-attn`. */
  flashAttn: Switch;
  /** `--cache-type-k`, `--cache-type-v`. */
  kvCache: Partial<KvCacheTypes>;
  json: boolean;
  raw: boolean;
  chatTemplate?: string;
  /** `--chat-template-kwargs`: extra template variables. */
  chatTemplateKwargs?: Record<string, unknown>;
  /** `--show-prompt`: print the rendered prompt instead of generating. */
  showPrompt: boolean;
}

/**
 * Parses `--chat-template-kwargs`: a JSON object of template variables.
 *
 * @param value The flag's text.
 * @returns The object.
 * @throws {UsageError} When it is not a JSON object.
 * @example
 * ```ts
 * parseTemplateKwargs('{"enable_thinking": false}'); // { enable_thinking: false }
 * ```
 */
export function parseTemplateKwargs(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new UsageError(`--chat-template-kwargs is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(
      `--chat-template-kwargs must be a JSON object, e.g. '{"enable_thinking":false}'`,
    );
  }
  return parsed as Record<string, unknown>;
}

/**
 * Parses `generate`'s arguments (global flags already removed).
 *
 * @param args Arguments after the command name.
 * @param env Environment lookup for `SHIMMY_BASE_GGUF`.
 * @returns The options, or undefined when `--help` was asked.
 * @throws {UsageError} on bad flags.
 */
export function parseGenerateArgs(
  args: string[],
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): GenerateArgs | undefined {
  const parsed = parseFlags(args, {
    prompt: { type: "string", short: "p" },
    model: { type: "string", short: "m" },
    name: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "min-p": { type: "string" },
    "repeat-penalty": { type: "string" },
    seed: { type: "string" },
    stop: { type: "string", multiple: true },
    "ctx-size": { type: "string" },
    threads: { type: "string" },
    "flash-attn": { type: "string" },
    ...KV_CACHE_FLAGS,
    "n-gpu-layers": { type: "string" },
    ...SPLIT_FLAGS,
    "chat-template": { type: "string" },
    "chat-template-kwargs": { type: "string" },
    "show-prompt": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    raw: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  }, 1);
  const v = parsed.values;
  if (v.help) return undefined;
  const model = parsed.positionals[0] ?? v.name ?? v.model ?? env("SHIMMY_BASE_GGUF");
  if (!model) {
    throw new UsageError("No model given: pass NAME, --model PATH, or set SHIMMY_BASE_GGUF");
  }
  if (v.prompt === undefined) throw new UsageError("--prompt is required");
  const maxTokens = numberFlag("max-tokens", v["max-tokens"], true, { min: 1, max: I32_MAX }) ??
    64;
  const nGpuLayers = gpuLayersFlag(v["n-gpu-layers"]);
  const out: GenerateArgs = {
    model,
    prompt: v.prompt,
    maxTokens,
    stop: v.stop ?? [],
    json: v.json,
    raw: v.raw,
    showPrompt: v["show-prompt"],
    flashAttn: switchFlag("--flash-attn", v["flash-attn"]),
    kvCache: kvCacheFlags(v),
    ...(v["chat-template"] ? { chatTemplate: v["chat-template"] } : {}),
    ...(v["chat-template-kwargs"] !== undefined
      ? { chatTemplateKwargs: parseTemplateKwargs(v["chat-template-kwargs"]) }
      : {}),
    ...splitFlags(v),
  };
  const optional = {
    // The bounds of the same fields on the API.
    temperature: numberFlag("temperature", v.temperature, false, { min: 0, max: 100 }),
    topK: numberFlag("top-k", v["top-k"], true, { min: 0, max: I32_MAX }),
    topP: numberFlag("top-p", v["top-p"], false, { min: 0, max: 1 }),
    minP: numberFlag("min-p", v["min-p"], false, { min: 0, max: 1 }),
    repeatPenalty: numberFlag("repeat-penalty", v["repeat-penalty"], false, { min: 0 }),
    seed: numberFlag("seed", v.seed, true),
    ctxSize: numberFlag("ctx-size", v["ctx-size"], true, { min: 1 }),
    threads: threadsFlag(v.threads),
    nGpuLayers,
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) (out as unknown as Record<string, number>)[key] = value;
  }
  return out;
}

/**
 * Runs `shimmy generate`.
 *
 * @param args Arguments after the command name.
 * @param globals Global flags.
 * @returns The exit code.
 */
export async function generateMain(args: string[], globals: GlobalFlags): Promise<number> {
  const options = parseGenerateArgs(args);
  if (!options) {
    console.log(GENERATE_USAGE);
    return 0;
  }
  const path = await findModelPath(options.model, globals);
  const ctxSize = options.ctxSize ?? globals.ctxSize;
  const kvTypes = kvCacheTypes(options.kvCache, globals);
  const progress = loadProgressPrinter(path, options.json);
  await using loaded = await LoadedModel.open({
    path,
    gpuBackend: globals.gpuBackend ?? "auto",
    verbose: globals.verbose,
    onProgress: progress.update,
    ...(options.nGpuLayers !== undefined ? { nGpuLayers: options.nGpuLayers } : {}),
    ...(ctxSize !== undefined ? { ctxSize } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.tensorSplit ? { tensorSplit: options.tensorSplit } : {}),
    ...(options.splitMode ? { splitMode: options.splitMode } : {}),
    ...(options.mainGpu !== undefined ? { mainGpu: options.mainGpu } : {}),
    flashAttn: options.flashAttn,
    ...(kvTypes ? { kvCacheTypes: kvTypes } : {}),
    decodeThread: true,
  });
  progress.done();
  if (!options.json && loaded.plan.kind !== "cpu") {
    for (const line of describePlan(loaded.plan, loaded.model.nLayer)) console.error(line);
  }
  const override = options.chatTemplate
    ? await loadTemplateOverride(options.chatTemplate)
    : undefined;
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const { signal } = abort;
    const messages = [{ role: "user", content: options.prompt }];
    const kwargs = options.chatTemplateKwargs ? { kwargs: options.chatTemplateKwargs } : {};
    if (options.showPrompt) {
      const text = options.raw
        ? options.prompt
        : (await renderChatPrompt(loaded.model, messages, override, undefined, {
          signal,
          ...kwargs,
        }))
          .prompt;
      await Deno.stdout.write(
        new TextEncoder().encode(options.json ? JSON.stringify({ prompt: text }) + "\n" : text),
      );
      return 0;
    }
    let prompt: PreparedPrompt;
    try {
      prompt = options.raw
        ? await rawPrompt(loaded.model, options.prompt, { signal })
        : await chatPrompt(loaded.model, messages, override, undefined, { signal, ...kwargs });
    } catch (error) {
      if (signal.aborted) return 130; // Ctrl-C while the prompt was prepared
      throw error;
    }
    const generation = loaded.scheduler.submit({
      prompt: prompt.tokens,
      maxTokens: options.maxTokens,
      stop: [...options.stop, ...prompt.stopStrings],
      stopTokens: prompt.stopTokens,
      signal,
      sampling: {
        ...(options.temperature !== undefined ? { temperature: options.temperature } : {}),
        ...(options.topK !== undefined ? { topK: options.topK } : {}),
        ...(options.topP !== undefined ? { topP: options.topP } : {}),
        ...(options.minP !== undefined ? { minP: options.minP } : {}),
        ...(options.repeatPenalty !== undefined ? { repeatPenalty: options.repeatPenalty } : {}),
        ...(options.seed !== undefined ? { seed: options.seed } : {}),
      },
    });
    const encoder = new TextEncoder();
    for await (const chunk of generation) {
      if (!options.json) await Deno.stdout.write(encoder.encode(chunk.text));
    }
    const result = await generation.result;
    if (options.json) {
      console.log(JSON.stringify(jsonReport(loaded, result)));
    } else {
      await Deno.stdout.write(encoder.encode("\n"));
      console.error(timingLine(result));
    }
    return result.finishReason === "cancelled" ? 130 : 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

function jsonReport(loaded: LoadedModel, result: GenerationResult) {
  return {
    model: loaded.model.path,
    text: result.text,
    tokens: result.tokens,
    finish_reason: result.finishReason,
    usage: {
      prompt_tokens: result.promptTokens,
      completion_tokens: result.completionTokens,
      total_tokens: result.promptTokens + result.completionTokens,
    },
    timings: {
      load_ms: round(loaded.model.loadMs),
      prompt_ms: round(result.timings.promptMs),
      prompt_per_second: round(result.timings.promptPerSecond),
      generate_ms: round(result.timings.generateMs),
      generate_per_second: round(result.timings.generatePerSecond),
    },
    backend: loaded.devices.backend,
    lib_dir: loaded.llama.libDir,
    offload: loaded.model.offload,
    load_params: loaded.model.loadParams,
    placement: { kind: loaded.plan.kind, reason: loaded.plan.reason },
  };
}

function timingLine(result: GenerationResult): string {
  const t = result.timings;
  return `prompt: ${result.promptTokens} tokens, ${round(t.promptPerSecond)} tok/s | ` +
    `generated: ${result.completionTokens} tokens, ${round(t.generatePerSecond)} tok/s | ` +
    `finish: ${result.finishReason}`;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
