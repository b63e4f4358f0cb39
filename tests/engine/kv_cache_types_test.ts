/**
 * A KV cache kept in other element types than f16 (`--cache-type-k`, `--cache-type-v`): the
 * cache takes the memory its types say, a quantized V turns fused attention on (and refuses it
 * off), and greedy output equals llama-server's with the same types (oracle, where the
 * reference tools are built).
 */

import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { ContextCreateError } from "../../src/ffi/errors.ts";
import {
  isQuantized,
  type KvCacheTypes,
  kvElementBytes,
  parseKvCacheType,
} from "../../src/engine/kv_cache_type.ts";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { probeModel } from "../../src/engine/model_probe.ts";
import { discoverModels } from "../../src/models/discovery.ts";
import { generateFixture } from "../fixtures/models.ts";
import { referenceDir, skipBecause } from "../helpers.ts";
import { startServer } from "../server/harness.ts";
import { answerOf, comparable } from "../oracle/llama_answers.ts";
import { startReferenceServer } from "../oracle/reference_server.ts";

// Heads of 32: llama.cpp quantizes a K cache in blocks of 32 along each head.
const dir = await Deno.makeTempDir({ prefix: "shimmy-kv-types-" });
const model = join(dir, "tiny-head32.gguf");
await generateFixture("tiny-head32", model);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const Q8: KvCacheTypes = { k: "q8_0", v: "q8_0" };

Deno.test("KV cache types are llama.cpp's tools' names, with their block sizes", () => {
  equal(parseKvCacheType("Q8_0"), "q8_0");
  equal(parseKvCacheType("q3_k"), undefined);
  equal(kvElementBytes("f16"), 2);
  equal(kvElementBytes("q8_0"), 34 / 32);
  equal(kvElementBytes("q4_0"), 18 / 32);
  equal(isQuantized("bf16"), false);
  equal(isQuantized("iq4_nl"), true);
});

Deno.test("a q8_0 KV cache takes about half the memory of f16, with fused attention on", async () => {
  const [discovered] = (await discoverModels({ env: {}, cwd: dir, models: [model] })).models;
  const kvBytes = async (kvCacheTypes?: KvCacheTypes) => {
    const report = await probeModel(discovered!, {
      gpuBackend: "cpu",
      ctxSize: 2048,
      ...(kvCacheTypes ? { kvCacheTypes } : {}),
    });
    const kv = report.memory.buffers.filter((b) => b.kind === "kv")
      .reduce((sum, b) => sum + b.bytes, 0);
    return { kv, report };
  };
  const f16 = await kvBytes();
  const q8 = await kvBytes(Q8);
  deepEqual(f16.report.kvCacheTypes, { k: "f16", v: "f16" });
  deepEqual(q8.report.kvCacheTypes, Q8);
  equal(q8.report.attention.flashAttn, "enabled");
  ok(f16.kv > 0, JSON.stringify(f16.report.memory));
  // llama.cpp logs the sizes in MiB to two decimals: 1.00 and 0.53 here.
  ok(Math.abs(q8.kv / f16.kv - 34 / 64) < 0.01, `${q8.kv} / ${f16.kv}`);
});

Deno.test("a quantized V cache with fused attention off is refused before llama.cpp sees it", async () => {
  await rejects(
    () =>
      LoadedModel.open({
        path: model,
        gpuBackend: "cpu",
        kvCacheTypes: { k: "f16", v: "q4_0" },
        flashAttn: "off",
      }),
    (error: unknown) =>
      error instanceof ContextCreateError && /needs fused attention/.test(error.message),
  );
  // A quantized K alone works with either kernel.
  await using loaded = await LoadedModel.open({
    path: model,
    gpuBackend: "cpu",
    kvCacheTypes: { k: "q8_0", v: "f16" },
    flashAttn: "off",
  });
  equal(loaded.context.flashAttn, "disabled");
});

const reference = referenceDir();

Deno.test({
  name: "greedy output with a q8_0 KV cache equals llama-server's with the same types",
  ignore: reference === undefined &&
    skipBecause("KV cache oracle", "reference tools not built (lib/reference)"),
  fn: async () => {
    await using shimmy = await startServer({
      fixtures: [],
      extraEntries: [{ name: "tiny-head32", path: model, source: "test", sizeBytes: 1 }],
      load: { parallel: 1, kvCacheTypes: Q8 },
    });
    await using server = await startReferenceServer(reference as string, model, [
      "-ctk",
      "q8_0",
      "-ctv",
      "q8_0",
      "-fa",
      "on",
    ]);
    const body = { prompt: "the quick brown fox", n_predict: 12, temperature: 0 };
    const ours = await answerOf(shimmy.url, "/completion", { ...body, model: "tiny-head32" });
    const theirs = await answerOf(server.url, "/completion", body);
    equal(ours.content, theirs.content);
    deepEqual(comparable(ours).tokens, comparable(theirs).tokens);
    equal(ours.tokens_predicted, 12);
  },
});
