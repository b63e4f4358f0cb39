import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ggufNumber,
  ggufNumberArray,
  ggufString,
  ggufStringArray,
  readGgufInfo,
  readGgufTensorBytes,
} from "../../src/gguf/reader.ts";
import { encodeTensor } from "../../src/gguf/encoding.ts";
import { GgmlType } from "../../src/gguf/types.ts";
import { type LlamaModelOptions, writeLlamaModel } from "../fixtures/llama_model.ts";
import {
  DEFAULT_FIXTURES,
  FIXTURE_VERSION,
  fixtureAvailable,
  fixtureModel,
  FIXTURES,
  generateFixture,
  llamaSourceDir,
  llamaVocabPath,
} from "../fixtures/models.ts";
import { Prng } from "../fixtures/prng.ts";
import { buildTinyVocab, CHATML_TEMPLATE, TokenType } from "../fixtures/tiny_vocab.ts";

const VOCAB_FILES = [
  "ggml-vocab-llama-spm.gguf",
  "ggml-vocab-llama-bpe.gguf",
  "ggml-vocab-qwen2.gguf",
  "ggml-vocab-phi-3.gguf",
  "ggml-vocab-gpt-2.gguf",
];
const noLlamaSource = llamaSourceDir() === undefined;

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function generateBytes(dir: string, options: LlamaModelOptions): Promise<Uint8Array> {
  const path = join(dir, `${crypto.randomUUID()}.gguf`);
  await writeLlamaModel(path, options);
  return await Deno.readFile(path);
}

Deno.test("writeLlamaModel() writes identical bytes for the same options and seed", async () => {
  await withTempDir(async (dir) => {
    for (const type of ["f32", "f16", "q8_0", "q4_0"] as const) {
      const options = { type, seed: 7, headCountKv: 2 };
      const a = await generateBytes(dir, options);
      const b = await generateBytes(dir, options);
      assert.equal(a.length, b.length);
      assert.ok(a.every((byte, i) => byte === b[i]), `${type} bytes differ`);
    }
  });
});

Deno.test("writeLlamaModel() writes different weights for a different seed", async () => {
  await withTempDir(async (dir) => {
    const a = await generateBytes(dir, { seed: 1 });
    const b = await generateBytes(dir, { seed: 2 });
    assert.equal(a.length, b.length);
    let differing = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differing++;
    assert.ok(differing > a.length / 2, `only ${differing} of ${a.length} bytes differ`);
  });
});

Deno.test("writeLlamaModel() writes llama metadata and every tensor llama.cpp expects", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "m.gguf");
    const summary = await writeLlamaModel(path, {
      type: "q8_0",
      embeddingLength: 64,
      blockCount: 3,
      headCount: 4,
      headCountKv: 2,
      feedForwardLength: 96,
      contextLength: 256,
      name: "unit",
    });
    const info = await readGgufInfo(path);
    assert.equal(summary.bytes, info.fileSize);
    assert.equal(ggufString(info, "general.architecture"), "llama");
    assert.equal(ggufString(info, "general.name"), "unit");
    assert.equal(ggufNumber(info, "general.file_type"), 7);
    const expected: Record<string, number> = {
      "llama.context_length": 256,
      "llama.embedding_length": 64,
      "llama.block_count": 3,
      "llama.feed_forward_length": 96,
      "llama.attention.head_count": 4,
      "llama.attention.head_count_kv": 2,
      "llama.rope.dimension_count": 16,
      "llama.rope.freq_base": 10000,
      "llama.vocab_size": summary.vocabSize,
    };
    for (const [key, value] of Object.entries(expected)) {
      assert.equal(ggufNumber(info, key), value, key);
    }
    assert.equal(ggufNumber(info, "llama.attention.layer_norm_rms_epsilon"), Math.fround(1e-5));

    const byName = new Map(info.tensors.map((t) => [t.name, t]));
    const n_vocab = summary.vocabSize;
    const shapes: Record<string, [number[], GgmlType]> = {
      "token_embd.weight": [[64, n_vocab], GgmlType.Q8_0],
      "output_norm.weight": [[64], GgmlType.F32],
      "output.weight": [[64, n_vocab], GgmlType.Q8_0],
    };
    for (let i = 0; i < 3; i++) {
      Object.assign(shapes, {
        [`blk.${i}.attn_norm.weight`]: [[64], GgmlType.F32],
        [`blk.${i}.attn_q.weight`]: [[64, 64], GgmlType.Q8_0],
        [`blk.${i}.attn_k.weight`]: [[64, 32], GgmlType.Q8_0],
        [`blk.${i}.attn_v.weight`]: [[64, 32], GgmlType.Q8_0],
        [`blk.${i}.attn_output.weight`]: [[64, 64], GgmlType.Q8_0],
        [`blk.${i}.ffn_norm.weight`]: [[64], GgmlType.F32],
        [`blk.${i}.ffn_gate.weight`]: [[64, 96], GgmlType.Q8_0],
        [`blk.${i}.ffn_up.weight`]: [[64, 96], GgmlType.Q8_0],
        [`blk.${i}.ffn_down.weight`]: [[96, 64], GgmlType.Q8_0],
      });
    }
    assert.deepEqual([...byName.keys()].sort(), Object.keys(shapes).sort());
    for (const [name, [shape, type]] of Object.entries(shapes)) {
      assert.deepEqual(byName.get(name)?.shape, shape, name);
      assert.equal(byName.get(name)?.type, type, name);
    }
    const params = info.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(summary.parameters, params);

    const norm = new Float32Array(
      (await readGgufTensorBytes(path, info, "output_norm.weight")).buffer,
    );
    assert.ok(norm.every((x) => x > 0.85 && x < 1.15), "norm weights stay near 1");
  });
});

Deno.test("writeLlamaModel() encodes each tensor from its own seeded generator", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "q4.gguf");
    // 128-wide rows of a ~1000-token vocabulary: token_embd spans several generation chunks.
    await writeLlamaModel(path, { type: "q4_0", embeddingLength: 128, seed: 3 });
    const info = await readGgufInfo(path);
    assert.equal(ggufNumber(info, "general.file_type"), 2);
    for (const t of info.tensors) {
      assert.equal(t.type, t.shape.length === 1 ? GgmlType.F32 : GgmlType.Q4_0, t.name);
    }
    const embd = info.tensors.find((t) => t.name === "token_embd.weight")!;
    const count = embd.shape[0]! * embd.shape[1]!;
    assert.ok(count > 2 * 65536);
    const values = new Prng("3/token_embd.weight").fillUniform(new Float32Array(count), 0.1);
    const bytes = await readGgufTensorBytes(path, info, "token_embd.weight");
    assert.deepEqual(bytes, encodeTensor(GgmlType.Q4_0, values));
  });
});

Deno.test("writeLlamaModel() with tiedOutput omits output.weight", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "tied.gguf");
    await writeLlamaModel(path, { tiedOutput: true });
    const names = (await readGgufInfo(path)).tensors.map((t) => t.name);
    assert.ok(names.includes("token_embd.weight"));
    assert.ok(!names.includes("output.weight"));
  });
});

Deno.test("writeLlamaModel() zeroes output rows of special tokens unless told not to", async () => {
  await withTempDir(async (dir) => {
    const vocab = buildTinyVocab();
    const rowsOf = async (suppressSpecialTokens: boolean) => {
      const path = join(dir, `s-${suppressSpecialTokens}.gguf`);
      await writeLlamaModel(path, { suppressSpecialTokens });
      const info = await readGgufInfo(path);
      const out = new Float32Array((await readGgufTensorBytes(path, info, "output.weight")).buffer);
      return (row: number) => out.subarray(row * 64, row * 64 + 64);
    };
    const suppressed = await rowsOf(true);
    for (const id of [vocab.unkId, vocab.bosId, vocab.eosId, vocab.imStartId, vocab.imEndId]) {
      assert.ok(suppressed(id).every((x) => x === 0), `row ${id} is zero`);
    }
    assert.ok(suppressed(vocab.tokens.indexOf("▁the")).some((x) => x !== 0));
    const plain = await rowsOf(false);
    assert.ok(plain(vocab.eosId).some((x) => x !== 0));
  });
});

Deno.test("writeLlamaModel() rejects inconsistent shapes", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bad.gguf");
    for (
      const options of [
        { embeddingLength: 60, headCount: 8 },
        { headCount: 4, headCountKv: 3 },
        { type: "q8_0", embeddingLength: 48, headCount: 4 },
        { type: "q4_0", feedForwardLength: 80 },
        { blockCount: 0 },
      ] as LlamaModelOptions[]
    ) {
      await assert.rejects(writeLlamaModel(path, options), /Cannot generate/);
    }
  });
});

Deno.test("the tiny vocab has unique tokens, 256 byte tokens and chat control tokens", async () => {
  const vocab = buildTinyVocab();
  assert.equal(new Set(vocab.tokens).size, vocab.tokens.length);
  assert.ok(vocab.tokens.length >= 500 && vocab.tokens.length <= 1500, `${vocab.tokens.length}`);
  assert.deepEqual(vocab.tokens.slice(0, 3), ["<unk>", "<s>", "</s>"]);
  for (let b = 0; b < 256; b++) {
    const hex = b.toString(16).toUpperCase().padStart(2, "0");
    assert.equal(vocab.tokens[3 + b], `<0x${hex}>`);
    assert.equal(vocab.tokenTypes[3 + b], TokenType.BYTE);
  }
  assert.equal(vocab.tokenTypes[vocab.imStartId], TokenType.CONTROL);
  assert.equal(vocab.tokenTypes[vocab.imEndId], TokenType.CONTROL);
  // Every prefix of a word piece is a piece, so the SPM merges can reach it.
  for (const token of vocab.tokens) {
    if (token.startsWith("▁") && token.length > 2) {
      assert.ok(vocab.tokens.includes(token.slice(0, -1)), `prefix of ${token}`);
    }
  }

  const path = await fixtureModel("tiny-f32");
  const info = await readGgufInfo(path);
  assert.equal(ggufString(info, "tokenizer.ggml.model"), "llama");
  assert.equal(ggufString(info, "tokenizer.chat_template"), CHATML_TEMPLATE);
  assert.deepEqual(ggufStringArray(info, "tokenizer.ggml.tokens"), vocab.tokens);
  assert.deepEqual(ggufNumberArray(info, "tokenizer.ggml.token_type"), vocab.tokenTypes);
  assert.equal(ggufNumber(info, "shimmy.fixture_version"), FIXTURE_VERSION);
});

for (const file of VOCAB_FILES) {
  Deno.test({
    name: `writeLlamaModel() with copyFrom ${file} keeps every tokenizer key`,
    ignore: noLlamaSource,
    async fn() {
      await withTempDir(async (dir) => {
        const source = await readGgufInfo(llamaVocabPath(file));
        const path = join(dir, "copy.gguf");
        const summary = await writeLlamaModel(path, {
          vocab: { copyFrom: llamaVocabPath(file) },
          type: "q8_0",
          blockCount: 1,
        });
        const info = await readGgufInfo(path);
        const keys = Object.keys(source.metadata).filter((k) => k.startsWith("tokenizer."));
        assert.ok(keys.includes("tokenizer.ggml.tokens"));
        for (const key of keys) assert.deepEqual(info.metadata[key], source.metadata[key], key);
        assert.deepEqual(
          Object.keys(info.metadata).filter((k) => k.startsWith("tokenizer.")),
          keys,
        );
        assert.equal(ggufString(info, "general.architecture"), "llama");
        const n_vocab = ggufStringArray(source, "tokenizer.ggml.tokens")!.length;
        assert.equal(summary.vocabSize, n_vocab);
        assert.deepEqual(info.tensors.find((t) => t.name === "token_embd.weight")?.shape, [
          64,
          n_vocab,
        ]);
        assert.deepEqual(info.tensors.find((t) => t.name === "output.weight")?.shape, [
          64,
          n_vocab,
        ]);
      });
    },
  });
}

Deno.test("fixtureModel() returns generated fixtures that match their specs", async () => {
  for (const name of DEFAULT_FIXTURES) {
    if (!fixtureAvailable(name)) continue;
    const path = await fixtureModel(name);
    assert.ok(path.endsWith(`tests/fixtures/generated/${name}.gguf`));
    const info = await readGgufInfo(path);
    const options = FIXTURES[name]!.options;
    assert.equal(ggufString(info, "general.name"), options.name);
    const arch = options.architecture ?? "llama";
    assert.equal(ggufString(info, "general.architecture"), arch);
    assert.equal(ggufNumber(info, `${arch}.embedding_length`), options.embeddingLength);
    assert.equal(ggufNumber(info, `${arch}.block_count`), options.blockCount);
    assert.equal(ggufNumber(info, `${arch}.pooling_type`), options.poolingType);
    assert.equal(
      info.tensors.some((t) => t.name === "cls.output.weight"),
      (options.classifierLabels?.length ?? 0) > 0,
      name,
    );
    assert.equal(
      info.tensors.some((t) => t.name === "output.weight"),
      !(options.tiedOutput ?? false),
      name,
    );
    assert.equal(await fixtureModel(name), path, "a second call returns the same path");
  }
  await assert.rejects(fixtureModel("no-such-model"), /Unknown fixture model 'no-such-model'/);
});

Deno.test("the bench-1b fixture has the Llama-3.2-1B shape and is generated only by name", () => {
  const spec = FIXTURES["bench-1b"]!;
  assert.equal(spec.explicitOnly, true);
  assert.ok(!DEFAULT_FIXTURES.includes("bench-1b"));
  assert.deepEqual(
    { ...spec.options, name: undefined },
    {
      embeddingLength: 2048,
      blockCount: 16,
      headCount: 32,
      headCountKv: 8,
      feedForwardLength: 8192,
      contextLength: 8192,
      ropeFreqBase: 500000,
      type: "q4_0",
      vocabFile: "ggml-vocab-llama-bpe.gguf",
      name: undefined,
    },
  );
});

Deno.test("concurrent generation of one fixture never exposes a partial file", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "tiny.gguf");
    const reads: Promise<unknown>[] = [];
    const writes = Array.from({ length: 4 }, () => generateFixture("tiny-q8_0", path));
    for (let i = 0; i < 20; i++) {
      reads.push(readGgufInfo(path).catch((e) => assert.equal(e.code, "not_found")));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await Promise.all([...writes, ...reads]);
    const info = await readGgufInfo(path);
    assert.equal(ggufString(info, "general.name"), "tiny-q8_0");
    const leftovers = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(leftovers, ["tiny.gguf"]);
  });
});
