/**
 * Flag parsing shared by the commands: `node:util` parseArgs with misuse turned into a
 * {@link UsageError}, and the flags several commands take.
 *
 * @module
 */

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { parseGpuLayers } from "../engine/gpu.ts";
import { type Switch, SWITCH_VALUES } from "../engine/gpu.ts";
import { POOLING_NAMES, type PoolingName } from "../engine/embedder.ts";
import { SPLIT_MODES, type SplitModeName } from "../engine/multi_gpu_plan.ts";
import {
  KV_CACHE_TYPE_NAMES,
  type KvCacheTypes,
  parseKvCacheType,
} from "../engine/kv_cache_type.ts";
import type { GlobalFlags } from "./global_flags.ts";
import { closestMatch } from "./suggest.ts";
import { UsageError } from "./usage_error.ts";

/**
 * Parses command-line flags; unknown flags, missing values and extra arguments become a
 * UsageError.
 *
 * @param args Arguments after the command name.
 * @param options The flags, as for `parseArgs`.
 * @param maxPositionals How many plain arguments the command takes. Default 0.
 * @returns The values and positionals.
 * @example
 * ```ts
 * const { values } = parseFlags(["--json"], { json: { type: "boolean" } });
 * ```
 */
export function parseFlags<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
  maxPositionals = 0,
) {
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw parseError(error as Error & { code?: string }, options);
  }
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals.slice(maxPositionals).join(" ");
    throw new UsageError(`Unexpected arguments: ${extra}`, { pointToHelp: true });
  }
  return parsed;
}

/**
 * Node's parser errors as one line that says what to do: an unknown flag names the closest
 * known one.
 */
function parseError(error: Error & { code?: string }, options: ParseArgsOptionsConfig): UsageError {
  const quoted = /'([^']*)'/.exec(error.message)?.[1] ?? "";
  const flag = /--[^\s,<]+/.exec(quoted)?.[0] ?? /-[^\s,<]+/.exec(quoted)?.[0] ?? quoted;
  if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const name = flag.replace(/^-+/, "").split("=")[0] ?? "";
    const suggestion = closestMatch(name, Object.keys(options));
    return new UsageError(
      `Unknown flag ${flag}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`,
      { pointToHelp: true },
    );
  }
  if (error.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const message = /does not take an argument/.test(error.message)
      ? `${flag} takes no value`
      : `${flag} needs a value`;
    return new UsageError(message, { pointToHelp: true });
  }
  return new UsageError(error.message.split("\n")[0] ?? error.message, { pointToHelp: true });
}

/**
 * Writes `--flag -1` as `--flag=-1` for string flags, since parseArgs takes a value that
 * starts with "-" for another flag ("argument is ambiguous").
 */
function joinNegativeValues(args: string[], options: ParseArgsOptionsConfig): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const next = args[i + 1];
    const name = arg.startsWith("--") ? arg.slice(2) : undefined;
    if (
      name !== undefined && options[name]?.type === "string" && next !== undefined &&
      /^-\d/.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * A numeric flag, written in decimal (`0x10` is refused, not read as 16).
 *
 * @param name The flag, without dashes (for the message).
 * @param value Its text; undefined when unset.
 * @param integer Whether it must be an integer. Default false.
 * @param bounds The least and most it may be. Default: any finite number.
 * @returns The number, or undefined when unset.
 * @throws {UsageError} for anything that is not a finite decimal number (or integer) within the
 *   bounds.
 * @example
 * ```ts
 * numberFlag("max-tokens", "64", true, { min: 1 }); // 64
 * ```
 */
export function numberFlag(
  name: string,
  value: string | undefined,
  integer = false,
  bounds: { min?: number; max?: number } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (
    !DECIMAL.test(value.trim()) || !Number.isFinite(n) || (integer && !Number.isSafeInteger(n))
  ) {
    throw new UsageError(
      `--${name} must be ${integer ? "an integer" : "a number"}, got "${value}"`,
    );
  }
  const { min, max } = bounds;
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    const range = max === undefined
      ? `at least ${min}`
      : min === undefined
      ? `at most ${max}`
      : `from ${min} to ${max}`;
    throw new UsageError(`--${name} must be ${range}, got "${value}"`);
  }
  return n;
}

/** A number as people write it: digits, a point, an exponent. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Most threads ggml takes (`GGML_MAX_N_THREADS`); more abort inside llama.cpp. */
export const MAX_THREADS = 512;

/**
 * `--threads N`: 1 to {@link MAX_THREADS}. Zero or fewer crashed `generate` in ggml, and a number
 * past ggml's limit aborted every command.
 *
 * @param value The flag value.
 * @returns The threads, or undefined when unset.
 * @throws {UsageError} for anything else.
 * @example
 * ```ts
 * threadsFlag("4"); // 4
 * ```
 */
export function threadsFlag(value: string | undefined): number | undefined {
  return numberFlag("threads", value, true, { min: 1, max: MAX_THREADS });
}

/**
 * `--n-gpu-layers N|all`.
 *
 * @param value The flag value.
 * @returns Layers (-1 = all), or undefined when unset.
 * @throws {UsageError}
 */
export function gpuLayersFlag(value: string | undefined): number | undefined {
  try {
    return parseGpuLayers(value);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * A flag that takes `auto`, `on` or `off` (`--device-sampling`, `--flash-attn`).
 *
 * @param flag The flag's name, for the message.
 * @param value The flag value.
 * @returns The value; `"auto"` when unset.
 * @throws {UsageError} for any other value.
 * @example
 * ```ts
 * switchFlag("--flash-attn", "off"); // "off"
 * ```
 */
export function switchFlag(flag: string, value: string | undefined): Switch {
  if (value === undefined || value === "") return "auto";
  const mode = SWITCH_VALUES.find((m) => m === value);
  if (!mode) throw new UsageError(`${flag} must be ${SWITCH_VALUES.join(", ")}; got "${value}"`);
  return mode;
}

/**
 * `--pooling none|mean|cls|last|rank`.
 *
 * @param value The flag value.
 * @returns The pooling type; undefined when unset (each model's own).
 * @throws {UsageError} for any other value.
 */
export function poolingFlag(value: string | undefined): PoolingName | undefined {
  if (value === undefined || value === "") return undefined;
  const pooling = POOLING_NAMES.find((p) => p === value);
  if (!pooling) {
    throw new UsageError(`--pooling must be ${POOLING_NAMES.join(", ")}; got "${value}"`);
  }
  return pooling;
}

/** The KV cache flags `serve`, `generate`, `bench` and `probe` take, for `parseFlags`. */
export const KV_CACHE_FLAGS = {
  "cache-type-k": { type: "string" },
  "cache-type-v": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** Usage lines of {@link KV_CACHE_FLAGS}, for each command's `--help`. */
export const KV_CACHE_FLAGS_USAGE =
  `  --cache-type-k T        KV cache keys' type: ${KV_CACHE_TYPE_NAMES} (default f16)
  --cache-type-v T        KV cache values' type, the same (a quantized one turns on fused
                          attention)`;

/**
 * Reads `--cache-type-k` and `--cache-type-v`.
 *
 * @param values Parsed flag values.
 * @returns The types that were given.
 * @throws {UsageError} for a type llama.cpp's tools do not offer.
 * @example
 * ```ts
 * kvCacheFlags({ "cache-type-k": "q8_0" }); // { k: "q8_0" }
 * ```
 */
export function kvCacheFlags(
  values: { "cache-type-k"?: string; "cache-type-v"?: string },
): Partial<KvCacheTypes> {
  const out: Partial<KvCacheTypes> = {};
  for (const side of ["k", "v"] as const) {
    const value = values[`cache-type-${side}`];
    if (value === undefined) continue;
    const type = parseKvCacheType(value);
    if (!type) {
      throw new UsageError(
        `--cache-type-${side} must be one of ${KV_CACHE_TYPE_NAMES}; got "${value}"`,
      );
    }
    out[side] = type;
  }
  return out;
}

/**
 * The KV cache types a command uses: its `--cache-type-k/-v`, else the global `--kv-quant`'s.
 *
 * @param given What the command's flags set ({@link kvCacheFlags}).
 * @param globals The global flags.
 * @returns The types, or undefined when nothing was asked (llama.cpp's f16).
 */
export function kvCacheTypes(
  given: Partial<KvCacheTypes>,
  globals: GlobalFlags,
): KvCacheTypes | undefined {
  const k = given.k ?? globals.kvCacheTypes?.k;
  const v = given.v ?? globals.kvCacheTypes?.v;
  return k === undefined && v === undefined ? undefined : { k: k ?? "f16", v: v ?? "f16" };
}

/** The multi-GPU flags `serve`, `generate`, `bench` and `probe` take, for `parseFlags`. */
export const SPLIT_FLAGS = {
  "split-mode": { type: "string" },
  "tensor-split": { type: "string" },
  "main-gpu": { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** Usage lines of {@link SPLIT_FLAGS}, for each command's `--help`. */
export const SPLIT_FLAGS_USAGE =
  `  --split-mode M          none | layer | row: how one copy spreads over several GPUs
                          (default: one GPU when the model fits one, else layer)
  --tensor-split A,B,…    Share of the model per GPU, e.g. 3,1 (implies --split-mode layer)
  --main-gpu N            The GPU (0, 1, …) that holds the model under --split-mode none`;

/** What the multi-GPU flags asked; unset fields are left to the planner. */
export interface SplitFlags {
  /** `--split-mode`. */
  splitMode?: SplitModeName;
  /** `--tensor-split`. */
  tensorSplit?: number[];
  /** `--main-gpu`. */
  mainGpu?: number;
}

/**
 * Reads `--split-mode`, `--tensor-split` and `--main-gpu`.
 *
 * @param values Parsed flag values.
 * @returns The fields that were set.
 * @throws {UsageError} for a bad value.
 * @example
 * ```ts
 * splitFlags({ "split-mode": "layer", "tensor-split": "3,1" });
 * // { splitMode: "layer", tensorSplit: [3, 1] }
 * ```
 */
export function splitFlags(
  values: { "split-mode"?: string; "tensor-split"?: string; "main-gpu"?: string },
): SplitFlags {
  const out: SplitFlags = {};
  const mode = values["split-mode"];
  if (mode !== undefined) {
    const found = SPLIT_MODES.find((m) => m === mode);
    if (!found) {
      throw new UsageError(`--split-mode must be ${SPLIT_MODES.join(", ")}; got "${mode}"`);
    }
    out.splitMode = found;
  }
  if (values["tensor-split"] !== undefined) {
    out.tensorSplit = parseTensorSplit(values["tensor-split"]);
  }
  const main = values["main-gpu"];
  if (main !== undefined) {
    const n = Number(main);
    if (main.trim() === "" || !Number.isInteger(n) || n < 0) {
      throw new UsageError(`--main-gpu must be a GPU number (0, 1, …), got "${main}"`);
    }
    out.mainGpu = n;
  }
  if (out.splitMode === "none" && out.tensorSplit) {
    throw new UsageError(
      "--tensor-split spreads the model over several GPUs; it does not go with --split-mode none",
    );
  }
  return out;
}

/**
 * Parses `--tensor-split`: non-negative numbers, comma-separated, one per GPU, not all 0.
 *
 * @param value The flag value.
 * @returns The proportions.
 * @throws {UsageError} for anything else.
 * @example
 * ```ts
 * parseTensorSplit("3,1"); // [3, 1]
 * ```
 */
export function parseTensorSplit(value: string): number[] {
  const parts = value.split(",").map((p) => p.trim());
  const numbers = parts.map(Number);
  if (parts.some((p) => p === "") || numbers.some((n) => !Number.isFinite(n) || n < 0)) {
    throw new UsageError(`--tensor-split must be numbers like 3,1, got "${value}"`);
  }
  if (numbers.every((n) => n === 0)) {
    throw new UsageError(`--tensor-split must give some GPU a share above 0, got "${value}"`);
  }
  return numbers;
}

/**
 * `--gpus 0,1,…`: the GPUs to use, by number.
 *
 * @param value The flag value.
 * @returns The GPU numbers; undefined when unset.
 * @throws {UsageError} for anything but distinct non-negative integers.
 * @example
 * ```ts
 * gpusFlag("0,1"); // [0, 1]
 * ```
 */
export function gpusFlag(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split(",").map((p) => p.trim());
  const numbers = parts.map(Number);
  if (parts.some((p) => p === "") || numbers.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new UsageError(`--gpus must be GPU numbers like 0,1, got "${value}"`);
  }
  if (new Set(numbers).size !== numbers.length) {
    throw new UsageError(`--gpus names a GPU twice: "${value}"`);
  }
  return numbers;
}
