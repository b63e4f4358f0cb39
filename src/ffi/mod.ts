/**
 * The FFI layer: the only place that touches pointers.
 *
 * @module
 */

export * from "./batch.ts";
export * from "./context.ts";
export * from "./errors.ts";
export * from "./handle.ts";
export * from "./library.ts";
export * from "./llama.ts";
export * from "./lora.ts";
export * from "./model.ts";
export * from "./sampler.ts";
