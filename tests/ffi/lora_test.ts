import { deepEqual, equal, match, notDeepEqual, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import {
  applyLoraAdapters,
  Batch,
  Context,
  liveHandles,
  Llama,
  LoraAdapter,
  Model,
  ModelLoadError,
  Sampler,
} from "../../src/ffi/mod.ts";
import { readGgufInfo } from "../../src/gguf/reader.ts";
import { GgmlType } from "../../src/gguf/types.ts";
import { type LoraAdapterOptions, writeLoraAdapter } from "../fixtures/lora_adapter.ts";
import { fixtureLora, fixtureModel, FIXTURES } from "../fixtures/models.ts";

const llama = Llama.open();
const TINY = FIXTURES["tiny-f32"]!.options;
const PROMPT = "the quick brown fox";
const STEPS = 16;

/** Runs `run` with a LoRA adapter written to a temporary file. */
async function withAdapter(
  options: LoraAdapterOptions,
  run: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "adapter.gguf");
    await writeLoraAdapter(path, options);
    await run(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Greedy-generates from a fresh KV memory: the prompt's tokens then `STEPS` sampled ones. */
async function greedy(model: Model, ctx: Context): Promise<number[]> {
  ctx.clearMemory();
  using batch = new Batch(llama, 64);
  using sampler = Sampler.chain(model, [{ type: "greedy" }]);
  const prompt = model.tokenize(PROMPT);
  prompt.forEach((t, i) => batch.add(t, i, 0, i === prompt.length - 1));
  await ctx.decode(batch);
  let position = prompt.length;
  let index = batch.length - 1;
  const out: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const token = sampler.sample(ctx, index);
    out.push(token);
    batch.clear();
    index = batch.add(token, position++, 0, true);
    await ctx.decode(batch);
  }
  return out;
}

Deno.test("writeLoraAdapter() lays out A and B as llama.cpp's adapter loader expects", async () => {
  await withAdapter({ base: TINY, rank: 8, alpha: 16, type: "f16" }, async (path) => {
    const info = await readGgufInfo(path);
    const text = (key: string) => info.metadata[key]?.value;
    equal(text("general.type"), "adapter");
    equal(text("general.architecture"), "llama");
    equal(text("adapter.type"), "lora");
    equal(text("adapter.lora.alpha"), 16);
    const shapes = Object.fromEntries(info.tensors.map((t) => [t.name, t.shape]));
    equal(info.tensors.length, 2 * 2 * 3); // 2 layers × (q, v, up) × (A, B)
    ok(info.tensors.every((t) => t.type === GgmlType.F16));
    deepEqual(shapes["blk.0.attn_q.weight.lora_a"], [64, 8]);
    deepEqual(shapes["blk.0.attn_q.weight.lora_b"], [8, 64]);
    deepEqual(shapes["blk.1.attn_v.weight.lora_a"], [64, 8]);
    deepEqual(shapes["blk.1.attn_v.weight.lora_b"], [8, 32]); // 2 kv heads of 16
    deepEqual(shapes["blk.1.ffn_up.weight.lora_b"], [8, 128]);
  });
});

Deno.test("writeLoraAdapter() writes the same bytes for a seed and different bytes for another", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (file: string, seed: number) => {
      await writeLoraAdapter(join(dir, file), { base: TINY, seed });
      return await Deno.readFile(join(dir, file));
    };
    const a = await write("a.gguf", 7);
    deepEqual(await write("b.gguf", 7), a);
    notDeepEqual(await write("c.gguf", 8), a);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeLoraAdapter() rejects an unknown target with a clear error", async () => {
  await rejects(
    writeLoraAdapter("/nonexistent/x.gguf", { targets: ["attn_qkv" as "attn_q"] }),
    /Cannot generate a LoRA adapter: unknown target 'attn_qkv'/,
  );
});

Deno.test("a LoRA adapter changes greedy output, and detaching or scale 0 restores the base exactly", async () => {
  const before = liveHandles();
  const model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const adapter = await LoraAdapter.load(model, await fixtureLora("tiny-f32-lora"));
  const ctx = await Context.create(model, { nCtx: 128, nThreads: 1 });
  try {
    const base = await greedy(model, ctx);
    equal(base.length, STEPS);

    applyLoraAdapters(ctx, [{ adapter, scale: 1 }]);
    const adapted = await greedy(model, ctx);
    notDeepEqual(adapted, base);
    deepEqual(await greedy(model, ctx), adapted, "the adapted stream is deterministic");

    applyLoraAdapters(ctx, []);
    deepEqual(await greedy(model, ctx), base, "detached");

    applyLoraAdapters(ctx, [{ adapter, scale: 0 }]);
    deepEqual(await greedy(model, ctx), base, "scale 0");

    applyLoraAdapters(ctx, [{ adapter, scale: 1 }]);
    deepEqual(await greedy(model, ctx), adapted, "re-attached");
  } finally {
    ctx.close();
    adapter.close();
    model.close();
  }
  deepEqual(liveHandles(), before);
});

Deno.test("an F16 adapter with other targets loads and changes the output too", async () => {
  using model = await Model.load(llama, await fixtureModel("tiny-f32"));
  using ctx = await Context.create(model, { nCtx: 128, nThreads: 1 });
  const base = await greedy(model, ctx);
  await withAdapter({
    base: TINY,
    type: "f16",
    rank: 2,
    seed: 5,
    targets: ["attn_k", "attn_output", "ffn_gate", "ffn_down"],
  }, async (path) => {
    using adapter = await LoraAdapter.load(model, path);
    applyLoraAdapters(ctx, [{ adapter, scale: 1 }]);
    notDeepEqual(await greedy(model, ctx), base);
    applyLoraAdapters(ctx, []);
  });
  deepEqual(await greedy(model, ctx), base);
});

Deno.test("LoraAdapter.load() rejects adapters for another architecture or shape with a ModelLoadError", async () => {
  const before = liveHandles();
  {
    using model = await Model.load(llama, await fixtureModel("tiny-f32"));
    const cases: [LoraAdapterOptions, RegExp][] = [
      [{ base: TINY, architecture: "qwen2" }, /arch mismatch/],
      [{ base: { ...TINY, embeddingLength: 128, headCount: 8 } }, /incorrect shape/],
      [{ base: { ...TINY, blockCount: 3 } }, /does not exist in base model/],
    ];
    for (const [options, reason] of cases) {
      await withAdapter(options, async (path) => {
        await rejects(LoraAdapter.load(model, path), (error: unknown) => {
          ok(error instanceof ModelLoadError);
          equal(error.code, "load_failed");
          equal(error.path, path);
          match(error.message, /^Cannot load LoRA adapter /);
          match(error.message, reason);
          return true;
        });
      });
    }
    await rejects(LoraAdapter.load(model, "/nonexistent/adapter.gguf"), (error: unknown) => {
      ok(error instanceof ModelLoadError);
      equal(error.code, "not_found");
      return true;
    });
  }
  deepEqual(liveHandles(), before);
});

Deno.test("closing the model first also frees its adapters, once", async () => {
  const before = liveHandles();
  const model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const adapter = await LoraAdapter.load(model, await fixtureLora("tiny-f32-lora"));
  model.close();
  ok(adapter.closed, "the adapter is closed with its model");
  adapter.close();
  deepEqual(liveHandles(), before);
});

Deno.test("an adapter loads only once the model's decodes are done, and decodes wait for a load", async () => {
  const model = await Model.load(llama, await fixtureModel("tiny-f32"));
  const ctx = await Context.create(model, { nCtx: 128, nThreads: 1 });
  using batch = new Batch(llama, 8);
  batch.add(model.tokenize("the")[0] as number, 0, 0, true);
  /** Whether `promise` settles within 50 ms. */
  const settled = async (promise: Promise<unknown>) => {
    let done = false;
    promise.then(() => (done = true), () => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    return done;
  };
  try {
    // A decode in flight (held open here): the load waits for it.
    const leave = model.gate.enterShared() as () => void;
    const loading = LoraAdapter.load(model, await fixtureLora("tiny-f32-lora"));
    equal(await settled(loading), false, "the adapter loaded beside a decode");
    leave();
    (await loading).close();

    // A change to the model under way (held open here): a decode waits for it.
    let finish!: () => void;
    const change = model.gate.exclusive(() => new Promise<void>((resolve) => (finish = resolve)));
    const decoding = ctx.decode(batch);
    equal(await settled(decoding), false, "the decode ran beside a change to the model");
    finish();
    await change;
    await decoding;
    equal(ctx.decodeCount, 1);
  } finally {
    ctx.close();
    model.close();
  }
});
