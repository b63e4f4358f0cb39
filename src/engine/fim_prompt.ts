/**
 * Fill-in-the-middle prompts: the code before and after the cursor, the start of the answer and
 * other files as context, laid out with the vocabulary's FIM tokens the way code models were
 * trained (the repository-level layout of Qwen2.5-Coder and StarCoder where the vocabulary has
 * repository and file tokens):
 *
 * ```
 * [repo]myproject\n [sep]name\n text … [sep]filename\n [pre]prefix [suf]suffix [mid]answer-start
 * ```
 *
 * Without a file token each extra text follows a `--- snippet ---` line instead. The budget is
 * llama-server's, so both build the same prompt for the same request and sizes: the prefix keeps
 * its last tokens up to ¾ of the batch, the suffix its first up to ¼ of it less the answer's
 * start, and the other files (the last ones first) fill what the context leaves after a batch
 * and twice the answer's length. One difference: a vocabulary's BOS starts the prompt, where
 * llama-server puts the other files before it.
 *
 * @module
 */

import type { FimTokens } from "../ffi/model.ts";
import { concatTokens } from "../util/arrays.ts";

/** What the layout needs of a vocabulary (a `Model` has it). */
export interface FimVocabulary {
  /** Its FIM tokens. */
  readonly fimTokens: FimTokens;
  /** Its BOS token, or -1. */
  readonly bos: number;
  /** Whether a prompt starts with BOS. */
  readonly addsBos: boolean;
}

/** What a fill-in-the-middle request gives. */
export interface InfillParts {
  /** The code before the gap. */
  prefix: string;
  /** The code after the gap. */
  suffix: string;
  /** The start of the answer (the cursor line's text before the cursor); may be empty. */
  middle: string;
  /** Other files, oldest first: context before the local code. */
  extra: readonly { filename: string; text: string }[];
}

/** How many tokens the prompt's parts may take. */
export interface InfillBudget {
  /** The batch size: the local code (prefix, suffix, answer start) takes at most this much. */
  batch: number;
  /** The context of one sequence. */
  context: number;
  /** Tokens the answer may take (`n_predict`); the other files leave twice this free. */
  answer: number;
}

/** Tokenizes text the way the prompt needs it (special tokens parsed or not). */
export type InfillTokenizer = (text: string, parseSpecial: boolean) => Promise<Int32Array>;

/**
 * The FIM tokens a vocabulary lacks for infill (the prefix, suffix and middle ones).
 *
 * @param tokens The vocabulary's FIM tokens.
 * @returns Their names (`prefix`, `suffix`, `middle`); empty when infill works.
 */
export function missingFimTokens(tokens: FimTokens): string[] {
  const missing: string[] = [];
  if (tokens.prefix < 0) missing.push("prefix");
  if (tokens.suffix < 0) missing.push("suffix");
  if (tokens.middle < 0) missing.push("middle");
  return missing;
}

/** The line between other files' texts where the vocabulary has no file token. */
const SNIPPET_LINE = "\n\n--- snippet ---\n\n";

/** The repository's name in the prompt (clients do not send one). */
const REPOSITORY = "myproject\n";

/** The name of the file being edited (clients do not send one). */
const CURRENT_FILE = "filename\n";

/**
 * Builds a fill-in-the-middle prompt.
 *
 * @param vocabulary The model's FIM tokens and BOS.
 * @param parts The code around the gap and the other files.
 * @param budget Batch, context and answer sizes.
 * @param tokenize Tokenizes a piece; parts are plain text (a `<|fim_prefix|>` typed in the code
 *   stays text), the answer's start is parsed for special tokens as a prompt is.
 * @returns The prompt's tokens.
 * @example
 * ```ts
 * const tokens = await infillPrompt(model, { prefix: "def f(", suffix: ")\n", middle: "", extra: [] },
 *   { batch: 2048, context: 4096, answer: 64 }, (text, special) => model.tokenizeAsync(text, {
 *     addSpecial: false, parseSpecial: special }));
 * ```
 */
export async function infillPrompt(
  vocabulary: FimVocabulary,
  parts: InfillParts,
  budget: InfillBudget,
  tokenize: InfillTokenizer,
): Promise<Int32Array> {
  const fim = vocabulary.fimTokens;
  const text = (piece: string) => tokenize(piece, false);
  const prefix = await text(parts.prefix);
  const suffix = await text(parts.suffix);
  const middle = await tokenize(parts.middle, true);
  // Pieces are joined by copying, never spread into arguments: a file may hold millions of
  // tokens, more than a call takes.
  const extraPieces: ArrayLike<number>[] = [];
  if (fim.repo >= 0) extraPieces.push([fim.repo], await text(REPOSITORY));
  for (const file of parts.extra) {
    if (fim.fileSeparator >= 0) {
      extraPieces.push([fim.fileSeparator], await text(`${file.filename}\n`));
    } else extraPieces.push(await text(SNIPPET_LINE));
    extraPieces.push(await text(file.text));
  }
  if (fim.fileSeparator >= 0) extraPieces.push([fim.fileSeparator], await text(CURRENT_FILE));
  const extra = concatTokens(extraPieces);

  const prefixTake = Math.min(prefix.length, Math.floor(3 * Math.floor(budget.batch / 4)));
  const suffixTake = Math.min(
    suffix.length,
    Math.max(0, Math.floor(budget.batch / 4) - (2 + middle.length)),
  );
  const extraTake = Math.min(
    Math.max(0, budget.context - budget.batch - 2 * budget.answer),
    extra.length,
  );
  return concatTokens([
    vocabulary.addsBos && vocabulary.bos >= 0 ? [vocabulary.bos] : [],
    extra.subarray(extra.length - extraTake),
    [fim.prefix],
    prefix.subarray(prefix.length - prefixTake),
    middle,
    [fim.suffix],
    suffix.subarray(0, suffixTake),
    [fim.middle],
  ]);
}
