/**
 * The benchmark's prompts. Every prompt starts with a request number that no other prompt of the
 * same server start shares, so neither server's prefix cache can reuse more than a few tokens
 * (BOS, the leading space, a shared first digit) of an earlier prompt: both evaluate the rest of
 * the prompt every time. The default prompt is `<n> ` and one sentence of about 32 tokens. A
 * longer prompt of about N tokens repeats the sentence as numbered parts (`(2) ...`, `(3) ...`),
 * the last part cut at a word. Token counts are estimated for a llama SPM vocabulary (the
 * `bench-125m` fixture's), where they are within a few tokens; other vocabularies split the text
 * somewhat differently, and the report prints the count the servers reported.
 *
 * @module
 */

/** The sentence every prompt is made of. */
export const PROMPT =
  "Describe in plain words and short sentences how a lighthouse keeper spends a long winter " +
  "night alone on a small rocky island far out at sea.";

/**
 * Context a request needs beyond its prompt's asked tokens and its generated ones (a prompt of
 * about N tokens runs over N by a few; other vocabularies cut it into more).
 */
export const PROMPT_ALLOWANCE = 64;

/** Tokens of {@link PROMPT} after a space (llama SPM vocabulary). */
const SENTENCE_TOKENS = 33;
/** Tokens of BOS and the space before the request number. */
const START_TOKENS = 2;
/** Tokens of a part label ` (k)` besides its digits: the space with `(`, and `)`. */
const LABEL_TOKENS = 2;
const WORDS = PROMPT.split(" ");

/**
 * The prompt of request `n`, of about `targetTokens` tokens with BOS.
 *
 * @param n The request number, which starts the prompt.
 * @param targetTokens Tokens wanted. Default: undefined, meaning `<n> ` and {@link PROMPT}
 * (37 tokens for n < 10 with a llama SPM vocabulary).
 * @returns The prompt.
 * @example
 * ```ts
 * promptText(7); // "7 Describe in plain words ... far out at sea."
 * promptText(7, 1000); // "7 Describe ... sea. (2) Describe ... sea. (3) ..."
 * ```
 */
export function promptText(n: number, targetTokens?: number): string {
  if (targetTokens === undefined) return `${n} ${PROMPT}`;
  let text = String(n);
  let tokens = START_TOKENS + text.length; // SPM splits numbers into single digits
  for (let part = 1; tokens < targetTokens; part++) {
    const label = part === 1 ? "" : ` (${part})`;
    const labelTokens = part === 1 ? 0 : LABEL_TOKENS + String(part).length;
    const left = targetTokens - tokens - labelTokens;
    if (left >= SENTENCE_TOKENS) {
      text += `${label} ${PROMPT}`;
      tokens += labelTokens + SENTENCE_TOKENS;
      continue;
    }
    const words = Math.round(left * WORDS.length / SENTENCE_TOKENS);
    if (words > 0) text += `${label} ${WORDS.slice(0, words).join(" ")}`;
    break;
  }
  return text;
}

/** Numbers the prompts: the same sequence for every server start. */
export class PromptSequence {
  #next = 1;
  readonly #targetTokens: number | undefined;

  /** @param targetTokens Tokens per prompt. Default: undefined, the ~37-token default prompt. */
  constructor(targetTokens?: number) {
    this.#targetTokens = targetTokens;
  }

  /**
   * The next prompt.
   *
   * @param targetTokens Tokens of this prompt. Default: the sequence's.
   * @returns The prompt, numbered one higher than the previous one.
   * @example
   * ```ts
   * const prompts = new PromptSequence();
   * prompts.next(); // "1 Describe ..."
   * prompts.next(4000); // "2 Describe ... (2) Describe ..." of about 4,000 tokens
   * ```
   */
  next(targetTokens = this.#targetTokens): string {
    return promptText(this.#next++, targetTokens);
  }
}
