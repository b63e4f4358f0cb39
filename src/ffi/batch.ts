/**
 * `Batch`: an owned `llama_batch` (from `llama_batch_init`) for multi-sequence decoding, with
 * typed views over its native arrays so filling it costs no copies.
 *
 * @module
 */

import { nativeBuffer } from "./cstring.ts";
import { NativeHandle } from "./handle.ts";
import { LlamaBatch } from "./layouts.ts";
import type { Llama } from "./llama.ts";

/** An owned token batch. */
export class Batch extends NativeHandle {
  /** Most tokens the batch holds. */
  readonly capacity: number;
  /** Most sequences one token may belong to. */
  readonly maxSeqPerToken: number;
  /** The `llama_batch` struct as passed by value to `llama_decode`. */
  readonly struct: Uint8Array<ArrayBuffer>;
  readonly #tokens: Int32Array;
  readonly #positions: Int32Array;
  readonly #seqCounts: Int32Array;
  readonly #seqIds: Int32Array[];
  readonly #logits: Int8Array;
  #length = 0;
  #outputs = 0;

  /**
   * @param llama The runtime.
   * @param capacity Most tokens per batch.
   * @param maxSeqPerToken Most sequence ids one token may carry. Default 1.
   */
  constructor(llama: Llama, capacity: number, maxSeqPerToken = 1) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Batch capacity must be a positive integer, got ${capacity}`);
    }
    const struct = new Uint8Array(llama.symbols.llama_batch_init(capacity, 0, maxSeqPerToken));
    const free = llama.symbols.llama_batch_free;
    const field = (name: "token" | "pos" | "n_seq_id" | "seq_id" | "logits") => {
      const p = LlamaBatch.get(struct, name);
      if (p === null) throw new Error(`llama_batch_init returned a NULL ${name} array`);
      return p;
    };
    const tokenPtr = field("token");
    super("Batch", tokenPtr, () => free(struct));
    this.capacity = capacity;
    this.maxSeqPerToken = maxSeqPerToken;
    this.struct = struct;
    this.#tokens = new Int32Array(nativeBuffer(tokenPtr, capacity * 4));
    this.#positions = new Int32Array(nativeBuffer(field("pos"), capacity * 4));
    this.#seqCounts = new Int32Array(nativeBuffer(field("n_seq_id"), capacity * 4));
    this.#logits = new Int8Array(nativeBuffer(field("logits"), capacity));
    const seqPointers = new BigUint64Array(nativeBuffer(field("seq_id"), capacity * 8));
    this.#seqIds = Array.from({ length: capacity }, (_, i) => {
      const p = Deno.UnsafePointer.create(seqPointers[i] ?? 0n);
      if (p === null) throw new Error("llama_batch_init returned a NULL seq_id entry");
      return new Int32Array(nativeBuffer(p, maxSeqPerToken * 4));
    });
  }

  /** Address of the token array (what a `DecodeThread` writes each step's token to). */
  get tokenArrayAddress(): bigint {
    return arrayAddress(this.#tokens);
  }

  /** Address of the position array. */
  get positionArrayAddress(): bigint {
    return arrayAddress(this.#positions);
  }

  /** Tokens currently in the batch. */
  get length(): number {
    return this.#length;
  }

  /** Tokens that ask for logits (outputs of the decode). */
  get outputs(): number {
    return this.#outputs;
  }

  /** Room left. */
  get free(): number {
    return this.capacity - this.#length;
  }

  /** Empties the batch (keeps the memory). */
  clear(): void {
    void this.pointer;
    this.#length = 0;
    this.#outputs = 0;
    LlamaBatch.set(this.struct, "n_tokens", 0);
  }

  /**
   * Appends one token.
   *
   * @param token Token id.
   * @param position Its position in its sequence.
   * @param seqId The sequence (slot) it belongs to.
   * @param wantLogits Whether to compute logits for it.
   * @returns Its index in the batch (pass to `Context.logits()` / samplers).
   */
  add(token: number, position: number, seqId: number, wantLogits: boolean): number {
    void this.pointer;
    const i = this.#length;
    if (i >= this.capacity) throw new RangeError(`Batch is full (${this.capacity} tokens)`);
    this.#tokens[i] = token;
    this.#positions[i] = position;
    this.#seqCounts[i] = 1;
    (this.#seqIds[i] as Int32Array)[0] = seqId;
    this.#logits[i] = wantLogits ? 1 : 0;
    if (wantLogits) this.#outputs++;
    this.#length = i + 1;
    LlamaBatch.set(this.struct, "n_tokens", this.#length);
    return i;
  }

  /** The token at an index (-1 past the capacity). */
  tokenAt(index: number): number {
    return this.#tokens[index] ?? -1;
  }

  /** The position at `index` (-1 past the end). */
  positionAt(index: number): number {
    return index < this.#length ? this.#positions[index] ?? -1 : -1;
  }
}

function arrayAddress(array: Int32Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(array)));
}
