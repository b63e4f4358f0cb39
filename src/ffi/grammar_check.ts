/**
 * `GrammarCheck`: a grammar that checks a chain's pick instead of narrowing every candidate
 * first, as llama.cpp's own tools sample with a grammar.
 *
 * Narrowing means matching each token of the vocabulary against the grammar, every step: 4.7 ms a
 * token for 32,000 tokens on the 2-core machine, half of a constrained stream's time
 * (`bench/grammar_bench.ts`), and four times that for a 128,000-token vocabulary. A model that
 * follows the requested format nearly always picks a token the grammar allows, so the chain picks
 * from every token, the grammar checks that one, and only when it refuses are the candidates
 * narrowed for a second pick, the chain's state first put back as it was.
 *
 * What comes out: a greedy pick is the same token either way (the best token, when allowed, is
 * the best allowed one). A draw kept when allowed and otherwise made again among the allowed
 * tokens gives each allowed token the probability it has among them, as narrowing first does;
 * only truncating stages (top-k, top-p, min-p) see the whole distribution on the first pick, as
 * in llama.cpp's tools, so a seeded draw can differ from narrowing first.
 *
 * @module
 */

import type { LlamaSymbols } from "./symbols.ts";
import { TokenCandidates } from "./token_candidates.ts";

/** Stage types whose samplers keep no state between steps: nothing of theirs to put back. */
const STATELESS_STAGES: ReadonlySet<string> = new Set([
  "greedy",
  "temp",
  "top_k",
  "top_p",
  "min_p",
  "typical",
  "logit_bias",
]);

/** The grammar of a chain that holds every other stage of it; owned by that chain's `Sampler`. */
export class GrammarCheck {
  readonly #symbols: LlamaSymbols;
  readonly #grammar: Deno.PointerObject;
  readonly #chain: Deno.PointerObject;
  readonly #candidates: TokenCandidates;
  /** The chain's samplers that keep state, each with a copy made before a pick. */
  readonly #saved: { sampler: Deno.PointerObject; copy: Deno.PointerObject }[] = [];
  #closed = false;
  #refusals = 0;

  /**
   * @param symbols libllama's calls.
   * @param grammar `llama_sampler *` of the grammar; this takes it over once constructed.
   * @param chain `llama_sampler *` of the chain of the other stages (not this one's to free).
   * @param stageTypes The chain's stage types, in order.
   * @param nVocab The vocabulary size.
   */
  constructor(
    symbols: LlamaSymbols,
    grammar: Deno.PointerObject,
    chain: Deno.PointerObject,
    stageTypes: readonly string[],
    nVocab: number,
  ) {
    this.#symbols = symbols;
    this.#grammar = grammar;
    this.#chain = chain;
    this.#candidates = new TokenCandidates(nVocab);
    stageTypes.forEach((type, i) => {
      if (STATELESS_STAGES.has(type)) return;
      const sampler = symbols.llama_sampler_chain_get(chain, i);
      const copy = sampler && symbols.llama_sampler_clone(sampler);
      if (!sampler || !copy) {
        for (const { copy } of this.#saved) symbols.llama_sampler_free(copy);
        throw new Error(`Cannot keep a copy of the ${type} stage's state`);
      }
      this.#saved.push({ sampler, copy });
    });
  }

  /**
   * Samples and accepts a token: the chain's pick if the grammar allows it, else the chain's pick
   * among the tokens it allows.
   *
   * @param context `llama_context *` that decoded.
   * @param batchIndex The output row.
   * @param logits That row's logits (read only when the first pick is refused).
   * @returns The token.
   */
  sample(context: Deno.PointerObject, batchIndex: number, logits: () => Float32Array): number {
    const s = this.#symbols;
    for (const { sampler, copy } of this.#saved) s.llama_sampler_copy(sampler, copy);
    const picked = s.llama_sampler_sample(this.#chain, context, batchIndex);
    const candidates = this.#candidates;
    candidates.setOne(picked);
    s.llama_sampler_apply(this.#grammar, candidates.pointer);
    if (candidates.logit(0) !== -Infinity) {
      s.llama_sampler_accept(this.#grammar, picked);
      return picked;
    }
    this.#refusals++;
    for (const { sampler, copy } of this.#saved) s.llama_sampler_copy(copy, sampler);
    candidates.setAll(logits());
    s.llama_sampler_apply(this.#grammar, candidates.pointer);
    s.llama_sampler_apply(this.#chain, candidates.pointer);
    const token = candidates.selectedToken();
    s.llama_sampler_accept(this.#chain, token);
    s.llama_sampler_accept(this.#grammar, token);
    return token;
  }

  /** Picks the grammar refused so far (each then narrowed every candidate). */
  get refusals(): number {
    return this.#refusals;
  }

  /** Feeds the grammar a token it did not pick. */
  accept(token: number): void {
    this.#symbols.llama_sampler_accept(this.#grammar, token);
  }

  /** Starts the grammar over. */
  reset(): void {
    this.#symbols.llama_sampler_reset(this.#grammar);
  }

  /** Frees the grammar and the copies. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#symbols.llama_sampler_free(this.#grammar);
    for (const { copy } of this.#saved) this.#symbols.llama_sampler_free(copy);
  }
}
