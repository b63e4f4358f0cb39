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
 * The generation step is timed afresh every {@link GENERATION_STEP_REFRESH} steps that carry
 * prompt tokens beside streams ({@link PrefillBudget.generationStepDue}): the streams' growing
 * contexts make each of their steps slower, and an average learnt before a long prompt came
 * would count that growth as the prompt tokens' cost. Beside four streams of up to 3,000 tokens
 * on 2 cores, a 3,996-token prompt's budget fell to 2 tokens a step that way and its first
 * token came after 71 s (bench/README.md, "A long prompt beside long streams").
 *
 * Chunks as small as the stall allows can starve a long prompt, though: each chunk is a pass of its
 * own, and deep in a long prompt each chunk reads the whole of its cache, so a chunk of a few
 * tokens costs nearly what one of fifty does (bench-125m on 2 cores, beside four streams: 26 ms
 * for 2 tokens at a depth of 4,000, 110 for 32). Such a prompt keeps a pace
 * ({@link PrefillBudget.paceTokens}) that has it evaluated within {@link PROMPT_PACE_SLOWDOWN}
 * times its time alone: unless the streams end soon enough for it to finish alone in that time,
 * its chunks grow, doubling at most a step, until it has evaluated what that share of the time
 * since it came would have, and the streams beside it take the longer steps that costs. Where
 * they end soon, the small chunks let them end sooner, and the prompt is then evaluated alone in
 * large pieces: with four streams of 256 tokens beside a 3,996-token prompt, keeping the pace
 * made their steps 1.4x slower and its first token later (11.0 s against 10.0).
 *
 * The same two averages size the first step of prompts that start together while nothing
 * generates ({@link firstGroupSize}): where a prompt costs more than a generation step, the
 * shorter ones go first and the rest in the next step.
 *
 * @module
 */

/** How much longer than a generation-only step a step with prompt tokens may take (0.5: 1.5×). */
export const PREFILL_STALL_SHARE = 0.5;
/** The fewest prompt tokens a step carries, so a prompt always progresses. */
export const MIN_PREFILL_CHUNK = 2;
/** The budget before any step has been timed. */
const INITIAL_BUDGET = 64;
/**
 * Fewest prompt tokens a step of prompts alone needs to time what a prompt token costs: in a
 * smaller one the pass over the weights, which every step makes whatever its tokens, would count
 * as theirs (a step of one cached prompt's last token costs what a generation step does).
 */
const MIN_TIMED_PROMPT_TOKENS = 16;
/**
 * After how many steps with prompt tokens beside streams a step of generation alone is due, to
 * time the streams' step as it is now (see {@link PrefillBudget.generationStepDue}).
 */
export const GENERATION_STEP_REFRESH = 16;
/**
 * How many times longer than alone a long prompt chunked behind streams may take to be evaluated
 * (see {@link PrefillBudget.paceTokens}), its time alone reckoned from steps of prompts alone.
 */
export const PROMPT_PACE_SLOWDOWN = 5;
/** Weight of the newest observation in the running averages. */
const SMOOTHING = 0.2;
/**
 * How much larger the sum of a burst's first-token times may be for a majority of its prompts to
 * go in the first step (see {@link firstGroupSize}).
 */
const MAJORITY_SLACK = 0.1;

/** Learns step costs and answers how many prompt tokens the next step may carry. */
export class PrefillBudget {
  #generationStepMs: number | undefined;
  #msPerPromptToken: number | undefined;
  /**
   * Steps of prompts alone, their time and tokens summed, older steps fading: a prompt token's
   * cost there is what a long prompt's pace is set by (see {@link PrefillBudget.paceTokens}).
   */
  #promptsAlone = { ms: 0, tokens: 0 };
  /** Steps with prompt tokens beside streams since the last step of generation alone. */
  #mixedStepsSinceGeneration = 0;

  /**
   * Records a finished step.
   *
   * @param decodeMs How long its decode took.
   * @param generatingTokens Tokens of generating requests in it.
   * @param promptTokens Prompt tokens in it.
   */
  observe(decodeMs: number, generatingTokens: number, promptTokens: number): void {
    if (promptTokens === 0) {
      if (generatingTokens > 0) {
        this.#generationStepMs = average(this.#generationStepMs, decodeMs);
        this.#mixedStepsSinceGeneration = 0;
      }
      return;
    }
    // A due step that still had prompt tokens (short ones, which go in whole) starts the count
    // again: chunks sit out one step in so many, not every step while such prompts keep coming.
    if (generatingTokens > 0) {
      this.#mixedStepsSinceGeneration = this.generationStepDue()
        ? 0
        : this.#mixedStepsSinceGeneration + 1;
    }
    // Without generated tokens to stand for it, the pass would count as the prompt tokens'.
    if (generatingTokens === 0) {
      if (promptTokens < MIN_TIMED_PROMPT_TOKENS) return;
      // Weighed by their tokens, not one vote a step: a short prompt's step, which the pass over
      // the weights dominates and a hiccup of the machine can stretch tenfold, would otherwise
      // set a long prompt's pace (a 90-token step stretched from 3 to 30 ms made it 6 times too
      // slow, and the long prompt took 8 times its time alone).
      const fade = 1 - SMOOTHING;
      this.#promptsAlone = {
        ms: this.#promptsAlone.ms * fade + decodeMs,
        tokens: this.#promptsAlone.tokens * fade + promptTokens,
      };
    }
    const base = generatingTokens > 0 ? this.#generationStepMs ?? 0 : 0;
    // A step with prompt tokens no slower than the generation steps' average tells nothing of
    // them (a slow generation step on a busy machine raised that average): counted as free,
    // they would let a whole long prompt into one step beside streaming requests.
    if (decodeMs <= base) return;
    this.#msPerPromptToken = average(this.#msPerPromptToken, (decodeMs - base) / promptTokens);
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
    return Math.max(MIN_PREFILL_CHUNK, Math.floor((step * PREFILL_STALL_SHARE) / perToken));
  }

  /**
   * The fewest tokens a prompt chunked behind streams takes in the next step to keep its pace (see
   * the module's doc). None where the streams end in time for it to be evaluated alone within
   * {@link PROMPT_PACE_SLOWDOWN} times its time alone, their steps lengthened by the stall
   * budget's share. Otherwise, by now it should have evaluated the tokens that share of the time
   * since it was submitted would have taken alone; behind that, it catches up with chunks that at
   * most double a step, so the streams' steps lengthen gradually.
   *
   * @returns 0 until a step of prompts alone and one of generation alone have been timed.
   * @example
   * ```ts
   * const budget = new PrefillBudget();
   * budget.observe(10, 4, 0); // 4 streams: 10 ms a step
   * budget.observe(100, 0, 100); // prompts alone: 1 ms a token
   * const prompt = { elapsedMs: 2000, evaluated: 100, rest: 3900, lastChunk: 8 };
   * budget.paceTokens({ ...prompt, streamSteps: 2000 }); // 16: 300 more due, twice the last chunk
   * budget.paceTokens({ ...prompt, streamSteps: 200 }); // 0: the streams end within 3 s
   * ```
   */
  paceTokens(prompt: ChunkedPrompt): number {
    const { ms, tokens } = this.#promptsAlone;
    const step = this.#generationStepMs;
    if (tokens === 0 || step === undefined) return 0;
    const alone = ms / tokens;
    const { elapsedMs, evaluated, rest, lastChunk, streamSteps } = prompt;
    const deadlineMs = PROMPT_PACE_SLOWDOWN * alone * (evaluated + rest) - elapsedMs;
    const streamsLeftMs = streamSteps * step * (1 + PREFILL_STALL_SHARE);
    if (streamsLeftMs + rest * alone <= deadlineMs) return 0;
    const due = Math.ceil(elapsedMs / (PROMPT_PACE_SLOWDOWN * alone)) - evaluated;
    return Math.max(0, Math.min(due, 2 * Math.max(lastChunk, MIN_PREFILL_CHUNK)));
  }

  /**
   * What a prompt token costs in steps of prompts alone, learnt from those steps.
   *
   * @returns Milliseconds, or undefined until a step of at least
   *   {@link MIN_TIMED_PROMPT_TOKENS} prompt tokens alone has been timed.
   * @example
   * ```ts
   * const budget = new PrefillBudget();
   * budget.observe(200, 0, 400); // a prompt alone: 0.5 ms a token
   * budget.promptAloneMsPerToken(); // 0.5
   * ```
   */
  promptAloneMsPerToken(): number | undefined {
    const { ms, tokens } = this.#promptsAlone;
    return tokens === 0 ? undefined : ms / tokens;
  }

  /**
   * Whether the next step should leave out the prompts that go in chunks, so that it times the
   * streams' step as their contexts have grown: after {@link GENERATION_STEP_REFRESH} steps with
   * prompt tokens beside them (a long prompt's chunks delay by one step in that many).
   */
  generationStepDue(): boolean {
    return this.#mixedStepsSinceGeneration >= GENERATION_STEP_REFRESH;
  }

  /**
   * What steps cost, learnt from the steps themselves.
   *
   * @returns Undefined until a generation-only step and a step of at least
   *   {@link MIN_TIMED_PROMPT_TOKENS} prompt tokens have been timed.
   * @example
   * ```ts
   * const budget = new PrefillBudget();
   * budget.observe(12, 4, 0); // 4 streams: 12 ms a step
   * budget.observe(210, 0, 272); // eight prompts: 0.77 ms a token
   * budget.stepCosts(); // { generationStepMs: 12, msPerPromptToken: 0.77… }
   * ```
   */
  stepCosts(): StepCosts | undefined {
    const step = this.#generationStepMs;
    const perToken = this.#msPerPromptToken;
    if (step === undefined || perToken === undefined) return undefined;
    return { generationStepMs: step, msPerPromptToken: perToken };
  }
}

/** A prompt that goes in chunks behind streams (see {@link PrefillBudget.paceTokens}). */
export interface ChunkedPrompt {
  /** Time since its request was submitted. */
  elapsedMs: number;
  /** Its tokens evaluated so far (not those found cached). */
  evaluated: number;
  /** Its tokens still to evaluate. */
  rest: number;
  /** Tokens its last step took (0 for none). */
  lastChunk: number;
  /** The most steps the streams beside it may still take (their tokens left, at most). */
  streamSteps: number;
}

/** What steps cost (see {@link PrefillBudget.stepCosts}). */
export interface StepCosts {
  /** A step of generation alone, ms. */
  generationStepMs: number;
  /** Each prompt token a step carries, ms. */
  msPerPromptToken: number;
}

/**
 * How many of the prompts that start together, when no stream is generating, go in the first
 * step; the others follow together in the next, which also carries the first ones' second
 * tokens. Where a step costs about as much more as it has prompt tokens (every layer on a CPU),
 * one step for all makes every first token wait for the last prompt; in two steps the first
 * group's come a whole group of prompts sooner, for the second group one generation step later.
 * The size minimises the sum of the first-token times (at most one pause for each of the first
 * streams, where more steps would stall them at each), except that, where the second group goes
 * in one step (`majorityFirst`: short prompts; long ones then go one a step), a majority goes
 * first where that sum is at most {@link MAJORITY_SLACK} larger: equal prompts give a half first,
 * which puts the median first token on the boundary of the two groups, now in one and now in the
 * other; with a majority the median request has its token after the first step, the first
 * group's pause for the second is shorter, and the last first token comes as late. On 2 cores,
 * eight 29-token prompts of a 1.5B model took 1.7 s in one step, and llama-server, which starts
 * the requests that have arrived, split such bursts in two.
 *
 * @param rests Prompt tokens each still needs, in the order their slots were given.
 * @param costs The learnt step costs; undefined before they are known (then all go at once).
 * @param majorityFirst Whether a majority may go first at a slightly larger sum (see above).
 * @returns Between 1 and `rests.length`; `rests.length` when one step serves them best.
 * @example
 * ```ts
 * const costs = { generationStepMs: 12, msPerPromptToken: 0.77 };
 * firstGroupSize([34, 34, 34, 34, 34, 34, 34, 34], costs); // 5: the sum 1% over 4's
 * firstGroupSize([2, 2, 2, 2], costs); // 4: short rests cost less than the extra step
 * ```
 */
export function firstGroupSize(
  rests: readonly number[],
  costs: StepCosts | undefined,
  majorityFirst = true,
): number {
  const n = rests.length;
  if (costs === undefined || n < 2) return n;
  // The work of the first k prompts, for k from 0 to n.
  const firstWork = [0];
  for (const rest of rests) {
    firstWork.push((firstWork.at(-1) as number) + rest * costs.msPerPromptToken);
  }
  const total = firstWork[n] as number;
  // The first k prompts' tokens come after their work; the others' after all of it and a
  // generation step (k = n: all at once).
  const sumFor = (k: number) =>
    k * (firstWork[k] as number) + (n - k) * (total + costs.generationStepMs);
  let best = n;
  for (let k = 1; k < n; k++) if (sumFor(k) < sumFor(best)) best = k;
  const majority = Math.floor(n / 2) + 1;
  const majorityFits = majorityFirst && best < majority && majority < n &&
    sumFor(majority) <= (1 + MAJORITY_SLACK) * sumFor(best);
  return majorityFits ? majority : best;
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
