/**
 * Flags that work before or after the command (as in the original Shimmy):
 * `--model-dirs DIRS`, `--gpu-backend B`, `--verbose`, and `--ctx N` (the default `--ctx-size` of
 * every command, also `SHIMMY_MAX_CTX`). The original's engine flags are answered too: `--legacy`
 * asked for what this version always does, `--kv-quant f32|int4` picks the KV cache's types;
 * the others say what this version has instead.
 *
 * @module
 */

import { GPU_BACKENDS, type GpuBackend } from "../ffi/library.ts";
import type { KvCacheTypes } from "../engine/kv_cache_type.ts";
import { UsageError } from "./usage_error.ts";

/** Flags shared by every command. */
export interface GlobalFlags {
  /** `;`-separated model folders. */
  modelDirs?: string;
  /** GPU backend. */
  gpuBackend?: GpuBackend;
  /** Show llama.cpp's log. */
  verbose: boolean;
  /** `--ctx N` or `SHIMMY_MAX_CTX`: context tokens where a command's `--ctx-size` is not given. */
  ctxSize?: number;
  /** `--kv-quant int4`: the KV cache types where `--cache-type-k/-v` are not given. */
  kvCacheTypes?: KvCacheTypes;
}

const MOE_ON_CPU = "llama.cpp places every layer by --n-gpu-layers; MoE experts cannot be kept " +
  "on the CPU apart from their layers yet";

/**
 * The original Shimmy's flags for its own engine (Airframe) that this version has no equivalent
 * of, and what to use instead.
 */
const ORIGINAL_ENGINE_FLAGS: Readonly<Record<string, string>> = {
  "--cpu-moe": MOE_ON_CPU,
  "--n-cpu-moe": MOE_ON_CPU,
  "--prefill-chunk": "prompts go in steps of at most --batch-size tokens (serve --batch-size N)",
};

/**
 * Removes the global flags from an argument list, wherever they stand.
 *
 * @param args Command-line arguments.
 * @returns The flags and the remaining arguments.
 * @example
 * ```ts
 * extractGlobalFlags(["generate", "--gpu-backend", "cpu", "phi3"]);
 * // { flags: { gpuBackend: "cpu", verbose: false }, rest: ["generate", "phi3"] }
 * ```
 */
export function extractGlobalFlags(
  args: readonly string[],
): { flags: GlobalFlags; rest: string[] } {
  const flags: GlobalFlags = { verbose: false };
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const [name, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    if (name === "--model-dirs") flags.modelDirs = value();
    else if (name === "--gpu-backend") flags.gpuBackend = parseGpuBackend(value());
    else if (name === "--verbose" || name === "-v") flags.verbose = true;
    else if (name === "--ctx") flags.ctxSize = contextSize("--ctx", value());
    else if (name === "--legacy") continue; // the original's llama.cpp engine: the only one here
    else if (name === "--kv-quant") flags.kvCacheTypes = kvQuant(value());
    else if (name in ORIGINAL_ENGINE_FLAGS) {
      throw new UsageError(
        `${name} was a flag of the original Shimmy's own engine, which this version does not ` +
          `have: ${ORIGINAL_ENGINE_FLAGS[name]}`,
      );
    } else rest.push(arg);
  }
  return { flags, rest };
}

/**
 * Reads a context size given as `--ctx` or `SHIMMY_MAX_CTX`.
 *
 * @param source The flag or variable, for the error.
 * @param value Its text.
 * @returns The number of tokens.
 * @throws {UsageError} unless it is a positive decimal integer.
 */
export function contextSize(source: string, value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new UsageError(`${source} must be a positive number of tokens, got "${value}"`);
  }
  return n;
}

/**
 * `--kv-quant`, the original Shimmy's: `f32`, its full precision and default, is llama.cpp's f16
 * cache here; `int4` keeps keys and values as q4_0 (`--cache-type-k/-v q4_0`).
 */
function kvQuant(value: string): KvCacheTypes | undefined {
  if (value === "f32") return undefined;
  if (value === "int4") return { k: "q4_0", v: "q4_0" };
  throw new UsageError(
    `--kv-quant must be f32 or int4, got "${value}"; --cache-type-k and --cache-type-v ` +
      "take every type llama.cpp offers",
  );
}

/**
 * Validates a `--gpu-backend` value.
 *
 * @param value The flag value.
 * @returns The backend.
 * @throws {UsageError} for an unknown backend.
 */
export function parseGpuBackend(value: string): GpuBackend {
  const lower = value.toLowerCase();
  if ((GPU_BACKENDS as readonly string[]).includes(lower)) return lower as GpuBackend;
  throw new UsageError(
    `Unknown --gpu-backend "${value}"; use one of ${GPU_BACKENDS.join(", ")}`,
  );
}
