/**
 * Flags that work before or after the command (as in the original Shimmy):
 * `--model-dirs DIRS`, `--gpu-backend B`, `--verbose`.
 *
 * @module
 */

import { GPU_BACKENDS, type GpuBackend } from "../ffi/library.ts";
import { UsageError } from "./usage_error.ts";

/** Flags shared by every command. */
export interface GlobalFlags {
  /** `;`-separated model folders. */
  modelDirs?: string;
  /** GPU backend. */
  gpuBackend?: GpuBackend;
  /** Show llama.cpp's log. */
  verbose: boolean;
}

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
    else rest.push(arg);
  }
  return { flags, rest };
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
