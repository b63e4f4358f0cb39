import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { join } from "node:path";
import { parseProbeArgs, PROBE_LOAD_FAILED, probeMain } from "../../src/cli/probe.ts";
import { LoadLogReader } from "../../src/engine/load_log.ts";
import { placeLayers, type ProbeReport } from "../../src/engine/model_probe.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import { discoverModels, type DiscoveryOptions } from "../../src/models/discovery.ts";
import { ModelNotFoundError } from "../../src/models/model_names.ts";
import { ModelLoadError } from "../../src/ffi/errors.ts";
import { GgmlType } from "../../src/gguf/types.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";
import { fixtureLora, fixtureModel } from "../fixtures/models.ts";
import { capture } from "../helpers.ts";

// A model folder with the generated tiny-f32 model and its LoRA adapter, a file that is not
// GGUF, and a GGUF whose header passes discovery but which llama.cpp cannot load.

const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "shimmy-cli-probe-" }));
const dir = join(root, "models");
await Deno.mkdir(dir, { recursive: true });
await Deno.copyFile(await fixtureModel("tiny-f32"), join(dir, "tiny-f32.gguf"));
await Deno.copyFile(await fixtureLora("tiny-f32-lora"), join(dir, "tiny-f32-lora.gguf"));
await Deno.writeTextFile(join(dir, "broken.gguf"), "this is not a model");
{
  const w = new GgufWriter();
  w.setString("general.architecture", "llama");
  w.setUint32("llama.context_length", 128);
  w.addTensor("blk.0.attn_q.weight", [8, 4], GgmlType.F32, new Float32Array(32));
  await w.write(join(dir, "hollow.gguf"));
}

globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

const isolated: DiscoveryOptions = { env: {}, cwd: join(root, "cwd") };
const cpu = { modelDirs: dir, gpuBackend: "cpu" as const, verbose: false };

Deno.test("shimmy probe reports arch, parameters, context, template family and CPU layers of a generated model", async () => {
  const { code, stdout } = await capture(() => probeMain(["tiny-f32"], cpu, isolated));
  equal(code, 0);
  const discovered = (await discoverModels({ ...isolated, modelDirs: dir })).models
    .find((m) => m.name === "tiny-f32")!;
  match(stdout, /^Model: +tiny-f32$/m);
  match(stdout, new RegExp(`^Path: +${join(dir, "tiny-f32.gguf")}$`, "m"));
  match(stdout, /^Found by: +model-dirs: /m);
  match(stdout, /^Architecture: +llama \(llama .*F32\)$/m);
  match(stdout, new RegExp(`^Parameters: +\\S+ \\(${discovered.parameterCount}\\)$`, "m"));
  match(stdout, /^Quantization: +F32$/m);
  match(stdout, /^Context: +512 trained, 512 created$/m);
  match(stdout, /^Layers: +2 \(embedding width 64\)$/m);
  match(stdout, /^Chat template: +the model's own Jinja template \(chatml style/m);
  match(stdout, /^Backend: +cpu$/m);
  match(stdout, /^Offloaded: +0\/3 layers to GPU$/m);
  match(stdout, /^ {2}CPU: 3 layers$/m);
  match(stdout, /^Load time: +\d+ ms \(model \d+ ms\)$/m);
  match(stdout, /^Memory: +\S+ \S+ in llama\.cpp buffers/m);
  match(stdout, /^\s+BUFFER\s+WEIGHTS\s+KV CACHE\s+COMPUTE\s+OUTPUT$/m);
  match(stdout, /^Adapters: +tiny-f32-lora$/m);
  // The original Shimmy's probe printed this line, and scripts look for it.
  match(stdout, /\nok: loaded tiny-f32$/);
});

Deno.test("shimmy probe --json gives the same facts as one object", async () => {
  const { stdout } = await capture(() =>
    probeMain(["tiny-f32", "--json", "--ctx-size", "256"], cpu, isolated)
  );
  const report = JSON.parse(stdout) as ProbeReport;
  const discovered = (await discoverModels({ ...isolated, modelDirs: dir })).models
    .find((m) => m.name === "tiny-f32")!;
  equal(report.name, "tiny-f32");
  equal(report.architecture, "llama");
  equal(report.parameters, discovered.parameterCount);
  equal(report.quantization, "F32");
  equal(report.fileBytes, discovered.sizeBytes);
  ok(report.weightsBytes > 0 && report.weightsBytes <= report.fileBytes);
  deepEqual(report.context, { train: 512, created: 256 });
  equal(report.layers, 2);
  deepEqual(report.template, { embedded: true, family: "chatml", detectedFrom: "template" });
  equal(report.backend, "cpu");
  deepEqual(report.offload, { offloaded: 0, total: 3, devices: [{ device: "CPU", layers: 3 }] });
  ok(report.loadMs >= report.modelLoadMs && report.modelLoadMs >= 0);
  const kinds = new Set(report.memory.buffers.map((b) => b.kind));
  ok(kinds.has("weights") && kinds.has("kv") && kinds.has("compute"), [...kinds].join());
  equal(report.memory.totalBytes, report.memory.buffers.reduce((s, b) => s + b.bytes, 0));
  ok(report.memory.residentBytes > 0);
  deepEqual(report.adapters, ["tiny-f32-lora"]);
});

Deno.test("shimmy probe takes a path outside the model folders", async () => {
  const path = await fixtureModel("tiny-f32");
  const { stdout } = await capture(() =>
    probeMain([path, "--json"], { gpuBackend: "cpu", verbose: false }, isolated)
  );
  const report = JSON.parse(stdout) as ProbeReport;
  equal(report.path, path);
  equal(report.source, "cli");
  equal(report.offload.offloaded, 0);
});

/** Probes `target`, which is found but does not load: exit code 2 and the reason on stderr. */
async function probeFailsToLoad(target: string, reason: RegExp): Promise<void> {
  const { code, stdout, stderr } = await capture(() => probeMain([target], cpu, isolated));
  equal(code, PROBE_LOAD_FAILED, stderr);
  equal(stdout, "");
  match(stderr, reason);
}

Deno.test("shimmy probe of a corrupt file exits 2 and gives the reason", async () => {
  for (const target of ["broken", join(dir, "broken.gguf")]) {
    await probeFailsToLoad(
      target,
      /^shimmy: Cannot probe "[^"]+": .*broken\.gguf.*not a GGUF file/,
    );
  }
});

Deno.test("shimmy probe of a model llama.cpp rejects exits 2 with llama.cpp's reason", async () => {
  await probeFailsToLoad(
    "hollow",
    /^shimmy: Cannot load model \S+hollow\.gguf: llama\.cpp rejected it/,
  );
});

Deno.test("shimmy probe of an unknown name fails with a ModelNotFoundError listing the models", async () => {
  await rejects(() => probeMain(["no-such-model"], cpu, isolated), (error: unknown) => {
    ok(error instanceof ModelNotFoundError, String(error));
    match(error.message, /Model "no-such-model" not found\. Available: hollow, tiny-f32;/);
    return true;
  });
});

Deno.test("shimmy probe of a path that does not exist fails with a not_found ModelLoadError", async () => {
  const missing = join(root, "missing.gguf");
  await rejects(() => probeMain([missing], cpu, isolated), (error: unknown) => {
    ok(error instanceof ModelLoadError, String(error));
    equal(error.code, "not_found");
    match(error.message, /^Cannot probe "[^"]+missing\.gguf": .*not found/);
    return true;
  });
});

Deno.test("shimmy probe of a LoRA adapter says it is not a model and names its base", async () => {
  await probeFailsToLoad(
    "tiny-f32-lora",
    /is a LoRA adapter, not a model; probe its base model \(tiny-f32\)/,
  );
});

Deno.test("shimmy probe checks its arguments and prints usage for --help", async () => {
  await rejects(() => probeMain([], cpu, isolated), /No model given/);
  await rejects(() => probeMain(["a", "b"], cpu, isolated), UsageError);
  await rejects(() => probeMain(["a", "--n-gpu-layers", "x"], cpu, isolated), UsageError);
  await rejects(() => probeMain(["a", "--ctx-size", "0"], cpu, isolated), UsageError);
  await rejects(() => probeMain(["a", "--gpu-backend", "tpu"], cpu, isolated), UsageError);
  const help = await capture(() => probeMain(["--help"], cpu, isolated));
  equal(help.code, 0);
  match(help.stdout, /^Usage: shimmy probe NAME/);
  await rejects(
    () => probeMain(["a", "--flash-attn", "maybe"], cpu, isolated),
    /--flash-attn must be/,
  );
  deepEqual(parseProbeArgs(["tiny", "--n-gpu-layers", "all"]), {
    model: "tiny",
    json: false,
    nGpuLayers: -1,
    models: [],
    flashAttn: "auto",
    kvCache: {},
  });
  deepEqual(parseProbeArgs(["tiny", "--cache-type-k", "Q8_0"])?.kvCache, { k: "q8_0" });
});

Deno.test("on the CPU the kernel is the attention probe's, and the probe's own model stays out of the buffers", async () => {
  const report = async (flags: string[]) => {
    const { stdout } = await capture(() =>
      probeMain(["tiny-f32", "--json", "--ctx-size", "512", ...flags], cpu, isolated)
    );
    return JSON.parse(stdout) as ProbeReport;
  };
  const compute = (r: ProbeReport) =>
    r.memory.buffers.filter((b) => b.kind === "compute").reduce((sum, b) => sum + b.bytes, 0);
  const saved = Deno.env.get("SHIMMY_CACHE_DIR");
  const cacheDir = await Deno.makeTempDir();
  Deno.env.set("SHIMMY_CACHE_DIR", cacheDir); // no verdict yet: the probe runs in this load
  let byDefault: ProbeReport;
  try {
    byDefault = await report([]);
  } finally {
    if (saved === undefined) Deno.env.delete("SHIMMY_CACHE_DIR");
    else Deno.env.set("SHIMMY_CACHE_DIR", saved);
    await Deno.remove(cacheDir, { recursive: true });
  }
  const probe = byDefault.attention.probe;
  ok(probe && "kernel" in probe && probe.elapsedMs > 0, JSON.stringify(probe));
  const fused = probe.kernel === "fused";
  equal(byDefault.attention.flashAttn, fused ? "enabled" : "disabled");
  const same = await report(["--flash-attn", fused ? "on" : "off"]);
  equal(same.attention.probe, undefined, "a forced kernel needs no probe");
  deepEqual(byDefault.memory.buffers, same.memory.buffers, "the probe's model is not counted");
  const other = await report(["--flash-attn", fused ? "off" : "on"]);
  const [withScores, withoutScores] = fused ? [other, same] : [same, other];
  // The unfused kernel reserves the scores of a 512-token micro-batch over 512 cells, per head.
  ok(compute(withScores) > compute(withoutScores), "the unfused kernel's scores");
  const { stdout } = await capture(() => probeMain(["tiny-f32"], cpu, isolated));
  match(stdout, /Attention: +(fused \(flash attention\)|unfused), faster on this CPU/);
});

Deno.test("LoadLogReader reads layer placement and buffer sizes, also from split log pieces", () => {
  const log = new LoadLogReader();
  const text = [
    "load_tensors: layer   0 assigned to device CPU, is_swa = 0\n",
    "load_tensors: layer   1 assigned to device CUDA0, is_swa = 0\n",
    "load_tensors: layer   2 assigned to device CUDA1, is_swa = 0\n",
    "load_tensors: layer   3 assigned to device CUDA1, is_swa = 0\n",
    "load_tensors:        CUDA0 model buffer size =   100.00 MiB\n",
    "load_tensors:   CPU_Mapped model buffer size =     0.50 MiB\n",
    "llama_context:  CUDA_Host  output buffer size =     0.58 MiB\n",
    "llama_kv_cache:      CUDA1 KV buffer size =    16.00 MiB\n",
    "sched_reserve:      CUDA0 compute buffer size =   300.75 MiB",
  ].join("");
  for (let i = 0; i < text.length; i += 37) log.push(text.slice(i, i + 37));
  log.finish();
  deepEqual([...log.layerDevice], [[0, "CPU"], [1, "CUDA0"], [2, "CUDA1"], [3, "CUDA1"]]);
  const MiB = 1024 * 1024;
  deepEqual(log.buffers, [
    { buffer: "CUDA0", kind: "weights", bytes: 100 * MiB },
    { buffer: "CPU_Mapped", kind: "weights", bytes: 0.5 * MiB },
    { buffer: "CUDA_Host", kind: "output", bytes: Math.round(0.58 * MiB) },
    { buffer: "CUDA1", kind: "kv", bytes: 16 * MiB },
    { buffer: "CUDA0", kind: "compute", bytes: Math.round(300.75 * MiB) },
  ]);
  const gpu = (device: string) => ({
    device,
    description: "GPU",
    freeBytes: 1,
    totalBytes: 2,
    usedBytes: 1,
  });
  deepEqual(
    placeLayers({ offloaded: 3, total: 4 }, log.layerDevice, [gpu("CUDA0"), gpu("CUDA1")]),
    [
      { device: "CPU", layers: 1 },
      { ...gpu("CUDA0"), layers: 1 },
      { ...gpu("CUDA1"), layers: 2 },
    ],
  );
  // Without the placement log: the offload count, split between the CPU and the GPUs.
  deepEqual(placeLayers({ offloaded: 2, total: 3 }, new Map(), [gpu("CUDA0")]), [
    { device: "CPU", layers: 1 },
    { ...gpu("CUDA0"), layers: 2 },
  ]);
});
