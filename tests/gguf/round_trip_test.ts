import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeF16, encodeF32, quantizeQ4_0, quantizeQ8_0 } from "../../src/gguf/encoding.ts";
import {
  ggufBool,
  ggufNumber,
  ggufNumberArray,
  ggufString,
  ggufStringArray,
  readGgufInfo,
  readGgufTensorBytes,
} from "../../src/gguf/reader.ts";
import { GgmlType, GgufError, type GgufValue, GgufValueType } from "../../src/gguf/types.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";

const T = GgufValueType;

/** One value of every type, as the reader is expected to return it. */
const EVERY_TYPE: Record<string, GgufValue> = {
  "test.uint8": { type: T.UINT8, value: 255 },
  "test.int8": { type: T.INT8, value: -128 },
  "test.uint16": { type: T.UINT16, value: 65535 },
  "test.int16": { type: T.INT16, value: -32768 },
  "test.uint32": { type: T.UINT32, value: 4294967295 },
  "test.int32": { type: T.INT32, value: -2147483648 },
  "test.float32": { type: T.FLOAT32, value: Math.fround(0.1) },
  "test.bool.true": { type: T.BOOL, value: true },
  "test.bool.false": { type: T.BOOL, value: false },
  "test.string": { type: T.STRING, value: "héllo ▁wörld 🦙 日本" },
  "test.string.empty": { type: T.STRING, value: "" },
  "test.uint64.small": { type: T.UINT64, value: 42 },
  "test.uint64.safe": { type: T.UINT64, value: Number.MAX_SAFE_INTEGER },
  "test.uint64.big": { type: T.UINT64, value: 2n ** 64n - 1n },
  "test.int64.small": { type: T.INT64, value: -5 },
  "test.int64.big": { type: T.INT64, value: -(2n ** 63n) },
  "test.float64": { type: T.FLOAT64, value: Math.PI },
  "test.array.uint8": { type: T.ARRAY, itemType: T.UINT8, value: [0, 1, 255] },
  "test.array.int8": { type: T.ARRAY, itemType: T.INT8, value: [-128, 0, 127] },
  "test.array.uint16": { type: T.ARRAY, itemType: T.UINT16, value: [0, 65535] },
  "test.array.int16": { type: T.ARRAY, itemType: T.INT16, value: [-32768, 32767] },
  "test.array.uint32": { type: T.ARRAY, itemType: T.UINT32, value: [0, 4294967295] },
  "test.array.int32": { type: T.ARRAY, itemType: T.INT32, value: [-1, 2, -3] },
  "test.array.float32": {
    type: T.ARRAY,
    itemType: T.FLOAT32,
    value: [0, -1.5, Math.fround(1e-5)],
  },
  "test.array.bool": { type: T.ARRAY, itemType: T.BOOL, value: [true, false, true] },
  "test.array.string": { type: T.ARRAY, itemType: T.STRING, value: ["a", "", "▁b", "🦙"] },
  "test.array.uint64": { type: T.ARRAY, itemType: T.UINT64, value: [1, 2n ** 60n] },
  "test.array.int64": { type: T.ARRAY, itemType: T.INT64, value: [-1, -(2n ** 60n)] },
  "test.array.float64": { type: T.ARRAY, itemType: T.FLOAT64, value: [Math.E, -0] },
  "test.array.empty": { type: T.ARRAY, itemType: T.INT32, value: [] },
  ["__proto__"]: { type: T.STRING, value: "an ordinary key" },
};

function everyTypeWriter(): GgufWriter {
  const writer = new GgufWriter();
  for (const [key, value] of Object.entries(EVERY_TYPE)) writer.set(key, value);
  return writer;
}

Deno.test("GgufWriter and readGgufInfo() round-trip metadata of every type", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "meta.gguf");
    await everyTypeWriter().write(path);
    const info = await readGgufInfo(path);

    assert.equal(info.version, 3);
    assert.equal(info.alignment, 32);
    assert.deepEqual(info.tensors, []);
    assert.deepEqual(Object.keys(info.metadata), ["general.alignment", ...Object.keys(EVERY_TYPE)]);
    assert.deepEqual(info.metadata["general.alignment"], { type: T.UINT32, value: 32 });
    for (const [key, expected] of Object.entries(EVERY_TYPE)) {
      assert.deepEqual(info.metadata[key], expected, key);
    }
    assert.equal(Object.getPrototypeOf(info.metadata), Object.prototype);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metadata read from a file is written back byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = join(dir, "first.gguf");
    const second = join(dir, "second.gguf");
    const writer = everyTypeWriter();
    writer.addTensor("t", [32], GgmlType.F32, new Float32Array(32).fill(0.25));
    await writer.write(first);

    const info = await readGgufInfo(first);
    const copy = new GgufWriter();
    for (const [key, value] of Object.entries(info.metadata)) copy.set(key, value);
    copy.addRawTensor("t", [32], GgmlType.F32, await readGgufTensorBytes(first, info, "t"));
    await copy.write(second);

    assert.deepEqual(await Deno.readFile(second), await Deno.readFile(first));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the tensor index records names, shapes, types and aligned offsets", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "tensors.gguf");
    const a = new Float32Array([1, 2, 3]);
    const b = new Float32Array(10).map((_, i) => i / 3);
    const c = new Float32Array(64 * 3).map((_, i) => Math.cos(i));
    const ids = new Uint8Array(new Int32Array([7, -1, 0, 42]).buffer);
    const writer = new GgufWriter()
      .setString("general.architecture", "test")
      .addTensor("a", [3], GgmlType.F32, a)
      .addTensor("b.weight", [5, 2], GgmlType.F16, () => b)
      .addTensor("c", [64, 3], GgmlType.Q8_0, c)
      .addRawTensor("ids", [4], GgmlType.I32, ids);
    const written = await writer.write(path);
    const info = await readGgufInfo(path);

    assert.equal(info.fileSize, written);
    assert.equal(info.dataOffset % 32, 0);
    assert.deepEqual(info.tensors, [
      { name: "a", shape: [3], type: GgmlType.F32, offset: 0, byteSize: 12 },
      { name: "b.weight", shape: [5, 2], type: GgmlType.F16, offset: 32, byteSize: 20 },
      { name: "c", shape: [64, 3], type: GgmlType.Q8_0, offset: 64, byteSize: 204 },
      { name: "ids", shape: [4], type: GgmlType.I32, offset: 288, byteSize: 16 },
    ]);
    assert.equal(info.fileSize, info.dataOffset + 288 + 32);

    assert.deepEqual(await readGgufTensorBytes(path, info, "a"), encodeF32(a));
    assert.deepEqual(await readGgufTensorBytes(path, info, "b.weight"), encodeF16(b));
    assert.deepEqual(await readGgufTensorBytes(path, info, "c"), quantizeQ8_0(c));
    assert.deepEqual(await readGgufTensorBytes(path, info, "ids"), ids);
    await assert.rejects(
      readGgufTensorBytes(path, info, "missing"),
      (e) => e instanceof GgufError && e.code === "not_found",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Q4_0 tensors and raw bytes from a producer are written where the index says", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "q4_0.gguf");
    const w = new Float32Array(64 * 2).map((_, i) => Math.sin(i * 0.7));
    const raw = quantizeQ4_0(w.map((x) => -x));
    let produced = 0;
    const writer = new GgufWriter()
      .addTensor("w", [64, 2], GgmlType.Q4_0, () => w)
      .addRawTensor("raw", [64, 2], GgmlType.Q4_0, () => {
        produced++;
        return raw;
      });
    assert.equal(produced, 0, "raw bytes are produced only when the file is written");
    await writer.write(path);
    assert.equal(produced, 1);
    const info = await readGgufInfo(path);
    assert.deepEqual(info.tensors, [
      { name: "w", shape: [64, 2], type: GgmlType.Q4_0, offset: 0, byteSize: 72 },
      { name: "raw", shape: [64, 2], type: GgmlType.Q4_0, offset: 96, byteSize: 72 },
    ]);
    assert.deepEqual(await readGgufTensorBytes(path, info, "w"), quantizeQ4_0(w));
    assert.deepEqual(await readGgufTensorBytes(path, info, "raw"), raw);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a custom general.alignment is used for the data section", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "aligned.gguf");
    await new GgufWriter({ alignment: 256 })
      .addTensor("x", [3], GgmlType.F32, new Float32Array(3))
      .addTensor("y", [3], GgmlType.F32, new Float32Array(3))
      .write(path);
    const info = await readGgufInfo(path);
    assert.equal(info.alignment, 256);
    assert.equal(info.dataOffset % 256, 0);
    assert.deepEqual(info.tensors.map((t) => t.offset), [0, 256]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("typed getters return values and reject the wrong type", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "getters.gguf");
    await everyTypeWriter().write(path);
    const info = await readGgufInfo(path);
    assert.equal(ggufString(info, "test.string"), "héllo ▁wörld 🦙 日本");
    assert.equal(ggufNumber(info, "test.int16"), -32768);
    assert.equal(ggufNumber(info, "test.uint64.small"), 42);
    assert.equal(ggufBool(info, "test.bool.true"), true);
    assert.deepEqual(ggufStringArray(info, "test.array.string"), ["a", "", "▁b", "🦙"]);
    assert.deepEqual(ggufNumberArray(info, "test.array.int32"), [-1, 2, -3]);
    assert.equal(ggufString(info, "missing.key"), undefined);
    assert.equal(ggufNumber(info, "toString"), undefined);
    const invalid = (e: unknown) => e instanceof GgufError && e.code === "invalid";
    assert.throws(() => ggufString(info, "test.uint8"), invalid);
    assert.throws(() => ggufNumber(info, "test.uint64.big"), invalid);
    assert.throws(() => ggufNumber(info, "test.string"), invalid);
    assert.throws(() => ggufBool(info, "test.int8"), invalid);
    assert.throws(() => ggufStringArray(info, "test.array.int32"), invalid);
    assert.throws(() => ggufNumberArray(info, "test.array.uint64"), invalid);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("GgufWriter rejects values, names and shapes llama.cpp would not load", () => {
  const invalid = (e: unknown) => e instanceof GgufError && e.code === "invalid";
  const w = new GgufWriter();
  assert.throws(() => w.set("", { type: T.UINT8, value: 1 }), invalid);
  assert.throws(() => w.set("k", { type: T.UINT8, value: 256 }), invalid);
  assert.throws(() => w.set("k", { type: T.INT32, value: 1.5 }), invalid);
  assert.throws(() => w.set("k", { type: T.UINT64, value: -1 }), invalid);
  assert.throws(() => w.set("k", { type: T.UINT64, value: 2n ** 64n }), invalid);
  assert.throws(() => w.setNumberArray("k", T.INT8, [1, 200]), invalid);
  assert.throws(() => w.set("general.alignment", { type: T.UINT32, value: 48 }), invalid);
  assert.throws(() => w.set("general.alignment", { type: T.UINT64, value: 64 }), invalid);
  assert.throws(() => new GgufWriter({ alignment: 0 }), invalid);

  const f = new Float32Array(32);
  assert.throws(() => w.addTensor("x".repeat(64), [32], GgmlType.F32, f), invalid);
  assert.throws(() => w.addTensor("x", [16, 2], GgmlType.Q8_0, f), invalid);
  assert.throws(() => w.addTensor("x", [31], GgmlType.F32, f), invalid);
  assert.throws(() => w.addTensor("x", [], GgmlType.F32, f), invalid);
  assert.throws(() => w.addTensor("x", [1, 1, 1, 1, 32], GgmlType.F32, f), invalid);
  assert.throws(() => w.addTensor("x", [32], GgmlType.Q4_K as GgmlType.F32, f), invalid);
  w.addTensor("x", [32], GgmlType.F32, f);
  assert.throws(() => w.addTensor("x", [32], GgmlType.F32, f), invalid);
  assert.throws(() => w.addRawTensor("y", [32], GgmlType.Q8_0, new Uint8Array(33)), invalid);
  assert.throws(() => w.addTensor("y", [16, 2], GgmlType.Q4_0, f), invalid);
  assert.throws(
    () => w.addRawTensor("y", [16, 2], GgmlType.Q4_0, () => new Uint8Array(18)),
    invalid,
  );
});

Deno.test("GgufWriter.write() fails when a tensor producer returns the wrong length", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w = new GgufWriter().addTensor("x", [8], GgmlType.F32, () => new Float32Array(4));
    await assert.rejects(
      w.write(join(dir, "bad.gguf")),
      (e) => e instanceof GgufError && e.code === "invalid",
    );
    const raw = new GgufWriter().addRawTensor("x", [32], GgmlType.Q4_0, () => new Uint8Array(17));
    await assert.rejects(
      raw.write(join(dir, "bad.gguf")),
      (e) => e instanceof GgufError && e.code === "invalid",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
