import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { join } from "node:path";
import {
  Batch,
  ClosedHandleError,
  Context,
  liveHandles,
  Llama,
  Model,
  ModelLoadError,
  Sampler,
} from "../../src/ffi/mod.ts";
import { checkModelFile } from "../../src/ffi/model.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { type LlamaModelOptions, writeLlamaModel } from "../fixtures/llama_model.ts";
import { GgufValueType } from "../../src/gguf/types.ts";

const llama = Llama.open();

async function withTempFile(bytes: Uint8Array, run: (path: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "model.gguf");
  await Deno.writeFile(path, bytes);
  try {
    await run(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Model.load() reads a generated model's shape, vocabulary and metadata", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), { nGpuLayers: 0 });
  equal(model.nEmbd, 64);
  equal(model.nLayer, 2);
  equal(model.nCtxTrain, 512);
  ok(model.nVocab > 256);
  ok(model.nParams > 0 && model.sizeBytes > 0);
  match(model.description, /llama/);
  equal(model.metadata()["general.architecture"], "llama");
  ok(model.chatTemplate()?.includes("im_start"));
  ok(model.isEog(model.eos));
});

Deno.test("Model.tokenize() and detokenize() round-trip text, including bytes outside the vocabulary", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const text = "hello world, naïve café ☕ 日本";
  const tokens = model.tokenize(text, { addSpecial: false });
  ok(tokens.length > 0);
  equal(model.detokenize(tokens), text);
  const withBos = model.tokenize(text);
  equal(withBos[0], model.bos);
  const bytes = [...tokens].flatMap((t) => [...model.tokenBytes(t)]);
  equal(new TextDecoder().decode(new Uint8Array(bytes)), " " + text);
});

Deno.test("Model.load() rejects a missing file with a clear not_found error", async () => {
  await rejects(Model.load(llama, "/nonexistent/model.gguf"), (error: unknown) => {
    ok(error instanceof ModelLoadError);
    equal(error.code, "not_found");
    match(error.message, /Cannot load model \/nonexistent\/model.gguf: file not found/);
    return true;
  });
});

Deno.test("Model.load() rejects a file that is not GGUF before it reaches llama.cpp", async () => {
  await withTempFile(new TextEncoder().encode("PK\u0003\u0004 definitely a zip"), async (path) => {
    await rejects(Model.load(llama, path), (error: unknown) => {
      ok(error instanceof ModelLoadError);
      equal(error.code, "invalid_file");
      match(error.message, /not a GGUF file/);
      return true;
    });
  });
});

Deno.test("Model.load() reports corrupt and truncated GGUF files without crashing, a cut one before llama.cpp reads it", async () => {
  const full = await Deno.readFile(await fixtureModel("tiny-q8_0"));
  for (const cut of [8, 64, 1024, Math.floor(full.length / 2), full.length - 40]) {
    await withTempFile(full.subarray(0, cut), async (path) => {
      await rejects(Model.load(llama, path), (error: unknown) => {
        ok(error instanceof ModelLoadError, `cut at ${cut}`);
        equal(error.code, "invalid_file", `cut at ${cut}: ${error.message}`);
        match(error.message, /the file is incomplete, download or write it again/);
        return true;
      });
    });
  }
  const corrupt = full.slice();
  corrupt.fill(0xff, 8, 24); // absurd tensor and metadata counts
  await withTempFile(corrupt, async (path) => {
    await rejects(Model.load(llama, path), ModelLoadError);
  });
});

Deno.test("checkModelFile() reads an unchanged file's header once, and a changed file's again", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "model.gguf");
    await Deno.copyFile(await fixtureModel("qwen2"), path);
    const timed = async () => {
      const started = performance.now();
      await checkModelFile(path);
      return performance.now() - started;
    };
    const first = await timed();
    const again = await timed();
    ok(again < first / 5, `read once: ${first.toFixed(1)} ms, then ${again.toFixed(1)} ms`);
    // The same size, other bytes: the modification time tells.
    await new Promise((resolve) => setTimeout(resolve, 5));
    using file = await Deno.open(path, { write: true });
    await file.write(new TextEncoder().encode("NOPE")); // over the GGUF magic
    await rejects(checkModelFile(path), /not a GGUF file/);
    await file.seek(0, Deno.SeekMode.Start);
    await file.write(new TextEncoder().encode("GGUF"));
    await checkModelFile(path);
    await Deno.truncate(path, 1024);
    await rejects(checkModelFile(path), /incomplete/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Model.load() refuses metadata llama.cpp would abort on (no layers, a NaN epsilon) before it reads the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cases: [LlamaModelOptions, RegExp][] = [
      [
        { metadata: { "llama.block_count": { type: GgufValueType.UINT32, value: 0 } } },
        /block_count is 0/,
      ],
      [{ rmsEpsilon: NaN }, /layer_norm_rms_epsilon is NaN/],
    ];
    for (const [options, message] of cases) {
      const path = join(dir, "bad.gguf");
      await writeLlamaModel(path, options);
      await rejects(Model.load(llama, path), (error: unknown) => {
        ok(error instanceof ModelLoadError, String(error));
        equal(error.code, "invalid_file");
        match(error.message, message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Model.load() passes n_gpu_layers, devices and mmap to llama_model_load_from_file", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"), {
    nGpuLayers: 7,
    mainGpu: 0,
    useMmap: false,
    devices: [],
  });
  equal(model.loadParams.n_gpu_layers, 7);
  equal(model.loadParams.load_mode, 0);
  deepEqual(model.loadParams.devices, []);
  using defaults = await Model.load(llama, await fixtureModel("tiny-f32"));
  equal(defaults.loadParams.devices, undefined);
});

Deno.test("Model.load() reports progress up to 1", async () => {
  const seen: number[] = [];
  using _model = await Model.load(llama, await fixtureModel("tiny-f16"), {
    onProgress: (f) => seen.push(f),
  });
  ok(seen.length > 0);
  equal(seen[seen.length - 1], 1);
});

Deno.test("handles close once, tolerate a second close, and refuse use after close", async () => {
  const before = liveHandles();
  const model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const ctx = await Context.create(model, { nCtx: 128 });
  const batch = new Batch(llama, 8);
  const sampler = Sampler.chain(model, [{ type: "greedy" }]);
  for (const handle of [sampler, batch, ctx, model]) {
    handle.close();
    handle.close();
    ok(handle.closed);
  }
  throws(() => model.nVocab, ClosedHandleError);
  throws(() => batch.add(1, 0, 0, true), ClosedHandleError);
  await rejects(ctx.decode(batch), ClosedHandleError);
  deepEqual(liveHandles(), before);
});

Deno.test("greedy sampling equals a plain argmax over llama_get_logits_ith, step by step", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 256 });
  using batch = new Batch(llama, 64);
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  const prompt = model.tokenize("the quick brown fox");
  prompt.forEach((t, i) => batch.add(t, i, 0, i === prompt.length - 1));
  await ctx.decode(batch);
  let position = prompt.length;
  let index = batch.length - 1;
  for (let step = 0; step < 24; step++) {
    const logits = ctx.logits(index);
    let best = 0;
    for (let t = 1; t < logits.length; t++) {
      if ((logits[t] as number) > (logits[best] as number)) best = t;
    }
    const sampled = sampler.sample(ctx, index);
    equal(sampled, best, `step ${step}`);
    batch.clear();
    index = batch.add(sampled, position++, 0, true);
    await ctx.decode(batch);
  }
  equal(ctx.maxPosition(0), position - 1);
  ok(ctx.removeTokens(0, 4, -1));
  equal(ctx.maxPosition(0), 3);
});

Deno.test("Context.decode() refuses a second decode while one is in flight", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 128 });
  using batch = new Batch(llama, 8);
  batch.add(1, 0, 0, true);
  const first = ctx.decode(batch);
  await rejects(ctx.decode(batch), /already decoding/);
  await first;
});
