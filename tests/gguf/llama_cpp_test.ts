/**
 * Loads every fixture model with llama.cpp's own `llama-simple` (from the
 * reference build in `lib/reference`) and checks that it generates tokens.
 * Skipped when the reference build is absent.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DEFAULT_FIXTURES, fixtureAvailable, fixtureModel, REPO_ROOT } from "../fixtures/models.ts";

const LLAMA_SIMPLE = join(REPO_ROOT, "lib", "reference", "bin", "llama-simple");

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

for (const name of DEFAULT_FIXTURES) {
  Deno.test({
    name: `llama.cpp loads the ${name} fixture and generates 8 tokens`,
    ignore: !exists(LLAMA_SIMPLE) || !fixtureAvailable(name),
    async fn() {
      const model = await fixtureModel(name);
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
    },
  });
}
