/**
 * The tokens of prompt pieces a model tokenized lately. A chat's next turn sends the whole
 * conversation again, and its template renders the earlier messages as before: cut at the same
 * special tokens (`Model.tokenizeAsync` with a piece cache), those pieces' tokens come from
 * here, and only the last piece before the new messages and the new ones are tokenized. On the
 * 2-core machine a 4,000-token conversation took 4–7 ms to tokenize at every turn.
 *
 * @module
 */

import type { Model, TokenPieceCache } from "../ffi/model.ts";

/** Text kept per model by default, in UTF-16 code units (about 1M tokens of prose). */
export const PROMPT_CACHE_CHARS = 4 * 1024 * 1024;

/** Counters of a {@link PromptTokenCache}. */
export interface PromptTokenCacheStats {
  /** Pieces found. */
  hits: number;
  /** Pieces not found (then tokenized and kept). */
  misses: number;
  /** Pieces kept now. */
  pieces: number;
  /** Their text, in UTF-16 code units. */
  chars: number;
}

/**
 * Pieces' tokens, the least recently used dropped first once their text passes a limit.
 *
 * @example
 * ```ts
 * const cache = new PromptTokenCache(1 << 20);
 * const tokens = await model.tokenizeAsync(prompt, { pieceCache: cache });
 * ```
 */
export class PromptTokenCache implements TokenPieceCache {
  readonly #byPiece = new Map<string, Int32Array>();
  #chars = 0;
  #hits = 0;
  #misses = 0;

  /** @param maxChars Most text kept, in UTF-16 code units. Default {@link PROMPT_CACHE_CHARS}. */
  constructor(readonly maxChars: number = PROMPT_CACHE_CHARS) {}

  /** The tokens of a piece seen before (now the most recently used), or undefined. */
  get(piece: string): Int32Array | undefined {
    const tokens = this.#byPiece.get(piece);
    if (tokens === undefined) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#byPiece.delete(piece);
    this.#byPiece.set(piece, tokens);
    return tokens;
  }

  /** Keeps a piece's tokens, dropping the least recently used pieces past the limit. */
  set(piece: string, tokens: Int32Array): void {
    if (piece.length > this.maxChars) return;
    if (this.#byPiece.delete(piece)) this.#chars -= piece.length;
    this.#byPiece.set(piece, tokens);
    this.#chars += piece.length;
    for (const oldest of this.#byPiece.keys()) {
      if (this.#chars <= this.maxChars) break;
      this.#byPiece.delete(oldest);
      this.#chars -= oldest.length;
    }
  }

  /** Counters for `/diag` and tests. */
  stats(): PromptTokenCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      pieces: this.#byPiece.size,
      chars: this.#chars,
    };
  }
}

const caches = new WeakMap<Model, PromptTokenCache>();

/**
 * The prompt token cache of a model, made on first use; it goes with the model.
 *
 * @param model The model.
 * @returns Its cache.
 */
export function promptTokenCache(model: Model): PromptTokenCache {
  let cache = caches.get(model);
  if (cache === undefined) {
    cache = new PromptTokenCache();
    caches.set(model, cache);
  }
  return cache;
}
