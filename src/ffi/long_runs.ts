/**
 * Cutting long runs of one kind of character out of a text before llama.cpp tokenizes it, for
 * vocabularies whose pre-tokenizer llama.cpp runs with `std::regex`: its matcher recurses once per
 * character of a match, so a run of a few thousand letters, digits, dashes or CJK characters
 * overflows a thread's stack and the process dies (8,000 dashes with Falcon's or GPT-NeoX's
 * vocabulary, 8,000 letters with DeepSeek's; llama-server dies alike, a little later on its larger
 * thread stacks). llama.cpp has splitters of its own for the GPT-2, Llama 3, Qwen2, Qwen3.5 and
 * Kimi K2 pre-tokenizers, which do not recurse; those texts are not cut.
 *
 * A run is cut every {@link RUN_PIECE_CHARS} characters and each piece tokenized apart, so the
 * tokens differ from one call's only next to the cuts, inside a run longer than any real word.
 *
 * @module
 */

/** The longest piece of a run tokenized in one call (well under the 8,000 that crashed). */
export const RUN_PIECE_CHARS = 512;

/**
 * `tokenizer.ggml.pre` values whose split llama.cpp does without `std::regex` (its
 * `unicode_regex_split_custom` cases), so long runs are safe.
 */
const CUSTOM_SPLIT_PRE = new Set(["gpt-2", "llama-bpe", "llama3", "qwen2", "qwen35", "kimi-k2"]);

/** Runs of one class: letters (with marks), digits, punctuation and symbols, or whitespace. */
const LONG_RUN = new RegExp(
  `[\\p{L}\\p{M}]{${RUN_PIECE_CHARS + 1},}|\\p{N}{${RUN_PIECE_CHARS + 1},}|` +
    `[\\p{P}\\p{S}]{${RUN_PIECE_CHARS + 1},}|\\s{${RUN_PIECE_CHARS + 1},}`,
  "gu",
);

/**
 * Whether llama.cpp splits a BPE vocabulary's text with `std::regex`.
 *
 * @param pre The vocabulary's `tokenizer.ggml.pre` (undefined: llama.cpp's default).
 * @returns True unless its pre-tokenizer has a split of its own.
 */
export function splitsWithStdRegex(pre: string | undefined): boolean {
  return !CUSTOM_SPLIT_PRE.has(pre ?? "default");
}

/**
 * A text cut inside its runs longer than {@link RUN_PIECE_CHARS} characters.
 *
 * @param text The text.
 * @returns The pieces, in order; the text alone when it has no long run.
 * @example
 * ```ts
 * cutLongRuns("x " + "-".repeat(1200)).map((piece) => piece.length); // [514, 512, 176]
 * ```
 */
export function cutLongRuns(text: string): string[] {
  const pieces: string[] = [];
  let from = 0;
  for (const run of text.matchAll(LONG_RUN)) {
    const end = run.index + run[0].length;
    for (let at = run.index + RUN_PIECE_CHARS; at < end; at += RUN_PIECE_CHARS) {
      if (isHighSurrogate(text.charCodeAt(at - 1))) at++; // never inside a surrogate pair
      if (at >= end) break;
      pieces.push(text.slice(from, at));
      from = at;
    }
  }
  pieces.push(text.slice(from));
  return pieces;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
