/**
 * Whether a CPU context's KV cache fits this machine, checked before llama.cpp allocates it: a
 * `--ctx-size` of a billion tokens had it allocating gigabytes for minutes instead of refusing.
 *
 * @module
 */

import { I32_MAX } from "../util/limits.ts";
import { ContextCreateError } from "../ffi/errors.ts";
import type { Model } from "../ffi/model.ts";
import { modelAttentionDims } from "./attention_probe.ts";
import { DEFAULT_KV_CACHE_TYPES, type KvCacheTypes, kvElementBytes } from "./kv_cache_type.ts";

/**
 * Bytes of a KV cache of `cells` tokens: each layer keeps a key and a value row per token for
 * each key/value head, in the cache's element types.
 *
 * @param model The model.
 * @param cells Tokens of the whole context (every slot's).
 * @param types The element types of keys and values. Default f16 for both.
 * @returns The bytes.
 * @example
 * ```ts
 * kvCacheBytes(model, 4096); // 4096 × layers × kv heads × (key + value length) × 2
 * ```
 */
export function kvCacheBytes(
  model: Model,
  cells: number,
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES,
): number {
  const dims = modelAttentionDims(model);
  const row = dims.keyLength * kvElementBytes(types.k) + dims.valueLength * kvElementBytes(types.v);
  return Math.ceil(cells * model.nLayer * dims.headsKv * row);
}

/**
 * Refuses a context whose KV cache, held in this machine's memory (no layer on a GPU), would not
 * fit the memory available, or whose size llama.cpp cannot count.
 *
 * @param model The model.
 * @param cells Tokens of the whole context.
 * @param types The element types of keys and values. Default f16 for both.
 * @param available Bytes of memory available. Default: the system's.
 * @throws {ContextCreateError} naming the sizes and what to lower.
 * @example
 * ```ts
 * checkKvFits(model, slotContext * parallel);
 * ```
 */
export function checkKvFits(
  model: Model,
  cells: number,
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES,
  available = Deno.systemMemoryInfo().available,
): void {
  if (cells > I32_MAX) {
    throw new ContextCreateError(
      `A context of ${cells} tokens is more than llama.cpp counts (${I32_MAX}); lower ` +
        "--ctx-size or --parallel",
    );
  }
  if (model.offload.offloaded > 0) return; // on a GPU, llama.cpp's allocation answers itself
  const bytes = kvCacheBytes(model, cells, types);
  if (bytes > available) {
    const gib = (n: number) => (n / 2 ** 30).toFixed(1);
    throw new ContextCreateError(
      `A context of ${cells} tokens needs ${gib(bytes)} GiB for its KV cache, more than the ` +
        `${gib(available)} GiB of memory available; lower --ctx-size or --parallel`,
    );
  }
}
