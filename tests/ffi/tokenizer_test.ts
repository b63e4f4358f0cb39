/**
 * Tokenization through Shimmy's FFI equals the token ids llama.cpp's own tokenizer tests expect
 * (`models/ggml-vocab-*.gguf.inp/.out` in the pinned source), for real vocabularies.
 */

import { deepEqual, equal, ok } from "node:assert/strict";
import { join } from "node:path";
import { chatPrompt } from "../../src/engine/prompt.ts";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { llamaSourceDir } from "../fixtures/models.ts";
import { skipBecause } from "../helpers.ts";

const source = llamaSourceDir();
const VOCABS = ["llama-spm", "llama-bpe", "qwen2", "phi-3", "gpt-2"];
const SEPARATOR = "\n__ggml_vocab_test__\n";

async function cases(vocab: string): Promise<[string, number[]][]> {
  const base = join(source as string, "models", `ggml-vocab-${vocab}.gguf`);
  const inputs = (await Deno.readTextFile(`${base}.inp`)).split(SEPARATOR);
  const outputs = (await Deno.readTextFile(`${base}.out`)).split("\n");
  if (inputs[inputs.length - 1] === "") inputs.pop();
  return inputs.map((text, i) => [
    text,
    (outputs[i] ?? "").trim().split(/\s+/).filter(Boolean).map(Number),
  ]);
}

for (const vocab of VOCABS) {
  Deno.test({
    name: `tokenize() gives llama.cpp's expected ids for every ${vocab} test string`,
    ignore: !source && skipBecause("tokenizer", "llama.cpp source missing (.cache/)"),
    async fn() {
      const llama = Llama.open();
      const path = join(source as string, "models", `ggml-vocab-${vocab}.gguf`);
      using model = await Model.load(llama, path, { vocabOnly: true });
      const all = await cases(vocab);
      ok(all.length > 20);
      for (const [text, expected] of all) {
        const ids = [...model.tokenize(text, { addSpecial: false, parseSpecial: false })];
        deepEqual(ids, expected, JSON.stringify(text));
      }
    },
  });
}

Deno.test({
  name: "chat templates tokenize their markers as single special tokens (qwen2, phi-3)",
  ignore: !source && skipBecause("tokenizer", "llama.cpp source missing (.cache/)"),
  async fn() {
    const llama = Llama.open();
    for (const [vocab, marker] of [["qwen2", "<|im_end|>"], ["phi-3", "<|end|>"]] as const) {
      const path = join(source as string, "models", `ggml-vocab-${vocab}.gguf`);
      using model = await Model.load(llama, path, { vocabOnly: true });
      const prompt = await chatPrompt(model, [{ role: "user", content: "Hi there" }]);
      const markerIds = model.tokenize(marker, { addSpecial: false, parseSpecial: true });
      equal(markerIds.length, 1, `${marker} is one token in ${vocab}`);
      ok(prompt.tokens.includes(markerIds[0] as number), `${vocab} prompt holds ${marker}`);
      ok(prompt.stopTokens.includes(markerIds[0] as number), `${marker} stops generation`);
      const [first, second] = prompt.tokens;
      ok(!(model.bos >= 0 && first === model.bos && second === model.bos), "no double BOS");
      ok(model.detokenize(prompt.tokens).includes("Hi there"));
    }
  },
});
