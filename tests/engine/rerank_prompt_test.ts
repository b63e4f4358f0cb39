import { deepEqual } from "node:assert/strict";
import { rerankTokens, type RerankVocab } from "../../src/engine/rerank_prompt.ts";

/** A vocabulary with BOS 1, EOS 2, SEP 3 that tokenizes each character to its code. */
function fakeVocab(flags: Partial<RerankVocab>): RerankVocab {
  return {
    chatTemplate: () => undefined,
    tokenize: (text, options) => {
      const ids = [...text].map((c) => c.charCodeAt(0));
      return Int32Array.from(options?.addSpecial ? [1, ...ids] : ids);
    },
    bos: 1,
    eos: 2,
    sep: 3,
    addsBos: true,
    addsEos: false,
    addsSep: false,
    ...flags,
  };
}

Deno.test("rerankTokens() joins query and document with the special tokens the vocabulary adds", () => {
  deepEqual(Array.from(rerankTokens(fakeVocab({}), "q", "d")), [1, 113, 100]);
  deepEqual(Array.from(rerankTokens(fakeVocab({ addsEos: true }), "q", "d")), [1, 113, 2, 100, 2]);
  deepEqual(
    Array.from(rerankTokens(fakeVocab({ addsEos: true, addsSep: true, eos: -1 }), "q", "d")),
    [1, 113, 3, 3, 100, 3],
  );
});

Deno.test("rerankTokens() fills the model's rerank template, without adding special tokens", () => {
  const vocab = fakeVocab({
    chatTemplate: (name) => (name === "rerank" ? "<{query}|{document}>" : undefined),
  });
  deepEqual(Array.from(rerankTokens(vocab, "$&", "d")), [..."<$&|d>"].map((c) => c.charCodeAt(0)));
});
