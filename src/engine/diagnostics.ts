/**
 * What the runtime reports about itself (library folder, CPU features, devices) and the
 * native error types the server maps to HTTP statuses, so the server layer never imports
 * `src/ffi` directly.
 *
 * @module
 */

import { Llama } from "../ffi/llama.ts";

export { ContextCreateError, DecodeError, ModelLoadError } from "../ffi/errors.ts";

/** The runtime as `/diag` shows it. */
export interface RuntimeInfo {
  /** Folder the native libraries were loaded from. */
  libDir: string;
  /** llama.cpp's system info line (CPU features, backends). */
  systemInfo: string;
  /** Devices ggml sees. */
  devices: ReturnType<Llama["devices"]>;
}

/**
 * Describes the loaded runtime.
 *
 * @returns Library folder, system info and devices.
 * @example
 * ```ts
 * console.log(runtimeInfo().systemInfo);
 * ```
 */
export function runtimeInfo(): RuntimeInfo {
  const llama = Llama.open();
  return { libDir: llama.libDir, systemInfo: llama.systemInfo(), devices: llama.devices() };
}
