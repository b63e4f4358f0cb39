/**
 * The element types a KV cache may be kept in (llama-server's `--cache-type-k` / `--cache-type-v`
 * values): f16 by default; q8_0 halves the cache's memory and q4_0 quarters it, at a small cost
 * in quality, so a longer context or more slots fit. llama.cpp quantizes V only for fused
 * attention, which a quantized V therefore turns on.
 *
 * @module
 */

import { GGML_TYPE_LAYOUTS, GgmlType } from "../gguf/types.ts";

/** A KV cache element type, by its name in llama.cpp's tools. */
export type KvCacheType = keyof typeof KV_CACHE_GGML_TYPES;

/** Each KV cache type's ggml type, in the order llama.cpp's tools list them. */
export const KV_CACHE_GGML_TYPES = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  bf16: GgmlType.BF16,
  q8_0: GgmlType.Q8_0,
  q4_0: GgmlType.Q4_0,
  q4_1: GgmlType.Q4_1,
  iq4_nl: GgmlType.IQ4_NL,
  q5_0: GgmlType.Q5_0,
  q5_1: GgmlType.Q5_1,
} as const;

/** The KV cache's types of keys and values. */
export interface KvCacheTypes {
  k: KvCacheType;
  v: KvCacheType;
}

/** llama.cpp's default: both f16. */
export const DEFAULT_KV_CACHE_TYPES: Readonly<KvCacheTypes> = Object.freeze({ k: "f16", v: "f16" });

/**
 * Reads a KV cache type's name.
 *
 * @param value The name, any case (`Q8_0` or `q8_0`).
 * @returns The type, or undefined when it names none.
 * @example
 * ```ts
 * parseKvCacheType("Q8_0"); // "q8_0"
 * parseKvCacheType("q3_k"); // undefined
 * ```
 */
export function parseKvCacheType(value: string): KvCacheType | undefined {
  const lower = value.toLowerCase();
  return lower in KV_CACHE_GGML_TYPES ? lower as KvCacheType : undefined;
}

/** The names of the KV cache types, for messages and help. */
export const KV_CACHE_TYPE_NAMES = Object.keys(KV_CACHE_GGML_TYPES).join(", ");

/**
 * Bytes one element of a KV cache type takes on average (a block's bytes over its elements).
 *
 * @param type The type.
 * @returns E.g. 2 for f16, 1.0625 for q8_0.
 */
export function kvElementBytes(type: KvCacheType): number {
  const { blockSize, typeSize } = GGML_TYPE_LAYOUTS[KV_CACHE_GGML_TYPES[type]];
  return typeSize / blockSize;
}

/**
 * Whether a type is quantized: llama.cpp then needs fused attention for a V cache of it.
 *
 * @param type The type.
 * @returns False for f32, f16 and bf16.
 */
export function isQuantized(type: KvCacheType): boolean {
  return type !== "f32" && type !== "f16" && type !== "bf16";
}
