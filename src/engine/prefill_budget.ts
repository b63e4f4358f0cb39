/**
 * How many prompt tokens a decode step may carry while other requests are generating. A step
 * is one `llama_decode`, so every generating stream waits for the whole step: a long prompt
 * evaluated in one step stalls them all for as long as it takes (seconds on a CPU). The budget
 * keeps a step that carries prompt tokens at most {@link PREFILL_STALL_SHARE} longer than a
 * step of generation alone, from two running averages it learns from the steps themselves: the
 * time of a generation-only step, and the time each prompt token adds. A long prompt is then
 * evaluated in chunks between the others' tokens, and their token gaps stretch by that share.
 *
 * Chunking only protects streams from prompts that arrived after them ({@link chunksBehind}).
 * It does not make the streams faster overall: they wait for the same prompt work either way,
 * spread over many steps instead of in one. What it costs is the waiting request's first token,
 * which comes one generation step later per chunk. A request that was already waiting when the
 * streams started (requests that arrive together, more of them than one step's batch holds) is
 * ahead of them in line, and its prompt goes in as large a piece as the batch takes, as in
 * llama.cpp's server: with four 1,000-token prompts at once on 2 cores, chunking the last two
 * behind the first two's streams made their first tokens 1.4x later than llama-server's.
 *
 * @module
 */

/** How much longer than a generation-only step a step with prompt tokens may take (0.5: 1.5×). */
export const PREFILL_STALL_SHARE = 0.5;
/** The fewest prompt tokens a step carries, so a prompt always progresses. */
export const MIN_PREFILL_CHUNK = 2;
/** The budget before any step has been timed. */
const INITIAL_BUDGET = 64;
/** Weight of the newest observation in the running averages. */
const SMOOTHING = 0.2;

/** Learns step costs and answers how many prompt tokens the next step may carry. */
export class PrefillBudget {
  #generationStepMs: number | undefined;
  #msPerPromptToken: number | undefined;

  /**
   * Records a finished step.
   *
   * @param decodeMs How long its decode took.
   * @param generatingTokens Tokens of generating requests in it.
   * @param promptTokens Prompt tokens in it.
   */
  observe(decodeMs: number, generatingTokens: number, promptTokens: number): void {
    if (promptTokens === 0) {
      if (generatingTokens > 0) this.#generationStepMs = average(this.#generationStepMs, decodeMs);
      return;
    }
    const base = generatingTokens > 0 ? this.#generationStepMs ?? 0 : 0;
    const perToken = Math.max(0, decodeMs - base) / promptTokens;
    this.#msPerPromptToken = average(this.#msPerPromptToken, perToken);
  }

  /**
   * The prompt tokens the next step may carry while requests are generating.
   *
   * @returns At least {@link MIN_PREFILL_CHUNK}.
   * @example
   * ```ts
   * const budget = new PrefillBudget();
   * budget.observe(20, 4, 0); // 4 streams: 20 ms a step
   * budget.observe(70, 4, 100); // 100 prompt tokens added 50 ms
   * budget.tokens(); // 20 (10 ms of prompt per 20 ms step)
   * ```
   */
  tokens(): number {
    const step = this.#generationStepMs;
    const perToken = this.#msPerPromptToken;
    if (step === undefined || perToken === undefined) return INITIAL_BUDGET;
    if (perToken <= 0) return Number.MAX_SAFE_INTEGER;
    return Math.max(MIN_PREFILL_CHUNK, Math.floor((step * PREFILL_STALL_SHARE) / perToken));
  }
}

/**
 * Whether a waiting prompt goes in chunks behind the streams that are generating: only when it
 * arrived after the earliest of them had its first token (it is behind them in line).
 *
 * @param submittedAt When the prompt's request was submitted (`performance.now()`).
 * @param generatingSince The earliest first-token time of the streams generating in this step;
 *   `Infinity` when none is.
 * @returns True when the prompt is limited by {@link PrefillBudget.tokens}.
 */
export function chunksBehind(submittedAt: number, generatingSince: number): boolean {
  return submittedAt > generatingSince;
}

function average(previous: number | undefined, value: number): number {
  return previous === undefined ? value : previous + SMOOTHING * (value - previous);
}
