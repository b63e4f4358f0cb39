/**
 * Whether literal text (a `const` or `enum` value) matches a schema's `pattern`, read by the
 * pattern's deterministic automaton: one state per character, so the time is linear in the
 * text, whatever the pattern. JavaScript's backtracking `RegExp` took hours on client text
 * (`^(a+)+$` against forty `a`s and a `!`), on the event loop. A branch without `^` or `$` takes
 * any text before or after it, as JSON Schema searches for the pattern. Building the automaton
 * and reading the text spend from the schema's work budget; where either is past it, the values
 * are refused rather than tested another way.
 *
 * @module
 */

import { contains } from "./charset.ts";
import { automaton, type DfaState, spend, TooLarge, type WorkBudget } from "./dfa.ts";
import { SchemaError } from "./errors.ts";
import { parsePattern } from "./regex.ts";

/**
 * A test of text against a pattern, by the pattern's automaton.
 *
 * @param pattern The schema's `pattern` (ECMAScript syntax, the subset regex.ts parses).
 * @param path Where in the schema, for errors.
 * @param budget The schema's work left, spent by building the automaton and by each test.
 * @returns A function that tells whether a text matches the pattern; it throws a
 *   {@link SchemaError} naming `pattern` once the budget is spent.
 * @throws {SchemaError} naming `pattern` for syntax outside the supported subset, or where the
 *   automaton is too large or past the budget.
 * @example
 * ```ts
 * const matches = patternMatcher("^(a+)+$", "", { left: AUTOMATON_WORK });
 * matches("a".repeat(40) + "!"); // false, at once
 * ```
 */
export function patternMatcher(
  pattern: string,
  path: string,
  budget: WorkBudget,
): (text: string) => boolean {
  const branches = parsePattern(pattern, path);
  const states = overBudget(path, () => automaton(branches, budget));
  return (text) => overBudget(path, () => runs(states, text, budget));
}

/** Whether the automaton ends in an accepting state after reading the text. */
function runs(states: readonly DfaState[], text: string, budget: WorkBudget): boolean {
  if (states.length === 0) return false; // no text matches
  let state = states[0]!;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    spend(budget, state.moves.length + 1);
    const move = state.moves.find(({ set }) => contains(set, code));
    // Every state of a live automaton leads to an end: without a move the text cannot match.
    if (move === undefined) return false;
    state = states[move.to]!;
  }
  return state.accepting;
}

/** Runs work on the automaton, refusing the values where it is too large or past the budget. */
function overBudget<T>(path: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof TooLarge)) throw error;
    throw new SchemaError(
      "pattern",
      path,
      "is too large or complex a pattern to check the const or enum values against; " +
        "simplify the pattern, shorten the values, or leave the pattern out",
    );
  }
}
