/**
 * The `SHIMMY_*` environment variables: which ones Shimmy reads, and a warning for any other,
 * so a mistyped name or a flag set as a variable (`SHIMMY_PARALLEL=8`) does not pass silently.
 *
 * @module
 */

import { closestMatch } from "./suggest.ts";

/** The variables the executable reads (each documented beside its flag in the README). */
export const SETTING_VARIABLES = [
  "SHIMMY_ALLOWED_HOSTS",
  "SHIMMY_API_KEY",
  "SHIMMY_BASE_GGUF",
  "SHIMMY_BIND_ADDRESS",
  "SHIMMY_CACHE_DIR",
  "SHIMMY_DEVICE_SAMPLING",
  "SHIMMY_LIB_DIR",
  "SHIMMY_LORA_GGUF",
  "SHIMMY_MAX_CTX",
  "SHIMMY_MODEL_PATHS",
  "SHIMMY_OLLAMA_BIND",
  "SHIMMY_ORIGINS",
  "SHIMMY_POOLING",
  "SHIMMY_SLOT_SAVE_MAX_SIZE",
  "SHIMMY_SLOT_SAVE_PATH",
];

/**
 * Variables of the installers, the builds and the test suite: the executable does not read them,
 * but they are no mistake in a user's environment.
 */
const TOOLING_VARIABLES = [
  "SHIMMY_ARCH",
  "SHIMMY_BUILD_ARCH",
  "SHIMMY_BUILD_OS",
  "SHIMMY_CHROMIUM",
  "SHIMMY_CUDA_ARCH",
  "SHIMMY_FLAVOUR",
  "SHIMMY_FUZZ_SEED",
  "SHIMMY_GPU",
  "SHIMMY_GPU_SPEED_MODEL",
  "SHIMMY_GPU_TEST_MODEL",
  "SHIMMY_INSTALL_BASE_URL",
  "SHIMMY_INSTALL_DIR",
  "SHIMMY_LLAMA_SRC",
  "SHIMMY_NO_MODIFY_PATH",
  "SHIMMY_OS",
  "SHIMMY_REFERENCE_DIR",
  "SHIMMY_RELIABILITY",
  "SHIMMY_REPO",
  "SHIMMY_VERSION",
];

const KNOWN = new Set([...SETTING_VARIABLES, ...TOOLING_VARIABLES]);
const PREFIX = "SHIMMY_";

/**
 * One warning line for each `SHIMMY_*` variable that Shimmy does not read.
 *
 * @param names The environment's variable names.
 * @returns The warnings, in the order of `names` (none when every name is known).
 * @example
 * ```ts
 * unknownVariableWarnings(["SHIMMY_API_KYE"]);
 * // ["SHIMMY_API_KYE is not a Shimmy setting and has no effect (did you mean SHIMMY_API_KEY?)"]
 * ```
 */
export function unknownVariableWarnings(names: Iterable<string>): string[] {
  const warnings: string[] = [];
  for (const name of names) {
    if (!name.startsWith(PREFIX) || KNOWN.has(name)) continue;
    const rest = name.slice(PREFIX.length);
    const suggestion = closestMatch(
      rest,
      SETTING_VARIABLES.map((known) => known.slice(PREFIX.length)),
    );
    const hint = suggestion
      ? `did you mean ${PREFIX}${suggestion}?`
      : "set it with a command-line flag; shimmy --help lists the variables Shimmy reads";
    warnings.push(`${name} is not a Shimmy setting and has no effect (${hint})`);
  }
  return warnings;
}
