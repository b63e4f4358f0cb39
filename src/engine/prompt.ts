/**
 * Prompt text → tokens the way every entry point needs it: BOS added when the vocabulary
 * wants it, special tokens parsed (templates write `<|im_start|>` as text), and never two
 * BOS tokens when the template already wrote one.
 *
 * @module
 */

import type { Model } from "../ffi/model.ts";

/**
 * Tokenizes a prompt for generation.
 *
 * @param model The model.
 * @param text Prompt text (raw, or rendered by a chat template).
 * @returns The tokens.
 */
export function promptTokens(model: Model, text: string): Int32Array {
  const tokens = model.tokenize(text, { addSpecial: true, parseSpecial: true });
  const bos = model.bos;
  return tokens.length > 1 && bos >= 0 && tokens[0] === bos && tokens[1] === bos
    ? tokens.subarray(1)
    : tokens;
}
