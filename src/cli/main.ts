/**
 * The `shimmy` command line: global flags, then one command.
 *
 * @module
 */

import { GpuUnavailableError } from "../engine/gpu.ts";
import { SplitPlanError } from "../engine/multi_gpu_plan.ts";
import { ModelNotFoundError } from "../models/model_names.ts";
import { PullError } from "../models/hf_hub.ts";
import { GenerationError } from "../engine/errors.ts";
import { ContextCreateError, LibraryNotFoundError, ModelLoadError } from "../ffi/mod.ts";
import { benchMain } from "./bench.ts";
import { discoverMain } from "./discover.ts";
import { generateMain } from "./generate.ts";
import { gpuInfoMain } from "./gpu_info.ts";
import { initMain } from "./init.ts";
import { listMain } from "./list.ts";
import { probeMain } from "./probe.ts";
import { pullMain } from "./pull.ts";
import { runMain } from "./run.ts";
import { closestMatch } from "./suggest.ts";
import { unknownVariableWarnings } from "./env_check.ts";
import { serveMain } from "./serve.ts";
import { contextSize, extractGlobalFlags, type GlobalFlags } from "./global_flags.ts";
import { UsageError } from "./usage_error.ts";
import { LLAMA_CPP_VERSION, VERSION } from "../version.ts";
import { describeLibraries } from "../ffi/library.ts";

const USAGE = `shimmy ${VERSION}: a local LLM server for GGUF models

Usage: shimmy [--model-dirs DIRS] [--gpu-backend B] [--verbose] <command> [options]

Commands:
  pull       Download a model from the Hugging Face Hub (shimmy pull --help)
  run        Chat with a model in the terminal, or answer one prompt (shimmy run --help)
  serve      Serve models over HTTP (shimmy serve --help)
  generate   Run one generation and print it (shimmy generate --help)
  list       List the models found on this machine (shimmy list --help)
  discover   Search again: what was found where, what was skipped and why
  probe      Load a model and report its layers, memory and template
  gpu-info   The compute devices llama.cpp sees, and which one auto picks
  init       Write a Dockerfile, Kubernetes, Railway or Fly.io files, or an app using Shimmy
  bench      Prompt and generation speed of a model through the engine

Global flags (before or after the command):
  --model-dirs DIRS    Extra model folders, ';'-separated
  --gpu-backend B      auto | cpu | cuda | vulkan | metal
  --verbose            Show llama.cpp's log
  --ctx N              Context tokens where a command's --ctx-size is not given
                       (SHIMMY_MAX_CTX too)
  --version, -V        Print the version
  --help               This help

Environment (the flags' help names each beside its flag):
  SHIMMY_BIND_ADDRESS, SHIMMY_API_KEY, SHIMMY_ORIGINS, SHIMMY_ALLOWED_HOSTS,
  SHIMMY_OLLAMA_BIND, SHIMMY_DEVICE_SAMPLING, SHIMMY_POOLING, SHIMMY_SLOT_SAVE_PATH,
  SHIMMY_SLOT_SAVE_MAX_SIZE, SHIMMY_LORA_GGUF (serve);
  SHIMMY_BASE_GGUF (a model named tinyllama-1.1b),
  SHIMMY_MODEL_PATHS (model folders, like --model-dirs), SHIMMY_MAX_CTX (like --ctx),
  SHIMMY_LIB_DIR (the folder of libllama), SHIMMY_CACHE_DIR (Shimmy's cache)

Start here:
  shimmy pull Qwen/Qwen2.5-0.5B-Instruct-GGUF     # a 0.5B instruct model, about 490 MB
  shimmy run Qwen/Qwen2.5-0.5B-Instruct-GGUF      # chat with it in the terminal
  shimmy serve --model Qwen/Qwen2.5-0.5B-Instruct-GGUF   # OpenAI API on 127.0.0.1:11435`;

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

/** Flags that may come before the command. */
const GLOBAL_FLAG_NAMES = ["model-dirs", "gpu-backend", "verbose", "ctx", "version", "help"];

type Command = (args: string[], globals: GlobalFlags) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  bench: benchMain,
  discover: discoverMain,
  generate: generateMain,
  "gpu-info": gpuInfoMain,
  init: initMain,
  list: listMain,
  probe: probeMain,
  pull: pullMain,
  run: runMain,
  serve: serveMain,
};

/** Errors whose message is enough for the user: printed as one line, no stack. */
const EXPECTED_ERRORS = [
  UsageError,
  ModelNotFoundError,
  ModelLoadError,
  LibraryNotFoundError,
  GpuUnavailableError,
  SplitPlanError,
  GenerationError,
  ContextCreateError,
  PullError,
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
    const maxCtx = Deno.env.get("SHIMMY_MAX_CTX");
    if (flags.ctxSize === undefined && maxCtx !== undefined) {
      flags.ctxSize = contextSize("SHIMMY_MAX_CTX", maxCtx);
    }
    const [command, ...args] = rest;
    if (command === "--version" || command === "-V" || command === "version") {
      console.log(versionLine(flags));
      return 0;
    }
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      console.log(USAGE);
      return command === undefined ? 1 : 0;
    }
    const run = COMMANDS[command];
    if (!run && command.startsWith("-")) {
      const name = command.replace(/^-+/, "").split("=")[0] ?? "";
      const suggestion = closestMatch(name, GLOBAL_FLAG_NAMES);
      throw new UsageError(
        `Unknown flag ${command}${suggestion ? ` (did you mean --${suggestion}?)` : ""}` +
          "; command flags go after the command",
        { pointToHelp: true },
      );
    }
    if (!run) {
      const suggestion = closestMatch(command, Object.keys(COMMANDS));
      throw new UsageError(
        `Unknown command "${command}"${suggestion ? ` (did you mean "${suggestion}"?)` : ""}`,
        { pointToHelp: true },
      );
    }
    for (const warning of unknownVariableWarnings(Object.keys(Deno.env.toObject()))) {
      console.error(`shimmy: warning: ${warning}`);
    }
    try {
      return await run(args, flags);
    } catch (error) {
      if (error instanceof UsageError && error.pointToHelp) {
        console.error(`shimmy: ${error.message}; see shimmy ${command} --help`);
        return 1;
      }
      throw error;
    }
  } catch (error) {
    if (error instanceof UsageError && error.pointToHelp) {
      console.error(`shimmy: ${error.message}; see shimmy --help`);
      return 1;
    }
    if (EXPECTED_ERRORS.some((kind) => error instanceof kind)) {
      console.error(`shimmy: ${(error as Error).message}`);
      return 1;
    }
    // Anything else is a bug or an environment problem: one line, the stack only on request.
    const verbose = argv.includes("--verbose") || argv.includes("-v");
    const message = (error as Error)?.message ?? String(error);
    console.error(`shimmy: ${message}${verbose ? "" : " (--verbose shows the details)"}`);
    if (verbose) console.error((error as Error)?.stack);
    return 1;
  }
}
