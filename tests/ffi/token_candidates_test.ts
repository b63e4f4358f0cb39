import { deepEqual, equal, throws } from "node:assert/strict";
import { Llama } from "../../src/ffi/mod.ts";
import { TokenCandidates } from "../../src/ffi/token_candidates.ts";

const llama = Llama.open();

Deno.test("TokenCandidates holds one token or a row of logits where llama.cpp's samplers act on them", () => {
  const s = llama.symbols;
  const candidates = new TokenCandidates(5);
  throws(() => candidates.selectedToken(), /No candidate was selected/);
  // Every token, in id order: greedy selects the largest logit.
  candidates.setAll(new Float32Array([0.5, 2.5, -1, 2, 0]));
  const greedy = s.llama_sampler_init_greedy();
  s.llama_sampler_apply(greedy, candidates.pointer);
  equal(candidates.selectedToken(), 1);
  // top-k sorts and cuts in place: the ids move with their logits.
  const topK = s.llama_sampler_init_top_k(2);
  candidates.setAll(new Float32Array([0.5, 2.5, -1, 3, 0]));
  s.llama_sampler_apply(topK, candidates.pointer);
  deepEqual([candidates.logit(0), candidates.logit(1)], [3, 2.5]);
  s.llama_sampler_apply(greedy, candidates.pointer);
  equal(candidates.selectedToken(), 3);
  // One token, reset: no selection left from before.
  candidates.setOne(4);
  equal(candidates.logit(0), 0);
  throws(() => candidates.selectedToken(), /No candidate was selected/);
  s.llama_sampler_apply(greedy, candidates.pointer);
  equal(candidates.selectedToken(), 4);
  s.llama_sampler_free(greedy);
  s.llama_sampler_free(topK);
});
