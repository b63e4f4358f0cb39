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
 * A refused greedy or top-k pick does not match every token either: it depends only on the best
 * allowed tokens, so the best candidates go to the grammar a batch at a time ({@link bestAllowed}),
 * as the ones it needs are usually among them.
 *
 * What comes out: a greedy pick is the same token either way (the best token, when allowed, is
 * the best allowed one). A draw kept when allowed and otherwise made again among the allowed
 * tokens gives each allowed token the probability it has among them, as narrowing first does;
 * only truncating stages (top-k, top-p, min-p) see the whole distribution on the first pick, as
 * in llama.cpp's tools, so a seeded draw can differ from narrowing first.
 *
 * The pick is a function of pointers ({@link pickWithGrammar}), so that a lone stream's decode
 * thread (`decode_thread_main.ts`) picks exactly as the host does.
 *
 * @module
 */

import type { SamplerStage } from "./sampler.ts";
import type { LlamaSymbols } from "./symbols.ts";
import { TokenCandidates } from "./token_candidates.ts";
import { LLAMA_TOKEN_NULL } from "./layouts.ts";

/** Stage types whose samplers keep no state between steps: nothing of theirs to put back. */
const STATELESS_STAGES: ReadonlySet<string> = new Set([
  "greedy",
  "temp",
  "temp_ext",
  "top_n_sigma",
  "top_k",
  "top_p",
  "min_p",
  "typical",
  "logit_bias",
]);

/** The calls a checked pick makes, from whichever library handle (the host's or a thread's). */
export interface GrammarPickSymbols {
  llama_sampler_sample(
    sampler: Deno.PointerValue,
    context: Deno.PointerValue,
    index: number,
  ): number;
  llama_sampler_apply(sampler: Deno.PointerValue, candidates: Deno.PointerValue): void;
  llama_sampler_accept(sampler: Deno.PointerValue, token: number): void;
  llama_sampler_copy(source: Deno.PointerValue, destination: Deno.PointerValue): void;
}

/** A chain's stage that keeps state, and the copy its state is saved to before a pick. */
export interface SavedStage {
  sampler: Deno.PointerObject;
  copy: Deno.PointerObject;
}

/** Stage types that may come before a greedy pick (see {@link bestNeeded}). */
const GREEDY_PREFIX_STAGES: ReadonlySet<string> = new Set(["logit_bias", "penalties"]);

/** Stage types that may follow a first top-k stage before its draw (see {@link bestNeeded}). */
const AFTER_TOP_K_STAGES: ReadonlySet<string> = new Set(["top_p", "min_p", "typical", "temp"]);

/**
 * Candidates the grammar checks at a time, best first, when it refuses a pick that needs only the
 * best allowed tokens; after {@link SEARCH_ROUNDS} such rounds without enough of them it matches
 * the whole vocabulary.
 */
const SEARCH_BATCH = 64;
const SEARCH_ROUNDS = 4;

/** What a refused pick needs of the allowed tokens; see {@link bestNeeded}. */
export interface BestNeed {
  /** How many of the best allowed tokens. */
  count: number;
  /** Whether the chain is greedy: its stages before the pick change the logits in place. */
  greedy: boolean;
}

/**
 * How many of the best allowed tokens a chain's pick among the allowed ones depends on, where it
 * does not depend on all of them:
 * - 1 for a greedy chain, with only logit bias and penalties before it (they change the logits in
 *   place): its pick is the best allowed token;
 * - k for a chain that starts with top-k and then only narrows and draws among those (top-p,
 *   min-p, typical, temperature, a draw): it keeps the k best allowed and picks among them (where
 *   k is at most what the search can find).
 *
 * @param stages The chain's stages, in order (its grammar left out).
 * @returns The need, or undefined when the pick depends on every allowed token.
 */
export function bestNeeded(stages: readonly SamplerStage[]): BestNeed | undefined {
  const last = stages.at(-1);
  const first = stages[0];
  if (last?.type === "greedy") {
    const prefix = stages.slice(0, -1).every((stage) => GREEDY_PREFIX_STAGES.has(stage.type));
    return prefix ? { count: 1, greedy: true } : undefined;
  }
  if (last?.type !== "dist" || first?.type !== "top_k" || first.k <= 0) return undefined;
  if (first.k > SEARCH_BATCH * SEARCH_ROUNDS) return undefined; // more than a search ever finds
  const middle = stages.slice(1, -1).every((stage) => AFTER_TOP_K_STAGES.has(stage.type));
  return middle ? { count: first.k, greedy: false } : undefined;
}

/** What a checked pick works on; `refusals` counts the picks the grammar refused. */
export interface GrammarPick {
  /** `llama_sampler *` of the grammar. */
  grammar: Deno.PointerObject;
  /** `llama_sampler *` of the chain of the other stages. */
  chain: Deno.PointerObject;
  /** The chain's stages that keep state. */
  saved: readonly SavedStage[];
  refusals: number;
}

/** Room for a refused pick's search ({@link bestAllowed}): a round's candidates, what it found. */
export class BestSearch {
  readonly batch = new TokenCandidates(SEARCH_BATCH);
  readonly ids = new Int32Array(SEARCH_BATCH);
  readonly logits = new Float32Array(SEARCH_BATCH);
  /** What the pick needs. */
  readonly need: BestNeed;
  /** The best allowed tokens found, best first, and room to pick among them. */
  readonly found: TokenCandidates;
  readonly foundIds: Int32Array;
  readonly foundLogits: Float32Array;

  /** @param need What the pick needs ({@link bestNeeded}). */
  constructor(need: BestNeed) {
    this.need = need;
    this.found = new TokenCandidates(need.count);
    this.foundIds = new Int32Array(need.count);
    this.foundLogits = new Float32Array(need.count);
  }
}

/**
 * Finds the `search.need.count` best tokens the grammar allows, by the logits `all` holds in id
 * order: the best {@link SEARCH_BATCH} not yet tried go to the grammar at a time, best first, ties
 * to the lowest id (as a greedy pick breaks them); the allowed ones are kept in that order. Where
 * allowed tokens are among the best ones this is a fraction of matching every token.
 *
 * @returns Whether enough were found within {@link SEARCH_ROUNDS} rounds (else match everything).
 */
function bestAllowed(
  symbols: GrammarPickSymbols,
  grammar: Deno.PointerObject,
  all: TokenCandidates,
  nVocab: number,
  search: BestSearch,
): boolean {
  const { batch, ids, logits, foundIds, foundLogits } = search;
  const needed = search.need.count;
  let found = 0;
  let bestBelow = Infinity;
  let lastIdAtBound = -1;
  for (let round = 0; round < SEARCH_ROUNDS; round++) {
    // The next SEARCH_BATCH tokens by (logit descending, id ascending) after the last round's.
    let count = 0;
    for (let id = 0; id < nVocab; id++) {
      const logit = all.logit(id);
      const after = logit < bestBelow || (logit === bestBelow && id > lastIdAtBound);
      if (!after || logit === -Infinity) continue;
      if (count === SEARCH_BATCH) {
        const last = logits[count - 1] as number;
        if (logit <= last) continue; // ties keep the lower id, met first
        count--;
      }
      let at = count++;
      for (; at > 0 && (logits[at - 1] as number) < logit; at--) {
        logits[at] = logits[at - 1] as number;
        ids[at] = ids[at - 1] as number;
      }
      logits[at] = logit;
      ids[at] = id;
    }
    if (count === 0) return false;
    batch.setSome(ids, logits, count);
    symbols.llama_sampler_apply(grammar, batch.pointer);
    for (let i = 0; i < count; i++) {
      if (batch.logit(i) === -Infinity) continue;
      foundIds[found] = ids[i] as number;
      foundLogits[found] = logits[i] as number;
      if (++found === needed) return true;
    }
    bestBelow = logits[count - 1] as number;
    lastIdAtBound = ids[count - 1] as number;
  }
  return false;
}

/**
 * Samples and accepts a token: the chain's pick if the grammar allows it, else, with the chain's
 * state put back, the chain's pick among the tokens the grammar allows.
 *
 * @param symbols libllama's calls.
 * @param pick The grammar, the chain, their saved stages.
 * @param candidates Room for every token of the vocabulary.
 * @param context `llama_context *` that decoded.
 * @param index The output row.
 * @param logits That row's logits (read only when the first pick is refused).
 * @param search With a chain whose pick needs only the best allowed tokens ({@link bestNeeded}):
 *   room to search for them a batch at a time instead of matching every token.
 * @returns The token, or `LLAMA_TOKEN_NULL` when the grammar allows none (nothing accepted).
 */
export function pickWithGrammar(
  symbols: GrammarPickSymbols,
  pick: GrammarPick,
  candidates: TokenCandidates,
  context: Deno.PointerValue,
  index: number,
  logits: () => Float32Array,
  search?: BestSearch,
): number {
  const s = symbols;
  for (const { sampler, copy } of pick.saved) s.llama_sampler_copy(sampler, copy);
  const picked = s.llama_sampler_sample(pick.chain, context, index);
  candidates.setOne(picked);
  s.llama_sampler_apply(pick.grammar, candidates.pointer);
  if (candidates.logit(0) !== -Infinity) {
    s.llama_sampler_accept(pick.grammar, picked);
    return picked;
  }
  pick.refusals++;
  for (const { sampler, copy } of pick.saved) s.llama_sampler_copy(copy, sampler);
  const row = logits();
  candidates.setAll(row);
  const greedy = search?.need.greedy === true;
  // A greedy chain's stages change the logits in place, and its greedy stage only selects.
  if (greedy) s.llama_sampler_apply(pick.chain, candidates.pointer);
  let token: number;
  if (search && bestAllowed(s, pick.grammar, candidates, row.length, search)) {
    // The best allowed tokens, best first, as the chain would keep them of the allowed ones.
    const { found } = search;
    found.setSome(search.foundIds, search.foundLogits, search.need.count);
    if (!greedy) s.llama_sampler_apply(pick.chain, found.pointer);
    token = greedy ? search.foundIds[0] as number : found.selectedToken();
  } else if (greedy) {
    s.llama_sampler_apply(pick.grammar, candidates.pointer);
    token = 0; // the first best, as the greedy stage picks
    for (let id = 1; id < row.length; id++) {
      if (candidates.logit(id) > candidates.logit(token)) token = id;
    }
  } else {
    s.llama_sampler_apply(pick.grammar, candidates.pointer);
    s.llama_sampler_apply(pick.chain, candidates.pointer);
    token = candidates.selectedToken();
  }
  // A grammar that allows no token at all (one that asks for an end-of-generation token, which
  // llama.cpp's grammar never lets through): accepting any would throw in llama.cpp, across FFI,
  // and end the process. The generation ends here instead.
  if (!allows(s, pick.grammar, candidates, token)) return LLAMA_TOKEN_NULL;
  s.llama_sampler_accept(pick.chain, token);
  s.llama_sampler_accept(pick.grammar, token);
  return token;
}

/** Whether the grammar lets `token` through (`candidates` is overwritten). */
function allows(
  s: GrammarPickSymbols,
  grammar: Deno.PointerValue,
  candidates: TokenCandidates,
  token: number,
): boolean {
  if (token < 0) return false;
  candidates.setOne(token);
  s.llama_sampler_apply(grammar, candidates.pointer);
  return candidates.logit(0) !== -Infinity;
}

/**
 * The saved stages' addresses as they travel to a decode thread: sampler, copy, sampler, copy…
 *
 * @param saved The stages.
 * @returns Two 64-bit addresses per stage.
 */
export function savedStageAddresses(saved: readonly SavedStage[]): BigUint64Array<ArrayBuffer> {
  return BigUint64Array.from(
    saved.flatMap(({ sampler, copy }) =>
      [sampler, copy].map((p) => BigInt(Deno.UnsafePointer.value(p)))
    ),
  );
}

/**
 * Reads back what {@link savedStageAddresses} wrote.
 *
 * @param addresses Two 64-bit addresses per stage.
 * @returns The stages.
 */
export function savedStagesAt(addresses: BigUint64Array): SavedStage[] {
  const saved: SavedStage[] = [];
  for (let i = 0; i + 1 < addresses.length; i += 2) {
    const sampler = Deno.UnsafePointer.create(addresses[i] as bigint);
    const copy = Deno.UnsafePointer.create(addresses[i + 1] as bigint);
    if (sampler === null || copy === null) throw new Error("A saved stage's address is NULL");
    saved.push({ sampler, copy });
  }
  return saved;
}

/** What a decode thread needs to pick as {@link GrammarCheck.sample} does. */
export interface GrammarThreadPlan {
  /** `llama_sampler *` of the grammar. */
  grammar: Deno.PointerObject;
  /** The chain's saved stages ({@link savedStageAddresses}). */
  savedAddresses: BigUint64Array<ArrayBuffer>;
  /** What a refused pick needs of the allowed tokens ({@link bestNeeded}); none: all of them. */
  need: BestNeed | undefined;
}

/** The grammar of a chain that holds every other stage of it; owned by that chain's `Sampler`. */
export class GrammarCheck {
  readonly #symbols: LlamaSymbols;
  readonly #candidates: TokenCandidates;
  readonly #pick: GrammarPick;
  readonly #search: BestSearch | undefined;
  /** The saved stages' addresses, for a decode thread (see {@link plan}). */
  readonly #savedAddresses: BigUint64Array<ArrayBuffer>;
  #closed = false;

  /**
   * @param symbols libllama's calls.
   * @param grammar `llama_sampler *` of the grammar; this takes it over once constructed.
   * @param chain `llama_sampler *` of the chain of the other stages (not this one's to free).
   * @param stages The chain's stages, in order.
   * @param nVocab The vocabulary size.
   */
  constructor(
    symbols: LlamaSymbols,
    grammar: Deno.PointerObject,
    chain: Deno.PointerObject,
    stages: readonly SamplerStage[],
    nVocab: number,
  ) {
    this.#symbols = symbols;
    this.#candidates = new TokenCandidates(nVocab);
    const saved: SavedStage[] = [];
    stages.forEach(({ type }, i) => {
      if (STATELESS_STAGES.has(type)) return;
      const sampler = symbols.llama_sampler_chain_get(chain, i);
      const copy = sampler && symbols.llama_sampler_clone(sampler);
      if (!sampler || !copy) {
        for (const { copy } of saved) symbols.llama_sampler_free(copy);
        throw new Error(`Cannot keep a copy of the ${type} stage's state`);
      }
      saved.push({ sampler, copy });
    });
    this.#pick = { grammar, chain, saved, refusals: 0 };
    const need = bestNeeded(stages);
    this.#search = need ? new BestSearch(need) : undefined;
    this.#savedAddresses = savedStageAddresses(saved);
  }

  /**
   * Samples and accepts a token (see {@link pickWithGrammar}).
   *
   * @param context `llama_context *` that decoded.
   * @param batchIndex The output row.
   * @param logits That row's logits (read only when the first pick is refused).
   * @returns The token.
   */
  sample(context: Deno.PointerObject, batchIndex: number, logits: () => Float32Array): number {
    return pickWithGrammar(
      this.#symbols,
      this.#pick,
      this.#candidates,
      context,
      batchIndex,
      logits,
      this.#search,
    );
  }

  /** What a decode thread needs to make the same picks (valid while this is open). */
  get plan(): GrammarThreadPlan {
    return {
      grammar: this.#pick.grammar,
      savedAddresses: this.#savedAddresses,
      need: this.#search?.need,
    };
  }

  /** Picks the grammar refused so far here (each followed by a pick among those it allows). */
  get refusals(): number {
    return this.#pick.refusals;
  }

  /** Feeds the grammar a token it did not pick. */
  accept(token: number): void {
    this.#symbols.llama_sampler_accept(this.#pick.grammar, token);
  }

  /** Starts the grammar over. */
  reset(): void {
    this.#symbols.llama_sampler_reset(this.#pick.grammar);
  }

  /** Frees the grammar and the copies. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#symbols.llama_sampler_free(this.#pick.grammar);
    for (const { copy } of this.#pick.saved) this.#symbols.llama_sampler_free(copy);
  }
}
