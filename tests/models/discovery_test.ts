import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import {
  discoverModels,
  type DiscoveryOptions,
  type DiscoveryReport,
  discoveryRoots,
  findAdapter,
  findModel,
  parseShardName,
  resolveModel,
  splitPathList,
} from "../../src/models/discovery.ts";
import { ModelNotFoundError } from "../../src/models/model_names.ts";
import { GgmlType, GgufValueType } from "../../src/gguf/types.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";
import { fixtureModel } from "../fixtures/models.ts";

// ---------------------------------------------------------------------------------------------
// Helpers: every test builds its own tree of real (tiny) GGUF files in a temp folder, and
// passes env/home/cwd explicitly so the real home folder is never searched.

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "shimmy-discovery-" }));
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Options searching nothing but what the test adds: no HOME, a cwd without ./models. */
function isolated(root: string, extra: DiscoveryOptions = {}): DiscoveryOptions {
  return { env: {}, cwd: join(root, "cwd"), platform: "linux", ...extra };
}

interface TinyOptions {
  arch?: string | null;
  name?: string;
  generalType?: string;
  fileType?: number;
  context?: number;
  chatTemplate?: string;
  tensors?: number;
  extra?: (w: GgufWriter) => void;
}

/** Writes a small GGUF whose header looks like a model's; returns its size. */
async function writeTiny(path: string, o: TinyOptions = {}): Promise<number> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const w = new GgufWriter();
  const arch = o.arch === undefined ? "llama" : o.arch;
  if (arch !== null) w.setString("general.architecture", arch);
  if (o.generalType !== undefined) w.setString("general.type", o.generalType);
  w.setString("general.name", o.name ?? "Tiny Test");
  if (o.fileType !== undefined) w.setUint32("general.file_type", o.fileType);
  if (arch !== null) w.setUint32(`${arch}.context_length`, o.context ?? 256);
  if (o.chatTemplate !== undefined) w.setString("tokenizer.chat_template", o.chatTemplate);
  o.extra?.(w);
  for (let i = 0; i < (o.tensors ?? 2); i++) {
    w.addTensor(`blk.${i}.attn_q.weight`, [8, 4], GgmlType.F32, new Float32Array(32));
  }
  return await w.write(path);
}

/** Writes a LoRA adapter GGUF (`general.type = adapter`). */
async function writeAdapter(
  path: string,
  o: { arch?: string; baseName?: string; baseRepo?: string } = {},
): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const w = new GgufWriter();
  w.setString("general.architecture", o.arch ?? "llama");
  w.setString("general.type", "adapter");
  w.setString("adapter.type", "lora");
  w.setFloat32("adapter.lora.alpha", 16);
  if (o.baseName !== undefined || o.baseRepo !== undefined) {
    w.setUint32("general.base_model.count", 1);
    if (o.baseName !== undefined) w.setString("general.base_model.0.name", o.baseName);
    if (o.baseRepo !== undefined) w.setString("general.base_model.0.repo_url", o.baseRepo);
  }
  w.addTensor("blk.0.attn_q.weight.lora_a", [8, 2], GgmlType.F32, new Float32Array(16));
  w.addTensor("blk.0.attn_q.weight.lora_b", [2, 8], GgmlType.F32, new Float32Array(16));
  await w.write(path);
}

/** Writes shards `present` of a `count`-way split model; returns the size of each written. */
async function writeSplit(
  dir: string,
  prefix: string,
  count: number,
  present: readonly number[],
): Promise<Map<number, number>> {
  await Deno.mkdir(dir, { recursive: true });
  const sizes = new Map<number, number>();
  for (const i of present) {
    const w = new GgufWriter();
    if (i === 1) {
      w.setString("general.architecture", "llama");
      w.setString("general.name", prefix);
      w.setUint32("general.file_type", 7);
      w.setUint32("llama.context_length", 1024);
    }
    w.set("split.no", { type: GgufValueType.UINT16, value: i - 1 });
    w.set("split.count", { type: GgufValueType.UINT16, value: count });
    w.set("split.tensors.count", { type: GgufValueType.INT32, value: count });
    w.addTensor(`blk.${i - 1}.ffn_up.weight`, [32, 2], GgmlType.Q8_0, new Float32Array(64));
    const name = `${prefix}-${String(i).padStart(5, "0")}-of-${String(count).padStart(5, "0")}`;
    sizes.set(i, await w.write(join(dir, `${name}.gguf`)));
  }
  return sizes;
}

async function sha256Hex(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Moves a GGUF into an Ollama store's blobs folder; returns its `sha256:HEX` digest. */
async function ollamaBlob(store: string, file: string): Promise<string> {
  const hex = await sha256Hex(file);
  await Deno.mkdir(join(store, "blobs"), { recursive: true });
  await Deno.rename(file, join(store, "blobs", `sha256-${hex}`));
  return `sha256:${hex}`;
}

async function ollamaManifest(
  store: string,
  reference: string[],
  layers: { mediaType: string; digest: string }[],
): Promise<void> {
  const path = join(store, "manifests", ...reference);
  await Deno.mkdir(dirname(path), { recursive: true });
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      layers: layers.map((l) => ({ ...l, size: 1 })),
    }),
  );
}

const names = (report: DiscoveryReport) => report.models.map((m) => m.name);
const skippedOf = (report: DiscoveryReport, kind: string) =>
  report.skipped.filter((s) => s.kind === kind);

// ---------------------------------------------------------------------------------------------
// Sources

Deno.test("discoverModels() lists SHIMMY_BASE_GGUF and attaches SHIMMY_LORA_GGUF as its adapter", async () => {
  await withTemp(async (root) => {
    const base = join(root, "base", "My-Base.gguf");
    const lora = join(root, "loras", "style.gguf");
    await writeTiny(base, { fileType: 15, context: 4096, chatTemplate: "{{ messages }}" });
    await writeAdapter(lora);
    await writeTiny(join(root, "base", "neighbour.gguf"));
    const report = await discoverModels(isolated(root, {
      env: { SHIMMY_BASE_GGUF: base, SHIMMY_LORA_GGUF: lora },
    }));
    deepEqual(names(report), ["my-base", "neighbour"]);
    const [model, neighbour] = report.models;
    equal(model!.source, "env");
    equal(model!.sourceDetail, "SHIMMY_BASE_GGUF");
    equal(model!.path, base);
    deepEqual(model!.shards, [base]);
    equal(model!.architecture, "llama");
    equal(model!.quantization, "Q4_K_M");
    equal(model!.contextLength, 4096);
    equal(model!.hasChatTemplate, true);
    equal(model!.displayName, "Tiny Test");
    equal(model!.sizeBytes, (await Deno.stat(base)).size);
    // The folder of SHIMMY_BASE_GGUF is one of the original Shimmy's places.
    equal(neighbour!.source, "shimmy");
    equal(neighbour!.hasChatTemplate, false);
    equal(report.adapters.length, 1);
    equal(report.adapters[0]!.name, "style");
    equal(report.adapters[0]!.matchedBy, "env");
    deepEqual(report.adapters[0]!.baseModels, ["my-base"]);
    deepEqual(model!.adapters.map((a) => a.path), [lora]);
    equal(neighbour!.adapters.length, 0);
    equal(findAdapter(report, "style")?.path, lora);
  });
});

Deno.test("discoverModels() lists --model files with metadata read from the real fixture model", async () => {
  await withTemp(async (root) => {
    const fixture = await fixtureModel("tiny-f32");
    const copy = join(root, "picked", "Tiny-F32.gguf");
    await Deno.mkdir(dirname(copy));
    await Deno.copyFile(fixture, copy);
    const folder = join(root, "folder");
    await writeTiny(join(folder, "deep", "in-folder.gguf"));
    const report = await discoverModels(isolated(root, {
      models: [copy, folder, join(root, "missing.gguf")],
    }));
    deepEqual(names(report), ["tiny-f32", "in-folder"]);
    const model = report.models[0]!;
    equal(model.source, "cli");
    equal(model.architecture, "llama");
    equal(model.quantization, "F32");
    equal(model.contextLength, 512);
    equal(model.sizeBytes, (await Deno.stat(fixture)).size);
    // 2 blocks of n_embd 64 / n_ff 128 plus embeddings over the ~1000-token tiny vocabulary.
    ok(model.parameterCount! > 2 * (4 * 64 * 64 + 3 * 64 * 128));
    equal(report.models[1]!.source, "cli");
    const missing = skippedOf(report, "not-found");
    equal(missing.length, 1);
    equal(missing[0]!.path, join(root, "missing.gguf"));
    match(missing[0]!.reason, /not found/);
  });
});

Deno.test("discoverModels() searches --model-dirs and SHIMMY_MODEL_PATHS split on ';' and ':'", async () => {
  await withTemp(async (root) => {
    for (const dir of ["a", "b", "c", "d"]) await writeTiny(join(root, dir, `model-${dir}.gguf`));
    const report = await discoverModels(isolated(root, {
      modelDirs: `${join(root, "a")};${join(root, "b")}`,
      env: { SHIMMY_MODEL_PATHS: `${join(root, "c")}:${join(root, "d")};${join(root, "nope")}` },
    }));
    deepEqual(names(report), ["model-a", "model-b", "model-c", "model-d"]);
    ok(report.models.every((m) => m.source === "model-dirs"));
    match(report.models[0]!.sourceDetail, /^--model-dirs/);
    match(report.models[2]!.sourceDetail, /^SHIMMY_MODEL_PATHS/);
    equal(skippedOf(report, "not-found")[0]?.path, join(root, "nope"));
  });
});

Deno.test("discoverModels() searches ./models relative to the cwd option", async () => {
  await withTemp(async (root) => {
    await writeTiny(join(root, "cwd", "models", "Local-Model.gguf"));
    const report = await discoverModels(isolated(root));
    deepEqual(names(report), ["local-model"]);
    equal(report.models[0]!.source, "local");
    const off = await discoverModels(isolated(root, { sources: { local: false } }));
    deepEqual(names(off), []);
  });
});

Deno.test("discoverModels() resolves Hugging Face cache snapshots to their blobs and names them ORG/NAME:FILE", async () => {
  await withTemp(async (root) => {
    const hub = join(root, "hf", "hub");
    const repo = join(hub, "models--TinyOrg--Tiny-GGUF");
    const newRev = "b".repeat(40);
    const oldRev = "a".repeat(40);
    await writeTiny(join(repo, "blobs", "1111"), { fileType: 7, name: "Tiny" });
    await writeTiny(join(repo, "blobs", "0000"), { fileType: 1, name: "Tiny old" });
    await Deno.mkdir(join(repo, "refs"), { recursive: true });
    await Deno.writeTextFile(join(repo, "refs", "main"), newRev);
    for (const [rev, blob] of [[newRev, "1111"], [oldRev, "0000"]] as const) {
      await Deno.mkdir(join(repo, "snapshots", rev, "sub"), { recursive: true });
      await Deno.symlink(`../../blobs/${blob}`, join(repo, "snapshots", rev, "Tiny-Q8_0.gguf"));
    }
    // A nested file and an unfinished download (a link to a missing blob).
    await writeTiny(join(repo, "blobs", "2222"));
    await Deno.symlink("../../../blobs/2222", join(repo, "snapshots", newRev, "sub", "extra.gguf"));
    await Deno.symlink("../../blobs/9999", join(repo, "snapshots", newRev, "partial.gguf"));
    // Datasets and other folders are ignored.
    await writeTiny(join(hub, "datasets--x--y", "snapshots", "r", "data.gguf"));

    const report = await discoverModels(isolated(root, { env: { HF_HOME: join(root, "hf") } }));
    deepEqual(names(report), ["tinyorg/tiny-gguf:tiny-q8_0", "tinyorg/tiny-gguf:sub/extra"]);
    const model = report.models[0]!;
    equal(model.source, "huggingface");
    equal(model.path, join(repo, "snapshots", newRev, "Tiny-Q8_0.gguf"));
    equal(model.realPath, join(repo, "blobs", "1111"));
    equal(model.quantization, "Q8_0"); // the refs/main revision, not the older one
    equal(model.sizeBytes, (await Deno.stat(join(repo, "blobs", "1111"))).size);
    match(model.sourceDetail, /TinyOrg\/Tiny-GGUF revision b{12}/);
    deepEqual(skippedOf(report, "broken-link").map((s) => s.path), [
      join(repo, "snapshots", newRev, "partial.gguf"),
    ]);
    // The file stem and the repository work as aliases.
    equal(resolveModel(report, "tiny-q8_0"), model);
    equal(resolveModel(report, "extra").name, "tinyorg/tiny-gguf:sub/extra");
    equal(findModel(report, "tinyorg/tiny-gguf"), undefined); // two files: ambiguous
  });
});

Deno.test("discoverModels() prefers HF_HUB_CACHE and HUGGINGFACE_HUB_CACHE over HF_HOME", () => {
  const roots = (env: Record<string, string>) =>
    discoveryRoots({ env, cwd: "/w", platform: "linux" })
      .filter((r) => r.source === "huggingface").map((r) => r.path);
  deepEqual(roots({ HOME: "/h" }), ["/h/.cache/huggingface/hub"]);
  deepEqual(roots({ HOME: "/h", XDG_CACHE_HOME: "/x" }), ["/x/huggingface/hub"]);
  deepEqual(roots({ HF_HOME: "/hf" }), ["/hf/hub"]);
  deepEqual(roots({ HF_HOME: "/hf", HUGGINGFACE_HUB_CACHE: "/legacy" }), ["/legacy"]);
  deepEqual(roots({ HUGGINGFACE_HUB_CACHE: "/legacy", HF_HUB_CACHE: "/new" }), ["/new"]);
});

Deno.test("discoverModels() reads Ollama manifests and names models NAME:TAG", async () => {
  await withTemp(async (root) => {
    const store = join(root, "ollama");
    const tmp = join(root, "tmp");
    await writeTiny(join(tmp, "m.gguf"), { fileType: 2, name: "Qwen" });
    await writeTiny(join(tmp, "p.gguf"), { arch: "clip", name: "Qwen vision" });
    await writeAdapter(join(tmp, "a.gguf"));
    await writeTiny(join(tmp, "hf.gguf"), { name: "From HF" });
    const model = await ollamaBlob(store, join(tmp, "m.gguf"));
    const projector = await ollamaBlob(store, join(tmp, "p.gguf"));
    const adapter = await ollamaBlob(store, join(tmp, "a.gguf"));
    const hf = await ollamaBlob(store, join(tmp, "hf.gguf"));
    const layer = (kind: string, digest: string) => ({
      mediaType: `application/vnd.ollama.image.${kind}`,
      digest,
    });
    await ollamaManifest(store, ["registry.ollama.ai", "library", "qwen", "latest"], [
      layer("model", model),
      layer("projector", projector),
      layer("adapter", adapter),
      layer("template", "sha256:" + "0".repeat(64)),
    ]);
    // Another tag of the same blob becomes an alias, not a second model.
    await ollamaManifest(store, ["registry.ollama.ai", "library", "qwen", "0.5b"], [
      layer("model", model),
    ]);
    await ollamaManifest(store, ["registry.ollama.ai", "ann", "mine", "v1"], [layer("model", hf)]);
    await ollamaManifest(store, ["hf.co", "Org", "Repo-GGUF", "Q4_K_M"], [layer("model", hf)]);
    // A digest that tries to leave blobs/, a manifest without a model layer, and garbage.
    await ollamaManifest(store, ["registry.ollama.ai", "library", "evil", "latest"], [
      layer("model", "sha256:../../../../etc/passwd"),
    ]);
    await ollamaManifest(store, ["registry.ollama.ai", "library", "empty", "latest"], []);
    await Deno.writeTextFile(
      join(store, "manifests", "registry.ollama.ai", "library", "qwen", "bad"),
      "{",
    );

    const report = await discoverModels(isolated(root, { env: { OLLAMA_MODELS: store } }));
    // hf.co/… and ann/mine share one blob: listed once, the second name is an alias.
    deepEqual(names(report), ["hf.co/org/repo-gguf:q4_k_m", "qwen:0.5b"]);
    const qwen = report.models[1]!;
    equal(qwen.source, "ollama");
    equal(qwen.realPath, join(store, "blobs", model.replace(":", "-")));
    equal(qwen.quantization, "Q4_0");
    ok(qwen.aliases.includes("qwen:latest"));
    ok(qwen.aliases.includes("qwen"));
    equal(resolveModel(report, "qwen:latest"), qwen);
    equal(resolveModel(report, "QWEN"), qwen);
    equal(resolveModel(report, "ann/mine:v1").name, "hf.co/org/repo-gguf:q4_k_m");
    equal(qwen.mmproj, join(store, "blobs", projector.replace(":", "-")));
    deepEqual(report.projectors.map((p) => p.model), ["qwen:0.5b"]);
    equal(qwen.adapters.length, 1);
    equal(qwen.adapters[0]!.matchedBy, "ollama");
    const manifestProblems = skippedOf(report, "manifest").map((s) => relative(store, s.path));
    deepEqual(manifestProblems.sort(), [
      "manifests/registry.ollama.ai/library/empty/latest",
      "manifests/registry.ollama.ai/library/evil/latest",
      "manifests/registry.ollama.ai/library/qwen/bad",
    ]);
  });
});

Deno.test("discoverModels() names library Ollama models NAME:TAG when found first", async () => {
  await withTemp(async (root) => {
    const store = join(root, "home", ".ollama", "models");
    await writeTiny(join(root, "m.gguf"));
    const digest = await ollamaBlob(store, join(root, "m.gguf"));
    await ollamaManifest(store, ["registry.ollama.ai", "library", "llama3.2", "latest"], [
      { mediaType: "application/vnd.ollama.image.model", digest },
    ]);
    const report = await discoverModels(isolated(root, { home: join(root, "home") }));
    deepEqual(names(report), ["llama3.2:latest"]);
    equal(resolveModel(report, "llama3.2").name, "llama3.2:latest");
    match(report.models[0]!.sourceDetail, /registry\.ollama\.ai\/library\/llama3\.2:latest/);
  });
});

Deno.test("models answer to the names the original Shimmy gave them", async () => {
  await withTemp(async (root) => {
    const base = join(root, "base", "Base_Model.gguf");
    await writeTiny(base);
    await writeTiny(join(root, "dir", "My_Model Q4_K_M.gguf"));
    const repo = join(root, "hf", "hub", "models--Org--Tiny-GGUF");
    await writeTiny(join(repo, "blobs", "1111"));
    await Deno.mkdir(join(repo, "snapshots", "r"), { recursive: true });
    await Deno.symlink("../../blobs/1111", join(repo, "snapshots", "r", "tiny_q8_0.gguf"));
    const store = join(root, "ollama");
    await writeTiny(join(root, "m.gguf"), { name: "Other" });
    const digest = await ollamaBlob(store, join(root, "m.gguf"));
    await ollamaManifest(store, ["registry.ollama.ai", "library", "tinyllama", "latest"], [
      { mediaType: "application/vnd.ollama.image.model", digest },
    ]);
    const report = await discoverModels(isolated(root, {
      env: {
        SHIMMY_BASE_GGUF: base,
        SHIMMY_MODEL_PATHS: join(root, "dir"),
        HF_HOME: join(root, "hf"),
        OLLAMA_MODELS: store,
      },
    }));
    // File stems with `_` and spaces as `-`, the base model's fixed name, and Ollama's manifest
    // path, beside this server's own names.
    equal(resolveModel(report, "my-model-q4-k-m").name, "my_model q4_k_m");
    equal(resolveModel(report, "base-model").name, "base_model");
    equal(resolveModel(report, "tinyllama-1.1b").name, "base_model");
    equal(resolveModel(report, "tiny-q8-0").name, "org/tiny-gguf:tiny_q8_0");
    equal(
      resolveModel(report, "registry.ollama.ai/library/tinyllama/latest").name,
      "tinyllama:latest",
    );
  });
});

Deno.test("discoverModels() finds LM Studio models in both of its folders", async () => {
  await withTemp(async (root) => {
    const home = join(root, "home");
    await writeTiny(
      join(home, ".lmstudio", "models", "lmstudio-community", "Phi-GGUF", "Phi-Q4.gguf"),
    );
    await writeTiny(join(home, ".cache", "lm-studio", "models", "pub", "Old-GGUF", "old.gguf"));
    const report = await discoverModels(isolated(root, { home }));
    deepEqual(names(report), ["phi-q4", "old"]);
    ok(report.models.every((m) => m.source === "lmstudio"));
    equal(report.models[0]!.sourceDetail, "lmstudio-community/Phi-GGUF in ~/.lmstudio/models");
    equal(report.models[1]!.sourceDetail, "pub/Old-GGUF in ~/.cache/lm-studio/models");
  });
});

Deno.test("discoverModels() finds models in the original Shimmy's places", async () => {
  await withTemp(async (root) => {
    const home = join(root, "home");
    await writeTiny(join(home, "models", "home-model.gguf"));
    await writeTiny(join(home, ".local", "share", "shimmy", "models", "data-model.gguf"));
    await writeTiny(join(root, "xdg", "shimmy", "models", "xdg-model.gguf"));
    const report = await discoverModels(isolated(root, { home }));
    deepEqual(names(report), ["home-model", "data-model"]);
    ok(report.models.every((m) => m.source === "shimmy"));
    const xdg = await discoverModels(isolated(root, {
      home,
      env: { XDG_DATA_HOME: join(root, "xdg") },
    }));
    deepEqual(names(xdg), ["home-model", "xdg-model"]);
    const off = await discoverModels(isolated(root, { home, sources: { shimmy: false } }));
    deepEqual(names(off), []);
  });
});

Deno.test("discoveryRoots() computes the Windows places from the environment", () => {
  const roots = discoveryRoots({
    platform: "windows",
    cwd: "C:\\work",
    env: {
      UserProfile: "C:\\Users\\Ann", // Windows variable names are case-insensitive
      LOCALAPPDATA: "C:\\Users\\Ann\\AppData\\Local",
      SHIMMY_MODEL_PATHS: "D:\\llm;E:\\more models",
      SHIMMY_BASE_GGUF: "F:\\base\\b.gguf",
    },
    models: ["rel\\x.gguf"],
  });
  deepEqual(roots.map((r) => [r.source, r.path]), [
    ["env", "F:\\base\\b.gguf"],
    ["cli", "C:\\work\\rel\\x.gguf"],
    ["model-dirs", "D:\\llm"],
    ["model-dirs", "E:\\more models"],
    ["local", "C:\\work\\models"],
    ["huggingface", "C:\\Users\\Ann\\.cache\\huggingface\\hub"],
    ["ollama", "C:\\Users\\Ann\\.ollama\\models"],
    ["lmstudio", "C:\\Users\\Ann\\.lmstudio\\models"],
    ["lmstudio", "C:\\Users\\Ann\\.cache\\lm-studio\\models"],
    ["shimmy", "C:\\Users\\Ann\\models"],
    ["shimmy", "C:\\Users\\Ann\\AppData\\Local\\shimmy\\models"],
    ["shimmy", "F:\\base"],
  ]);
  equal(roots.find((r) => r.path === "C:\\Users\\Ann\\models")?.label, "%USERPROFILE%\\models");
  // Without LOCALAPPDATA the data folder is derived from the profile.
  const fallback = discoveryRoots({
    platform: "windows",
    cwd: "C:\\w",
    env: { USERPROFILE: "C:\\U" },
  });
  ok(fallback.some((r) => r.path === "C:\\U\\AppData\\Local\\shimmy\\models"));
  deepEqual(splitPathList("C:\\a;D:\\b", "windows"), ["C:\\a", "D:\\b"]);
  deepEqual(splitPathList("/a:/b; /c ;", "linux"), ["/a", "/b", "/c"]);
});

Deno.test("discoveryRoots() never looks under a home folder that was not given", () => {
  const roots = discoveryRoots({ env: {}, cwd: "/w", platform: "linux" });
  deepEqual(roots.map((r) => r.path), ["/w/models"]);
  const real = Deno.env.get("HOME");
  if (real !== undefined) ok(roots.every((r) => !r.path.startsWith(real)));
});

// ---------------------------------------------------------------------------------------------
// Names

Deno.test("discoverModels() gives colliding names a source suffix, the same on every run", async () => {
  await withTemp(async (root) => {
    const home = join(root, "home");
    await writeTiny(join(root, "a", "Tiny.gguf"));
    await writeTiny(join(root, "b", "tiny.gguf"));
    await writeTiny(join(root, "cwd", "models", "tiny.gguf"));
    await writeTiny(join(home, "models", "tiny.gguf"));
    await writeTiny(join(home, ".lmstudio", "models", "p", "r", "tiny.gguf"));
    await writeTiny(join(root, "c", "tiny@local.gguf")); // a file already named like a suffix
    const options = isolated(root, {
      home,
      modelDirs: [join(root, "a"), join(root, "b")],
      models: [join(root, "c", "tiny@local.gguf")],
    });
    const report = await discoverModels(options);
    deepEqual(names(report), [
      "tiny@local", // --model comes before folders
      "tiny",
      "tiny@model-dirs",
      "tiny@local-2",
      "tiny@lmstudio",
      "tiny@shimmy",
    ]);
    equal(new Set(names(report)).size, report.models.length);
    deepEqual(names(await discoverModels(options)), names(report));
    equal(resolveModel(report, "tiny").path, join(root, "a", "Tiny.gguf"));
    equal(resolveModel(report, "TINY@LMSTUDIO").source, "lmstudio");
  });
});

Deno.test("discoverModels() lists a file reached twice only once, under the first source", async () => {
  await withTemp(async (root) => {
    const file = join(root, "cwd", "models", "shared.gguf");
    await writeTiny(file);
    await Deno.mkdir(join(root, "other"));
    await Deno.symlink(file, join(root, "other", "link.gguf"));
    const report = await discoverModels(isolated(root, { modelDirs: join(root, "other") }));
    deepEqual(names(report), ["link"]);
    ok(report.models[0]!.aliases.includes("shared"));
    equal(report.models[0]!.realPath, file);
  });
});

// ---------------------------------------------------------------------------------------------
// Split models

Deno.test("discoverModels() lists a split GGUF once, from its first shard, with all shards", async () => {
  await withTemp(async (root) => {
    const dir = join(root, "split");
    const sizes = await writeSplit(dir, "Big-Model", 3, [3, 1, 2]);
    await writeSplit(dir, "orphan", 2, [2]);
    await writeSplit(dir, "gappy", 3, [1, 3]);
    const report = await discoverModels(isolated(root, { modelDirs: dir }));
    deepEqual(names(report), ["big-model"]);
    const model = report.models[0]!;
    const shard = (i: number) => join(dir, `Big-Model-0000${i}-of-00003.gguf`);
    equal(model.path, shard(1));
    deepEqual(model.shards, [shard(1), shard(2), shard(3)]);
    equal(model.sizeBytes, sizes.get(1)! + sizes.get(2)! + sizes.get(3)!);
    equal(model.quantization, "Q8_0");
    equal(model.contextLength, 1024);
    equal(model.parameterCount, 3 * 64);
    const missing = skippedOf(report, "missing-shard");
    deepEqual(missing.map((s) => s.path).sort(), [
      join(dir, "gappy-00001-of-00003.gguf"),
      join(dir, "orphan-00002-of-00002.gguf"),
    ]);
    match(missing.find((s) => s.path.includes("orphan"))!.reason, /missing shard 1 of 2/);
    match(missing.find((s) => s.path.includes("gappy"))!.reason, /missing shard 2 of 3/);
    equal(resolveModel(report, shard(1)), model);
  });
});

Deno.test("discoverModels() finds the sibling shards of an explicitly named shard", async () => {
  await withTemp(async (root) => {
    const dir = join(root, "split");
    await writeSplit(dir, "m", 2, [1, 2]);
    const second = join(dir, "m-00002-of-00002.gguf");
    const report = await discoverModels(isolated(root, { models: [second] }));
    deepEqual(report.models.map((m) => m.shards), [[join(dir, "m-00001-of-00002.gguf"), second]]);
    await Deno.remove(join(dir, "m-00001-of-00002.gguf"));
    const alone = await discoverModels(isolated(root, { models: [second] }));
    deepEqual(names(alone), []);
    equal(skippedOf(alone, "missing-shard").length, 1);
    deepEqual(parseShardName("x-00002-of-00003.gguf")?.index, 2);
    equal(parseShardName("x-00004-of-00003.gguf"), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Classification

Deno.test("discoverModels() keeps mmproj, vocabulary-only and adapter files out of the model list", async () => {
  await withTemp(async (root) => {
    const dir = join(root, "mixed");
    await writeTiny(join(dir, "vision", "chat.gguf"), { name: "Chat" });
    await writeTiny(join(dir, "vision", "projector.gguf"), { arch: "clip" });
    await writeTiny(join(dir, "vision", "mmproj-model-f16.gguf")); // llama arch, named mmproj
    await writeTiny(join(dir, "vocab", "ggml-vocab-llama.gguf"), {
      tensors: 0,
      extra: (w) => w.setStringArray("tokenizer.ggml.tokens", ["a", "b"]),
    });
    // Attached by metadata (general.base_model.0.name = the model's general.name).
    await writeTiny(join(dir, "bases", "qwen.gguf"), {
      name: "Qwen2.5 0.5B Instruct",
      arch: "qwen2",
    });
    await writeTiny(join(dir, "bases", "llama.gguf"), { name: "Llama" });
    await writeAdapter(join(dir, "loras", "by-meta.gguf"), {
      arch: "qwen2",
      baseName: "Qwen2.5 0.5B Instruct",
    });
    // Attached by name: the adapter's file name starts with the model's ("llama" + "-lora").
    await writeAdapter(join(dir, "loras", "llama-lora.gguf"));
    // Attached by folder: the only model of its architecture next to it.
    await writeTiny(join(dir, "pair", "solo.gguf"));
    await writeAdapter(join(dir, "pair", "style.gguf"));
    // Base unknown: listed as an adapter without a model.
    await writeAdapter(join(dir, "loras", "orphan-lora.gguf"), { baseName: "Nothing Here" });

    const report = await discoverModels(isolated(root, { modelDirs: dir }));
    deepEqual(names(report), ["llama", "qwen", "solo", "chat"]);
    deepEqual(report.projectors.map((p) => [relative(dir, p.path), p.model]), [
      ["vision/mmproj-model-f16.gguf", "chat"],
      ["vision/projector.gguf", "chat"],
    ]);
    equal(resolveModel(report, "chat").mmproj, join(dir, "vision", "mmproj-model-f16.gguf"));
    deepEqual(skippedOf(report, "vocab-only").map((s) => relative(dir, s.path)), [
      "vocab/ggml-vocab-llama.gguf",
    ]);
    const adapters = Object.fromEntries(report.adapters.map((a) => [a.name, a]));
    deepEqual(Object.keys(adapters).sort(), ["by-meta", "llama-lora", "orphan-lora", "style"]);
    deepEqual(adapters["llama-lora"]!.baseModels, ["llama"]);
    equal(adapters["llama-lora"]!.matchedBy, "name");
    deepEqual(adapters["by-meta"]!.baseModels, ["qwen"]);
    equal(adapters["by-meta"]!.matchedBy, "metadata");
    equal(adapters["by-meta"]!.architecture, "qwen2");
    deepEqual(adapters["style"]!.baseModels, ["solo"]);
    equal(adapters["style"]!.matchedBy, "folder");
    equal(adapters["style"]!.loraAlpha, 16);
    deepEqual(adapters["orphan-lora"]!.baseModels, []);
    deepEqual(resolveModel(report, "qwen").adapters.map((a) => a.name), ["by-meta"]);
    equal(findModel(report, "by-meta"), undefined);
  });
});

Deno.test("discoverModels() reports unreadable and corrupt files without failing", async () => {
  await withTemp(async (root) => {
    const dir = join(root, "m");
    await writeTiny(join(dir, "good.gguf"));
    await Deno.writeTextFile(join(dir, "text.gguf"), "this is not a model");
    const full = await Deno.readFile(join(dir, "good.gguf"));
    await Deno.writeFile(join(dir, "truncated.gguf"), full.subarray(0, full.length - 40));
    await Deno.writeFile(join(dir, "empty.gguf"), new Uint8Array());
    await writeTiny(join(dir, "no-arch.gguf"), { arch: null });
    let locked: string | undefined;
    if (Deno.uid() !== 0) { // root reads everything: the permission case needs another user
      locked = join(dir, "locked.gguf");
      await writeTiny(locked);
      await Deno.chmod(locked, 0o000);
    }
    const report = await discoverModels(isolated(root, { modelDirs: dir }));
    deepEqual(names(report), ["good"]);
    const reasons = Object.fromEntries(report.skipped.map((s) => [relative(dir, s.path), s]));
    equal(reasons["text.gguf"]?.kind, "corrupt");
    match(reasons["text.gguf"]!.reason, /not a GGUF file/);
    equal(reasons["truncated.gguf"]?.kind, "corrupt");
    match(reasons["truncated.gguf"]!.reason, /incomplete/);
    equal(reasons["empty.gguf"]?.kind, "corrupt");
    equal(reasons["no-arch.gguf"]?.kind, "corrupt");
    match(reasons["no-arch.gguf"]!.reason, /general\.architecture/);
    if (locked !== undefined) equal(reasons["locked.gguf"]?.kind, "unreadable");
    ok(report.skipped.every((s) => s.source === "model-dirs"));
  });
});

// ---------------------------------------------------------------------------------------------
// Bounded scans

Deno.test("discoverModels() stops a huge scan at the entry limit and reports it", async () => {
  await withTemp(async (root) => {
    const big = join(root, "big");
    for (let i = 0; i < 120; i++) {
      await Deno.mkdir(join(big, `dir-${String(i).padStart(3, "0")}`), { recursive: true });
    }
    await writeTiny(join(big, "zzz", "late.gguf"));
    await writeTiny(join(root, "small", "early.gguf"));
    const report = await discoverModels(isolated(root, {
      modelDirs: [big, join(root, "small")],
      maxEntries: 50,
    }));
    deepEqual(names(report), ["early"]); // the next root still gets its own budget
    const limits = skippedOf(report, "limit");
    equal(limits.length, 1);
    equal(limits[0]!.path, big);
    match(limits[0]!.reason, /^Scan of .*big stopped: limit of 50 entries reached/);
    equal(report.roots.find((r) => r.path === big)?.entries, 51);
  });
});

Deno.test("discoverModels() stops scanning at the time limit and reports it", async () => {
  await withTemp(async (root) => {
    await writeTiny(join(root, "m", "x.gguf"));
    const report = await discoverModels(
      isolated(root, { modelDirs: join(root, "m"), timeLimitMs: 0 }),
    );
    deepEqual(names(report), []);
    match(skippedOf(report, "limit")[0]!.reason, /stopped: time limit of 0 ms reached/);
  });
});

Deno.test("discoverModels() stops at the depth limit, skips dot and system folders, and survives symlink loops", async () => {
  await withTemp(async (root) => {
    const dir = join(root, "m");
    await writeTiny(join(dir, "1", "2", "shallow.gguf"));
    await writeTiny(join(dir, "1", "2", "3", "4", "deep.gguf"));
    await writeTiny(join(dir, ".hidden", "secret.gguf"));
    await writeTiny(join(dir, "node_modules", "pkg", "x.gguf"));
    await Deno.symlink(dir, join(dir, "1", "loop"));
    await Deno.symlink(join(dir, "1"), join(dir, "again"));
    const report = await discoverModels(isolated(root, { modelDirs: dir, maxDepth: 3 }));
    deepEqual(names(report), ["shallow"]);
    match(skippedOf(report, "limit")[0]!.reason, /depth limit of 3 folder levels/);
    const deeper = await discoverModels(isolated(root, { modelDirs: dir }));
    deepEqual(names(deeper), ["deep", "shallow"]);
    deepEqual(skippedOf(deeper, "limit"), []);
  });
});

// ---------------------------------------------------------------------------------------------
// Resolving requests

Deno.test("resolveModel() matches names and known paths but never turns a name into a path", async () => {
  await withTemp(async (root) => {
    const models = join(root, "cwd", "models");
    await writeTiny(join(models, "known.gguf"));
    await writeTiny(join(root, "secret", "private.gguf")); // exists, but outside every source
    const report = await discoverModels(isolated(root));
    const known = report.models[0]!;
    equal(resolveModel(report, "known"), known);
    equal(resolveModel(report, " Known "), known);
    equal(resolveModel(report, join(models, "known.gguf")), known);
    for (
      const attempt of [
        "../secret/private",
        "../secret/private.gguf",
        join(root, "secret", "private.gguf"),
        "models/../../secret/private.gguf",
        "..\\secret\\private.gguf",
        "private",
        "",
      ]
    ) {
      throws(() => resolveModel(report, attempt), ModelNotFoundError, attempt);
      equal(findModel(report, attempt), undefined);
    }
    throws(
      () => resolveModel(report, "nope"),
      (e: unknown) => e instanceof ModelNotFoundError && /Available: known/.test(e.message),
    );
    throws(
      () => resolveModel({ models: [] }, "nope"),
      (e: unknown) =>
        e instanceof ModelNotFoundError && /no models were discovered/.test(e.message),
    );
  });
});
