/**
 * Cutting a big text into pieces that tokenize, one by one, to exactly the tokens of the
 * whole. llama.cpp first splits the text at every special-token occurrence
 * (`tokenizer_st_partition`), walking a linked list from its head at each match, so one call
 * costs O(matches²): 40,000 chat messages (80,000 markers) took 26 s in one `llama_tokenize`.
 * Pieces of a few KiB keep that cost linear and give the caller places to stop.
 *
 * A cut at `p` is safe when a special token that does not start with whitespace starts there
 * (so llama.cpp splits there too), no special-token occurrence spans `p` (so both sides are
 * partitioned as in the whole), and, when the character before `p` is whitespace, no special
 * token starting at `p` strips whitespace on its left (`LLAMA_TOKEN_ATTR_LSTRIP`). Raw text
 * between special tokens is tokenized fragment by fragment in every vocabulary type, so the
 * pieces give the same tokens.
 *
 * @module
 */

/** The bytes C's `isspace()` accepts: what LSTRIP/RSTRIP strip next to a special token. */
const C_SPACE = new Set([" ", "\t", "\n", "\v", "\f", "\r"]);

/** Longest stretch (UTF-16 code units) scanned for a cut before {@link SpecialTokenCutter.pieces} yields. */
const SCAN_WINDOW = 256 * 1024;

/** One special token as the cutter needs it. */
export interface SpecialToken {
  /** Its text, as llama.cpp stores it (`llama_vocab_get_text`). */
  text: string;
  /** Whether it strips whitespace on its left (`LLAMA_TOKEN_ATTR_LSTRIP`). */
  lstrip: boolean;
}

function regexEscape(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|\/-]/g, "\\$&");
}

/**
 * The special tokens of a vocabulary (control, user-defined and unknown tokens: those
 * llama.cpp splits out before tokenizing), indexed to find safe cuts.
 */
export class SpecialTokenCutter {
  /** Texts of two or more code units by their first two, longest first. */
  readonly #byPrefix = new Map<string, string[]>();
  /** Texts that strip whitespace on their left. */
  readonly #lstrip = new Set<string>();
  /** Every text that does not start with whitespace, longest first: where cuts can be. */
  readonly #starts: RegExp | undefined;
  readonly #maxLength: number;

  /**
   * @param tokens The special tokens.
   * @throws {SyntaxError} when there are too many for one RegExp (hundreds of thousands).
   */
  constructor(tokens: Iterable<SpecialToken>) {
    const texts = new Set<string>();
    for (const { text, lstrip } of tokens) {
      if (text === "") continue;
      texts.add(text);
      if (lstrip) this.#lstrip.add(text);
    }
    const sorted = [...texts].sort((a, b) => b.length - a.length);
    for (const text of sorted) {
      if (text.length < 2) continue; // one code unit cannot span a cut
      const key = text.slice(0, 2);
      const list = this.#byPrefix.get(key);
      if (list) list.push(text);
      else this.#byPrefix.set(key, [text]);
    }
    this.#maxLength = sorted[0]?.length ?? 0;
    const starts = sorted.filter((t) => !C_SPACE.has(t[0] as string));
    this.#starts = starts.length === 0
      ? undefined
      : new RegExp(starts.map(regexEscape).join("|"), "g");
  }

  /**
   * Cuts a text into pieces of at least `target` code units (the last may be shorter) at
   * safe places. While a long stretch has no safe place, an empty string comes out after
   * each {@link SCAN_WINDOW} code units scanned: a point where an async caller can yield.
   *
   * @param text The text (to be tokenized with `parse_special`).
   * @param target Smallest piece length in UTF-16 code units.
   * @returns The pieces and empty markers; joined, they are `text`.
   * @example
   * ```ts
   * const cutter = new SpecialTokenCutter([{ text: "<|im_end|>", lstrip: false }]);
   * [...cutter.pieces("a<|im_end|>b<|im_end|>c<|im_end|>", 3)];
   * // ["a<|im_end|>b", "<|im_end|>c", "<|im_end|>"]
   * ```
   */
  *pieces(text: string, target: number): Generator<string> {
    let start = 0;
    let from = start + Math.max(1, target);
    while (from < text.length) {
      const to = Math.min(text.length, from + SCAN_WINDOW);
      const cut = this.#nextCut(text, from, to);
      if (cut < 0) {
        from = to;
        if (from < text.length) yield "";
        continue;
      }
      yield text.slice(start, cut);
      start = cut;
      from = start + Math.max(1, target);
    }
    yield text.slice(start);
  }

  /** The first safe cut `p` with `from <= p < to`, or -1. */
  #nextCut(text: string, from: number, to: number): number {
    const starts = this.#starts;
    if (starts === undefined) return -1;
    // Scan a window only; it reaches far enough right to see a whole token starting before `to`.
    const offset = from;
    const window = text.slice(offset, to + this.#maxLength - 1);
    starts.lastIndex = 0;
    for (let match = starts.exec(window); match !== null; match = starts.exec(window)) {
      const p = offset + match.index;
      if (p >= to) return -1;
      if (this.#safe(text, p)) return p;
      starts.lastIndex = match.index + 1;
    }
    return -1;
  }

  /** Whether `p`, where a special token starts, is a safe cut. */
  #safe(text: string, p: number): boolean {
    if (C_SPACE.has(text[p - 1] as string)) {
      for (const t of this.#lstrip) if (text.startsWith(t, p)) return false;
    }
    // An occurrence of a special token that starts before `p` and ends after it.
    for (let q = Math.max(0, p - this.#maxLength + 1); q < p; q++) {
      const list = this.#byPrefix.get(text.slice(q, q + 2));
      if (list === undefined) continue;
      for (const t of list) {
        if (q + t.length <= p) break; // the rest are shorter
        if (text.startsWith(t, q)) return false;
      }
    }
    return true;
  }
}
