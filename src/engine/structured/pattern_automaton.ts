/**
 * A JSON Schema `pattern` as a deterministic automaton, written as GBNF with one rule per state.
 * llama.cpp's grammar sampler follows every way a grammar can match the same text, one parse
 * stack each, so a pattern written as it reads costs work that multiplies with each character
 * where its parts overlap: `^(\S+ ?)*$` splits a word of n letters in 2^(n-1) ways, and
 * `^.*\S.*$` or `^.+@.+\..+$` in a way per letter. After the subset construction each
 * character leads to one state, so one stack follows the text whatever the pattern.
 *
 * Several patterns (a format's and a schema's own) are read at once, as one automaton that takes
 * a character where all of them do. A string's length bounds (`minLength`, `maxLength`, in
 * characters) are counted in the states too, so the patterns and the lengths hold together; where
 * that takes too large a grammar, the caller may have `maxLength` halved until it fits (every
 * string still meets the schema). The automaton is minimized (states with the same future are
 * merged) and states that cannot reach an end are dropped, so the model is never led where no
 * string of the schema can be finished.
 *
 * @module
 */

import { type CharSet, jsonCharBranches } from "./charset.ts";
import {
  automaton,
  AUTOMATON_WORK,
  both,
  type DfaState,
  type LengthBounds,
  minimize,
  spend,
  TooLarge,
  withLengths,
  withoutDeadEnds,
  type WorkBudget,
} from "./dfa.ts";
import type { PatternBranch } from "./regex.ts";
import type { RuleSet } from "./rules.ts";
import { RecentMap } from "../../util/recent_map.ts";

/** Largest GBNF the automaton may take, in characters; the grammar as a whole has 60,000. */
const MAX_AUTOMATON_CHARS = 40_000;

/** Longest class written in the rules of states that count lengths; longer ones get a rule. */
const SHORT_CLASS = 12;

/**
 * GBNF rules for the inside of a JSON string that matches every one of some patterns and length
 * bounds, one per state of a deterministic automaton.
 *
 * @param patterns Each pattern's text, by which its rules are remembered (with the lengths), and
 *   its parsed top-level branches: a format's pattern and a schema's own (zod writes both).
 * @param lengths Bounds on the string's length in characters.
 * @param rules Where the rules go.
 * @param hint Name hint for the rules.
 * @param budget The schema's work left, spent here.
 * @param lowerMax Whether `maxLength` may be halved until the grammar fits.
 * @returns The start state's rule name, `null` when no string matches, or undefined when the
 *   automaton would be too large or take more work than is left (and no rule was added).
 * @example
 * ```ts
 * // branches: the parsed ^[ab]+$
 * patternRules([{ text: "^[ab]+$", branches }], {}, rules, "code", { left: AUTOMATON_WORK }, false);
 * // "code", with code ::= [ab] s and s ::= [ab] s | ""
 * ```
 */
export function patternRules(
  patterns: readonly { text: string; branches: readonly PatternBranch[] }[],
  lengths: LengthBounds,
  rules: RuleSet,
  hint: string,
  budget: WorkBudget,
  lowerMax: boolean,
): string | null | undefined {
  const texts = patterns.map(({ text }) => text);
  const cacheKey = JSON.stringify([lengths.min, lengths.max, lowerMax, ...texts]);
  let template = recentTemplates.get(cacheKey);
  if (template === undefined) {
    const whole = budget.left === AUTOMATON_WORK;
    try {
      template = ruleTemplate(patterns.map(({ branches }) => branches), lengths, budget, lowerMax);
    } catch (error) {
      if (!(error instanceof TooLarge)) throw error;
      // Past a budget that other patterns had spent from, it may fit in a schema of its own.
      if (budget.left < 0 && !whole) return undefined;
      template = "too large";
    }
    recentTemplates.set(cacheKey, template);
  }
  if (template === "too large") return undefined;
  return template && writeRules(template, rules, hint);
}

/** The rule templates of the latest patterns and lengths, by both. */
const recentTemplates = new RecentMap<RuleTemplate | null | "too large">({ maxEntries: 64 });

/**
 * The rules of a pattern's automaton, with their names left out: the automaton for the lengths,
 * or for a lower `maxLength` where that takes too large a grammar; null when no string matches.
 */
function ruleTemplate(
  patterns: readonly (readonly PatternBranch[])[],
  lengths: LengthBounds,
  budget: WorkBudget,
  lowerMax: boolean,
): RuleTemplate | null {
  let minimal: DfaState[] | undefined;
  for (const branches of patterns) {
    const states = automaton(branches, budget);
    minimal = minimal === undefined ? states : withoutDeadEnds(both(minimal, states, budget));
    if (minimal.length === 0) return null;
    minimal = minimize(minimal, budget);
  }
  if (minimal === undefined) throw new Error("no pattern");
  if (lengths.min === undefined && lengths.max === undefined) {
    return fitting(templateOf(minimal, false, budget));
  }
  const min = lengths.min ?? 0;
  for (let max = lengths.max;; max = Math.max(min, Math.floor(max / 2))) {
    const counted = countedOrUndefined(() => withLengths(minimal, { min, max }, budget), budget);
    if (counted?.length === 0) {
      if (max === lengths.max) return null;
      throw new TooLarge();
    }
    const template = counted && templateOf(counted, true, budget);
    if (template && template.size <= MAX_AUTOMATON_CHARS) return template;
    if (!lowerMax || max === undefined || max === min) throw new TooLarge();
  }
}

/** The template, or {@link TooLarge} past {@link MAX_AUTOMATON_CHARS}. */
function fitting(template: RuleTemplate): RuleTemplate {
  if (template.size > MAX_AUTOMATON_CHARS) throw new TooLarge();
  return template;
}

/**
 * The live states of an automaton that counts lengths, or undefined when it has more than
 * `MAX_DFA_STATES` (dfa.ts) (a lower `maxLength` may fit); throws {@link TooLarge} once the budget
 * is spent.
 */
function countedOrUndefined(
  build: () => DfaState[],
  budget: WorkBudget,
): DfaState[] | undefined {
  try {
    return withoutDeadEnds(build());
  } catch (error) {
    if (error instanceof TooLarge && budget.left >= 0) return undefined;
    throw error;
  }
}

/** Work a move of a template takes, in {@link AUTOMATON_WORK}'s steps: it writes GBNF classes. */
const TEMPLATE_WORK = 100;

/** Marks a rule name in a template's bodies: `MARK s12 MARK` or `MARK c3 MARK`. */
const MARK = "\u0000";

/**
 * An automaton's rules with their names as marks: a body per state, and the bodies of the
 * character rules they refer to.
 */
interface RuleTemplate {
  states: string[];
  chars: string[];
  /** About how many characters of GBNF the rules take. */
  size: number;
}

/**
 * The rule template of an automaton.
 *
 * @param counted Whether the states count lengths: many then share their moves' characters,
 *   which go in a rule each (`.` is some 150 characters of GBNF), as one item of the states'
 *   rules. Where two of a state's moves hold escapes, their rules share the backslash, and
 *   llama.cpp follows two stacks for the few characters of an escape.
 */
function templateOf(
  states: readonly DfaState[],
  counted: boolean,
  budget: WorkBudget,
): RuleTemplate {
  // Each range of a class takes at least a few characters of GBNF: too many need no writing.
  const ranges = states.reduce(
    (sum, { moves }) => sum + moves.reduce((n, m) => n + m.set.length, 0),
    0,
  );
  if (!counted && ranges * 3 > MAX_AUTOMATON_CHARS) throw new TooLarge();
  const chars = new Map<string, number>();
  const stateMark = (id: number) => `${MARK}s${id}${MARK}`;
  // The states that count lengths share their moves' sets (the same objects): each is written once.
  const items = new Map<CharSet, string>();
  const charItem = (set: CharSet): string => {
    let item = items.get(set);
    if (item !== undefined) return item;
    spend(budget, TEMPLATE_WORK * (1 + set.length / 16));
    const alternatives = jsonCharBranches([{ set, tail: "" }]);
    const only = alternatives.length === 1 ? alternatives[0]! : "";
    if (only.startsWith("[") && only.length <= SHORT_CLASS) item = only;
    else {
      const body = alternatives.join(" | ");
      if (!chars.has(body)) chars.set(body, chars.size);
      item = `${MARK}c${chars.get(body)}${MARK}`;
    }
    items.set(set, item);
    return item;
  };
  const bodies = states.map((state) => {
    const moveRanges = state.moves.reduce((n, { set }) => n + set.length, 0);
    spend(
      budget,
      counted ? state.moves.length + 1 : TEMPLATE_WORK * (state.moves.length + 1 + moveRanges / 16),
    );
    const alternatives = counted
      ? state.moves.map(({ set, to }) => `${charItem(set)} ${stateMark(to)}`)
      : jsonCharBranches(state.moves.map(({ set, to }) => ({ set, tail: stateMark(to) })));
    if (state.accepting) alternatives.push('""');
    return alternatives.join(" | ");
  });
  const nameLength = 6; // "s-1234"
  const marks = bodies.reduce((sum, body) => sum + body.split(MARK).length - 1, 0) / 2;
  const size = [...bodies, ...chars.keys()].reduce((sum, body) => sum + body.length, 0) +
    (marks + bodies.length + chars.size) * (nameLength + 4);
  return { states: bodies, chars: [...chars.keys()], size };
}

/**
 * Adds the template's rules under new names, and returns the first state's: the hint, the others
 * short (`s-12`, and `c-3` for characters), as a format's automaton has hundreds.
 */
function writeRules(template: RuleTemplate, rules: RuleSet, hint: string): string {
  const names = template.states.map((_, id) => rules.reserve(id === 0 ? hint : "s"));
  const charNames = template.chars.map((body) => rules.add("c", body));
  const named = (body: string) =>
    body.split(MARK).map((part, i) =>
      i % 2 === 0
        ? part
        : part[0] === "s"
        ? names[Number(part.slice(1))]
        : charNames[Number(part.slice(1))]
    ).join("");
  template.states.forEach((body, id) => rules.define(names[id]!, named(body)));
  return names[0]!;
}
