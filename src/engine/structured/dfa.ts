/**
 * Deterministic automata over characters, for patterns: Thompson's construction from a parsed
 * pattern (with lookaheads where the rest of their branch follows them), the subset construction,
 * Hopcroft's minimization, the product of two automata, the complement, and the length of the
 * text counted in the states. Every step spends from a {@link WorkBudget}: schemas are converted
 * on the event loop.
 *
 * @module
 */

import {
  type CharSet,
  charSet,
  type CodeRange,
  complement,
  contains,
  intersect,
  MAX_SET_RANGES,
} from "./charset.ts";
import type { Lookahead, PatternBranch, PatternNode } from "./regex.ts";

/** States of the nondeterministic automaton before the pattern counts as too large. */
const MAX_NFA_STATES = 4_000;
/** States of the deterministic automaton (lengths counted in) before it counts as too large. */
const MAX_DFA_STATES = 2_000;

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

/**
 * Spends work from the budget.
 *
 * @param budget The schema's work left.
 * @param steps The work done.
 * @throws {TooLarge} once the budget is gone.
 * @example
 * ```ts
 * spend(budget, moves.length);
 * ```
 */
export function spend(budget: WorkBudget, steps: number): void {
  budget.left -= steps;
  if (budget.left < 0) throw new TooLarge();
}

/** Any character: a branch without `^` or `$` may have any text before or after it. */
const ANY: CharSet = charSet([[0, 0x10ffff]]);

/** Length bounds of the string, in characters. */
export interface LengthBounds {
  min?: number;
  max?: number;
}

/** A state of the deterministic automaton. */
export interface DfaState {
  accepting: boolean;
  /** Disjoint character sets, each to one state. */
  moves: { set: CharSet; to: number }[];
}

/** The automaton is larger than the limits above. */
export class TooLarge extends Error {}

/**
 * The product of two automata: it reads the text in both at once, accepting where both do; a
 * character moves it where it moves both.
 *
 * @param x An automaton (state 0 starts).
 * @param y Another.
 * @param budget The schema's work left.
 * @returns The product (state 0 starts); it may hold states with no way to an end.
 * @example
 * ```ts
 * withoutDeadEnds(both(formatAutomaton, patternAutomaton, budget));
 * ```
 */
export function both(
  x: readonly DfaState[],
  y: readonly DfaState[],
  budget: WorkBudget,
): DfaState[] {
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

/**
 * The live deterministic automaton of some branches.
 *
 * @param branches A parsed pattern's top-level branches.
 * @param budget The schema's work left.
 * @returns Its states (state 0 starts), each with a way to an end; none when no text matches.
 * @throws {TooLarge} past the limits or the budget.
 * @example
 * ```ts
 * automaton(branchesOf("^[ab]+$"), { left: AUTOMATON_WORK }); // 2 states
 * ```
 */
export function automaton(branches: readonly PatternBranch[], budget: WorkBudget): DfaState[] {
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
 *
 * @param dfa A live automaton (state 0 starts).
 * @param lengths `minLength` and `maxLength`.
 * @param budget The schema's work left.
 * @returns The counting automaton (state 0 starts); it may hold states with no way to an end.
 * @throws {TooLarge} past `MAX_DFA_STATES` or the budget.
 * @example
 * ```ts
 * withoutDeadEnds(withLengths(minimal, { max: 64 }, budget));
 * ```
 */
export function withLengths(
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

/**
 * The states from which an accepting state can be reached, renumbered from the start, with
 * the moves into the others dropped.
 *
 * @param states An automaton (state 0 starts).
 * @returns The live states, or none when the start is not one of them.
 * @example
 * ```ts
 * withoutDeadEnds(determinize(nfa, budget)).length; // 0: nothing matches
 * ```
 */
export function withoutDeadEnds(states: readonly DfaState[]): DfaState[] {
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
 *
 * @param states A live automaton (state 0 starts).
 * @param budget The schema's work left.
 * @returns The fewest states that read the same texts (state 0 starts).
 * @example
 * ```ts
 * minimize(automaton(branches, budget), budget);
 * ```
 */
export function minimize(states: readonly DfaState[], budget: WorkBudget): DfaState[] {
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
