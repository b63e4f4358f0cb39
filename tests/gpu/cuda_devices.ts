/**
 * The CUDA devices the GPU tests run on: libllama opened for CUDA (`SHIMMY_LIB_DIR` holding the
 * libraries of `scripts/build-libllama.sh --cuda`), or none where that build is absent.
 */

import { LibraryNotFoundError } from "../../src/ffi/library.ts";
import { type DeviceInfo, Llama } from "../../src/ffi/llama.ts";

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
