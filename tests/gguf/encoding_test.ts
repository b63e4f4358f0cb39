import assert from "node:assert/strict";
import {
  decodeF16,
  dequantizeQ4_0,
  dequantizeQ8_0,
  encodeF16,
  encodeF32,
  encodeTensor,
  encodeTensorInto,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  quantizeQ4_0,
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
  assert.equal(encodeTensor(GgmlType.Q4_0, new Float32Array(64)).length, 36);
});

Deno.test("quantizeQ4_0() matches hand-computed blocks", () => {
  const values = new Float32Array(128);
  // Block 0: the largest magnitude is -8, so d = -8 / -8 = 1 and q = trunc(x + 8.5), capped at 15.
  // Element i sits in the low nibble of byte i, element i + 16 in the high nibble.
  values.set([-8, 0.5, 1.5, 3.49], 0);
  values.set([7.9, -0.5, -1.5, -7.6], 16);

  // Block 1: +4 (element 5) comes before -4 (element 20), so it is the one kept:
  // d = 4 / -8 = -0.5 and 1/d = -2. 4 maps to quant 0 and -4 to 16, capped at 15.
  values.set([1, 4], 32 + 4);
  values.set([-4, -1], 32 + 20);

  // Block 2: all zeros, so d = -0 (fp16 0x8000) and every quant is 8.

  // Block 3: a scale that fp16 rounds: d = 0.3 / -8 = -0.0375, stored as 0xa8cd.
  // The quants use the float32 d: 0.1 / d = -2.67 -> 5, -0.15 / d = 4 -> 12, -0.05 / d = 1.33 -> 9.
  values.set([0.3, 0.1], 96);
  values.set([-0.15, -0.05], 96 + 16);

  const bytes = quantizeQ4_0(values);
  assert.equal(bytes.length, 4 * 18);
  const view = new DataView(bytes.buffer);
  const quants = (block: number) => Array.from(bytes.subarray(block * 18 + 2, block * 18 + 18));
  const fill = (head: number[]) => [...head, ...new Array(16 - head.length).fill(0x88)];

  assert.equal(view.getUint16(0, true), 0x3c00); // fp16(1)
  // (-8, 7.9) -> (0, 15); (0.5, -0.5) -> (9, 8); (1.5, -1.5) -> (10, 7); (3.49, -7.6) -> (11, 0)
  assert.deepEqual(quants(0), fill([0xf0, 0x89, 0x7a, 0x0b]));

  assert.equal(view.getUint16(18, true), 0xb800); // fp16(-0.5)
  // (1, -4) -> (6, 15) in byte 4; (4, -1) -> (0, 10) in byte 5.
  assert.deepEqual(quants(1), [0x88, 0x88, 0x88, 0x88, 0xf6, 0xa0, ...new Array(10).fill(0x88)]);

  assert.equal(view.getUint16(36, true), 0x8000);
  assert.deepEqual(quants(2), new Array(16).fill(0x88));

  assert.equal(view.getUint16(54, true), 0xa8cd);
  // (0.3, -0.15) -> (0, 12); (0.1, -0.05) -> (5, 9)
  assert.deepEqual(quants(3), fill([0xc0, 0x95]));
});

Deno.test("dequantizeQ4_0() recovers values within half a quantization step", () => {
  const values = new Float32Array(256).map((_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
  const restored = dequantizeQ4_0(quantizeQ4_0(values));
  for (let b = 0; b < 8; b++) {
    const block = values.subarray(b * 32, b * 32 + 32);
    const step = Math.max(...block.map(Math.abs)) / 8;
    for (let i = 0; i < 32; i++) {
      const x = block[i]!;
      // Only the end opposite to the largest value can be clamped (8 steps away at most,
      // 7 representable), which costs up to one step; the fp16 scale adds 8·2^-11 steps.
      const clamped = Math.abs(x) > 7.5 * step &&
        Math.sign(x) !== Math.sign(block.reduce((m, v) => Math.abs(v) > Math.abs(m) ? v : m, 0));
      const tolerance = (clamped ? 1 : 0.5) * step + 8 * 2 ** -11 * step;
      const error = Math.abs(restored[b * 32 + i]! - x);
      assert.ok(error <= tolerance, `block ${b} element ${i}: error ${error} > ${tolerance}`);
    }
  }
  assert.ok(dequantizeQ4_0(quantizeQ4_0(new Float32Array(32))).every((x) => x === 0));
});

Deno.test("quantizeQ4_0() and dequantizeQ4_0() reject data that is not whole blocks", () => {
  const invalid = (e: unknown) => e instanceof GgufError && e.code === "invalid";
  assert.throws(() => quantizeQ4_0(new Float32Array(48)), invalid);
  assert.throws(() => dequantizeQ4_0(new Uint8Array(19)), invalid);
});

Deno.test("encodeTensorInto() a chunk at a time writes the same bytes as encodeTensor()", () => {
  const values = new Float32Array(4 * 64).map((_, i) => Math.cos(i * 0.91) * (1 + (i % 5)));
  for (const type of [GgmlType.F32, GgmlType.F16, GgmlType.Q8_0, GgmlType.Q4_0]) {
    const whole = encodeTensor(type, values);
    const out = new Uint8Array(whole.length + 3).fill(0xee);
    let at = 3;
    for (let row = 0; row < 4; row++) {
      at += encodeTensorInto(type, values.subarray(row * 64, row * 64 + 64), out, at);
    }
    assert.equal(at, out.length, GgmlType[type]);
    assert.deepEqual(out.subarray(0, 3), new Uint8Array(3).fill(0xee), GgmlType[type]);
    assert.deepEqual(out.subarray(3), whole, GgmlType[type]);
  }
});

Deno.test("encodeTensorInto() rejects a short buffer, partial blocks and other types", () => {
  const invalid = (e: unknown) => e instanceof GgufError && e.code === "invalid";
  const values = new Float32Array(32);
  assert.throws(() => encodeTensorInto(GgmlType.Q4_0, values, new Uint8Array(17)), invalid);
  assert.throws(() => encodeTensorInto(GgmlType.Q4_0, values, new Uint8Array(18), 1), invalid);
  assert.throws(() => encodeTensorInto(GgmlType.Q4_0, values, new Uint8Array(18), -1), invalid);
  assert.throws(() => encodeTensorInto(GgmlType.Q8_0, new Float32Array(16), new Uint8Array(99)));
  assert.throws(
    () => encodeTensorInto(GgmlType.Q4_K, new Float32Array(256), new Uint8Array(1024)),
    (e) => invalid(e) && /Q4_K/.test((e as Error).message),
  );
  assert.equal(encodeTensorInto(GgmlType.F32, values, new Uint8Array(200), 72), 128);
});
