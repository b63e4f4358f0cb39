import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { dirname } from "node:path";
import { parseGenerateArgs } from "../../src/cli/generate.ts";
import { extractGlobalFlags } from "../../src/cli/global_flags.ts";
import { UsageError } from "../../src/cli/usage_error.ts";
import { fixtureModel } from "../fixtures/models.ts";
import { runShimmy } from "../helpers.ts";

const model = await fixtureModel("tiny-f32");

async function generateJson(args: string[], env: Record<string, string> = {}) {
  const run = await runShimmy(["generate", ...args, "--json"], env);
  equal(run.code, 0, run.stderr);
  return JSON.parse(run.stdout);
}

Deno.test("shimmy generate --json gives the same greedy tokens twice, with usage and timings", async () => {
  const args = [
    "--model",
    model,
    "--prompt",
    "Hello world",
    "--temperature",
    "0",
    "--max-tokens",
    "24",
  ];
  const first = await generateJson(args);
  const second = await generateJson(args);
  equal(first.tokens.length, 24);
  deepEqual(first.tokens, second.tokens);
  equal(first.text, second.text);
  equal(first.finish_reason, "length");
  equal(first.usage.completion_tokens, 24);
  ok(first.usage.prompt_tokens >= 3);
  equal(first.usage.total_tokens, first.usage.prompt_tokens + 24);
  ok(first.timings.generate_per_second > 0);
});

Deno.test("shimmy generate streams text to stdout and timing to stderr", async () => {
  const run = await runShimmy([
    "generate",
    "--model",
    model,
    "--prompt",
    "Hello world",
    "--temperature",
    "0",
    "--max-tokens",
    "24",
  ]);
  equal(run.code, 0, run.stderr);
  const json = await generateJson([
    "--model",
    model,
    "--prompt",
    "Hello world",
    "--temperature",
    "0",
    "--max-tokens",
    "24",
  ]);
  equal(run.stdout, json.text + "\n");
  match(run.stderr, /prompt: \d+ tokens, [\d.]+ tok\/s \| generated: 24 tokens, [\d.]+ tok\/s/);
});

Deno.test("--seed makes sampling repeatable and changes the output", async () => {
  const args = (seed: string) => [
    "--model",
    model,
    "--prompt",
    "the weather",
    "--temperature",
    "1.5",
    "--top-k",
    "0",
    "--top-p",
    "1",
    "--min-p",
    "0",
    "--seed",
    seed,
    "--max-tokens",
    "24",
  ];
  const a = await generateJson(args("7"));
  const b = await generateJson(args("7"));
  const c = await generateJson(args("8"));
  deepEqual(a.tokens, b.tokens);
  ok(JSON.stringify(a.tokens) !== JSON.stringify(c.tokens));
});

Deno.test("--n-gpu-layers and --gpu-backend reach llama_model_load_from_file", async () => {
  const base = ["--model", model, "--prompt", "hi", "--max-tokens", "2"];
  const seven = await generateJson([...base, "--n-gpu-layers", "7"]);
  equal(seven.load_params.n_gpu_layers, 7);
  const cpu = await generateJson([...base, "--gpu-backend", "cpu", "--n-gpu-layers", "7"]);
  equal(cpu.backend, "cpu");
  equal(cpu.load_params.n_gpu_layers, 0);
  deepEqual(cpu.load_params.devices, []);
  const all = await generateJson(["--gpu-backend", "auto", ...base, "--n-gpu-layers", "all"]);
  equal(all.load_params.n_gpu_layers, -1);
});

Deno.test("a GPU backend that is not present is a clear error listing the devices", async () => {
  const run = await runShimmy([
    "generate",
    "--gpu-backend",
    "vulkan",
    "--model",
    model,
    "--prompt",
    "hi",
  ]);
  equal(run.code, 1);
  match(run.stderr, /GPU backend "vulkan" is not available/);
  match(run.stderr, /Devices present: CPU/);
});

Deno.test("the model can be a positional name found in --model-dirs or SHIMMY_BASE_GGUF", async () => {
  const dir = dirname(model);
  const byName = await generateJson([
    "tiny-f32",
    "--model-dirs",
    dir,
    "--prompt",
    "hi",
    "--max-tokens",
    "2",
  ]);
  equal(byName.model, model);
  const fromEnv = await generateJson(["--prompt", "hi", "--max-tokens", "2"], {
    SHIMMY_BASE_GGUF: model,
  });
  equal(fromEnv.model, model);
  const named = await generateJson(["--name", "tiny-f32", "--prompt", "hi"], {
    SHIMMY_MODEL_PATHS: dir,
  });
  equal(named.tokens.length, 64, "--max-tokens defaults to 64");
});

Deno.test("bad usage exits 1 with a one-line error", async () => {
  const cases: [string[], RegExp][] = [
    [["generate", "--model", model], /--prompt is required/],
    [["generate", "--prompt", "hi"], /No model given/],
    [["generate", "no-such-model", "--prompt", "hi"], /Model "no-such-model" not found/],
    [["generate", "--model", model, "--prompt", "hi", "--max-tokens", "x"], /--max-tokens must be/],
    [["generate", "--model", "/nope/m.gguf", "--prompt", "hi"], /not found/],
    [
      ["generate", "--model", model, "--prompt", "hi", "--gpu-backend", "tpu"],
      /Unknown --gpu-backend/,
    ],
    [["frobnicate"], /Unknown command "frobnicate"/],
  ];
  for (const [args, pattern] of cases) {
    const run = await runShimmy(args, { SHIMMY_BASE_GGUF: "" });
    equal(run.code, 1, args.join(" "));
    match(run.stderr, pattern);
    equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  }
});

Deno.test("a prompt longer than the context is a clear error, not a crash", async () => {
  const run = await runShimmy([
    "generate",
    "--model",
    model,
    "--ctx-size",
    "32",
    "--prompt",
    "word ".repeat(60),
  ]);
  equal(run.code, 1);
  match(run.stderr, /more than the context of 32 tokens per request/);
});

Deno.test("global flags work before or after the command", () => {
  const { flags, rest } = extractGlobalFlags([
    "--gpu-backend",
    "cpu",
    "generate",
    "phi3",
    "--model-dirs=/a;/b",
    "--verbose",
  ]);
  deepEqual(flags, { gpuBackend: "cpu", modelDirs: "/a;/b", verbose: true });
  deepEqual(rest, ["generate", "phi3"]);
});

Deno.test("parseGenerateArgs() rejects bad numbers and accepts the original CLI's shape", () => {
  const parsed = parseGenerateArgs(
    ["phi3", "--prompt", "Say hi", "--max-tokens", "32"],
    () => undefined,
  );
  equal(parsed?.model, "phi3");
  equal(parsed?.maxTokens, 32);
  let error: unknown;
  try {
    parseGenerateArgs(["--model", "m", "--prompt", "p", "--top-k", "1.5"], () => undefined);
  } catch (caught) {
    error = caught;
  }
  ok(error instanceof UsageError);
});

Deno.test("parseGenerateArgs() holds the sampling flags to the API's bounds, in decimal", () => {
  const refused: [string, string, RegExp][] = [
    ["--top-p", "2", /--top-p must be from 0 to 1/],
    ["--min-p", "-1", /--min-p must be from 0 to 1/],
    ["--top-k", "-5", /--top-k must be from 0/],
    ["--repeat-penalty", "-1", /--repeat-penalty must be at least 0/],
    ["--temperature", "-0.5", /--temperature must be from 0 to 100/],
    ["--max-tokens", "0x10", /--max-tokens must be an integer/],
    ["--max-tokens", "99999999999999999999", /--max-tokens must be an integer/],
    ["--max-tokens", "0", /--max-tokens must be from 1/],
  ];
  for (const [flag, value, message] of refused) {
    throws(
      () => parseGenerateArgs(["--model", "m", "--prompt", "p", flag, value], () => undefined),
      (error: unknown) => error instanceof UsageError && message.test(error.message),
      `${flag} ${value}`,
    );
  }
  const fine = parseGenerateArgs(
    ["--model", "m", "--prompt", "p", "--top-p", "0.9", "--temperature", "1e-1"],
    () => undefined,
  );
  deepEqual([fine?.topP, fine?.temperature], [0.9, 0.1]);
});

Deno.test("--threads outside 1 to 512 is a one-line usage error in every command, not a crash in ggml", async () => {
  const commands = [
    ["generate", "--model", model, "--prompt", "hi"],
    ["run", model, "hi"],
    ["bench", model],
    ["serve", "--model", model],
  ];
  for (const command of commands) {
    for (const threads of ["0", "-3", "100000"]) {
      const run = await runShimmy([...command, "--threads", threads]);
      ok(run.code !== 0 && run.code < 128, `${command[0]} --threads ${threads}: exit ${run.code}`);
      match(run.stderr, /--threads must be from 1 to 512/, `${command[0]}: ${run.stderr}`);
    }
  }
});

Deno.test("a --ctx-size whose KV cache cannot fit this machine's memory is a clear error, at once", async () => {
  const started = performance.now();
  const run = await runShimmy([
    "generate",
    "--model",
    model,
    "--prompt",
    "hi",
    "--ctx-size",
    "1000000000",
  ]);
  ok(run.code !== 0 && run.code < 128, `exit ${run.code}: ${run.stderr}`);
  match(run.stderr, /KV cache, more than the .* GiB of memory available; lower --ctx-size/);
  ok(performance.now() - started < 30_000, "refused before llama.cpp allocates");
});
