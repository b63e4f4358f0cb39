import { deepEqual } from "node:assert/strict";
import {
  type RerankTokenizer,
  rerankTokens,
  type RerankVocab,
} from "../../src/engine/rerank_prompt.ts";

/** Tokenizes each character to its code, BOS 1 first when special tokens are added. */
const byCharacter: RerankTokenizer = (text, options) => {
  const ids = [...text].map((c) => c.charCodeAt(0));
  return Int32Array.from(options.addSpecial ? [1, ...ids] : ids);
};

/** A vocabulary with BOS 1, EOS 2, SEP 3. */
function fakeVocab(flags: Partial<RerankVocab>): RerankVocab {
  return {
    chatTemplate: () => undefined,
    bos: 1,
    eos: 2,
    sep: 3,
    addsBos: true,
    addsEos: false,
    addsSep: false,
    ...flags,
  };
}

const pair = async (vocab: RerankVocab, query = "q", document = "d") =>
  Array.from(await rerankTokens(vocab, query, document, byCharacter));

Deno.test("rerankTokens() joins query and document with the special tokens the vocabulary adds", async () => {
  deepEqual(await pair(fakeVocab({})), [1, 113, 100]);
  deepEqual(await pair(fakeVocab({ addsEos: true })), [1, 113, 2, 100, 2]);
  deepEqual(
    await pair(fakeVocab({ addsEos: true, addsSep: true, eos: -1 })),
    [1, 113, 3, 3, 100, 3],
  );
});

Deno.test("rerankTokens() fills the model's rerank template, without adding special tokens", async () => {
  const vocab = fakeVocab({
    chatTemplate: (name) => (name === "rerank" ? "<{query}|{document}>" : undefined),
  });
  deepEqual(await pair(vocab, "$&"), [..."<$&|d>"].map((c) => c.charCodeAt(0)));
});
