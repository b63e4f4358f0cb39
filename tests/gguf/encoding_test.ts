import assert from "node:assert/strict";
import {
  decodeF16,
  dequantizeQ8_0,
  encodeF16,
  encodeF32,
  encodeTensor,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  quantizeQ8_0,
} from "../../src/gguf/encoding.ts";
import { GgmlType, GgufError } from "../../src/gguf/types.ts";

Deno.test("float32ToFloat16Bits() encodes exact values, limits and specials", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [1 / 3, 0x3555],
    [65504, 0x7bff], // largest finite half
    [65519, 0x7bff], // just below the midpoint to 65536
    [65520, 0x7c00], // midpoint: ties to even, which is Infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -15, 0x0200], // subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // midpoint between 0 and 2^-24: ties to even (0)
    [3 * 2 ** -26, 0x0001], // 0.75 of the smallest step rounds up
    [1e-10, 0x0000],
    [-1e-10, 0x8000],
  ];
  for (const [value, bits] of cases) {
    assert.equal(float32ToFloat16Bits(value), bits, `fp16(${value})`);
  }
  assert.equal(float32ToFloat16Bits(NaN), 0x7e00);
});

Deno.test("float32ToFloat16Bits() rounds ties to even in normal and subnormal ranges", () => {
  // 1 + 2^-11 lies halfway between 0x3c00 (even) and 0x3c01.
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3·2^-11 lies halfway between 0x3c01 and 0x3c02 (even).
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02);
  // A hair above the midpoint rounds up.
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // Subnormal midpoints: 1.5 and 2.5 steps both round to 2 steps.
  assert.equal(float32ToFloat16Bits(1.5 * 2 ** -24), 0x0002);
  assert.equal(float32ToFloat16Bits(2.5 * 2 ** -24), 0x0002);
  // Halfway between the largest subnormal and the smallest normal: even is 0x0400.
  assert.equal(float32ToFloat16Bits(2 ** -14 - 2 ** -25), 0x0400);
  // Mantissa overflow carries into the exponent: 2047/1024 + 2^-11 -> 2.
  assert.equal(float32ToFloat16Bits(2 - 2 ** -11), 0x4000);
});

Deno.test("float16BitsToFloat32() inverts every finite half-precision value", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const exponent = (bits >>> 10) & 0x1f;
    if (exponent === 0x1f) continue;
    const value = float16BitsToFloat32(bits);
    assert.equal(float32ToFloat16Bits(value), bits, `bits 0x${bits.toString(16)}`);
  }
  assert.equal(float16BitsToFloat32(0x7c00), Infinity);
  assert.ok(Number.isNaN(float16BitsToFloat32(0x7e00)));
  assert.equal(float16BitsToFloat32(0x3555), 0.333251953125);
});

Deno.test("encodeF16() and encodeF32() write little-endian bytes", () => {
  assert.deepEqual(
    encodeF16(new Float32Array([1, -2, 0.5])),
    new Uint8Array([0, 0x3c, 0, 0xc0, 0, 0x38]),
  );
  assert.deepEqual(
    encodeF32(new Float32Array([1, -2])),
    new Uint8Array([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]),
  );
  assert.deepEqual(
    decodeF16(encodeF16(new Float32Array([1, -2, 0.5]))),
    new Float32Array([1, -2, 0.5]),
  );
});

Deno.test("quantizeQ8_0() matches hand-computed blocks", () => {
  const values = new Float32Array(128);
  // Block 0: amax 1.27, so d = 0.01 and q = round(x / 0.01).
  values.set([1.27, -1.27, 0.5, -0.254, 0.006, 0.004, -0.006, -0.0051], 0);
  // Block 1: all zeros, so d = 0 and every q is 0.
  // Block 2: amax 2.54 on a negative value, so d = 0.02.
  values.fill(1, 64, 96);
  values[70] = -2.54;

  // Block 3: amax 127, so d = 1 and halves round away from zero (C roundf).
  values.set([127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.4], 96);

  const bytes = quantizeQ8_0(values);
  assert.equal(bytes.length, 4 * 34);
  const view = new DataView(bytes.buffer);

  assert.equal(view.getUint16(0, true), 0x211f); // fp16(0.01)
  const q0 = Array.from(new Int8Array(bytes.buffer, 2, 8));
  assert.deepEqual(q0, [127, -127, 50, -25, 1, 0, -1, -1]);
  assert.deepEqual(Array.from(new Int8Array(bytes.buffer, 10, 24)), new Array(24).fill(0));

  assert.equal(view.getUint16(34, true), 0x0000);
  assert.deepEqual(Array.from(new Int8Array(bytes.buffer, 36, 32)), new Array(32).fill(0));

  assert.equal(view.getUint16(68, true), 0x251f); // fp16(0.02)
  const q2 = Array.from(new Int8Array(bytes.buffer, 70, 32));
  assert.equal(q2[6], -127);
  assert.deepEqual(q2.filter((_, i) => i !== 6), new Array(31).fill(50));

  assert.equal(view.getUint16(102, true), 0x3c00); // fp16(1)
  assert.deepEqual(Array.from(new Int8Array(bytes.buffer, 104, 8)), [127, 3, -3, 1, -1, 2, -1, 0]);
});

Deno.test("dequantizeQ8_0() recovers values within half a quantization step", () => {
  const values = new Float32Array(256).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  const restored = dequantizeQ8_0(quantizeQ8_0(values));
  for (let b = 0; b < 8; b++) {
    const block = values.subarray(b * 32, b * 32 + 32);
    const step = Math.max(...block.map(Math.abs)) / 127;
    for (let i = 0; i < 32; i++) {
      assert.ok(Math.abs(restored[b * 32 + i]! - block[i]!) <= step * 0.51 + 1e-3 * step * 127);
    }
  }
});

Deno.test("quantizeQ8_0() rejects data that is not whole blocks", () => {
  assert.throws(
    () => quantizeQ8_0(new Float32Array(33)),
    (e) => e instanceof GgufError && e.code === "invalid",
  );
});

Deno.test("encodeTensor() refuses types it cannot produce from float32 data", () => {
  assert.throws(
    () => encodeTensor(GgmlType.Q4_K, new Float32Array(256)),
    (e) => e instanceof GgufError && e.code === "invalid" && /Q4_K/.test(e.message),
  );
  assert.equal(encodeTensor(GgmlType.Q8_0, new Float32Array(64)).length, 68);
});
