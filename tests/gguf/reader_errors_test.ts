import assert from "node:assert/strict";
import { join } from "node:path";
import { readGgufInfo } from "../../src/gguf/reader.ts";
import { GgmlType, GgufError, type GgufErrorCode, GgufValueType } from "../../src/gguf/types.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** Builds raw GGUF bytes field by field, including invalid ones. */
class RawGguf {
  #parts: Uint8Array[] = [];

  bytes(b: Uint8Array | number[]): this {
    this.#parts.push(b instanceof Uint8Array ? b : new Uint8Array(b));
    return this;
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.bytes(b);
  }
  i64(v: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, v, true);
    return this.bytes(b);
  }
  u64(v: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return this.bytes(b);
  }
  string(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(BigInt(b.length)).bytes(b);
  }
  /** Magic, version and the two counts. */
  header(tensors: bigint, kvs: bigint, version = 3): this {
    return this.bytes(new TextEncoder().encode("GGUF")).u32(version).i64(tensors).i64(kvs);
  }
  build(): Uint8Array {
    const out = new Uint8Array(this.#parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function assertReadFails(path: string, code: GgufErrorCode, pattern?: RegExp) {
  await assert.rejects(readGgufInfo(path), (e) => {
    assert.ok(e instanceof GgufError, `expected a GgufError, got ${e}`);
    assert.equal(e.code, code, `${path}: ${e.message}`);
    if (pattern) assert.match(e.message, pattern);
    assert.match(e.message, /^[A-Z]/);
    assert.doesNotMatch(e.message, /\.$/);
    return true;
  });
}

Deno.test("readGgufInfo() reports a missing file as not_found", async () => {
  await withTempDir(async (dir) => {
    await assertReadFails(join(dir, "nope.gguf"), "not_found", /file not found/);
  });
});

Deno.test("readGgufInfo() reports files without the GGUF magic as not_gguf", async () => {
  await withTempDir(async (dir) => {
    const text = join(dir, "text.gguf");
    await Deno.writeTextFile(text, "This is not a model at all, just some text");
    await assertReadFails(text, "not_gguf", /not a GGUF file/);
    const ggml = join(dir, "ggjt.bin");
    await Deno.writeFile(ggml, new Uint8Array([0x74, 0x6a, 0x67, 0x67, 3, 0, 0, 0]));
    await assertReadFails(ggml, "not_gguf");
    await assertReadFails(dir, "not_gguf", /not a regular file/);
  });
});

Deno.test("readGgufInfo() reports a fixture cut at any point as truncated", async () => {
  const source = await fixtureModel("tiny-f32");
  const bytes = await Deno.readFile(source);
  const info = await readGgufInfo(source);
  const firstTensorEnd = info.dataOffset + info.tensors[0]!.byteSize!;
  const cuts = [
    0,
    2, // inside the magic
    4,
    6, // inside the version
    12, // inside the tensor count
    24, // right after the counts
    40, // inside the first key
    1000, // inside the token list
    Math.floor(info.dataOffset / 2),
    info.dataOffset - 40, // inside the tensor index
    info.dataOffset, // no tensor data at all
    info.dataOffset + 10, // inside the first tensor
    firstTensorEnd + 100, // inside a later tensor
    bytes.length - 1, // one byte short
  ];
  await withTempDir(async (dir) => {
    for (const cut of cuts) {
      const path = join(dir, `cut-${cut}.gguf`);
      await Deno.writeFile(path, bytes.subarray(0, cut));
      await assertReadFails(path, "truncated", /incomplete/);
    }
  });
});

Deno.test("readGgufInfo() rejects GGUF versions other than 2 and 3", async () => {
  await withTempDir(async (dir) => {
    for (const version of [0, 1, 4, 0x03000000]) {
      const path = join(dir, `v${version}.gguf`);
      await Deno.writeFile(path, new RawGguf().header(0n, 0n, version).build());
      await assertReadFails(path, "unsupported_version");
    }
    const v2 = join(dir, "v2.gguf");
    await Deno.writeFile(
      v2,
      new RawGguf().header(0n, 1n, 2).string("general.name").u32(GgufValueType.STRING).string("old")
        .build(),
    );
    assert.deepEqual((await readGgufInfo(v2)).metadata["general.name"], {
      type: GgufValueType.STRING,
      value: "old",
    });
  });
});

Deno.test("readGgufInfo() rejects absurd counts and lengths before allocating", async () => {
  const kv = (key: string) => new RawGguf().header(0n, 1n).string(key);
  const cases: [string, RawGguf, GgufErrorCode][] = [
    ["huge tensor count", new RawGguf().header(2n ** 62n, 0n), "invalid"],
    ["negative kv count", new RawGguf().header(0n, -1n), "invalid"],
    ["kv count beyond the file", new RawGguf().header(0n, 1000n), "truncated"],
    ["huge key length", new RawGguf().header(0n, 1n).u64(2n ** 40n), "invalid"],
    ["key length beyond the file", new RawGguf().header(0n, 1n).u64(5000n), "truncated"],
    [
      "huge array",
      kv("a").u32(GgufValueType.ARRAY).u32(GgufValueType.UINT8).u64(2n ** 50n),
      "invalid",
    ],
    [
      "array beyond the file",
      kv("a").u32(GgufValueType.ARRAY).u32(GgufValueType.INT32).u64(1000n),
      "truncated",
    ],
    [
      "string array beyond the file",
      kv("a").u32(GgufValueType.ARRAY).u32(GgufValueType.STRING).u64(100000n),
      "truncated",
    ],
    ["unknown value type", kv("a").u32(99).u32(0), "invalid"],
    ["nested array", kv("a").u32(GgufValueType.ARRAY).u32(GgufValueType.ARRAY).u64(1n), "invalid"],
    ["empty key", kv("").u32(GgufValueType.UINT8).bytes([1]), "invalid"],
    [
      "duplicate key",
      new RawGguf().header(0n, 2n).string("k").u32(GgufValueType.UINT8).bytes([1]).string("k").u32(
        GgufValueType.UINT8,
      ).bytes([2]),
      "invalid",
    ],
    [
      "alignment not a power of two",
      kv("general.alignment").u32(GgufValueType.UINT32).u32(48),
      "invalid",
    ],
    [
      "alignment of the wrong type",
      kv("general.alignment").u32(GgufValueType.UINT64).u64(32n),
      "invalid",
    ],
    [
      "too many dimensions",
      new RawGguf().header(1n, 0n).string("t").u32(5).i64(1n).i64(1n).i64(1n).i64(1n).i64(1n)
        .u32(0).u64(0n),
      "invalid",
    ],
    [
      "negative dimension",
      new RawGguf().header(1n, 0n).string("t").u32(1).i64(-4n).u32(0).u64(0n),
      "invalid",
    ],
    [
      "misaligned offset",
      new RawGguf().header(1n, 0n).string("t").u32(1).i64(4n).u32(GgmlType.F32).u64(4n),
      "invalid",
    ],
    [
      "row not a whole number of blocks",
      new RawGguf().header(1n, 0n).string("t").u32(1).i64(33n).u32(GgmlType.Q8_0).u64(0n),
      "invalid",
    ],
    [
      "tensor name too long",
      new RawGguf().header(1n, 0n).string("x".repeat(64)).u32(1).i64(1n).u32(0).u64(0n),
      "invalid",
    ],
  ];
  await withTempDir(async (dir) => {
    for (const [label, raw, code] of cases) {
      const path = join(dir, `${label.replaceAll(" ", "_")}.gguf`);
      // Padding so that "beyond the file" is about declared sizes, not a tiny file.
      await Deno.writeFile(
        path,
        new RawGguf().bytes(raw.build()).bytes(new Uint8Array(64)).build(),
      );
      await assert.rejects(readGgufInfo(path), (e) => {
        assert.ok(e instanceof GgufError, `${label}: ${e}`);
        assert.equal(e.code, code, `${label}: ${e.message}`);
        return true;
      });
    }
  });
});

Deno.test("readGgufInfo() rejects duplicate tensor names", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "dup.gguf");
    const tensor = (raw: RawGguf, offset: bigint) =>
      raw.string("t").u32(1).i64(8n).u32(GgmlType.F32).u64(offset);
    const raw = tensor(tensor(new RawGguf().header(2n, 0n), 0n), 32n);
    await Deno.writeFile(path, new RawGguf().bytes(raw.build()).bytes(new Uint8Array(128)).build());
    await assertReadFails(path, "invalid", /appears twice/);
  });
});

Deno.test("readGgufInfo() accepts tensor types it does not know, without a size", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "future.gguf");
    const raw = new RawGguf().header(1n, 0n).string("t").u32(1).i64(8n).u32(99).u64(0n);
    await Deno.writeFile(path, new RawGguf().bytes(raw.build()).bytes(new Uint8Array(64)).build());
    const info = await readGgufInfo(path);
    assert.deepEqual(info.tensors, [
      { name: "t", shape: [8], type: 99, offset: 0, byteSize: undefined },
    ]);
  });
});

Deno.test("readGgufInfo() reads the header of a large file without reading its data", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "sparse.gguf");
    // One 1 GiB F32 tensor: write the header, then extend the file sparsely.
    const raw = new RawGguf().header(1n, 1n).string("general.name").u32(GgufValueType.STRING)
      .string("sparse").string("big").u32(3).i64(256n).i64(1024n).i64(1024n).u32(GgmlType.F32)
      .u64(0n).build();
    const dataOffset = Math.ceil(raw.length / 32) * 32;
    await Deno.writeFile(path, raw);
    await Deno.truncate(path, dataOffset + 2 ** 30);

    const info = await readGgufInfo(path);
    assert.equal(info.dataOffset, dataOffset);
    assert.equal(info.fileSize, dataOffset + 2 ** 30);
    assert.equal(info.tensors[0]?.byteSize, 2 ** 30);

    await Deno.truncate(path, dataOffset + 2 ** 30 - 1);
    await assertReadFails(path, "truncated", /tensor 'big'/);
  });
});

Deno.test("readGgufInfo() with skipArrays reads the scalars and tensors alike, leaves arrays empty, and still finds a cut", async () => {
  // qwen2's 151,936 tokens and merges, decoded, held the event loop 0.4-0.7 s at each model
  // load; skipped, 40-60 ms.
  const source = await fixtureModel("qwen2");
  const full = await readGgufInfo(source);
  const skipped = await readGgufInfo(source, { skipArrays: true });
  assert.deepEqual(skipped.tensors, full.tensors);
  assert.equal(skipped.dataOffset, full.dataOffset);
  for (const [key, entry] of Object.entries(full.metadata)) {
    const other = skipped.metadata[key];
    if (entry.type === GgufValueType.ARRAY) {
      assert.ok(entry.value.length > 0 || key.endsWith("merges"));
      assert.deepEqual(other?.value, [], key);
    } else assert.deepEqual(other, entry, key);
  }
  const bytes = await Deno.readFile(source);
  await withTempDir(async (dir) => {
    for (const cut of [1000, 200_000, Math.floor(full.dataOffset / 2), full.dataOffset - 40]) {
      const path = join(dir, `cut-${cut}.gguf`);
      await Deno.writeFile(path, bytes.subarray(0, cut));
      await assert.rejects(readGgufInfo(path, { skipArrays: true }), (error) => {
        assert.ok(error instanceof GgufError && error.code === "truncated", String(error));
        return true;
      });
    }
  });
});
