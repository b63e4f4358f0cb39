/**
 * Shared GGUF definitions: metadata value types, ggml tensor types with their
 * block layouts, the value model used by the reader and writer, and the typed
 * {@link GgufError}.
 *
 * The numeric values mirror `gguf.h` and `ggml.h` of llama.cpp (pinned tag
 * v0.5.0); a GGUF file stores them as 32-bit integers.
 *
 * @module
 */

/** The GGUF format version written by {@link GgufWriter} and the newest one read. */
export const GGUF_VERSION = 3;

/** The 4-byte magic at the start of every GGUF file ("GGUF" in ASCII). */
export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32

/** Alignment of the tensor data section when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** ggml's limit on tensor name length in bytes, terminating NUL included. */
export const GGML_MAX_NAME = 64;

/** ggml's limit on the number of tensor dimensions. */
export const GGML_MAX_DIMS = 4;

/**
 * The type tag of a GGUF metadata value (`enum gguf_type`).
 *
 * @example Naming a type
 * ```ts
 * import { GgufValueType } from "./types.ts";
 * console.log(GgufValueType[GgufValueType.FLOAT32]); // "FLOAT32"
 * ```
 */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/**
 * The ggml tensor data types (`enum ggml_type`). Values that ggml has retired
 * (4, 5, 31..33, 36..38) are absent, as they are from `ggml.h`.
 *
 * @example Naming a type
 * ```ts
 * import { GgmlType } from "./types.ts";
 * console.log(GgmlType[12]); // "Q4_K"
 * ```
 */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

/** How a ggml type packs elements: `blockSize` elements take `typeSize` bytes. */
export interface GgmlTypeLayout {
  /** Number of elements in one block (1 for plain types). */
  readonly blockSize: number;
  /** Number of bytes one block takes. */
  readonly typeSize: number;
}

/**
 * Block layout of every known ggml type, from ggml's `type_traits` table and
 * the block structs in `ggml-common.h` (sizes checked with the C compiler).
 */
export const GGML_TYPE_LAYOUTS: Readonly<Record<GgmlType, GgmlTypeLayout>> = {
  [GgmlType.F32]: { blockSize: 1, typeSize: 4 },
  [GgmlType.F16]: { blockSize: 1, typeSize: 2 },
  [GgmlType.Q4_0]: { blockSize: 32, typeSize: 18 },
  [GgmlType.Q4_1]: { blockSize: 32, typeSize: 20 },
  [GgmlType.Q5_0]: { blockSize: 32, typeSize: 22 },
  [GgmlType.Q5_1]: { blockSize: 32, typeSize: 24 },
  [GgmlType.Q8_0]: { blockSize: 32, typeSize: 34 },
  [GgmlType.Q8_1]: { blockSize: 32, typeSize: 36 },
  [GgmlType.Q2_K]: { blockSize: 256, typeSize: 84 },
  [GgmlType.Q3_K]: { blockSize: 256, typeSize: 110 },
  [GgmlType.Q4_K]: { blockSize: 256, typeSize: 144 },
  [GgmlType.Q5_K]: { blockSize: 256, typeSize: 176 },
  [GgmlType.Q6_K]: { blockSize: 256, typeSize: 210 },
  [GgmlType.Q8_K]: { blockSize: 256, typeSize: 292 },
  [GgmlType.IQ2_XXS]: { blockSize: 256, typeSize: 66 },
  [GgmlType.IQ2_XS]: { blockSize: 256, typeSize: 74 },
  [GgmlType.IQ3_XXS]: { blockSize: 256, typeSize: 98 },
  [GgmlType.IQ1_S]: { blockSize: 256, typeSize: 50 },
  [GgmlType.IQ4_NL]: { blockSize: 32, typeSize: 18 },
  [GgmlType.IQ3_S]: { blockSize: 256, typeSize: 110 },
  [GgmlType.IQ2_S]: { blockSize: 256, typeSize: 82 },
  [GgmlType.IQ4_XS]: { blockSize: 256, typeSize: 136 },
  [GgmlType.I8]: { blockSize: 1, typeSize: 1 },
  [GgmlType.I16]: { blockSize: 1, typeSize: 2 },
  [GgmlType.I32]: { blockSize: 1, typeSize: 4 },
  [GgmlType.I64]: { blockSize: 1, typeSize: 8 },
  [GgmlType.F64]: { blockSize: 1, typeSize: 8 },
  [GgmlType.IQ1_M]: { blockSize: 256, typeSize: 56 },
  [GgmlType.BF16]: { blockSize: 1, typeSize: 2 },
  [GgmlType.TQ1_0]: { blockSize: 256, typeSize: 54 },
  [GgmlType.TQ2_0]: { blockSize: 256, typeSize: 66 },
  [GgmlType.MXFP4]: { blockSize: 32, typeSize: 17 },
  [GgmlType.NVFP4]: { blockSize: 64, typeSize: 36 },
  [GgmlType.Q1_0]: { blockSize: 128, typeSize: 18 },
  [GgmlType.Q2_0]: { blockSize: 64, typeSize: 18 },
};

/**
 * Returns the block layout of a ggml type, or `undefined` for a type number
 * this module does not know (for example one added by a newer ggml).
 *
 * @param type A ggml type number as stored in a GGUF tensor record.
 * @returns The layout, or `undefined` when the type is unknown.
 *
 * @example
 * ```ts
 * import { GgmlType, ggmlTypeLayout } from "./types.ts";
 * console.log(ggmlTypeLayout(GgmlType.Q8_0)); // { blockSize: 32, typeSize: 34 }
 * ```
 */
export function ggmlTypeLayout(type: number): GgmlTypeLayout | undefined {
  return Object.hasOwn(GGML_TYPE_LAYOUTS, type) ? GGML_TYPE_LAYOUTS[type as GgmlType] : undefined;
}

/**
 * Returns the name of a ggml type ("F32", "Q4_K", ...) or `"UNKNOWN(n)"`.
 *
 * @param type A ggml type number.
 * @returns The enum name used by ggml without its `GGML_TYPE_` prefix.
 *
 * @example
 * ```ts
 * import { ggmlTypeName } from "./types.ts";
 * console.log(ggmlTypeName(14)); // "Q6_K"
 * ```
 */
export function ggmlTypeName(type: number): string {
  return ggmlTypeLayout(type) === undefined ? `UNKNOWN(${type})` : GgmlType[type as GgmlType];
}

/**
 * Returns the number of bytes a tensor of the given type and shape occupies,
 * or `undefined` when the type is unknown or the row length is not a whole
 * number of blocks.
 *
 * @param type A ggml type number.
 * @param shape The tensor shape in ggml order (`shape[0]` is the row length).
 * @returns The data size in bytes, without alignment padding.
 *
 * @example
 * ```ts
 * import { GgmlType, ggmlTensorBytes } from "./types.ts";
 * console.log(ggmlTensorBytes(GgmlType.Q8_0, [64, 2])); // 136
 * ```
 */
export function ggmlTensorBytes(
  type: number,
  shape: readonly number[],
): number | undefined {
  const layout = ggmlTypeLayout(type);
  if (layout === undefined) return undefined;
  const rowLength = shape[0] ?? 1;
  if (rowLength % layout.blockSize !== 0) return undefined;
  let rows = 1;
  for (let i = 1; i < shape.length; i++) rows *= shape[i]!;
  return (rowLength / layout.blockSize) * layout.typeSize * rows;
}

/** The value types a GGUF array may hold (nested arrays are not supported). */
export type GgufItemType = Exclude<GgufValueType, GgufValueType.ARRAY>;

/** Value types read into JS `number`s. */
export type GgufNumberType =
  | GgufValueType.UINT8
  | GgufValueType.INT8
  | GgufValueType.UINT16
  | GgufValueType.INT16
  | GgufValueType.UINT32
  | GgufValueType.INT32
  | GgufValueType.FLOAT32
  | GgufValueType.FLOAT64;

/** The 64-bit integer value types. */
export type GgufBigIntType = GgufValueType.UINT64 | GgufValueType.INT64;

/**
 * A 64-bit integer: a `number` when its magnitude is at most
 * `Number.MAX_SAFE_INTEGER`, otherwise a `bigint`. The writer accepts either.
 */
export type GgufInt64 = number | bigint;

/**
 * A GGUF array: the element type is kept in `itemType` so that a value read
 * from one file can be written to another unchanged.
 */
export type GgufArrayValue =
  | {
    readonly type: GgufValueType.ARRAY;
    readonly itemType: GgufNumberType;
    readonly value: number[];
  }
  | {
    readonly type: GgufValueType.ARRAY;
    readonly itemType: GgufBigIntType;
    readonly value: GgufInt64[];
  }
  | {
    readonly type: GgufValueType.ARRAY;
    readonly itemType: GgufValueType.BOOL;
    readonly value: boolean[];
  }
  | {
    readonly type: GgufValueType.ARRAY;
    readonly itemType: GgufValueType.STRING;
    readonly value: string[];
  };

/**
 * One metadata value together with its GGUF type, so that the reader's output
 * can be handed back to {@link GgufWriter.set} with every type preserved.
 *
 * Mapping to JS: 8/16/32-bit integers and floats are `number`s; 64-bit
 * integers are {@link GgufInt64} (`number` when safe, else `bigint`); bools
 * are `boolean`; strings are UTF-8 decoded `string`s; arrays are plain JS
 * arrays of those, with the element type in `itemType`.
 */
export type GgufValue =
  | { readonly type: GgufNumberType; readonly value: number }
  | { readonly type: GgufBigIntType; readonly value: GgufInt64 }
  | { readonly type: GgufValueType.BOOL; readonly value: boolean }
  | { readonly type: GgufValueType.STRING; readonly value: string }
  | GgufArrayValue;

/** One entry of a GGUF file's tensor index. */
export interface GgufTensorInfo {
  /** Tensor name, e.g. `"blk.0.attn_q.weight"`. */
  readonly name: string;
  /** Dimensions in ggml order: `shape[0]` is the contiguous row length. */
  readonly shape: readonly number[];
  /** ggml type number (see {@link GgmlType}; may be one this module does not know). */
  readonly type: number;
  /** Offset of the tensor data relative to {@link GgufInfo.dataOffset}. */
  readonly offset: number;
  /** Size of the tensor data in bytes, or `undefined` for an unknown type. */
  readonly byteSize: number | undefined;
}

/** The parsed header of a GGUF file: everything before the tensor data. */
export interface GgufInfo {
  /** GGUF format version (2 or 3). */
  readonly version: number;
  /**
   * Metadata in file order. The object has the normal prototype; keys are own
   * properties even when named like `__proto__`.
   */
  readonly metadata: Record<string, GgufValue>;
  /** Tensor index in file order. */
  readonly tensors: readonly GgufTensorInfo[];
  /** Alignment of the data section (`general.alignment`, default 32). */
  readonly alignment: number;
  /** Absolute file offset where the tensor data section starts. */
  readonly dataOffset: number;
  /** Size of the file in bytes. */
  readonly fileSize: number;
}

/** Why a GGUF operation failed; see {@link GgufError.code}. */
export type GgufErrorCode =
  | "not_found"
  | "not_gguf"
  | "truncated"
  | "unsupported_version"
  | "invalid";

/**
 * A failure to read or write GGUF data. `code` says what went wrong:
 *
 * - `not_found`: the file does not exist.
 * - `not_gguf`: the file does not start with the GGUF magic.
 * - `truncated`: the file ends before the content its header declares.
 * - `unsupported_version`: the GGUF version is not 2 or 3 (or has the wrong
 *   byte order).
 * - `invalid`: the content is malformed (absurd counts, bad types, duplicate
 *   names, misaligned offsets) or a writer argument is not valid.
 *
 * @example Telling a truncated download from a wrong file
 * ```ts
 * import { GgufError } from "./types.ts";
 * import { readGgufInfo } from "./reader.ts";
 * try {
 *   await readGgufInfo("model.gguf");
 * } catch (error) {
 *   if (error instanceof GgufError && error.code === "truncated") {
 *     console.error("Download the model again");
 *   }
 * }
 * ```
 */
export class GgufError extends Error {
  /** What kind of failure this is. */
  readonly code: GgufErrorCode;

  /**
   * Creates a GGUF error.
   *
   * @param code What kind of failure this is.
   * @param message A capitalised sentence without trailing period.
   * @param options Standard error options, e.g. the underlying `cause`.
   */
  constructor(code: GgufErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GgufError";
    this.code = code;
  }
}
