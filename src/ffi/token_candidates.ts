/**
 * `TokenCandidates`: a `llama_token_data_array` in memory of its own, for applying samplers to
 * candidates the host chose (`llama_sampler_apply`): one token, or every token with a step's
 * logits.
 *
 * @module
 */

import { LlamaTokenData, LlamaTokenDataArray } from "./layouts.ts";

/** Int32 (and Float32) slots of one `llama_token_data`: id, logit, p. */
const ENTRY_SLOTS = LlamaTokenData.size / 4;

/**
 * Candidates for a vocabulary of a given size. The memory is owned by JavaScript and stays
 * valid for the object's lifetime; {@link pointer} is what `llama_sampler_apply` takes.
 *
 * @example
 * ```ts
 * const candidates = new TokenCandidates(model.nVocab);
 * candidates.setOne(42);
 * symbols.llama_sampler_apply(grammar, candidates.pointer);
 * candidates.logit(0) === -Infinity; // the grammar refuses token 42 here
 * ```
 */
export class TokenCandidates {
  readonly #ids: Int32Array;
  readonly #values: Float32Array;
  readonly #array = new Uint8Array(LlamaTokenDataArray.size);
  readonly #arrayView = new DataView(this.#array.buffer);
  /** `llama_token_data_array *` of these candidates. */
  readonly pointer: Deno.PointerObject;

  /** Most candidates: the vocabulary size. */
  readonly capacity: number;

  /** @param capacity Most candidates: the vocabulary size. */
  constructor(capacity: number) {
    this.capacity = capacity;
    const data = new ArrayBuffer(capacity * LlamaTokenData.size);
    this.#ids = new Int32Array(data);
    this.#values = new Float32Array(data);
    const dataPointer = Deno.UnsafePointer.of(data);
    const arrayPointer = Deno.UnsafePointer.of(this.#array);
    if (dataPointer === null || arrayPointer === null) throw new Error("No memory for candidates");
    LlamaTokenDataArray.set(this.#array, "data", dataPointer);
    this.pointer = arrayPointer;
  }

  /** Makes `token` the only candidate, with a logit of 0. */
  setOne(token: number): void {
    this.#ids[0] = token;
    this.#values[1] = 0;
    this.#values[2] = 0;
    this.#reset(1);
  }

  /** Makes every token a candidate, in id order, with its logit from `logits`. */
  setAll(logits: Float32Array): void {
    const ids = this.#ids;
    const values = this.#values;
    const n = logits.length;
    for (let id = 0, at = 0; id < n; id++, at += ENTRY_SLOTS) {
      ids[at] = id;
      values[at + 1] = logits[id] as number;
      values[at + 2] = 0;
    }
    this.#reset(n);
  }

  /**
   * Makes the given tokens the candidates, with their logits.
   *
   * @param ids The tokens.
   * @param logits Their logits, in the same order.
   * @param count How many of them (at most the capacity).
   */
  setSome(ids: Int32Array, logits: Float32Array, count: number): void {
    for (let i = 0, at = 0; i < count; i++, at += ENTRY_SLOTS) {
      this.#ids[at] = ids[i] as number;
      this.#values[at + 1] = logits[i] as number;
      this.#values[at + 2] = 0;
    }
    this.#reset(count);
  }

  /** The logit of the candidate at `index` (as the samplers left it). */
  logit(index: number): number {
    return this.#values[index * ENTRY_SLOTS + 1] as number;
  }

  /**
   * The token the samplers selected.
   *
   * @throws {Error} when none did (the chain has no stage that picks).
   */
  selectedToken(): number {
    const selected = Number(
      this.#arrayView.getBigInt64(LlamaTokenDataArray.offsets.selected, true),
    );
    const size = Number(this.#arrayView.getBigUint64(LlamaTokenDataArray.offsets.size, true));
    if (selected < 0 || selected >= size) throw new Error("No candidate was selected");
    return this.#ids[selected * ENTRY_SLOTS] as number;
  }

  /** Sets the size, no selection, not sorted (through one view: this runs every constrained step). */
  #reset(size: number): void {
    const { offsets } = LlamaTokenDataArray;
    this.#arrayView.setBigUint64(offsets.size, BigInt(size), true);
    this.#arrayView.setBigInt64(offsets.selected, -1n, true);
    this.#arrayView.setUint8(offsets.sorted, 0);
  }
}
