import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { dirname, join } from "node:path";
import { discoverMain, isChatModel, parseDiscoverArgs } from "../../src/cli/discover.ts";
import { listMain, parseListArgs } from "../../src/cli/list.ts";
import { formatBytes, formatCount, formatTable } from "../../src/cli/model_table.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import type { DiscoveredModel, DiscoveryOptions } from "../../src/models/discovery.ts";
import { GgmlType } from "../../src/gguf/types.ts";
import { GgufWriter } from "../../src/gguf/writer.ts";
import { fixtureLora, fixtureModel } from "../fixtures/models.ts";
import { capture } from "../helpers.ts";

// A model folder built once for the file: two real generated models, a LoRA adapter of one of
// them, an embedding model, a vocabulary-only file and a file that is not GGUF at all.

const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "shimmy-cli-list-" }));
const dir = join(root, "models");
await Deno.mkdir(dir, { recursive: true });
await Deno.copyFile(await fixtureModel("tiny-f32"), join(dir, "tiny-f32.gguf"));
await Deno.copyFile(await fixtureModel("tiny-q8_0"), join(dir, "tiny-q8_0.gguf"));
await Deno.copyFile(await fixtureLora("tiny-f32-lora"), join(dir, "tiny-f32-lora.gguf"));
await writeGguf(join(dir, "extra", "ggml-vocab-tiny.gguf"), "llama", 0);
await writeGguf(join(dir, "extra", "minilm.gguf"), "bert", 1);
await Deno.writeTextFile(join(dir, "broken.gguf"), "this is not a model");

globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

/** Discovery that searches only `dir`: no environment, no home, a cwd without ./models. */
const isolated: DiscoveryOptions = { env: {}, cwd: join(root, "cwd") };
const globals = { modelDirs: dir, verbose: false };

async function writeGguf(path: string, arch: string, tensors: number): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true });
  const w = new GgufWriter();
  w.setString("general.architecture", arch);
  w.setString("general.name", arch);
  w.setUint32(`${arch}.context_length`, 128);
  for (let i = 0; i < tensors; i++) {
    w.addTensor(`blk.${i}.attn_q.weight`, [8, 4], GgmlType.F32, new Float32Array(32));
  }
  await w.write(path);
}

Deno.test("shimmy list prints a table of the models with size, quantization, arch, context, source and path", async () => {
  const { code, stdout } = await capture(() => listMain([], globals, isolated));
  equal(code, 0);
  const lines = stdout.split("\n");
  match(lines[0]!, /^NAME\s+SIZE\s+QUANT\s+ARCH\s+CONTEXT\s+SOURCE\s+PATH$/);
  const rows = Object.fromEntries(
    lines.slice(1).map((l) => [l.split(/\s+/)[0], l.split(/\s{2,}/)]),
  );
  deepEqual(Object.keys(rows).sort(), ["minilm", "tiny-f32", "tiny-q8_0"]);
  const size = (await Deno.stat(join(dir, "tiny-f32.gguf"))).size;
  deepEqual(rows["tiny-f32"], [
    "tiny-f32",
    formatBytes(size),
    "F32",
    "llama",
    "512",
    "model-dirs",
    join(dir, "tiny-f32.gguf"),
  ]);
  equal(rows["tiny-q8_0"]![2], "Q8_0");
  ok(!stdout.includes("tiny-f32-lora"), "the adapter is not a model");
  ok(!stdout.includes("broken") && !stdout.includes("ggml-vocab"), "skipped files are not listed");
});

Deno.test("shimmy list --short prints the names only, one per line", async () => {
  const short = await capture(() => listMain(["--short"], globals, isolated));
  equal(short.code, 0);
  deepEqual(short.stdout.split("\n").sort(), ["minilm", "tiny-f32", "tiny-q8_0"]);
  const s = await capture(() => listMain(["-s"], globals, isolated));
  equal(s.stdout, short.stdout);
});

Deno.test("shimmy list --json prints the discovered models with their adapters", async () => {
  const { code, stdout } = await capture(() => listMain(["--json"], globals, isolated));
  equal(code, 0);
  const models = JSON.parse(stdout) as DiscoveredModel[];
  const tiny = models.find((m) => m.name === "tiny-f32")!;
  equal(tiny.path, join(dir, "tiny-f32.gguf"));
  equal(tiny.architecture, "llama");
  equal(tiny.quantization, "F32");
  equal(tiny.contextLength, 512);
  equal(tiny.source, "model-dirs");
  equal(tiny.hasChatTemplate, true);
  ok((tiny.parameterCount ?? 0) > 0);
  deepEqual(tiny.adapters.map((a) => a.name), ["tiny-f32-lora"]);
  deepEqual(models.find((m) => m.name === "tiny-q8_0")!.adapters, []);
});

Deno.test("shimmy list --model adds a file outside the model folders", async () => {
  const model = await fixtureModel("tiny-f16");
  const { stdout } = await capture(() =>
    listMain(["--short", "--model", model], { verbose: false }, isolated)
  );
  equal(stdout, "tiny-f16");
});

Deno.test("shimmy list writes control characters of file names as escapes, one model per line", async () => {
  const odd = join(root, "odd");
  await Deno.mkdir(odd, { recursive: true });
  const tiny = await fixtureModel("tiny-f32");
  await Deno.copyFile(tiny, join(odd, "we\nird.gguf"));
  await Deno.copyFile(tiny, join(odd, "esc\x1b[31mred.gguf"));
  const oddGlobals = { modelDirs: odd, verbose: false };
  const short = await capture(() => listMain(["--short"], oddGlobals, isolated));
  deepEqual(short.stdout.split("\n").sort(), ["esc\\x1b[31mred", "we\\nird"]);
  const table = await capture(() => listMain([], oddGlobals, isolated));
  const lines = table.stdout.split("\n");
  equal(lines.length, 3, table.stdout);
  ok(lines.some((l) => l.startsWith("we\\nird ") && l.endsWith(join(odd, "we\\nird.gguf"))));
  ok(!table.stdout.includes("\x1b"), "no escape sequence reaches the terminal");
});

Deno.test("shimmy list with no models prints a hint on stderr and exits 0", async () => {
  const empty = join(root, "empty");
  await Deno.mkdir(empty, { recursive: true });
  const run = await capture(() => listMain([], { modelDirs: empty, verbose: false }, isolated));
  equal(run.code, 0);
  equal(run.stdout, "");
  match(run.stderr, /No models found; pass --model-dirs/);
});

Deno.test("shimmy list rejects bad flags with a UsageError and prints usage for --help", async () => {
  await rejects(() => listMain(["--json", "--short"], globals, isolated), UsageError);
  await rejects(() => listMain(["--bogus"], globals, isolated), UsageError);
  await rejects(() => listMain(["extra"], globals, isolated), UsageError);
  const help = await capture(() => listMain(["--help"], globals, isolated));
  equal(help.code, 0);
  match(help.stdout, /^Usage: shimmy list/);
  match(help.stdout, /Examples:/);
  deepEqual(parseListArgs(["-s"]), { json: false, short: true, models: [] });
});

Deno.test("shimmy discover shows each place searched, models, adapters with their base, and skipped files with reasons", async () => {
  const { code, stdout } = await capture(() => discoverMain([], globals, isolated));
  equal(code, 0);
  match(stdout, /^Searched 2 places \(1 present\) in \d+ ms:/);
  match(stdout, new RegExp(`present\\s+model-dirs\\s+\\d+\\s+--model-dirs\\s+${dir}`));
  match(stdout, new RegExp(`absent\\s+local\\s+-\\s+\\./models\\s+${join(root, "cwd", "models")}`));
  match(stdout, /Models \(3\):\n\s+NAME\s+SIZE/);
  match(
    stdout,
    /Adapters \(1\):\n\s+NAME\s+BASE\s+MATCHED BY[^\n]*\n\s+tiny-f32-lora\s+tiny-f32\s+name\s/,
  );
  match(stdout, /Projectors \(0\):/);
  match(stdout, /Skipped \(2\):/);
  match(stdout, /vocab-only\s+model-dirs\s+File \S+ggml-vocab-tiny\.gguf has no tensors/);
  match(stdout, /corrupt\s+model-dirs\s+\S*.*broken\.gguf.*not a GGUF file/);
});

Deno.test("shimmy discover --llm-only shows only the chat models", async () => {
  const { code, stdout } = await capture(() => discoverMain(["--llm-only"], globals, isolated));
  equal(code, 0);
  const lines = stdout.split("\n");
  match(lines[0]!, /^2 chat models found in \d+ ms$/);
  deepEqual(lines.slice(2).map((l) => l.trim().split(/\s+/)[0]).sort(), ["tiny-f32", "tiny-q8_0"]);
  ok(!/minilm|tiny-f32-lora|Skipped|broken/.test(stdout));
});

Deno.test("shimmy discover --json prints the whole report; with --llm-only only chat models", async () => {
  const full = JSON.parse(
    (await capture(() => discoverMain(["--json"], globals, isolated))).stdout,
  );
  deepEqual(Object.keys(full).sort(), [
    "adapters",
    "elapsedMs",
    "models",
    "projectors",
    "roots",
    "skipped",
  ]);
  equal(full.models.length, 3);
  deepEqual(full.adapters.map((a: { baseModels: string[] }) => a.baseModels), [["tiny-f32"]]);
  deepEqual(full.skipped.map((s: { kind: string }) => s.kind).sort(), ["corrupt", "vocab-only"]);
  deepEqual(full.roots.map((r: { present: boolean }) => r.present), [true, false]);
  const llm = JSON.parse(
    (await capture(() => discoverMain(["--json", "--llm-only"], globals, isolated))).stdout,
  );
  deepEqual(llm.models.map((m: { name: string }) => m.name).sort(), ["tiny-f32", "tiny-q8_0"]);
  equal(llm.adapters, undefined);
});

Deno.test("shimmy discover rejects bad flags and prints usage for --help", async () => {
  await rejects(() => discoverMain(["--nope"], globals, isolated), UsageError);
  const help = await capture(() => discoverMain(["-h"], globals, isolated));
  match(help.stdout, /^Usage: shimmy discover/);
  deepEqual(parseDiscoverArgs(["--llm-only"]), { llmOnly: true, json: false, models: [] });
});

Deno.test("isChatModel() leaves out encoders and embedding or reranking models", () => {
  const model = (architecture: string, name: string) =>
    ({ architecture, name, displayName: undefined }) as unknown as DiscoveredModel;
  ok(isChatModel(model("llama", "llama-3.2-1b-instruct")));
  ok(isChatModel(model("qwen2", "qwen2.5-0.5b-instruct-q4_k_m")));
  ok(!isChatModel(model("bert", "all-minilm")));
  ok(!isChatModel(model("nomic-bert", "nomic-embed-text:latest")));
  ok(!isChatModel(model("qwen3", "qwen3-embedding-0.6b-q8_0")));
  ok(!isChatModel(model("xlm-roberta", "bge-reranker-v2-m3")));
});

Deno.test("formatBytes(), formatCount() and formatTable() format sizes, counts and columns", () => {
  equal(formatBytes(512), "512 B");
  equal(formatBytes(1536), "1.5 KiB");
  equal(formatBytes(850 * 1024 * 1024), "850.0 MiB");
  equal(formatBytes(4.37 * 1024 ** 3), "4.37 GiB");
  equal(formatCount(950), "950");
  equal(formatCount(234_304), "234K");
  equal(formatCount(494_032_768), "494M");
  equal(formatCount(7_241_732_096), "7.24B");
  deepEqual(formatTable(["NAME", "SIZE"], [["tiny", "1.2 MiB"], ["a", "3 B"]], "  "), [
    "  NAME  SIZE",
    "  tiny  1.2 MiB",
    "  a     3 B",
  ]);
});
