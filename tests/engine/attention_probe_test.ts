import { deepEqual, equal, notEqual, ok, rejects } from "node:assert/strict";
import { join, relative as relativePath, resolve } from "node:path";
import {
  type AttentionProbe,
  chooseKernel,
  CLOSE_CALL_ROUNDS,
  isCloseCall,
  type KernelSamples,
  modelAttentionDims,
  probeAttentionKernels,
  ROUNDS,
  TYPICAL_REQUEST,
  wantsRound,
} from "../../src/engine/attention_probe.ts";
import { cpuAttentionKernel, verdictKey } from "../../src/engine/attention_verdicts.ts";
import { LoadedModel } from "../../src/engine/loaded_model.ts";
import { Llama } from "../../src/ffi/llama.ts";
import { fixtureModel } from "../fixtures/models.ts";

/** The tiny fixtures' attention: 4 heads of 16, 2 key/value heads. */
const TINY_DIMS = { heads: 4, headsKv: 2, keyLength: 16, valueLength: 16 };

Deno.test("chooseKernel() weighs a request's prompt and tokens, and wants a 10% win to leave the fused kernel", () => {
  const request = { promptTokens: 512, generatedTokens: 256 };
  const cases: [fused: [number, number], unfused: [number, number], expected: string][] = [
    // 40 + 256 × 0.4 = 142.4 against 80 + 256 × 0.3 = 156.8: the faster prompt wins.
    [[40, 0.4], [80, 0.3], "fused"],
    // 40 + 256 × 0.9 = 270.4 against 45 + 256 × 0.4 = 147.4.
    [[40, 0.9], [45, 0.4], "unfused"],
    // 5% cheaper unfused is within the margin, 11% is not.
    [[100, 0], [95, 0], "fused"],
    [[100, 0], [89, 0], "unfused"],
  ];
  const times = ([promptMs, tokenMs]: [number, number]) => ({ promptMs, tokenMs });
  for (const [fused, unfused, expected] of cases) {
    equal(chooseKernel(times(fused), times(unfused), request), expected, `${fused} / ${unfused}`);
  }
});

Deno.test("isCloseCall() marks costs within 10% of the margin, on either side of it", () => {
  const request = { promptTokens: 512, generatedTokens: 256 };
  const fused = { promptMs: 100, tokenMs: 0 };
  const shares: [number, boolean][] = [
    [0.75, false],
    [0.81, true],
    [0.9, true],
    [0.99, true],
    [1.05, false],
  ];
  for (const [share, close] of shares) {
    equal(isCloseCall(fused, { promptMs: 100 * share, tokenMs: 0 }, request), close, `${share}`);
  }
});

Deno.test("wantsRound() takes the first rounds always, and more only while the call stays close", () => {
  const request = { promptTokens: 512, generatedTokens: 256 };
  // Each round's prompt in ms, the same for every round; no generated tokens weigh.
  const rounds = (count: number, promptMs: number): KernelSamples => ({
    prompt: Array(count).fill(promptMs),
    token: Array(count).fill(0),
  });
  const after = (count: number, fusedMs: number, unfusedMs: number) =>
    wantsRound(
      count,
      { fused: rounds(count, fusedMs), unfused: rounds(count, unfusedMs) },
      request,
    );
  equal(after(0, 100, 50), true);
  equal(after(ROUNDS - 1, 100, 50), true);
  equal(after(ROUNDS, 100, 50), false, "a clear win needs no more rounds");
  equal(after(ROUNDS, 100, 95), true, "a close call takes another");
  equal(after(ROUNDS + CLOSE_CALL_ROUNDS - 1, 100, 95), true);
  equal(after(ROUNDS + CLOSE_CALL_ROUNDS, 100, 95), false, "but no more than the extra rounds");
});

Deno.test("modelAttentionDims() reads the heads, the key/value heads and the head sizes", async () => {
  await using loaded = await LoadedModel.open({
    path: await fixtureModel("tiny-f32"),
    flashAttn: "on",
  });
  deepEqual(modelAttentionDims(loaded.model), TINY_DIMS);
});

Deno.test("probeAttentionKernels() decodes a typical request with both kernels and chooses by their times", async () => {
  const llama = Llama.open({ gpuBackend: "cpu" });
  const probe = await probeAttentionKernels(llama, TINY_DIMS, { threads: 2 });
  deepEqual(
    [probe.promptTokens, probe.generatedTokens],
    [TYPICAL_REQUEST.promptTokens, TYPICAL_REQUEST.generatedTokens],
  );
  for (const times of [probe.fused, probe.unfused]) {
    ok(times.promptMs > 0 && times.tokenMs > 0, JSON.stringify(times));
    ok(times.promptMs > times.tokenMs, "a 512-token prompt takes longer than one token");
  }
  notEqual(probe.fused.promptMs, probe.unfused.promptMs, "two kernels, two timings");
  equal(probe.kernel, chooseKernel(probe.fused, probe.unfused, probe));
  equal(typeof probe.steady, "boolean");
  ok(probe.elapsedMs > 0);
});

Deno.test("probeAttentionKernels() refuses dimensions without attention instead of handing them to llama.cpp", async () => {
  const llama = Llama.open({ gpuBackend: "cpu" });
  for (const dims of [{ ...TINY_DIMS, heads: 0 }, { ...TINY_DIMS, headsKv: 3 }]) {
    await rejects(probeAttentionKernels(llama, dims, { threads: 2 }), /No attention to probe/);
  }
});

Deno.test("cpuAttentionKernel() probes once per process and remembers the verdict on disk for the next", async () => {
  const llama = Llama.open({ gpuBackend: "cpu" });
  const first = await Deno.makeTempDir();
  const second = await Deno.makeTempDir();
  try {
    const options = { threads: 2, cacheDir: first };
    const probed = await cpuAttentionKernel(llama, TINY_DIMS, options);
    ok(probed.elapsedMs > 0, "the first call probes");
    equal(await cpuAttentionKernel(llama, TINY_DIMS, options), probed, "the process remembers it");
    const file = join(first, "attention-kernels.json");
    const key = verdictKey(llama.libDir, TINY_DIMS, 2);
    ok(key.includes('"threads":2') && key.includes('"heads":4'), key);
    // A folder named relative to the working folder is the same folder as its absolute path.
    const relative = relativePath(Deno.cwd(), llama.libDir);
    equal(verdictKey(relative, TINY_DIMS, 2), key, relative);
    ok(key.includes(JSON.stringify(resolve(llama.libDir))), key);
    if (probed.steady) {
      const stored: Record<string, AttentionProbe> = JSON.parse(await Deno.readTextFile(file));
      equal(stored[key]?.kernel, probed.kernel);
    } else {
      // A busy machine's rounds differed: the verdict is not kept for the next start.
      ok(!(await Deno.stat(file).then(() => true, () => false)), "an unsteady verdict was kept");
    }
    const verdict = { ...probed, steady: true };
    // Another cache folder holds another verdict for the same key: it is read, not probed.
    const flipped = probed.kernel === "fused" ? "unfused" : "fused";
    await Deno.writeTextFile(
      join(second, "attention-kernels.json"),
      JSON.stringify({ [key]: { ...verdict, kernel: flipped } }),
    );
    const read = await cpuAttentionKernel(llama, TINY_DIMS, { threads: 2, cacheDir: second });
    equal(read.kernel, flipped);
    equal(read.elapsedMs, 0);
    // A damaged entry is probed again and replaced.
    const third = join(second, "damaged");
    await Deno.mkdir(third);
    await Deno.writeTextFile(
      join(third, "attention-kernels.json"),
      JSON.stringify({ [key]: { ...verdict, kernel: "both" } }),
    );
    const again = await cpuAttentionKernel(llama, TINY_DIMS, { threads: 2, cacheDir: third });
    ok(again.elapsedMs > 0 && (again.kernel === "fused" || again.kernel === "unfused"));
    const rewritten = JSON.parse(await Deno.readTextFile(join(third, "attention-kernels.json")));
    equal(rewritten[key].kernel, again.steady ? again.kernel : "both");
  } finally {
    await Deno.remove(first, { recursive: true });
    await Deno.remove(second, { recursive: true });
  }
});

Deno.test("cpuAttentionKernel() runs two probes one after the other, not at once", async () => {
  const llama = Llama.open({ gpuBackend: "cpu" });
  const cacheDir = await Deno.makeTempDir();
  try {
    const options = { threads: 2, cacheDir };
    const started = performance.now();
    const probes = await Promise.all([
      cpuAttentionKernel(llama, TINY_DIMS, options),
      cpuAttentionKernel(llama, { ...TINY_DIMS, keyLength: 32, valueLength: 32 }, options),
    ]);
    const wall = performance.now() - started;
    const measuring = probes.reduce((sum, p) => sum + p.elapsedMs, 0);
    // Side by side, the two would have taken about as long as the longer one.
    ok(wall >= measuring, `${wall.toFixed(1)} ms for probes of ${measuring.toFixed(1)} ms in all`);
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("LoadedModel.open() gives a CPU context the kernel the probe chose, unless --flash-attn says", async () => {
  const path = await fixtureModel("tiny-f32");
  {
    await using loaded = await LoadedModel.open({ path, parallel: 1, ctxSize: 256 });
    const probe = loaded.attentionProbe;
    ok(probe && "kernel" in probe, JSON.stringify(probe));
    equal(loaded.context.flashAttn, probe.kernel === "fused" ? "enabled" : "disabled");
  }
  {
    // A KV stream per slot: each slot's attention is a lone sequence's, so the probe decides.
    await using loaded = await LoadedModel.open({ path, parallel: 4, ctxSize: 256 });
    ok(loaded.attentionProbe && "kernel" in loaded.attentionProbe);
  }
  {
    // One cache shared by the slots: the fused kernel, which skips the idle slots' cells.
    await using loaded = await LoadedModel.open({
      path,
      parallel: 4,
      ctxSize: 256,
      kvUnified: "on",
    });
    equal(loaded.attentionProbe, undefined);
    equal(loaded.context.flashAttn, "auto");
  }
  for (const flashAttn of ["on", "off"] as const) {
    await using loaded = await LoadedModel.open({ path, parallel: 1, ctxSize: 256, flashAttn });
    equal(loaded.attentionProbe, undefined, "a forced kernel needs no probe");
    equal(loaded.context.flashAttn, flashAttn === "on" ? "enabled" : "disabled");
  }
});
