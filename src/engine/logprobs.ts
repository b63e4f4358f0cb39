/**
 * Log-probabilities of a step's tokens: the log-softmax of the raw logits (before any sampler
 * stage: temperature, penalties, grammar or bias do not change them), for the chosen token and
 * the most likely alternatives. Computed only for requests that ask.
 *
 * @module
 */

/** Most alternatives a request may ask for per token (OpenAI's bound). */
export const MAX_TOP_LOGPROBS = 20;

/** A token and its log-probability. */
export interface TokenProbability {
  token: number;
  logprob: number;
}

/** The log-probability of a generated token, with the step's most likely tokens. */
export interface TokenLogprob extends TokenProbability {
  /** The most likely tokens of the step, most likely first (as many as were asked). */
  top: TokenProbability[];
}

/**
 * The log-probabilities of one step.
 *
 * @param logits The step's raw logits (one per vocabulary entry).
 * @param chosen The token that was generated.
 * @param topCount How many of the most likely tokens to list (0 to {@link MAX_TOP_LOGPROBS}).
 * @returns The chosen token's log-probability and the top tokens, most likely first.
 * @example
 * ```ts
 * const step = stepLogprobs(context.logits(index), token, 5);
 * ```
 */
export function stepLogprobs(logits: Float32Array, chosen: number, topCount: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    if ((logits[i] as number) > max) max = logits[i] as number;
  }
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i] as number) - max);
  const logNormalizer = max + Math.log(sum);
  const top = topTokens(logits, Math.min(topCount, MAX_TOP_LOGPROBS, logits.length));
  return {
    token: chosen,
    logprob: (logits[chosen] as number) - logNormalizer,
    top: top.map((token) => ({ token, logprob: (logits[token] as number) - logNormalizer })),
  };
}

/** The ids of the `count` largest logits, largest first (ties: lower id first). */
function topTokens(logits: Float32Array, count: number): number[] {
  const best: number[] = [];
  if (count <= 0) return best;
  for (let i = 0; i < logits.length; i++) {
    const value = logits[i] as number;
    if (best.length === count && value <= (logits[best[count - 1] as number] as number)) continue;
    let at = best.length === count ? count - 1 : best.length;
    while (at > 0 && value > (logits[best[at - 1] as number] as number)) at--;
    best.splice(at, 0, i);
    if (best.length > count) best.pop();
  }
  return best;
}
