/**
 * Log-probabilities on the OpenAI wire: reading the request fields (chat's `logprobs` +
 * `top_logprobs`, completions' `logprobs: N`) and writing the two response shapes (chat's
 * `content` entries with `bytes`, completions' parallel arrays with `text_offset`).
 *
 * @module
 */

import { MAX_TOP_LOGPROBS, type TokenLogprob } from "../engine/logprobs.ts";
import { badRequest } from "./http_error.ts";
import type { Fields } from "./request_body.ts";

/** Turns a token id into its bytes (the model's piece for it). */
export type TokenBytes = (token: number) => Uint8Array;

const lenient = new TextDecoder();

/**
 * Reads chat's `logprobs` (boolean) and `top_logprobs` (0–20).
 *
 * @param fields The body.
 * @returns How many alternatives to report per token, or undefined when not asked.
 * @throws {HttpError} 400 for `top_logprobs` without `"logprobs": true`, or out of range.
 */
export function chatLogprobsRequest(fields: Fields): number | undefined {
  const on = fields.boolean("logprobs");
  const top = fields.number("top_logprobs", { min: 0, max: MAX_TOP_LOGPROBS, integer: true });
  if (top !== undefined && on !== true) {
    throw badRequest('"top_logprobs" needs "logprobs": true', "top_logprobs");
  }
  return on ? top ?? 0 : undefined;
}

/**
 * Reads completions' `logprobs` (how many alternatives per token, 0–20).
 *
 * @param fields The body.
 * @returns The count, or undefined when not asked.
 * @throws {HttpError} 400 when not an integer from 0 to 20.
 */
export function completionLogprobsRequest(fields: Fields): number | undefined {
  return fields.number("logprobs", { min: 0, max: MAX_TOP_LOGPROBS, integer: true });
}

function entry(bytesOf: TokenBytes, token: number, logprob: number) {
  const bytes = bytesOf(token);
  return { token: lenient.decode(bytes), logprob, bytes: [...bytes] };
}

/**
 * Chat's `logprobs.content`: one entry per token, with its text, bytes and alternatives.
 *
 * @param bytesOf The model's token pieces.
 * @param steps The tokens' log-probabilities.
 * @returns OpenAI's entries.
 */
export function chatLogprobs(bytesOf: TokenBytes, steps: readonly TokenLogprob[]) {
  return steps.map((step) => ({
    ...entry(bytesOf, step.token, step.logprob),
    top_logprobs: step.top.map((alt) => entry(bytesOf, alt.token, alt.logprob)),
  }));
}

/**
 * Completions' `logprobs`: tokens, their log-probabilities, the alternatives as
 * `{text: logprob}` maps, and where each token starts in the choice's text.
 *
 * @param bytesOf The model's token pieces.
 * @param steps The tokens' log-probabilities.
 * @param offset Characters of the choice's text before the first of these tokens (when
 *   streaming, what earlier chunks carried).
 * @returns OpenAI's object.
 */
export function completionLogprobs(
  bytesOf: TokenBytes,
  steps: readonly TokenLogprob[],
  offset = 0,
) {
  const tokens = steps.map((step) => lenient.decode(bytesOf(step.token)));
  let at = offset;
  return {
    tokens,
    token_logprobs: steps.map((step) => step.logprob),
    top_logprobs: steps.map((step) =>
      Object.fromEntries(step.top.map((alt) => [lenient.decode(bytesOf(alt.token)), alt.logprob]))
    ),
    text_offset: tokens.map((text) => {
      const start = at;
      at += text.length;
      return start;
    }),
  };
}

/**
 * llama-server's `completion_probabilities` (`n_probs`, on `/completion` and `/infill`): per
 * token its id, text (the whole characters of its bytes), bytes and log-probability, and the most
 * likely tokens of its step the same way.
 *
 * @param bytesOf The model's token pieces.
 * @param steps The tokens' log-probabilities.
 * @returns llama-server's entries.
 */
export function llamaProbabilities(bytesOf: TokenBytes, steps: readonly TokenLogprob[]) {
  const probability = (token: number, logprob: number) => {
    const bytes = bytesOf(token);
    return { id: token, token: wholeCharacters(bytes), bytes: [...bytes], logprob };
  };
  return steps.map((step) => ({
    ...probability(step.token, step.logprob),
    top_logprobs: step.top.map((alt) => probability(alt.token, alt.logprob)),
  }));
}

/**
 * A token's text as llama-server shows it: its bytes less a character cut off at their end, other
 * stray bytes as U+FFFD.
 */
function wholeCharacters(bytes: Uint8Array): string {
  let end = bytes.length;
  for (let back = 1; back <= Math.min(4, bytes.length); back++) {
    const byte = bytes[bytes.length - back] as number;
    const needs = byte >= 0xf0 && byte < 0xf8
      ? 4
      : byte >= 0xe0 && byte < 0xf0
      ? 3
      : byte >= 0xc0 && byte < 0xe0
      ? 2
      : 0;
    if (needs > back) {
      end = bytes.length - back;
      break;
    }
  }
  return lenient.decode(bytes.subarray(0, end));
}
