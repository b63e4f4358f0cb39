/**
 * What the benchmark needs to know about the model file: its size for the report, and its
 * training context (`ARCH.context_length`), because llama-server caps every slot's context at
 * the training context while Shimmy uses the `--ctx-size` it is given.
 *
 * @module
 */

import { ggufNumber, ggufString, readGgufInfo } from "../../src/gguf/mod.ts";

/** The benchmarked model. */
export interface BenchModel {
  /** The GGUF file. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** `general.architecture`, e.g. "llama". */
  architecture: string;
  /** Training context (`ARCH.context_length`); undefined when the file has none. */
  trainCtx: number | undefined;
}

/**
 * Reads the model's size, architecture and training context from its GGUF header.
 *
 * @param path The GGUF file.
 * @returns The model description.
 * @throws {Error} when the file is not a readable GGUF model.
 * @example
 * ```ts
 * const model = await readBenchModel("tests/fixtures/generated/bench-125m.gguf");
 * console.log(model.trainCtx); // 2048
 * ```
 */
export async function readBenchModel(path: string): Promise<BenchModel> {
  const info = await readGgufInfo(path);
  const architecture = ggufString(info, "general.architecture") ?? "llama";
  return {
    path,
    bytes: (await Deno.stat(path)).size,
    architecture,
    trainCtx: ggufNumber(info, `${architecture}.context_length`),
  };
}

/**
 * The `--override-kv` value that lets llama-server give each slot `ctxSize` tokens of context
 * when that is more than the model was trained with (it caps a slot's context at the training
 * context). It changes only that number, which a model without RoPE scaling does not otherwise
 * use, so both servers compute the same thing.
 *
 * @param model The model.
 * @param ctxSize Context per request.
 * @returns `ARCH.context_length=int:CTX`, or undefined when no override is needed.
 * @example
 * ```ts
 * contextOverride({ ...model, trainCtx: 2048 }, 4200); // "llama.context_length=int:4200"
 * ```
 */
export function contextOverride(model: BenchModel, ctxSize: number): string | undefined {
  if (model.trainCtx === undefined || ctxSize <= model.trainCtx) return undefined;
  return `${model.architecture}.context_length=int:${ctxSize}`;
}
