/**
 * Where requests go when every slot has its own KV stream (a context made with `kv_unified`
 * off). llama.cpp then decodes a batch in one pass only when its sequences are one run of
 * consecutive ids, in order: each break in the run costs a further pass over the weights (its
 * `split_equal`). These functions keep the busy slots one run: a new request takes a free slot
 * in a gap or at an end of the run, and when a request ends inside the run, the last busy slot
 * moves into the gap.
 *
 * Slots are given as a list of busy flags indexed by sequence id.
 *
 * @module
 */

/**
 * Counts the runs of consecutive busy ids.
 *
 * @param busy Busy flag per sequence id.
 * @returns 0 when none is busy; 1 when the busy ones are consecutive.
 * @example
 * ```ts
 * busyRuns([true, true, false, true]); // 2
 * ```
 */
export function busyRuns(busy: readonly boolean[]): number {
  let runs = 0;
  for (let i = 0; i < busy.length; i++) {
    if (busy[i] && !busy[i - 1]) runs++;
  }
  return runs;
}

/**
 * The free ids a new request may take without adding a break to the busy run: every free id
 * when none is busy; else the gaps inside the run (taking one closes a break), or, with none,
 * the free ids just before and after it.
 *
 * @param busy Busy flag per sequence id.
 * @returns Free ids, gaps first and lowest first; empty when no slot is free.
 * @example
 * ```ts
 * runKeepingTargets([false, true, true, false]); // [3, 0]
 * runKeepingTargets([true, false, true, false]); // [1]
 * ```
 */
export function runKeepingTargets(busy: readonly boolean[]): number[] {
  const first = busy.indexOf(true);
  if (first < 0) return busy.map((_, i) => i);
  const last = busy.lastIndexOf(true);
  const gaps: number[] = [];
  for (let i = first + 1; i < last; i++) if (!busy[i]) gaps.push(i);
  if (gaps.length > 0) return gaps;
  const ends: number[] = [];
  if (last + 1 < busy.length) ends.push(last + 1);
  if (first > 0) ends.push(first - 1);
  return ends;
}

/**
 * The free ids for `size` requests that start together so that the busy slots stay one run,
 * chosen to hold the most of what they can reuse. Placed one by one at the ends of the run, a
 * burst of returning conversations copied one's cached prefix over a slot whose cache another
 * of them needed: that one evaluated its whole prompt again.
 *
 * @param busy Busy flag per sequence id.
 * @param size Slots the requests need, at most the free ones.
 * @param reuse The prompt tokens the requests could reuse from an id's cache (the most for any
 *   of them).
 * @param usedAt When an id's cache last served a request: among windows that reuse as much, the
 *   one whose caches were used least recently (they are the ones the requests overwrite).
 * @returns The ids, lowest first, or undefined when the busy slots are more than one run or no
 *   window of that size keeps them one.
 * @example
 * ```ts
 * const cached = [0, 0, 40, 40];
 * burstWindow([false, false, false, false], 2, (id) => cached[id]); // [2, 3]
 * burstWindow([false, true, false, false], 2, (id) => cached[id]); // [2, 3]
 * burstWindow([true, false, true, false], 1, (id) => cached[id]); // undefined
 * ```
 */
export function burstWindow(
  busy: readonly boolean[],
  size: number,
  reuse: (id: number) => number,
  usedAt: (id: number) => number = () => 0,
): number[] | undefined {
  const runs = busyRuns(busy);
  if (runs > 1) return undefined;
  const candidates: number[][] = [];
  if (runs === 0) {
    for (let start = 0; start + size <= busy.length; start++) {
      candidates.push(Array.from({ length: size }, (_, k) => start + k));
    }
  } else {
    const first = busy.indexOf(true);
    const last = busy.lastIndexOf(true);
    for (let before = 0; before <= size; before++) {
      const after = size - before;
      if (first - before < 0 || last + after >= busy.length) continue;
      const ids: number[] = [];
      for (let id = first - before; id < first; id++) ids.push(id);
      for (let id = last + 1; id <= last + after; id++) ids.push(id);
      candidates.push(ids);
    }
  }
  // Each id's once: the windows overlap.
  const reuses = busy.map((_, id) => reuse(id));
  const ages = busy.map((_, id) => usedAt(id));
  let best: number[] | undefined;
  let bestScore = -1;
  let bestAge = Infinity;
  for (const ids of candidates) {
    const score = ids.reduce((sum, id) => sum + (reuses[id] as number), 0);
    const age = ids.reduce((sum, id) => sum + (ages[id] as number), 0);
    if (score > bestScore || score === bestScore && age < bestAge) {
      [best, bestScore, bestAge] = [ids, score, age];
    }
  }
  return best;
}

/** A request to move from one slot to another. */
export interface SlotMove {
  from: number;
  to: number;
}

/**
 * The move that shortens a broken busy run: the last busy slot into the first gap, or, when
 * that one cannot move, the first busy slot into the last gap.
 *
 * @param busy Busy flag per sequence id.
 * @param canMove Whether the request in a busy slot may move to a given free slot.
 * @returns The move, or undefined when the run is whole or no request may move.
 * @example
 * ```ts
 * compactingMove([true, false, true, true], () => true); // { from: 3, to: 1 }
 * ```
 */
export function compactingMove(
  busy: readonly boolean[],
  canMove: (from: number, to: number) => boolean,
): SlotMove | undefined {
  if (busyRuns(busy) <= 1) return undefined;
  const first = busy.indexOf(true);
  const last = busy.lastIndexOf(true);
  let firstGap = first + 1;
  while (busy[firstGap]) firstGap++;
  let lastGap = last - 1;
  while (busy[lastGap]) lastGap--;
  if (canMove(last, firstGap)) return { from: last, to: firstGap };
  if (canMove(first, lastGap)) return { from: first, to: lastGap };
  return undefined;
}

/** One sequence's tokens in a step's batch (see {@link splitPasses}). */
export interface BatchSequence {
  /** Its id. */
  seq: number;
  /** Its tokens in the batch (more than 0), which come one after another. */
  tokens: number;
  /** Whether its last token is an output. */
  output: boolean;
  /** Whether it is a generating stream's token (not a prompt's). */
  generating: boolean;
}

/** How llama.cpp decodes one step's batch with a KV stream per sequence ({@link splitPasses}). */
export interface SplitPasses {
  /** Micro-batches, each a pass over the weights (and, on a GPU, a graph of its own shape). */
  passes: number;
  /** Whether the outputs come out in the batch's order; if not, llama.cpp reorders them. */
  outputsInOrder: boolean;
  /** Passes that carry tokens of generating streams and of prompts alike. */
  mixedPasses: number;
}

/**
 * Follows llama.cpp's `split_equal` with a KV stream per sequence over a batch in any order:
 * each pass starts at the first sequence with tokens left, in the batch's order, and adds every
 * later one (in the batch's order) whose id is one more than the last added; it then takes the
 * same number of tokens from each, the fewest any has left. So sequences with different token
 * counts take several passes, and a sequence that ends in an early pass breaks the run for the
 * later ones. A sequence's output (its last token) comes out in the pass where it ends; when that
 * order differs from the batch's, llama.cpp swaps whole vocabulary-sized rows of its output
 * buffers on the first read (0.2–2 ms for 8 outputs with a 128k vocabulary,
 * `bench/prompt_probe.c`).
 *
 * A pass that carries generated tokens beside a prompt's first one is dear on a CPU: a generated
 * token of sequence 3 ahead of a 32-token prompt of sequence 4 took 38 ms where the prompt first
 * (or in sequence 5) took 33, and the prompt alone 29 (bench-125m on 2 cores,
 * `bench/results/cpu-2core-2026-12-04g/mixed-step-probe.log`); hence {@link mixedPasses}.
 *
 * @param order The batch's sequences, in the order their tokens are in it.
 * @returns The passes, whether the outputs come in the batch's order, and the mixed passes.
 * @example
 * ```ts
 * const stream = { seq: 3, tokens: 1, output: true, generating: true };
 * const prompt = { seq: 4, tokens: 32, output: true, generating: false };
 * splitPasses([stream, prompt]); // { passes: 2, outputsInOrder: true, mixedPasses: 1 }
 * splitPasses([prompt, stream]); // { passes: 2, outputsInOrder: true, mixedPasses: 0 }
 * ```
 */
export function splitPasses(order: readonly BatchSequence[]): SplitPasses {
  const left = order.map((s) => s.tokens);
  let passes = 0;
  let mixedPasses = 0;
  let lastOutput = -1;
  let outputsInOrder = true;
  for (;;) {
    const pass: number[] = [];
    for (const [i, s] of order.entries()) {
      if ((left[i] as number) === 0) continue;
      if (pass.length === 0 || s.seq === (order[pass.at(-1) as number] as BatchSequence).seq + 1) {
        pass.push(i);
      }
    }
    if (pass.length === 0) break;
    const take = Math.min(...pass.map((i) => left[i] as number));
    for (const i of pass) {
      left[i] = (left[i] as number) - take;
      if (left[i] !== 0 || !(order[i] as BatchSequence).output) continue;
      outputsInOrder &&= i > lastOutput;
      lastOutput = i;
    }
    const kinds = new Set(pass.map((i) => (order[i] as BatchSequence).generating));
    if (kinds.size > 1) mixedPasses++;
    passes++;
  }
  return { passes, outputsInOrder, mixedPasses };
}
