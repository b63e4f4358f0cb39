/**
 * What the GPU tests share: the CUDA devices they run on (libllama opened for CUDA, with
 * `SHIMMY_LIB_DIR` holding the libraries of `scripts/build-libllama.sh --cuda`; none where that
 * build is absent) and a greedy `shimmy generate`.
 */

import { equal } from "node:assert/strict";
import { LibraryNotFoundError } from "../../src/ffi/library.ts";
import { type DeviceInfo, Llama } from "../../src/ffi/llama.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { runShimmy } from "../helpers.ts";

function openLlama(): Llama | undefined {
  try {
    return Llama.open({ gpuBackend: "cuda" });
  } catch (error) {
    if (!(error instanceof LibraryNotFoundError)) throw error;
    return undefined;
  }
}

/** libllama opened for CUDA, or undefined where no CUDA build is found. */
export const cudaLlama: Llama | undefined = openLlama();

/** The CUDA devices in ggml's list, in order; empty where {@link cudaLlama} is undefined. */
export const cudaDevices: DeviceInfo[] =
  cudaLlama?.devices().filter((device) => device.backend.toUpperCase().startsWith("CUDA")) ?? [];

/**
 * Runs a greedy `shimmy generate --raw --json` and returns its report.
 *
 * @param options The backend, how many tokens, the prompt, the fixture model and extra flags.
 * @returns The parsed JSON report (`tokens`, `text`, `offload`, `load_params`, `timings`…).
 */
export async function greedyGenerate(options: {
  backend: string;
  tokens: number;
  prompt: string;
  model: string;
  flags?: string[];
}) {
  const run = await runShimmy([
    "generate",
    "--gpu-backend",
    options.backend,
    "--model",
    await fixtureModel(options.model),
    "--prompt",
    options.prompt,
    "--temperature",
    "0",
    "--max-tokens",
    String(options.tokens),
    "--raw",
    "--json",
    ...(options.flags ?? []),
  ]);
  equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}
