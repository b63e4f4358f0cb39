/**
 * Loads every fixture model with llama.cpp's own `llama-simple` (from the
 * reference build in `lib/reference`) and checks that it generates tokens.
 * Skipped when the reference build is absent.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeLlamaModel } from "../fixtures/llama_model.ts";
import { DEFAULT_FIXTURES, fixtureAvailable, fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

const LLAMA_SIMPLE = join(REPO_ROOT, "lib", "reference", "bin", "llama-simple");

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Runs `llama-simple` on a model and checks that it generated 8 tokens after the prompt. */
async function assertGenerates(model: string) {
  const result = await new Deno.Command(LLAMA_SIMPLE, {
    args: ["-m", model, "-n", "8", "Hello world"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(result.stdout);
  const stderr = new TextDecoder().decode(result.stderr);
  assert.equal(result.code, 0, stderr.slice(-2000));
  assert.match(stderr, /decoded 8 tokens/);
  assert.doesNotMatch(stderr, /\berror\b|failed/i);
  assert.match(stdout, /Hello world./s);
}

for (const name of DEFAULT_FIXTURES) {
  Deno.test({
    name: `llama.cpp loads the ${name} fixture and generates 8 tokens`,
    ignore: !exists(LLAMA_SIMPLE) || !fixtureAvailable(name),
    async fn() {
      await assertGenerates(await fixtureModel(name));
    },
  });
}

Deno.test({
  name: "llama.cpp loads a Q4_0 model from writeLlamaModel() and generates 8 tokens",
  ignore: !exists(LLAMA_SIMPLE),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const model = join(dir, "tiny-q4_0.gguf");
      await writeLlamaModel(model, { type: "q4_0", headCountKv: 2, name: "tiny-q4_0" });
      await assertGenerates(model);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
