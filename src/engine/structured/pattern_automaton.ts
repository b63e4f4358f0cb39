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

import {
  type CharSet,
  charSet,
  type CodeRange,
  complement,
  intersect,
  jsonCharBranches,
} from "./charset.ts";
import type { Lookahead, PatternBranch, PatternNode } from "./regex.ts";
import type { RuleSet } from "./rules.ts";
import { RecentMap } from "../../util/recent_map.ts";

/** States of the nondeterministic automaton before the pattern counts as too large. */
const MAX_NFA_STATES = 4_000;
/**
 * Ranges of a character set in the automaton; the grammar validator refuses larger classes
 * (`maxClassItems`), and the automaton's work grows with them.
 */
const MAX_SET_RANGES = 256;
/** States of the deterministic automaton (lengths counted in) before it counts as too large. */
const MAX_DFA_STATES = 2_000;
/** Largest GBNF the automaton may take, in characters; the grammar as a whole has 60,000. */
const MAX_AUTOMATON_CHARS = 40_000;

/**
 * Steps of work (states and moves looked at) that the automata of one schema may take: about
 * 40 ms on a 2-core machine once its code is warm (several times that in a new process).
 * Schemas are converted on the event loop, and `^(?:[a-z]{1,30}\s?){1,20}$` had taken 0.2 s to
 * reach the state limit. Each pattern's rules are remembered, so a pattern costs its work once.
 */
export const AUTOMATON_WORK = 400_000;

/** What is left of a schema's {@link AUTOMATON_WORK}, shared by its patterns. */
export interface WorkBudget {
  left: number;
}

/**
 * Runs work on a share of what is left of the budget, and spends from the budget what it spent.
 *
 * @param budget The schema's work left.
 * @param fraction The share the work may spend.
 * @param run The work, given its share.
 * @returns What the work returns.
 * @example
 * ```ts
 * withShare(budget, 0.5, (share) => patternRules(patterns, lengths, rules, hint, share, false));
 * ```
 */
export function withShare<T>(
  budget: WorkBudget,
  fraction: number,
  run: (share: WorkBudget) => T,
): T {
  const share = { left: Math.floor(Math.max(budget.left, 0) * fraction) };
  const given = share.left;
  try {
    return run(share);
  } finally {
    budget.left -= given - Math.max(share.left, 0);
  }
}

/** Spends work from the budget, or throws {@link TooLarge} once it is gone. */
function spend(budget: WorkBudget, steps: number): void {
  budget.left -= steps;
  if (budget.left < 0) throw new TooLarge();
}

/** Longest class written in the rules of states that count lengths; longer ones get a rule. */
const SHORT_CLASS = 12;

/** Any character: a branch without `^` or `$` may have any text before or after it. */
const ANY: CharSet = charSet([[0, 0x10ffff]]);

/** Length bounds of the string, in characters. */
export interface LengthBounds {
  min?: number;
  max?: number;
}

/** A state of the deterministic automaton. */
interface DfaState {
  accepting: boolean;
  /** Disjoint character sets, each to one state. */
  moves: { set: CharSet; to: number }[];
}

/** The automaton is larger than the limits above. */
class TooLarge extends Error {}

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

/**
 * The product of two automata: it reads the text in both at once, accepting where both do; a
 * character moves it where it moves both.
 */
function both(x: readonly DfaState[], y: readonly DfaState[], budget: WorkBudget): DfaState[] {
  const states: DfaState[] = [];
  const ids = new Map<number, number>();
  const work: [number, number][] = [];
  const stateOf = (a: number, b: number): number => {
    const key = a * y.length + b;
    let id = ids.get(key);
    if (id === undefined) {
      id = addState(states, x[a]!.accepting && y[b]!.accepting);
      ids.set(key, id);
      work.push([a, b]);
    }
    return id;
  };
  stateOf(0, 0);
  for (let id = 0; id < work.length; id++) {
    const [a, b] = work[id]!;
    for (const first of x[a]!.moves) {
      spend(budget, y[b]!.moves.length);
      for (const second of y[b]!.moves) {
        const set = intersect(first.set, second.set);
        if (set.length > 0) states[id]!.moves.push({ set, to: stateOf(first.to, second.to) });
      }
    }
  }
  return states;
}

/** The template, or {@link TooLarge} past {@link MAX_AUTOMATON_CHARS}. */
function fitting(template: RuleTemplate): RuleTemplate {
  if (template.size > MAX_AUTOMATON_CHARS) throw new TooLarge();
  return template;
}

/**
 * The live states of an automaton that counts lengths, or undefined when it has more than
 * {@link MAX_DFA_STATES} (a lower `maxLength` may fit); throws {@link TooLarge} once the budget
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

/** A state of the nondeterministic automaton: its empty moves and its character moves. */
interface NfaState {
  empty: number[];
  moves: { set: CharSet; to: number }[];
}

interface Nfa {
  states: NfaState[];
  start: number;
  accepting: Set<number>;
}

/**
 * Thompson's construction over the branches; each branch has its own start and end. A lookahead
 * (`(?=x)`, `(?!x)`) is read where the rest of its branch follows it to the branch's end (its
 * `tail`): that rest is built as an automaton of its own, with the branch's end, and read in
 * step with the lookahead's (or its complement's), its ends accepting at once. Elsewhere a
 * lookahead counts as {@link TooLarge}, which leaves the pattern to be written as it reads, and
 * that refuses it.
 */
function buildNfa(branches: readonly PatternBranch[], budget: WorkBudget): Nfa {
  const states: NfaState[] = [];
  const accepting = new Set<number>();
  const add = (): number => {
    if (states.length >= MAX_NFA_STATES) throw new TooLarge();
    spend(budget, 1);
    return states.push({ empty: [], moves: [] }) - 1;
  };
  /** The rest of a lookahead's branch, read with it, put in at `from`; returns a dead end. */
  const lookingAhead = (look: Lookahead, rest: PatternNode[], end: boolean, from: number) => {
    const remainder: PatternBranch = { node: { kind: "seq", items: rest }, start: true, end };
    const [after, allowed] = [automaton([remainder], budget), lookAutomaton(look, budget)];
    if (after.length === 0 || allowed.length === 0) return add(); // no text gets past it
    const ahead = both(after, allowed, budget);
    const ids = ahead.map(() => add());
    ahead.forEach(({ accepting: accepts, moves }, i) => {
      for (const { set, to } of moves) states[ids[i]!]!.moves.push({ set, to: ids[to]! });
      if (accepts) accepting.add(ids[i]!);
    });
    states[from]!.empty.push(ids[0]!);
    return add();
  };
  /** `tail`: whether the node is followed by its branch's end, and whether that is anchored. */
  const build = (node: PatternNode, from: number, tail?: { end: boolean }): number => {
    switch (node.kind) {
      case "chars": {
        // llama.cpp's grammars allow no more in a class, and each piece of a set costs work.
        if (node.set.length > MAX_SET_RANGES) throw new TooLarge();
        spend(budget, node.set.length);
        const to = add();
        states[from]!.moves.push({ set: node.set, to });
        return to;
      }
      case "look":
        if (!tail) throw new TooLarge();
        return lookingAhead(node, [], tail.end, from);
      case "seq": {
        let at = from;
        for (const [i, item] of node.items.entries()) {
          const last = i === node.items.length - 1;
          if (item.kind === "look") {
            if (!tail) throw new TooLarge();
            return lookingAhead(item, node.items.slice(i + 1), tail.end, at);
          }
          at = build(item, at, last ? tail : undefined);
        }
        return at;
      }
      case "alt": {
        const join = add();
        for (const branch of node.branches) states[build(branch, from, tail)]!.empty.push(join);
        return join;
      }
      case "repeat": {
        // A lone round (`?`) is followed by what follows the repetition: its tail, if any.
        if (node.max === 1 && node.min <= 1) {
          const end = build(node.node, from, tail);
          if (node.min === 1) return end;
          // A state of its own: the child's end may have moves of its own (`[^a]+` loops there).
          const exit = add();
          states[from]!.empty.push(exit);
          states[end]!.empty.push(exit);
          return exit;
        }
        let at = from;
        for (let i = 0; i < node.min; i++) at = build(node.node, at);
        if (node.max === undefined) {
          const loop = add();
          states[at]!.empty.push(loop);
          states[build(node.node, loop)]!.empty.push(loop);
          return loop;
        }
        const exit = add();
        states[at]!.empty.push(exit);
        for (let i = node.min; i < node.max; i++) {
          at = build(node.node, at);
          states[at]!.empty.push(exit);
        }
        return exit;
      }
    }
  };
  const start = add();
  for (const branch of branches) {
    const begin = add();
    states[start]!.empty.push(begin);
    if (!branch.start) states[begin]!.moves.push({ set: ANY, to: begin });
    const end = build(branch.node, begin, { end: branch.end });
    if (!branch.end) states[end]!.moves.push({ set: ANY, to: end });
    accepting.add(end);
  }
  return { states, start, accepting };
}

/** The live deterministic automaton of some branches. */
function automaton(branches: readonly PatternBranch[], budget: WorkBudget): DfaState[] {
  return withoutDeadEnds(determinize(buildNfa(branches, budget), budget));
}

/**
 * What a lookahead lets through from where it stands: its branches, each followed by any text
 * unless it ends with `$`, or for `(?!x)` every text that does not start so.
 */
function lookAutomaton(look: Lookahead, budget: WorkBudget): DfaState[] {
  const ahead = automaton(look.branches, budget);
  return look.positive ? ahead : complemented(ahead);
}

/**
 * The automaton of every text the given one refuses: its states accepting where they did not,
 * and the characters they have no move for going to a state that accepts everything.
 */
function complemented(dfa: readonly DfaState[]): DfaState[] {
  if (dfa.length === 0) return [{ accepting: true, moves: [{ set: ANY, to: 0 }] }];
  const sink = dfa.length;
  const states = dfa.map(({ accepting, moves }) => {
    const missing = complement(charSet(moves.flatMap(({ set }) => set)));
    const out = [...moves];
    if (missing.length > 0) out.push({ set: missing, to: sink });
    return { accepting: !accepting, moves: out };
  });
  states.push({ accepting: true, moves: [{ set: ANY, to: sink }] });
  return states;
}

/** The states reached from these by empty moves, themselves included, sorted. */
function closure(nfa: Nfa, from: Iterable<number>, budget: WorkBudget): number[] {
  const seen = new Set<number>();
  const stack = [...from];
  while (stack.length > 0) {
    const state = stack.pop()!;
    if (seen.has(state)) continue;
    seen.add(state);
    spend(budget, 1);
    stack.push(...nfa.states[state]!.empty);
  }
  return [...seen].sort((a, b) => a - b);
}

/** The subset construction: a state for each set of states the automaton can be in. */
function determinize(nfa: Nfa, budget: WorkBudget): DfaState[] {
  const states: DfaState[] = [];
  const ids = new Map<string, number>();
  const work: number[][] = [];
  const stateOf = (members: number[]): number => {
    const key = members.join(",");
    let id = ids.get(key);
    if (id === undefined) {
      id = addState(states, members.some((m) => nfa.accepting.has(m)));
      ids.set(key, id);
      work.push(members);
    }
    return id;
  };
  stateOf(closure(nfa, [nfa.start], budget));
  for (let id = 0; id < work.length; id++) {
    const moves = work[id]!.flatMap((m) => nfa.states[m]!.moves);
    const ranges = pieces(moves.map(({ set }) => set));
    spend(budget, ranges.length * moves.length);
    const byTarget = new Map<number, CodeRange[]>();
    for (const [from, to] of ranges) {
      const targets = moves.filter(({ set }) => contains(set, from)).map((move) => move.to);
      if (targets.length === 0) continue;
      const target = stateOf(closure(nfa, targets, budget));
      byTarget.set(target, [...(byTarget.get(target) ?? []), [from, to]]);
    }
    for (const [to, ranges] of byTarget) states[id]!.moves.push({ set: charSet(ranges), to });
  }
  return states;
}

/**
 * The automaton with the string's length counted in its states: up to `max`, or up to `min`
 * where there is no `max` (past it, every length is the same). It accepts where both do. A state
 * whose every way to an end fits in what is left of `max`, once `min` is reached, counts no more
 * (an email format's last label under a `maxLength` of 64 needs no count of its own).
 */
function withLengths(
  dfa: readonly DfaState[],
  { min = 0, max }: LengthBounds,
  budget: WorkBudget,
): DfaState[] {
  const countTo = max ?? min;
  const longest = longestWays(dfa);
  const states: DfaState[] = [];
  const ids = new Map<number, number>();
  const work: { state: number; length: number }[] = [];
  const stateOf = (state: number, length: number): number => {
    const free = length === FREE ||
      (length >= min && max !== undefined && length + longest[state]! <= max);
    const counted = free ? FREE : length;
    const key = state * (countTo + 2) + counted + 1;
    let id = ids.get(key);
    if (id === undefined) {
      id = addState(states, dfa[state]!.accepting && (free || length >= min));
      ids.set(key, id);
      work.push({ state, length: counted });
    }
    return id;
  };
  stateOf(0, 0);
  for (let id = 0; id < work.length; id++) {
    const { state, length } = work[id]!;
    if (max !== undefined && length >= max) continue;
    const next = length === FREE ? FREE : Math.min(length + 1, countTo);
    spend(budget, dfa[state]!.moves.length + 1);
    for (const { set, to } of dfa[state]!.moves) {
      states[id]!.moves.push({ set, to: stateOf(to, next) });
    }
  }
  return states;
}

/** A length that no longer needs counting (see {@link withLengths}). */
const FREE = -1;

/**
 * For each state, the most characters on a way from it to an end (Infinity where a loop is on
 * the way). Every state has a way to an end.
 */
function longestWays(dfa: readonly DfaState[]): number[] {
  const longest: number[] = new Array(dfa.length);
  const onPath = new Uint8Array(dfa.length);
  const visit = (id: number): number => {
    if (longest[id] !== undefined) return longest[id]!;
    if (onPath[id]) return Infinity;
    onPath[id] = 1;
    let most = dfa[id]!.accepting ? 0 : -Infinity;
    for (const { to } of dfa[id]!.moves) most = Math.max(most, 1 + visit(to));
    onPath[id] = 0;
    return (longest[id] = most);
  };
  for (let id = 0; id < dfa.length; id++) visit(id);
  return longest;
}

/** Adds a state with no moves yet, or throws {@link TooLarge} past {@link MAX_DFA_STATES}. */
function addState(states: DfaState[], accepting: boolean): number {
  if (states.length >= MAX_DFA_STATES) throw new TooLarge();
  return states.push({ accepting, moves: [] }) - 1;
}

/** The ranges between every boundary of the sets: within one, each set holds all or none. */
function pieces(sets: readonly CharSet[]): CodeRange[] {
  const bounds = [...new Set(sets.flatMap((set) => set.flatMap(([a, b]) => [a, b + 1])))]
    .sort((x, y) => x - y);
  const out: CodeRange[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) out.push([bounds[i]!, bounds[i + 1]! - 1]);
  return out;
}

/** Whether the set holds the code point (a binary search: sets are sorted). */
function contains(set: CharSet, code: number): boolean {
  let [low, high] = [0, set.length - 1];
  while (low <= high) {
    const middle = (low + high) >> 1;
    const [a, b] = set[middle]!;
    if (code < a) high = middle - 1;
    else if (code > b) low = middle + 1;
    else return true;
  }
  return false;
}

/**
 * The states from which an accepting state can be reached, renumbered from the start, with
 * the moves into the others dropped; empty when the start is not one of them.
 */
function withoutDeadEnds(states: readonly DfaState[]): DfaState[] {
  const into = states.map(() => [] as number[]);
  states.forEach((state, from) => state.moves.forEach(({ to }) => into[to]!.push(from)));
  const live = new Set<number>();
  const stack = states.flatMap((state, id) => state.accepting ? [id] : []);
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (live.has(id)) continue;
    live.add(id);
    stack.push(...into[id]!);
  }
  if (!live.has(0)) return [];
  return renumber(states, (id) => live.has(id) ? id : undefined);
}

/**
 * Merges states with the same future (Hopcroft's partition refinement): those that accept alike
 * and whose moves lead, character for character, into the same groups. The characters are cut
 * into the pieces that no move's set splits, and a sink state (no way to an end) takes every
 * piece a state has no move for.
 */
function minimize(states: readonly DfaState[], budget: WorkBudget): DfaState[] {
  const atoms = pieces(states.flatMap(({ moves }) => moves.map(({ set }) => set)));
  const k = atoms.length;
  const sink = states.length;
  const count = states.length + 1;
  spend(budget, count * k);
  /** For each target and piece, the states whose move on that piece leads there. */
  const into: number[][] = Array.from({ length: count * k }, () => []);
  const leadsSomewhere = new Uint8Array(states.length * k);
  states.forEach(({ moves }, from) => {
    spend(budget, k);
    for (const { set, to } of moves) {
      for (let a = 0; a < k; a++) {
        if (contains(set, atoms[a]![0])) {
          into[to * k + a]!.push(from);
          leadsSomewhere[from * k + a] = 1;
        }
      }
    }
    for (let a = 0; a < k; a++) if (!leadsSomewhere[from * k + a]) into[sink * k + a]!.push(from);
  });
  for (let a = 0; a < k; a++) into[sink * k + a]!.push(sink);
  const groupOf = new Int32Array(count);
  const groups: number[][] = [[], []];
  for (let id = 0; id < count; id++) {
    const group = id < sink && states[id]!.accepting ? 0 : 1;
    groupOf[id] = group;
    groups[group]!.push(id);
  }
  const waiting = [groups[0]!.length <= groups[1]!.length ? 0 : 1];
  const isWaiting = [true, false].map((first) => first === (waiting[0] === 0));
  while (waiting.length > 0) {
    const splitter = [...groups[waiting.pop()!]!];
    for (let a = 0; a < k; a++) {
      const reached = new Map<number, number[]>();
      for (const target of splitter) {
        const sources = into[target * k + a]!;
        spend(budget, sources.length + 1);
        for (const source of sources) {
          const group = groupOf[source]!;
          const list = reached.get(group);
          if (list) list.push(source);
          else reached.set(group, [source]);
        }
      }
      for (const [group, members] of reached) {
        if (members.length === groups[group]!.length) continue;
        const split = groups.length;
        spend(budget, groups[group]!.length);
        const moved = new Set(members);
        groups[group] = groups[group]!.filter((id) => !moved.has(id));
        groups.push(members);
        for (const id of members) groupOf[id] = split;
        const smaller = groups[group]!.length <= members.length ? group : split;
        if (isWaiting[group]) waiting.push(split);
        else waiting.push(smaller);
        isWaiting[split] = isWaiting[group] || smaller === split;
        isWaiting[group] = isWaiting[group] || smaller === group;
      }
    }
  }
  return renumber(states, (id) => groupOf[id]);
}

/**
 * The automaton with each state sent to a new number (states sent to the same one must have the
 * same future), numbered in order of first reach from the start; moves into states sent nowhere
 * are dropped, and moves into one state merged.
 */
function renumber(
  states: readonly DfaState[],
  sendTo: (id: number) => number | undefined,
): DfaState[] {
  const order = new Map<number, number>();
  const out: DfaState[] = [];
  const visit = (id: number): number => {
    const key = sendTo(id)!;
    let at = order.get(key);
    if (at !== undefined) return at;
    at = out.length;
    order.set(key, at);
    const state: DfaState = { accepting: states[id]!.accepting, moves: [] };
    out.push(state);
    const byTarget = new Map<number, CharSet[]>();
    for (const { set, to } of states[id]!.moves) {
      if (sendTo(to) === undefined) continue;
      const target = visit(to);
      byTarget.set(target, [...(byTarget.get(target) ?? []), set]);
    }
    for (const [to, sets] of byTarget) {
      // A lone set is kept as it is: states that count lengths share their sets (templateOf).
      state.moves.push({ set: sets.length === 1 ? sets[0]! : charSet(sets.flat()), to });
    }
    return at;
  };
  visit(0);
  return out;
}
