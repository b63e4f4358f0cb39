/**
 * GGUF reading and writing: {@link readGgufInfo} parses a file's header
 * (metadata and tensor index) without loading tensor data, and
 * {@link GgufWriter} builds GGUF v3 files with F32, F16 or Q8_0 tensors.
 *
 * @example Inspecting a model
 * ```ts
 * import { ggufString, readGgufInfo } from "./mod.ts";
 * const info = await readGgufInfo("model.gguf");
 * console.log(ggufString(info, "general.architecture"), info.tensors.length);
 * ```
 *
 * @module
 */

export * from "./types.ts";
export * from "./encoding.ts";
export * from "./reader.ts";
export * from "./writer.ts";
