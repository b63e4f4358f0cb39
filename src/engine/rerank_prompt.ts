/**
 * The tokens a reranker reads for one query–document pair, built as llama.cpp's server builds
 * them: the model's `rerank` prompt template (GGUF `tokenizer.chat_template.rerank`, with
 * `{query}` and `{document}` filled in) when it has one, else the pair joined with the
 * vocabulary's own special tokens: `BOS query EOS SEP document EOS`, each special token only
 * where the vocabulary adds it (SEP stands in for a missing EOS).
 *
 * @module
 */

import { appendAll } from "../util/arrays.ts";

/** What the prompt needs of a model's vocabulary (`Model` has all of it). */
export interface RerankVocab {
  /** A named GGUF chat template, e.g. `"rerank"`. */
  chatTemplate(name?: string): string | undefined;
  /** Tokenizes text. */
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Int32Array;
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
 * @returns The token ids to decode as one sequence.
 * @example
 * ```ts
 * const tokens = rerankTokens(model, "what is a dog", "A dog is an animal");
 * ```
 */
export function rerankTokens(vocab: RerankVocab, query: string, document: string): Int32Array {
  const template = vocab.chatTemplate("rerank");
  if (template !== undefined) {
    // Filled in this order, like llama.cpp (a `{document}` inside the query is filled too).
    const prompt = template.replaceAll("{query}", () => query)
      .replaceAll("{document}", () => document);
    return vocab.tokenize(prompt, { addSpecial: false, parseSpecial: true });
  }
  const plain = { addSpecial: false, parseSpecial: false };
  const eos = vocab.eos !== -1 ? vocab.eos : vocab.sep;
  const out: number[] = [];
  if (vocab.addsBos) out.push(vocab.bos);
  appendAll(out, vocab.tokenize(query, plain));
  if (vocab.addsEos) out.push(eos);
  if (vocab.addsSep) out.push(vocab.sep);
  appendAll(out, vocab.tokenize(document, plain));
  if (vocab.addsEos) out.push(eos);
  return Int32Array.from(out);
}
