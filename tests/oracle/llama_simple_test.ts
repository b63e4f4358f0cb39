/**
 * Oracle test: Shimmy's greedy output equals llama.cpp's own `llama-simple`, built from the
 * same source, on the same generated models. Shimmy runs against that build's libraries
 * (SHIMMY_LIB_DIR), so both sides execute the same kernels.
 */

import { equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { fixtureModel } from "../fixtures/models.ts";
import { referenceDir, runShimmy, skipBecause } from "../helpers.ts";

const reference = referenceDir();
const FIXTURES = ["tiny-f32", "tiny-f16", "tiny-q8_0", "tiny-tied", "llama-spm", "qwen2"];
const PROMPT = "Hello world, the quick brown fox";
const TOKENS = 32;

async function llamaSimple(model: string): Promise<string> {
  const out = await new Deno.Command(join(reference as string, "bin", "llama-simple"), {
    args: ["-m", model, "-n", String(TOKENS), PROMPT],
    stderr: "piped",
  }).output();
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).replace(/\n$/, ""); // its closing newline
}

for (const name of FIXTURES) {
  Deno.test({
    name: `greedy output on ${name} equals llama-simple's, token for token`,
    ignore: reference === undefined &&
      skipBecause(
        "oracle",
        "reference tools not built: run scripts/build-libllama.sh --reference-tools --out lib/reference",
      ),
    async fn() {
      const model = await fixtureModel(name);
      const oracle = await llamaSimple(model);
      const run = await runShimmy([
        "generate",
        "--model",
        model,
        "--prompt",
        PROMPT,
        "--temperature",
        "0",
        "--max-tokens",
        String(TOKENS),
        "--raw",
        "--json",
        // llama-simple leaves flash attention to llama.cpp, which turns it on on the CPU; the
        // fused kernel rounds differently, so Shimmy's default (off on the CPU) can pick another
        // token where two are almost tied.
        "--flash-attn",
        "on",
      ], { SHIMMY_LIB_DIR: reference as string });
      equal(run.code, 0, run.stderr);
      const ours = JSON.parse(run.stdout);
      equal(ours.tokens.length, TOKENS);
      ok(ours.text.length > 0);
      // llama-simple echoes the prompt pieces, then prints each generated piece.
      ok(
        oracle.endsWith(ours.text),
        `llama-simple: ${JSON.stringify(oracle)}\nshimmy: ${JSON.stringify(ours.text)}`,
      );
      const echoed = oracle.slice(0, oracle.length - ours.text.length);
      ok(echoed.trimEnd().endsWith(PROMPT), `prompt echo: ${JSON.stringify(echoed)}`);
    },
  });
}
