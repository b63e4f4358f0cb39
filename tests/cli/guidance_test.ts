import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { join } from "node:path";
import { SETTING_VARIABLES } from "../../src/cli/env_check.ts";
import { closestMatch, editDistance } from "../../src/cli/suggest.ts";
import { ModelRegistry, ModelRequiredError } from "../../src/models/registry.ts";
import { toHttpError } from "../../src/server/http_error.ts";
import { GENERATED_DIR, REPO_ROOT } from "../fixtures/models.ts";
import { runShimmy } from "../helpers.ts";

/** Asserts a failed run printed exactly one line on stderr and nothing like a stack. */
function oneLineError(run: { code: number; stderr: string }): string {
  equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split("\n");
  equal(lines.length, 1, run.stderr);
  ok(!/\bat (file|ext):/.test(run.stderr), run.stderr);
  return lines[0]!;
}

Deno.test("closestMatch() suggests the nearest known word, and nothing for a stranger", () => {
  equal(editDistance("modle", "model"), 1);
  equal(editDistance("kitten", "sitting"), 3);
  equal(closestMatch("modle", ["model", "prompt", "max-tokens"]), "model");
  equal(closestMatch("max-token", ["model", "max-tokens"]), "max-tokens");
  equal(closestMatch("sevre", ["serve", "generate", "list"]), "serve");
  equal(closestMatch("gen", ["serve", "generate", "list"]), "generate");
  equal(closestMatch("xyzzy", ["serve", "generate", "list"]), undefined);
});

Deno.test("a mistyped flag or command names the closest match and the --help to read, in one line", async () => {
  const flag = oneLineError(await runShimmy(["serve", "--modle", "x.gguf"]));
  equal(flag, "shimmy: Unknown flag --modle (did you mean --model?); see shimmy serve --help");
  const command = oneLineError(await runShimmy(["sevre"]));
  equal(command, 'shimmy: Unknown command "sevre" (did you mean "serve"?); see shimmy --help');
  const global = oneLineError(await runShimmy(["--gpu-backed", "cpu", "serve"]));
  match(global, /^shimmy: Unknown flag --gpu-backed \(did you mean --gpu-backend\?\)/);
  const value = oneLineError(await runShimmy(["generate", "phi3", "--prompt"]));
  equal(value, "shimmy: --prompt needs a value; see shimmy generate --help");
});

Deno.test("a SHIMMY_ variable Shimmy does not read is a warning, with the likely name", async () => {
  const run = await runShimmy(["list", "--help"], {
    SHIMMY_API_KYE: "secret",
    SHIMMY_PARALLEL: "8",
    SHIMMY_API_KEY: "secret",
    SHIMMY_INSTALL_DIR: "/opt/shimmy",
  });
  equal(run.code, 0, run.stderr);
  const warnings = run.stderr.trim().split("\n").sort();
  equal(warnings.length, 2, run.stderr);
  equal(
    warnings[0],
    "shimmy: warning: SHIMMY_API_KYE is not a Shimmy setting and has no effect (did you mean " +
      "SHIMMY_API_KEY?)",
  );
  match(
    warnings[1]!,
    /^shimmy: warning: SHIMMY_PARALLEL is not a Shimmy setting .*command-line flag/,
  );
  const quiet = await runShimmy(["list", "--help"], { SHIMMY_API_KEY: "secret" });
  equal(quiet.stderr, "");
});

Deno.test("shimmy --help, where the warning points, lists every variable Shimmy reads", async () => {
  const run = await runShimmy(["--help"]);
  equal(run.code, 0, run.stderr);
  for (const name of SETTING_VARIABLES) ok(run.stdout.includes(name), `${name} in:\n${run.stdout}`);
});

Deno.test("a missing model file says the file is missing, for serve, generate and run", async () => {
  for (
    const args of [["serve", "--model", "./nosuch.gguf"], [
      "generate",
      "--model",
      "./nosuch.gguf",
      "-p",
      "hi",
    ], ["run", "models/nosuch.gguf", "hi"]]
  ) {
    const line = oneLineError(await runShimmy(args));
    match(line, /^shimmy: Cannot load model \S*nosuch\.gguf: file not found$/);
  }
});

Deno.test("serve --default-model naming no model found fails at once, naming the models there", async () => {
  const line = oneLineError(
    await runShimmy(["serve", "--model-dirs", GENERATED_DIR, "--default-model", "nope"]),
  );
  match(line, /^shimmy: --default-model nope: Model "nope" not found\. Available: .*tiny-f32/);
});

Deno.test("serve --model hf.co/… that is not pulled says how to pull it", async () => {
  const cache = await Deno.makeTempDir();
  try {
    const line = oneLineError(
      await runShimmy(["serve", "--model", "hf.co/tiny-org/Tiny-GGUF"], { HF_HUB_CACHE: cache }),
    );
    match(
      line,
      /not on this machine: run "shimmy pull hf\.co\/tiny-org\/Tiny-GGUF" or add --allow-pull/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("shimmy serve with no model at all prints how to get one", async () => {
  const home = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), "serve", "--bind", "127.0.0.1:0"],
    cwd: home,
    env: { HOME: home, HF_HOME: join(home, "hf"), XDG_DATA_HOME: join(home, "data") },
    clearEnv: false,
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  try {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes("discover")) break;
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await Deno.remove(home, { recursive: true });
  }
  match(text, /No models found/);
  match(text, /shimmy pull Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF/);
  match(text, /shimmy serve --model \.\/model\.gguf/);
});

Deno.test("a request naming no model gets --default-model, else the only model, else a 400 listing them", () => {
  const entry = (name: string) => ({ name, path: `/m/${name}.gguf`, source: "test", sizeBytes: 1 });
  using single = disposable(new ModelRegistry([entry("a")], { keepAliveMs: -1 }));
  equal(single.value.resolve().name, "a");
  using chosen = disposable(
    new ModelRegistry([entry("a"), entry("b")], { keepAliveMs: -1, defaultModel: "b" }),
  );
  equal(chosen.value.resolve("").name, "b");
  using none = disposable(new ModelRegistry([entry("a"), entry("b")], { keepAliveMs: -1 }));
  throws(() => none.value.resolve(), ModelRequiredError);
  let thrown: unknown;
  try {
    none.value.resolve();
  } catch (error) {
    thrown = error;
  }
  const http = toHttpError(thrown);
  equal(http.status, 400);
  match(http.message, /names no model and 2 are available: set "model" to one of a, b/);
});

Deno.test("a shared alias is ambiguous, and a model added under a taken name gets the next free one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shimmy-registry-" });
  const entry = (name: string, path: string, aliases: string[] = []) => ({
    name,
    path: join(dir, path),
    source: "test",
    sizeBytes: 1,
    aliases,
  });
  for (const path of ["m", "n", "o"]) await Deno.mkdir(join(dir, path));
  for (const path of ["m/x_y.gguf", "n/x y.gguf", "o/x_y.gguf"]) {
    await Deno.writeTextFile(join(dir, path), "");
  }
  try {
    using registry = disposable(
      new ModelRegistry(
        [entry("x_y", "m/x_y.gguf", ["x-y"]), entry("x y", "n/x y.gguf", ["x-y"])],
        { keepAliveMs: -1 },
      ),
    );
    throws(() => registry.value.resolve("x-y"), /"x-y" is ambiguous: it could be x_y, x y/);
    equal(registry.value.resolve("x y").name, "x y");
    const { added, removed } = await registry.value.refresh([
      entry("x_y", "o/x_y.gguf"),
      { ...entry("z", "m/x_y.gguf"), sizeBytes: 42 },
    ]);
    equal(registry.value.resolve("x_y").sizeBytes, 42, "a known file's size as it is now");
    equal(
      added.map((e) => e.name).join(),
      "x_y-2",
      "a new file under a free name; a known file not again",
    );
    deepEqual(removed, []);
    equal(registry.value.resolve("x_y-2").path, join(dir, "o/x_y.gguf"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function disposable(registry: ModelRegistry) {
  return { value: registry, [Symbol.dispose]: () => void registry.close() };
}

Deno.test("the original Shimmy's global flags and SHIMMY_MAX_CTX work, or say what replaced them", async () => {
  const version = await runShimmy(["-V"]);
  equal(version.code, 0, version.stderr);
  match(version.stdout, /^shimmy \d+\.\d+\.\d+ /);
  const models = ["--model-dirs", GENERATED_DIR];
  // --ctx N (and SHIMMY_MAX_CTX) is the context where --ctx-size is not given.
  const ctx = await runShimmy([...models, "--ctx", "256", "probe", "tiny-f32"]);
  equal(ctx.code, 0, ctx.stderr);
  match(ctx.stdout, /^Context: +512 trained, 256 created$/m);
  const fromEnv = await runShimmy([...models, "probe", "tiny-f32"], { SHIMMY_MAX_CTX: "256" });
  equal(fromEnv.code, 0, fromEnv.stderr);
  equal(fromEnv.stderr.includes("warning"), false, fromEnv.stderr);
  match(fromEnv.stdout, /^Context: +512 trained, 256 created$/m);
  const badEnv = oneLineError(await runShimmy(["list"], { SHIMMY_MAX_CTX: "lots" }));
  equal(badEnv, 'shimmy: SHIMMY_MAX_CTX must be a positive number of tokens, got "lots"');
  // --legacy (llama.cpp, the only engine here) and --kv-quant f32 (f16 here) ask for the default.
  const same = await runShimmy([...models, "--legacy", "--kv-quant", "f32", "list", "-s"]);
  equal(same.code, 0, same.stderr);
  match(same.stdout, /^tiny-f32$/m);
  match(
    oneLineError(await runShimmy(["--cpu-moe", "list"])),
    /^shimmy: --cpu-moe was a flag of the original Shimmy's own engine, .*--n-gpu-layers/,
  );
  match(
    oneLineError(await runShimmy(["list", "--kv-quant", "int8"])),
    /^shimmy: --kv-quant must be f32 or int4, got "int8"; --cache-type-k and --cache-type-v /,
  );
  match(
    oneLineError(await runShimmy([...models, "probe", "tiny-f32", "--cache-type-v", "q3_k"])),
    /^shimmy: --cache-type-v must be one of f32, f16, bf16, q8_0, q4_0, .*; got "q3_k"/,
  );
  // A quantized V cache with fused attention off stops serve's start, not every first request.
  match(
    oneLineError(
      await runShimmy([...models, "serve", "--cache-type-v", "q8_0", "--flash-attn", "off"]),
    ),
    /^shimmy: A q8_0 V cache needs fused attention, which --flash-attn off turns off/,
  );
  // --kv-quant int4 reaches the context: a model with heads of 16 is refused with llama.cpp's
  // reason (keys quantize in blocks of 32).
  const int4 = await runShimmy([...models, "--kv-quant", "int4", "probe", "tiny-f32"]);
  equal(int4.code, 2, int4.stderr); // found, but its context cannot be made: as a load failure
  match(int4.stderr, /K cache type q4_0 with block size 32 does not divide n_embd_head_k=16/);
  // bench's --max-tokens is --gen-tokens under the original's name.
  const bench = await runShimmy([
    ...models,
    "bench",
    "tiny-f32",
    "--max-tokens",
    "4",
    "--prompt-tokens",
    "4",
    "--reps",
    "1",
    "--json",
  ]);
  equal(bench.code, 0, bench.stderr);
  equal(JSON.parse(bench.stdout).gen_tokens, 4);
});
