/**
 * The grammar checks of one model, remembered: clients send the same tool or schema grammar
 * with every request, and checking a large one takes up to a few hundred milliseconds, so each
 * distinct grammar is checked once and its verdict (summary or error) reused while it is among
 * the most recently used. The server has a new grammar checked on the grammar worker first
 * ({@link GrammarChecks.prepare}), off the event loop. Requests that send one text while it is
 * being checked wait on one job; a request whose client leaves stops waiting at once, and the
 * job leaves the worker's queue once none waits on it (one the worker has begun finishes, and
 * its verdict is remembered).
 *
 * @module
 */

import { GenerationError } from "./errors.ts";
import { GrammarError, type GrammarOptions, type GrammarSummary, validateGrammar } from "./gbnf.ts";
import { grammarWorker } from "./grammar_worker.ts";
import { RecentMap } from "../util/recent_map.ts";

/** Grammars remembered at most. */
const MAX_ENTRIES = 64;
/** Characters of grammar text remembered at most, all entries together. */
const MAX_CHARACTERS = 4 * 1024 * 1024;

/** A check on the grammar worker and the requests waiting on it. */
interface PendingCheck {
  /** Settles once the verdict is remembered, or the check was refused or dropped. */
  readonly done: Promise<void>;
  /** Drops the check from the worker's queue; aborted when the last waiter leaves. */
  readonly stop: AbortController;
  waiters: number;
}

/**
 * {@link validateGrammar} with the default limits for one model's vocabulary, remembering
 * the most recent verdicts.
 *
 * @example
 * ```ts
 * const checks = new GrammarChecks({ isSingleToken: (piece) => piece === "<|im_end|>" });
 * checks.check('root ::= "yes" | "no"'); // checked
 * checks.check('root ::= "yes" | "no"'); // remembered
 * ```
 */
export class GrammarChecks {
  readonly #options: GrammarOptions;
  /** Verdicts by grammar text, the most recently used (their texts count as their size). */
  readonly #verdicts = new RecentMap<GrammarSummary | Error>({
    maxEntries: MAX_ENTRIES,
    maxSize: MAX_CHARACTERS,
  });
  /** Checks queued or running on the grammar worker, by grammar text. */
  readonly #pending = new Map<string, PendingCheck>();

  /** @param options The model's vocabulary checks, passed to {@link validateGrammar}. */
  constructor(options: GrammarOptions) {
    this.#options = options;
  }

  /**
   * Checks a grammar, or repeats the verdict on the same text.
   *
   * @param grammar GBNF text with start rule `root`.
   * @returns What {@link validateGrammar} learned.
   * @throws {Error} The {@link GrammarError} (or other error) the check threw.
   */
  check(grammar: string): GrammarSummary {
    let verdict = this.#verdicts.get(grammar);
    if (verdict === undefined) {
      try {
        verdict = validateGrammar(grammar, {}, this.#options);
      } catch (error) {
        if (!(error instanceof Error)) throw error;
        verdict = error;
      }
      this.#verdicts.set(grammar, verdict);
    }
    if (verdict instanceof Error) throw verdict;
    return verdict;
  }

  /**
   * Checks a grammar on the grammar worker, off the event loop, unless its verdict is known, so
   * that the next {@link check} of it answers at once. A refusal of the grammar is not thrown
   * here: the verdict is {@link check}'s to give; where the worker cannot answer (it failed or
   * was closed), {@link check} checks on the calling thread.
   *
   * @param grammar GBNF text with start rule `root`.
   * @param signal Stops the wait (the client left). The check itself is dropped once no request
   *   waits on it (see `GrammarWorker.check`).
   * @throws {GenerationError} `queue_full` when the grammar worker's queue is full (HTTP 503).
   * @throws The signal's reason when it aborts.
   * @example
   * ```ts
   * await checks.prepare(grammar, request.signal); // the event loop turns meanwhile
   * checks.check(grammar); // remembered: the summary, or the GrammarError
   * ```
   */
  async prepare(grammar: string, signal?: AbortSignal): Promise<void> {
    if (this.#verdicts.has(grammar)) return;
    signal?.throwIfAborted();
    let pending = this.#pending.get(grammar);
    if (pending === undefined || pending.stop.signal.aborted) pending = this.#start(grammar);
    pending.waiters++;
    const { promise: left, reject: leave } = Promise.withResolvers<never>();
    const onAbort = () => leave(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.race([pending.done, left]);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      pending.waiters--;
      if (pending.waiters === 0 && signal?.aborted) pending.stop.abort(signal.reason);
    }
  }

  #start(grammar: string): PendingCheck {
    const stop = new AbortController();
    const pending: PendingCheck = {
      done: this.#checkOffThread(grammar, stop.signal).finally(() => {
        if (this.#pending.get(grammar) === pending) this.#pending.delete(grammar);
      }),
      stop,
      waiters: 0,
    };
    pending.done.catch(() => {}); // a check dropped when its last waiter left rejects unheard
    this.#pending.set(grammar, pending);
    return pending;
  }

  async #checkOffThread(grammar: string, signal: AbortSignal): Promise<void> {
    let verdict: GrammarSummary | Error;
    try {
      verdict = await grammarWorker().check(grammar, this.#options, signal);
    } catch (error) {
      if (error instanceof GrammarError) verdict = error;
      else if (signal.aborted || isQueueFull(error)) throw error;
      else return; // the worker failed or was closed: check() checks on this thread
    }
    if (!this.#verdicts.has(grammar)) this.#verdicts.set(grammar, verdict);
  }
}

function isQueueFull(error: unknown): boolean {
  return error instanceof GenerationError && error.code === "queue_full";
}
