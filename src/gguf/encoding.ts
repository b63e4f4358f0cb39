/**
 * Conversions between float32 data and the ggml tensor encodings the writer
 * produces: F32, F16 (IEEE 754 binary16), Q8_0 (blocks of 32 int8 values
 * sharing one fp16 scale) and Q4_0 (blocks of 32 4-bit values sharing one fp16
 * scale). All output is little-endian.
 *
 * Each encoder also has an `...Into` form that writes into a caller's buffer,
 * so large tensors can be encoded a chunk of rows at a time without a second
 * full-size copy.
 *
 * @module
 */

import { GgmlType, GgufError } from "./types.ts";

/** Number of elements in one Q8_0 block. */
export const QK8_0 = 32;

/** Bytes in one Q8_0 block: an fp16 scale followed by 32 int8 quants. */
export const Q8_0_BLOCK_BYTES = 2 + QK8_0;

/** Number of elements in one Q4_0 block. */
export const QK4_0 = 32;

/** Bytes in one Q4_0 block: an fp16 scale followed by 16 bytes of packed 4-bit quants. */
export const Q4_0_BLOCK_BYTES = 2 + QK4_0 / 2;

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

/** Writes `values` as little-endian F32 at `out[offset..]`. */
function writeF32(values: Float32Array, out: Uint8Array, offset: number) {
  const view = new DataView(out.buffer, out.byteOffset + offset, values.length * 4);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(i * 4, values[i]!, true);
  }
}

/** Writes `values` as little-endian F16 at `out[offset..]`. */
function writeF16(values: Float32Array, out: Uint8Array, offset: number) {
  for (let i = 0; i < values.length; i++) {
    const bits = float32ToFloat16Bits(values[i]!);
    out[offset + i * 2] = bits & 0xff;
    out[offset + i * 2 + 1] = bits >>> 8;
  }
}

/** Rounds half away from zero, as C's `roundf` does. */
function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** Writes whole Q8_0 blocks of `values` at `out[offset..]`. */
function writeQ8_0(values: Float32Array, out: Uint8Array, offset: number) {
  const blocks = values.length / QK8_0;
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
    const at = offset + b * Q8_0_BLOCK_BYTES;
    out[at] = scale & 0xff;
    out[at + 1] = scale >>> 8;
    for (let i = 0; i < QK8_0; i++) {
      let q = roundHalfAwayFromZero(Math.fround(values[start + i]! * inverse));
      if (q > 127) q = 127;
      else if (q < -127) q = -127;
      out[at + 2 + i] = q & 0xff;
    }
  }
}

/**
 * Writes whole Q4_0 blocks of `values` at `out[offset..]`. Every step is
 * rounded to float32 as in ggml's reference quantizer, so the bytes match it.
 */
function writeQ4_0(values: Float32Array, out: Uint8Array, offset: number) {
  const blocks = values.length / QK4_0;
  const half = QK4_0 / 2;
  for (let b = 0; b < blocks; b++) {
    const start = b * QK4_0;
    // The value of largest magnitude, keeping its sign; the first one wins ties.
    let amax = 0;
    let max = 0;
    for (let i = 0; i < QK4_0; i++) {
      const v = values[start + i]!;
      const a = Math.abs(v);
      if (a > amax) {
        amax = a;
        max = v;
      }
    }
    // That value maps to quant 0 (-8·d); the opposite end reaches +7·d.
    const d = Math.fround(max / -8);
    const inverse = d === 0 ? 0 : Math.fround(1 / d);
    const scale = float32ToFloat16Bits(d);
    const at = offset + b * Q4_0_BLOCK_BYTES;
    out[at] = scale & 0xff;
    out[at + 1] = scale >>> 8;
    for (let i = 0; i < half; i++) {
      // q = trunc(x/d + 8.5), i.e. round(x/d) + 8 with halves rounded up, capped at 15.
      let lo = Math.fround(Math.fround(values[start + i]! * inverse) + 8.5) | 0;
      let hi = Math.fround(Math.fround(values[start + half + i]! * inverse) + 8.5) | 0;
      if (lo > 15) lo = 15;
      if (hi > 15) hi = 15;
      // Element i goes in the low nibble of byte i, element i + 16 in its high nibble.
      out[at + 2 + i] = lo | (hi << 4);
    }
  }
}

/** Throws unless `count` values make whole blocks of `blockSize`. */
function checkBlocks(type: string, count: number, blockSize: number) {
  if (count % blockSize !== 0) {
    throw new GgufError(
      "invalid",
      `Cannot quantize ${count} values to ${type}: the count must be a multiple of ${blockSize}`,
    );
  }
}

/** Throws unless `bytes` is a whole number of `blockBytes` blocks. */
function checkEncodedBlocks(type: string, bytes: Uint8Array, blockBytes: number) {
  if (bytes.length % blockBytes !== 0) {
    throw new GgufError(
      "invalid",
      `Cannot dequantize ${bytes.length} bytes of ${type}: the length must be a multiple of ${blockBytes}`,
    );
  }
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
  writeF32(values, out, 0);
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
  writeF16(values, out, 0);
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
  checkBlocks("Q8_0", values.length, QK8_0);
  const out = new Uint8Array((values.length / QK8_0) * Q8_0_BLOCK_BYTES);
  writeQ8_0(values, out, 0);
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
  checkEncodedBlocks("Q8_0", bytes, Q8_0_BLOCK_BYTES);
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

/**
 * Quantizes float32 values to Q4_0, byte for byte as ggml's reference
 * quantizer does. For each block of 32 values, let `m` be the value of largest
 * magnitude (the first one on ties, sign kept): the scale is `d = m / -8`
 * (stored as fp16, so `m` itself maps to quant 0) and each quant is
 * `q = min(15, trunc(x / d + 8.5))`, all in float32 arithmetic (every quant
 * is 8 when `d` is 0). The block is the 2-byte scale followed by 16 bytes:
 * byte `i` holds the quant of element `i` in its low nibble and that of
 * element `i + 16` in its high nibble.
 *
 * @param values The values to quantize; the length must be a multiple of 32.
 * @returns A new buffer of `values.length / 32 * 18` bytes.
 * @throws {GgufError} With code `invalid` if the length is not a multiple of 32.
 *
 * @example
 * ```ts
 * import { quantizeQ4_0 } from "./encoding.ts";
 * const block = quantizeQ4_0(new Float32Array(32).fill(-8));
 * console.log(block.length, block[0], block[1], block[2]); // 18 0 60 0 (d = 1, every q = 0)
 * ```
 */
export function quantizeQ4_0(values: Float32Array): Uint8Array {
  checkBlocks("Q4_0", values.length, QK4_0);
  const out = new Uint8Array((values.length / QK4_0) * Q4_0_BLOCK_BYTES);
  writeQ4_0(values, out, 0);
  return out;
}

/**
 * Dequantizes Q4_0 blocks back to float32 values (`x = d * (q - 8)`).
 *
 * @param bytes Q4_0 data; its length must be a multiple of 18.
 * @returns The dequantized values, 32 per block.
 * @throws {GgufError} With code `invalid` if the length is not a whole number of blocks.
 *
 * @example
 * ```ts
 * import { dequantizeQ4_0, quantizeQ4_0 } from "./encoding.ts";
 * const x = dequantizeQ4_0(quantizeQ4_0(new Float32Array(32).fill(-8)));
 * console.log(x[0]); // -8
 * ```
 */
export function dequantizeQ4_0(bytes: Uint8Array): Float32Array {
  checkEncodedBlocks("Q4_0", bytes, Q4_0_BLOCK_BYTES);
  const blocks = bytes.length / Q4_0_BLOCK_BYTES;
  const half = QK4_0 / 2;
  const out = new Float32Array(blocks * QK4_0);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q4_0_BLOCK_BYTES;
    const d = float16BitsToFloat32(bytes[at]! | (bytes[at + 1]! << 8));
    for (let i = 0; i < half; i++) {
      const byte = bytes[at + 2 + i]!;
      out[b * QK4_0 + i] = d * ((byte & 0x0f) - 8);
      out[b * QK4_0 + half + i] = d * ((byte >>> 4) - 8);
    }
  }
  return out;
}

/** The tensor types {@link encodeTensor} can produce from float32 data. */
export type EncodableType = GgmlType.F32 | GgmlType.F16 | GgmlType.Q8_0 | GgmlType.Q4_0;

/** Size and block length of each encodable type, for {@link encodeTensorInto}. */
const LAYOUTS: Readonly<
  Record<EncodableType, { readonly blockSize: number; readonly blockBytes: number }>
> = {
  [GgmlType.F32]: { blockSize: 1, blockBytes: 4 },
  [GgmlType.F16]: { blockSize: 1, blockBytes: 2 },
  [GgmlType.Q8_0]: { blockSize: QK8_0, blockBytes: Q8_0_BLOCK_BYTES },
  [GgmlType.Q4_0]: { blockSize: QK4_0, blockBytes: Q4_0_BLOCK_BYTES },
};

function cannotEncode(type: GgmlType): GgufError {
  return new GgufError(
    "invalid",
    `Cannot encode float32 data as ${
      GgmlType[type] ?? type
    }: use F32, F16, Q8_0 or Q4_0, or add the tensor as raw bytes`,
  );
}

/**
 * Encodes float32 values in one of the writable ggml types into an existing
 * buffer. Encoding a tensor a chunk of whole rows at a time this way gives the
 * same bytes as {@link encodeTensor} on the whole tensor, without holding its
 * float32 data.
 *
 * @param type F32, F16, Q8_0 or Q4_0.
 * @param values The values to encode; for Q8_0 and Q4_0 a multiple of 32.
 * @param out The destination buffer.
 * @param offset Byte offset in `out` to write at. Default: 0.
 * @returns The number of bytes written.
 * @throws {GgufError} With code `invalid` for another type, for quantized
 *   data that is not whole blocks, or when `out` is too small.
 *
 * @example Encoding a matrix one row at a time
 * ```ts
 * import { encodeTensorInto } from "./encoding.ts";
 * import { GgmlType } from "./types.ts";
 * const row = new Float32Array(64);
 * const out = new Uint8Array(4 * 36); // 4 rows of 2 Q4_0 blocks
 * let at = 0;
 * for (let r = 0; r < 4; r++) {
 *   row.fill(r);
 *   at += encodeTensorInto(GgmlType.Q4_0, row, out, at);
 * }
 * console.log(at); // 144
 * ```
 */
export function encodeTensorInto(
  type: GgmlType,
  values: Float32Array,
  out: Uint8Array,
  offset = 0,
): number {
  const layout = LAYOUTS[type as EncodableType] as
    | (typeof LAYOUTS)[EncodableType]
    | undefined;
  if (layout === undefined) throw cannotEncode(type);
  checkBlocks(GgmlType[type]!, values.length, layout.blockSize);
  const size = (values.length / layout.blockSize) * layout.blockBytes;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + size > out.length) {
    throw new GgufError(
      "invalid",
      `Cannot encode ${values.length} values as ${
        GgmlType[type]
      } at offset ${offset}: they take ${size} bytes and the buffer holds ${out.length}`,
    );
  }
  switch (type) {
    case GgmlType.F32:
      writeF32(values, out, offset);
      break;
    case GgmlType.F16:
      writeF16(values, out, offset);
      break;
    case GgmlType.Q8_0:
      writeQ8_0(values, out, offset);
      break;
    default:
      writeQ4_0(values, out, offset);
  }
  return size;
}

/**
 * Encodes float32 values in one of the writable ggml types.
 *
 * @param type F32, F16, Q8_0 or Q4_0.
 * @param values The tensor data in ggml order.
 * @returns The encoded bytes.
 * @throws {GgufError} With code `invalid` for another type, or for Q8_0 or
 *   Q4_0 data whose length is not a multiple of 32.
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
    case GgmlType.Q4_0:
      return quantizeQ4_0(values);
    default:
      throw cannotEncode(type);
  }
}
