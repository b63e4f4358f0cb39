/**
 * The `shimmy` command line: global flags, then one command.
 *
 * @module
 */

import { GpuUnavailableError } from "../engine/gpu.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { GenerationError } from "../engine/errors.ts";
import { ContextCreateError, LibraryNotFoundError, ModelLoadError } from "../ffi/mod.ts";
import { benchMain } from "./bench.ts";
import { discoverMain } from "./discover.ts";
import { generateMain } from "./generate.ts";
import { gpuInfoMain } from "./gpu_info.ts";
import { listMain } from "./list.ts";
import { probeMain } from "./probe.ts";
import { serveMain } from "./serve.ts";
import { extractGlobalFlags, type GlobalFlags } from "./global_flags.ts";
import { UsageError } from "./usage_error.ts";
import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import { describeLibraries } from "../ffi/library.ts";

const USAGE = `shimmy ${VERSION}: a local LLM server for GGUF models

Usage: shimmy [--model-dirs DIRS] [--gpu-backend B] [--verbose] <command> [options]

Commands:
  serve      Serve models over HTTP (shimmy serve --help)
  generate   Run one generation and print it (shimmy generate --help)
  list       List the models found on this machine (shimmy list --help)
  discover   Search again: what was found where, what was skipped and why
  probe      Load a model and report its layers, memory and template
  gpu-info   The compute devices llama.cpp sees, and which one auto picks
  bench      Prompt and generation speed of a model through the engine

Global flags (before or after the command):
  --model-dirs DIRS    Extra model folders, ';'-separated
  --gpu-backend B      auto | cpu | cuda | vulkan | metal
  --verbose            Show llama.cpp's log
  --version            Print the version
  --help               This help`;

/**
 * The `--version` line: Shimmy's version, the llama.cpp version and the library flavour.
 *
 * @param flags Global flags (the GPU backend picks the flavour).
 * @returns E.g. `shimmy 0.1.0 (llama.cpp v0.5.0, linux-x64-cuda, from source)`.
 */
export function versionLine(flags: GlobalFlags): string {
  const libs = describeLibraries({ gpuBackend: flags.gpuBackend ?? "auto" });
  const flavour = libs ? [libs.flavour, libs.built].filter(Boolean).join(", ") : "no libraries";
  return `shimmy ${VERSION} (llama.cpp ${LLAMA_CPP_VERSION}, ${flavour})`;
}

type Command = (args: string[], globals: GlobalFlags) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  bench: benchMain,
  discover: discoverMain,
  generate: generateMain,
  "gpu-info": gpuInfoMain,
  list: listMain,
  probe: probeMain,
  serve: serveMain,
};

/** Errors whose message is enough for the user: printed as one line, no stack. */
const EXPECTED_ERRORS = [
  UsageError,
  ModelNotFoundError,
  ModelLoadError,
  LibraryNotFoundError,
  GpuUnavailableError,
  GenerationError,
  ContextCreateError,
];

/**
 * Runs the command line.
 *
 * @param argv Arguments without the program name.
 * @returns The exit code.
 * @example
 * ```ts
 * Deno.exit(await main(["generate", "phi3", "--prompt", "hi"]));
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  try {
    const { flags, rest } = extractGlobalFlags(argv);
    const [command, ...args] = rest;
    if (command === "--version" || command === "version") {
      console.log(versionLine(flags));
      return 0;
    }
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      console.log(USAGE);
      return command === undefined ? 1 : 0;
    }
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`Unknown command "${command}"; see shimmy --help`);
    return await run(args, flags);
  } catch (error) {
    if (EXPECTED_ERRORS.some((kind) => error instanceof kind)) {
      console.error(`shimmy: ${(error as Error).message}`);
      return 1;
    }
    throw error;
  }
}
