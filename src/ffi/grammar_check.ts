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
 * A refused greedy pick (the chain's bias and penalties, then the best token) does not match every
 * token either: the best candidates go to the grammar a batch at a time ({@link bestAllowed}), as
 * the best allowed one is usually among them.
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

/** Stage types that may come before a greedy pick for {@link picksBest}. */
const GREEDY_PREFIX_STAGES: ReadonlySet<string> = new Set(["logit_bias", "penalties"]);

/**
 * Candidates the grammar checks at a time, best first, when it refuses a greedy pick; after
 * {@link GREEDY_ROUNDS} such rounds without an allowed one it matches the whole vocabulary.
 */
const GREEDY_BATCH = 64;
const GREEDY_ROUNDS = 4;

/**
 * Whether a chain of these stage types picks the best token of the logits as its stages before
 * the pick leave them, changing them in place (logit bias, penalties, then greedy): its pick
 * among the tokens a grammar allows is then the best allowed one.
 *
 * @param stageTypes The chain's stage types, in order.
 * @returns True for such a chain.
 */
export function picksBest(stageTypes: readonly string[]): boolean {
  return stageTypes.at(-1) === "greedy" &&
    stageTypes.slice(0, -1).every((type) => GREEDY_PREFIX_STAGES.has(type));
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

/** Room for a refused greedy pick's search: the candidates of a round, and their tokens. */
export class GreedySearch {
  readonly batch = new TokenCandidates(GREEDY_BATCH);
  readonly ids = new Int32Array(GREEDY_BATCH);
  readonly logits = new Float32Array(GREEDY_BATCH);
}

/**
 * The best token the grammar allows, by the logits `all` holds in id order (as the chain's stages
 * before its pick left them): the best {@link GREEDY_BATCH} not yet tried go to the grammar at a
 * time, and the best of those it allows wins, ties to the lowest id as greedy picks; after
 * {@link GREEDY_ROUNDS} rounds, the grammar matches every token. What narrowing every candidate
 * first and then picking greedily gives, at a fraction of the grammar's work where an allowed
 * token is among the best ones.
 */
function bestAllowed(
  symbols: GrammarPickSymbols,
  grammar: Deno.PointerObject,
  all: TokenCandidates,
  nVocab: number,
  search: GreedySearch,
): number {
  const { batch, ids, logits } = search;
  let bestBelow = Infinity;
  let lastIdAtBound = -1;
  for (let round = 0; round < GREEDY_ROUNDS; round++) {
    // The next GREEDY_BATCH tokens by (logit descending, id ascending) after the last round's.
    let count = 0;
    for (let id = 0; id < nVocab; id++) {
      const logit = all.logit(id);
      const after = logit < bestBelow || (logit === bestBelow && id > lastIdAtBound);
      if (!after || logit === -Infinity) continue;
      if (count === GREEDY_BATCH) {
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
    if (count === 0) break;
    batch.setSome(ids, logits, count);
    symbols.llama_sampler_apply(grammar, batch.pointer);
    for (let i = 0; i < count; i++) {
      if (batch.logit(i) !== -Infinity) return ids[i] as number;
    }
    bestBelow = logits[count - 1] as number;
    lastIdAtBound = ids[count - 1] as number;
  }
  symbols.llama_sampler_apply(grammar, all.pointer);
  let best = 0;
  for (let id = 1; id < nVocab; id++) if (all.logit(id) > all.logit(best)) best = id;
  return best;
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
 * @param search With a greedy chain ({@link picksBest}): room to search the best
 *   allowed token a batch at a time instead of matching every token against the grammar.
 * @returns The token.
 */
export function pickWithGrammar(
  symbols: GrammarPickSymbols,
  pick: GrammarPick,
  candidates: TokenCandidates,
  context: Deno.PointerValue,
  index: number,
  logits: () => Float32Array,
  search?: GreedySearch,
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
  let token: number;
  if (search) {
    // The chain's stages change the logits in place and its greedy stage only selects.
    s.llama_sampler_apply(pick.chain, candidates.pointer);
    token = bestAllowed(s, pick.grammar, candidates, row.length, search);
  } else {
    s.llama_sampler_apply(pick.grammar, candidates.pointer);
    s.llama_sampler_apply(pick.chain, candidates.pointer);
    token = candidates.selectedToken();
  }
  s.llama_sampler_accept(pick.chain, token);
  s.llama_sampler_accept(pick.grammar, token);
  return token;
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
  /** Whether the chain picks greedily ({@link picksBest}): a refused pick searches by batches. */
  greedy: boolean;
}

/** The grammar of a chain that holds every other stage of it; owned by that chain's `Sampler`. */
export class GrammarCheck {
  readonly #symbols: LlamaSymbols;
  readonly #candidates: TokenCandidates;
  readonly #pick: GrammarPick;
  readonly #search: GreedySearch | undefined;
  /** The saved stages' addresses, for a decode thread (see {@link plan}). */
  readonly #savedAddresses: BigUint64Array<ArrayBuffer>;
  #closed = false;

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
    this.#candidates = new TokenCandidates(nVocab);
    const saved: SavedStage[] = [];
    stageTypes.forEach((type, i) => {
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
    this.#search = picksBest(stageTypes) ? new GreedySearch() : undefined;
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
      greedy: this.#search !== undefined,
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
