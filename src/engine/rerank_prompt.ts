/**
 * The tokens a reranker reads for one query–document pair, built as llama.cpp's server builds
 * them: the model's `rerank` prompt template (GGUF `tokenizer.chat_template.rerank`, with
 * `{query}` and `{document}` filled in) when it has one, else the pair joined with the
 * vocabulary's own special tokens: `BOS query EOS SEP document EOS`, each special token only
 * where the vocabulary adds it (SEP stands in for a missing EOS).
 *
 * @module
 */

import { concatTokens } from "../util/arrays.ts";

/** How the prompt's texts are tokenized (`tokenizeText` of `prompt.ts`, off the event loop). */
export type RerankTokenizer = (
  text: string,
  options: { addSpecial: boolean; parseSpecial: boolean },
) => Int32Array | Promise<Int32Array>;

/** What the prompt needs of a model's vocabulary (`Model` has all of it). */
export interface RerankVocab {
  /** A named GGUF chat template, e.g. `"rerank"`. */
  chatTemplate(name?: string): string | undefined;
  /** BOS, EOS and SEP token ids (-1 when absent). */
  readonly bos: number;
  readonly eos: number;
  readonly sep: number;
  /** Whether the vocabulary adds BOS, EOS and SEP around a text. */
  readonly addsBos: boolean;
  readonly addsEos: boolean;
  readonly addsSep: boolean;
}

/**
 * Builds the tokens of one query–document pair for a reranker.
 *
 * @param vocab The model (its vocabulary and `rerank` template).
 * @param query The query.
 * @param document One document.
 * @param tokenize Tokenizes the texts.
 * @returns The token ids to decode as one sequence.
 * @example
 * ```ts
 * const tokens = await rerankTokens(model, "what is a dog", "A dog is an animal", (text, o) =>
 *   tokenizeText(model, text, o));
 * ```
 */
export async function rerankTokens(
  vocab: RerankVocab,
  query: string,
  document: string,
  tokenize: RerankTokenizer,
): Promise<Int32Array> {
  const template = vocab.chatTemplate("rerank");
  if (template !== undefined) {
    // Filled in this order, like llama.cpp (a `{document}` inside the query is filled too).
    const prompt = template.replaceAll("{query}", () => query)
      .replaceAll("{document}", () => document);
    return await tokenize(prompt, { addSpecial: false, parseSpecial: true });
  }
  const plain = { addSpecial: false, parseSpecial: false };
  const eos = vocab.eos !== -1 ? vocab.eos : vocab.sep;
  const head = [vocab.addsBos ? [vocab.bos] : []];
  const between = [...(vocab.addsEos ? [eos] : []), ...(vocab.addsSep ? [vocab.sep] : [])];
  const end = vocab.addsEos ? [eos] : [];
  return concatTokens([
    ...head,
    await tokenize(query, plain),
    between,
    await tokenize(document, plain),
    end,
  ]);
}
