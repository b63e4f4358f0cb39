import { deepEqual, equal, match, ok } from "node:assert/strict";
import { type DeviceSamplingMode, LoadedModel } from "../../src/engine/loaded_model.ts";
import type { GenerationRequest } from "../../src/engine/scheduler.ts";
import type { SamplingParams } from "../../src/engine/sampling.ts";
import { liveHandles } from "../../src/ffi/handle.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** Sampling inside the decode graph runs here on the CPU backend: the same code path as a GPU's. */
async function openWith(mode: DeviceSamplingMode, parallel = 1): Promise<LoadedModel> {
  return await LoadedModel.open({
    path: await fixtureModel("llama-spm"),
    deviceSampling: mode,
    parallel,
    ctxSize: 256,
  });
}

async function tokensOf(loaded: LoadedModel, request: GenerationRequest): Promise<number[]> {
  const generation = loaded.scheduler.submit(request);
  for await (const _ of generation) { /* drain */ }
  return (await generation.result).tokens;
}

function request(loaded: LoadedModel, sampling: SamplingParams): GenerationRequest {
  return {
    prompt: loaded.model.tokenize("The lighthouse keeper counted the ships"),
    maxTokens: 48,
    ignoreEos: true,
    sampling,
  };
}

const GREEDY: SamplingParams = { temperature: 0 };
const SEEDED: SamplingParams = { temperature: 0.9, topK: 40, topP: 0.95, minP: 0.02, seed: 1234 };

Deno.test("greedy and seeded sampling choose the same tokens on the device as on the CPU", async () => {
  const results: Record<string, number[][]> = {};
  for (const mode of ["off", "on"] as const) {
    await using loaded = await openWith(mode);
    results[mode] = [
      await tokensOf(loaded, request(loaded, GREEDY)),
      await tokensOf(loaded, request(loaded, SEEDED)),
      await tokensOf(loaded, request(loaded, { ...SEEDED, seed: 99 })),
    ];
    const stats = loaded.scheduler.stats();
    equal(stats.deviceSampledRequests, mode === "on" ? 3 : 0);
    equal(stats.deviceSamplerAttachments, mode === "on" ? 3 : 0, "three settings, three chains");
    equal(loaded.context.deviceSamplerCount, mode === "on" ? 1 : 0, "the slot keeps its chain");
  }
  deepEqual(results.on, results.off);
  ok(
    new Set(results.off!.map((t) => t.join())).size === 3,
    "the three requests differ, so the comparison is not trivial",
  );
});

Deno.test("requests with a grammar or a logit bias sample on the CPU beside device-sampled ones", async () => {
  const grammar = 'root ::= ("yes" | "no") (", " ("yes" | "no"))*';
  // The three run together in both modes: batched steps, so the numerics match.
  const trio = async (loaded: LoadedModel) => {
    const target = loaded.model.tokenize(" harbour", { addSpecial: false })[0] as number;
    const bias = new Map([[target, 30]]);
    const constrained = loaded.scheduler.submit({
      ...request(loaded, { ...GREEDY, grammar }),
      ignoreEos: false,
      maxTokens: 24,
    });
    const [greedy, biased] = await Promise.all([
      tokensOf(loaded, request(loaded, GREEDY)),
      tokensOf(loaded, request(loaded, { ...GREEDY, logitBias: bias })),
    ]);
    ok(biased.includes(target), "the bias took effect");
    const text = (await constrained.result).text;
    match(text, /^(yes|no)(, (yes|no))*$/);
    ok(loaded.scheduler.stats().sharedSteps > 0, "the requests shared decode steps");
    return { greedy, biased, text };
  };
  await using cpu = await openWith("off", 3);
  const expected = await trio(cpu);
  await using device = await openWith("on", 3);
  deepEqual(await trio(device), expected);
  equal(device.scheduler.stats().deviceSampledRequests, 1, "only the plain greedy request");
});

Deno.test("a top-k above the vocabulary keeps every token on the device", async () => {
  // In the decode graph a k above the logits' count failed an assertion that ended the process.
  await using loaded = await openWith("on");
  const wide = await tokensOf(loaded, request(loaded, { ...SEEDED, topK: 2 ** 31 - 1 }));
  const all = await tokensOf(loaded, request(loaded, { ...SEEDED, topK: loaded.model.nVocab }));
  deepEqual(wide, all);
  equal(loaded.scheduler.stats().deviceSampledRequests, 2);
});

Deno.test("a slot's device chain is reused by requests with the same settings and replaced otherwise", async () => {
  await using loaded = await openWith("on");
  const unseeded: SamplingParams = { temperature: 1.2, topK: 0, topP: 1, minP: 0 };
  const first = await tokensOf(loaded, request(loaded, unseeded));
  const second = await tokensOf(loaded, request(loaded, unseeded));
  ok(first.join() !== second.join(), "without a seed, the draws go on from request to request");
  equal(loaded.scheduler.stats().deviceSamplerAttachments, 1);
  await tokensOf(loaded, request(loaded, { ...GREEDY, logitBias: new Map([[5, 1]]) }));
  equal(loaded.context.deviceSamplerCount, 0, "a CPU request takes the sequence back");
  await tokensOf(loaded, request(loaded, GREEDY));
  await tokensOf(loaded, request(loaded, GREEDY));
  equal(loaded.scheduler.stats().deviceSamplerAttachments, 2);
});

Deno.test("closing a model with a request still sampling on the device frees every handle", async () => {
  const before = liveHandles();
  const loaded = await openWith("on");
  const abort = new AbortController();
  const generation = loaded.scheduler.submit({
    ...request(loaded, SEEDED),
    maxTokens: 200,
    signal: abort.signal,
  });
  for await (const _ of generation) break;
  equal(loaded.context.deviceSamplerCount, 1);
  await loaded.close();
  deepEqual(liveHandles(), before);
});
