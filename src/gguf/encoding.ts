/**
 * Conversions between float32 data and the ggml tensor encodings the writer
 * produces: F32, F16 (IEEE 754 binary16) and Q8_0 (blocks of 32 int8 values
 * sharing one fp16 scale). All output is little-endian.
 *
 * @module
 */

import { GgmlType, GgufError } from "./types.ts";

/** Number of elements in one Q8_0 block. */
export const QK8_0 = 32;

/** Bytes in one Q8_0 block: an fp16 scale followed by 32 int8 quants. */
export const Q8_0_BLOCK_BYTES = 2 + QK8_0;

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * Converts a number to the bits of the nearest IEEE 754 half-precision float,
 * rounding ties to even. The number is first rounded to float32, as ggml does.
 * Values beyond the fp16 range become ±Infinity; NaN becomes a quiet NaN.
 *
 * @param value The number to convert.
 * @returns The 16 bits of the half-precision value (0..0xffff).
 *
 * @example
 * ```ts
 * import { float32ToFloat16Bits } from "./encoding.ts";
 * console.log(float32ToFloat16Bits(1).toString(16)); // "3c00"
 * console.log(float32ToFloat16Bits(-2).toString(16)); // "c000"
 * ```
 */
export function float32ToFloat16Bits(value: number): number {
  scratchF32[0] = value;
  const bits = scratchU32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;

  if (exponent === 0xff) {
    return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00;
  }
  // Exponent rebased from float32 (bias 127) to float16 (bias 15).
  const halfExponent = exponent - 112;
  if (halfExponent >= 0x1f) return sign | 0x7c00;

  if (halfExponent <= 0) {
    // Result is subnormal (or zero): value = m * 2^-24.
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let m = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    // A carry into bit 10 correctly yields the smallest normal number.
    return sign | m;
  }

  let m = mantissa >>> 13;
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) m++;
  // A mantissa carry bumps the exponent; reaching 0x7c00 means Infinity.
  return sign | ((halfExponent << 10) + m);
}

/**
 * Converts the bits of an IEEE 754 half-precision float to a number.
 *
 * @param bits The 16 bits of the half-precision value.
 * @returns The value it represents (exact).
 *
 * @example
 * ```ts
 * import { float16BitsToFloat32 } from "./encoding.ts";
 * console.log(float16BitsToFloat32(0x3555)); // 0.333251953125
 * ```
 */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * Encodes float32 values as little-endian F32 bytes.
 *
 * @param values The values to encode.
 * @returns A new buffer of `values.length * 4` bytes.
 *
 * @example
 * ```ts
 * import { encodeF32 } from "./encoding.ts";
 * console.log(encodeF32(new Float32Array([1])).length); // 4
 * ```
 */
export function encodeF32(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(i * 4, values[i]!, true);
  }
  return out;
}

/**
 * Encodes float32 values as little-endian F16 bytes (round to nearest even).
 *
 * @param values The values to encode.
 * @returns A new buffer of `values.length * 2` bytes.
 *
 * @example
 * ```ts
 * import { encodeF16 } from "./encoding.ts";
 * console.log(encodeF16(new Float32Array([1, -2]))); // Uint8Array [0, 60, 0, 192]
 * ```
 */
export function encodeF16(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  for (let i = 0; i < values.length; i++) {
    const bits = float32ToFloat16Bits(values[i]!);
    out[i * 2] = bits & 0xff;
    out[i * 2 + 1] = bits >>> 8;
  }
  return out;
}

/**
 * Decodes little-endian F16 bytes to float32 values.
 *
 * @param bytes The encoded data; its length must be even.
 * @returns The decoded values.
 *
 * @example
 * ```ts
 * import { decodeF16 } from "./encoding.ts";
 * console.log(decodeF16(new Uint8Array([0, 60]))); // Float32Array [1]
 * ```
 */
export function decodeF16(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length >>> 1);
  for (let i = 0; i < out.length; i++) {
    out[i] = float16BitsToFloat32(bytes[i * 2]! | (bytes[i * 2 + 1]! << 8));
  }
  return out;
}

/** Rounds half away from zero, as C's `roundf` does. */
function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/**
 * Quantizes float32 values to Q8_0: for each block of 32 values the scale is
 * `d = max(|x|) / 127` (stored as fp16) and each quant is
 * `q = round(x / d)` (half away from zero, clamped to ±127; 0 when `d` is 0).
 *
 * @param values The values to quantize; the length must be a multiple of 32.
 * @returns A new buffer of `values.length / 32 * 34` bytes.
 * @throws {GgufError} With code `invalid` if the length is not a multiple of 32.
 *
 * @example
 * ```ts
 * import { quantizeQ8_0 } from "./encoding.ts";
 * const block = quantizeQ8_0(new Float32Array(32).fill(0.5));
 * console.log(block.length, block[2]); // 34 127
 * ```
 */
export function quantizeQ8_0(values: Float32Array): Uint8Array {
  if (values.length % QK8_0 !== 0) {
    throw new GgufError(
      "invalid",
      `Cannot quantize ${values.length} values to Q8_0: the count must be a multiple of ${QK8_0}`,
    );
  }
  const blocks = values.length / QK8_0;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  for (let b = 0; b < blocks; b++) {
    const start = b * QK8_0;
    let amax = 0;
    for (let i = 0; i < QK8_0; i++) {
      const a = Math.abs(values[start + i]!);
      if (a > amax) amax = a;
    }
    const d = Math.fround(amax / 127);
    const inverse = d === 0 ? 0 : Math.fround(1 / d);
    const scale = float32ToFloat16Bits(d);
    const at = b * Q8_0_BLOCK_BYTES;
    out[at] = scale & 0xff;
    out[at + 1] = scale >>> 8;
    for (let i = 0; i < QK8_0; i++) {
      let q = roundHalfAwayFromZero(Math.fround(values[start + i]! * inverse));
      if (q > 127) q = 127;
      else if (q < -127) q = -127;
      out[at + 2 + i] = q & 0xff;
    }
  }
  return out;
}

/**
 * Dequantizes Q8_0 blocks back to float32 values (`x = d * q`).
 *
 * @param bytes Q8_0 data; its length must be a multiple of 34.
 * @returns The dequantized values, 32 per block.
 * @throws {GgufError} With code `invalid` if the length is not a whole number of blocks.
 *
 * @example
 * ```ts
 * import { dequantizeQ8_0, quantizeQ8_0 } from "./encoding.ts";
 * const x = dequantizeQ8_0(quantizeQ8_0(new Float32Array(32).fill(0.5)));
 * console.log(x[0]); // 0.4999694824 (the fp16 scale is rounded)
 * ```
 */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  if (bytes.length % Q8_0_BLOCK_BYTES !== 0) {
    throw new GgufError(
      "invalid",
      `Cannot dequantize ${bytes.length} bytes of Q8_0: the length must be a multiple of ${Q8_0_BLOCK_BYTES}`,
    );
  }
  const blocks = bytes.length / Q8_0_BLOCK_BYTES;
  const out = new Float32Array(blocks * QK8_0);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q8_0_BLOCK_BYTES;
    const d = float16BitsToFloat32(bytes[at]! | (bytes[at + 1]! << 8));
    for (let i = 0; i < QK8_0; i++) {
      const byte = bytes[at + 2 + i]!;
      out[b * QK8_0 + i] = d * (byte > 127 ? byte - 256 : byte);
    }
  }
  return out;
}

/** The tensor types {@link encodeTensor} can produce from float32 data. */
export type EncodableType = GgmlType.F32 | GgmlType.F16 | GgmlType.Q8_0;

/**
 * Encodes float32 values in one of the writable ggml types.
 *
 * @param type F32, F16 or Q8_0.
 * @param values The tensor data in ggml order.
 * @returns The encoded bytes.
 * @throws {GgufError} With code `invalid` for another type, or for Q8_0 data
 *   whose length is not a multiple of 32.
 *
 * @example
 * ```ts
 * import { encodeTensor } from "./encoding.ts";
 * import { GgmlType } from "./types.ts";
 * console.log(encodeTensor(GgmlType.F16, new Float32Array(4)).length); // 8
 * ```
 */
export function encodeTensor(type: GgmlType, values: Float32Array): Uint8Array {
  switch (type) {
    case GgmlType.F32:
      return encodeF32(values);
    case GgmlType.F16:
      return encodeF16(values);
    case GgmlType.Q8_0:
      return quantizeQ8_0(values);
    default:
      throw new GgufError(
        "invalid",
        `Cannot encode float32 data as ${
          GgmlType[type] ?? type
        }: use F32, F16 or Q8_0, or add the tensor as raw bytes`,
      );
  }
}
