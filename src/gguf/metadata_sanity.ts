/**
 * Metadata values that llama.cpp asserts on (ending the process) where it should refuse the file:
 * checked before a model reaches it, so that a corrupt or hostile GGUF in a models folder is an
 * error for its own requests, not the end of the server.
 *
 * @module
 */

import type { GgufValue } from "./types.ts";

/** Most layers llama.cpp's model structures hold (`LLAMA_MAX_LAYERS`). */
const MAX_LAYERS = 512;

/**
 * What in a model's metadata llama.cpp would abort on: a layer count (`<arch>.block_count`) that
 * is not 1 to 512, or a norm epsilon (`<arch>.…epsilon`) that is not a finite positive number.
 *
 * @param metadata The GGUF's metadata.
 * @returns The problem, or undefined when none was found.
 * @example
 * ```ts
 * const info = await readGgufInfo("model.gguf");
 * metadataProblem(info.metadata); // undefined, or "llama.block_count is 0, not a layer count"
 * ```
 */
export function metadataProblem(metadata: Record<string, GgufValue>): string | undefined {
  const arch = metadata["general.architecture"]?.value;
  if (typeof arch !== "string") return undefined;
  const layers = numberOf(metadata[`${arch}.block_count`]);
  if (layers !== undefined && !(Number.isInteger(layers) && layers >= 1 && layers <= MAX_LAYERS)) {
    return `${arch}.block_count is ${layers}, not a layer count from 1 to ${MAX_LAYERS}`;
  }
  for (const [key, entry] of Object.entries(metadata)) {
    if (!key.startsWith(`${arch}.`) || !key.endsWith("epsilon")) continue;
    const epsilon = numberOf(entry);
    if (epsilon !== undefined && !(Number.isFinite(epsilon) && epsilon > 0)) {
      return `${key} is ${epsilon}, not a small positive number`;
    }
  }
  return undefined;
}

/** A scalar number value (a 64-bit one as a number); undefined for anything else. */
function numberOf(entry: GgufValue | undefined): number | undefined {
  if (entry === undefined) return undefined;
  if (typeof entry.value === "number") return entry.value;
  if (typeof entry.value === "bigint") return Number(entry.value);
  return undefined;
}
