/**
 * `Model.fewestTokens` is a lower bound that holds in every vocabulary llama.cpp ships a test
 * file for: a prompt refused by it as too long (before tokenizing) is always too long.
 */

import { equal, ok } from "node:assert/strict";
import { basename } from "node:path";
import { Llama, Model } from "../../src/ffi/mod.ts";
import { llamaSourceDir, llamaVocabFiles } from "../fixtures/models.ts";
import { seededRandom, skipBecause } from "../helpers.ts";

const source = llamaSourceDir();
const SPACES = [" ", "\n", "  ", "\t", " \n ", "\r\n", "     "];
/** `LLAMA_VOCAB_TYPE_SPM`, `LLAMA_VOCAB_TYPE_BPE`: the vocabularies the bound holds for. */
const BOUNDED_TYPES = [1, 2];

Deno.test({
  name: "Model.fewestTokens() never exceeds the real count, and bounds SPM and BPE vocabularies",
  ignore: !source && skipBecause("fewest_tokens", "llama.cpp source missing (.cache/)"),
  async fn() {
    const llama = Llama.open();
    const paths = llamaVocabFiles();
    ok(paths.length >= 10);
    const random = seededRandom(11);
    for (const path of paths) {
      const file = basename(path);
      using model = await Model.load(llama, path, { vocabOnly: true });
      const decoder = new TextDecoder();
      const piece = (id: number) => decoder.decode(model.tokenBytes(id, true));
      const pieces = Array.from({ length: 3_000 }, () => piece(random(model.nVocab)));
      // The longest tokens come up often: texts made of them come closest to the bound.
      const ids = Array.from({ length: model.nVocab }, (_, id) => id);
      const stored = ids.map((id) => model.tokenText(id).length);
      const longest = ids.sort((a, b) => (stored[b] ?? 0) - (stored[a] ?? 0)).slice(0, 50)
        .map(piece);
      const special = model.specialTokens()?.map((t) => t.text) ?? [];
      for (let round = 0; round < 8; round++) {
        let text = "";
        while (text.length < 5_000) {
          const kind = random(5);
          text += kind === 0 && special.length
            ? special[random(special.length)]
            : kind === 1
            ? SPACES[random(SPACES.length)]
            : kind === 2
            ? pieces[random(pieces.length)]
            : longest[random(longest.length)];
        }
        const real = model.tokenize(text, { addSpecial: false }).length;
        const fewest = model.fewestTokens(text);
        ok(fewest <= real, `${file}: at least ${fewest} tokens, but ${real} when tokenized`);
      }
      const type = llama.symbols.llama_vocab_type(model.vocab);
      const words = "Tokens, tokens everywhere! ".repeat(2_000);
      if (BOUNDED_TYPES.includes(type)) {
        ok(model.fewestTokens(words) > 0, `${file}: a bound for vocabulary type ${type}`);
      } else {
        equal(model.fewestTokens(words), 0, `${file}: no bound for vocabulary type ${type}`);
      }
      equal(model.fewestTokens(words, words.length), 0, "no work for a text within the limit");
    }
  },
});
