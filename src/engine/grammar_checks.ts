/**
 * The grammar checks of one model, remembered: clients send the same tool or schema grammar
 * with every request, and checking a large one takes up to a few hundred milliseconds, so each
 * distinct grammar is checked once and its verdict (summary or error) reused while it is among
 * the most recently used. The server has a new grammar checked on the grammar worker first
 * ({@link GrammarChecks.prepare}), off the event loop.
 *
 * @module
 */

import { GrammarError, type GrammarOptions, type GrammarSummary, validateGrammar } from "./gbnf.ts";
import { grammarWorker } from "./grammar_worker.ts";
import { RecentMap } from "../util/recent_map.ts";

/** Grammars remembered at most. */
const MAX_ENTRIES = 64;
/** Characters of grammar text remembered at most, all entries together. */
const MAX_CHARACTERS = 4 * 1024 * 1024;

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
  /** Checks running on the grammar worker, by grammar text. */
  readonly #pending = new Map<string, Promise<void>>();

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
   * that the next {@link check} of it answers at once. Never throws: the verdict, a refusal
   * included, is {@link check}'s to give; where the worker cannot answer (it failed or was
   * closed), {@link check} checks on the calling thread.
   *
   * @param grammar GBNF text with start rule `root`.
   * @example
   * ```ts
   * await checks.prepare(grammar); // the event loop turns meanwhile
   * checks.check(grammar); // remembered: the summary, or the GrammarError
   * ```
   */
  async prepare(grammar: string): Promise<void> {
    if (this.#verdicts.has(grammar)) return;
    let pending = this.#pending.get(grammar);
    if (pending === undefined) {
      pending = this.#checkOffThread(grammar).finally(() => this.#pending.delete(grammar));
      this.#pending.set(grammar, pending);
    }
    await pending;
  }

  async #checkOffThread(grammar: string): Promise<void> {
    let verdict: GrammarSummary | Error;
    try {
      verdict = await grammarWorker().check(grammar, this.#options);
    } catch (error) {
      if (!(error instanceof GrammarError)) return;
      verdict = error;
    }
    if (!this.#verdicts.has(grammar)) this.#verdicts.set(grammar, verdict);
  }
}
