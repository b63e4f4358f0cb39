/**
 * The lengths of a pattern's strings, read off its parsed form: whether length bounds follow from
 * the pattern alone (and need no counting), and the pattern with its repetitions bounded so that
 * no string passes a length.
 *
 * @module
 */

import { type CharSet, charSet, complement, intersect } from "./charset.ts";
import {
  automaton,
  type DfaState,
  type LengthBounds,
  spend,
  TooLarge,
  type WorkBudget,
} from "./dfa.ts";
import type { PatternBranch, PatternNode } from "./regex.ts";

/** Lengths a lookahead is followed up to: longer strings are rare in a JSON string's pattern. */
const MAX_LOOKAHEAD_LENGTH = 4_096;

/**
 * A lookahead that only bounds the length, read as those bounds. A pattern that starts with a
 * lookahead holding for every string of some lengths made of the characters the rest of the
 * pattern writes (zod's `hostname()`: `^(?=.{1,253}\.?$)` before its labels) becomes the rest of
 * the pattern with those lengths, which the lengths machinery bounds by shortening the rest's
 * repetitions, where reading the lookahead in step with the rest would count 253 lengths in every
 * state. Strings of other lengths that the lookahead takes (a 254th character that is a dot) are
 * left out; every string of the result is one of the pattern's.
 *
 * @param branches The parsed pattern's top-level branches.
 * @param bounds The lengths asked for besides (`minLength`, `maxLength`).
 * @param budget The schema's work left for automata.
 * @returns The branches without the lookahead, and the lengths within both its and `bounds`; or
 *   undefined where the pattern does not start so (several branches, no anchor, a lookahead that
 *   needs more than a length).
 * @example
 * ```ts
 * lookaheadLengths(branchesOf("^(?=.{1,9}$)[a-z]+$"), { max: 5 }, budget); // ^[a-z]+$, 1 to 5
 * ```
 */
export function lookaheadLengths(
  branches: readonly PatternBranch[],
  bounds: LengthBounds,
  budget: WorkBudget,
): { branches: PatternBranch[]; lengths: LengthBounds } | undefined {
  const [branch] = branches;
  if (branches.length !== 1 || !branch!.start) return undefined;
  const items = branch!.node.kind === "seq" ? branch!.node.items : [branch!.node];
  const [look, ...rest] = items;
  if (look?.kind !== "look" || !look.positive) return undefined;
  let run: [number, number] | undefined;
  try {
    run = lengthsForAll(automaton(look.branches, budget), charSet(rest.flatMap(charsOf)), budget);
  } catch (error) {
    if (error instanceof TooLarge) return undefined;
    throw error;
  }
  if (run === undefined) return undefined;
  const node: PatternNode = rest.length === 1 ? rest[0]! : { kind: "seq", items: rest };
  const min = Math.max(run[0], bounds.min ?? 0);
  const max = Math.min(run[1], bounds.max ?? Infinity);
  const lengths = { ...(min > 0 ? { min } : {}), ...(max === Infinity ? {} : { max }) };
  return { branches: [{ ...branch!, node }], lengths };
}

/**
 * The first run of lengths at which an automaton takes every string of the given characters,
 * followed from the empty string on while no string of them dies. Each state's moves on the
 * characters are found once; following the lengths spends from the schema's budget.
 */
function lengthsForAll(
  dfa: readonly DfaState[],
  chars: CharSet,
  budget: WorkBudget,
): [number, number] | undefined {
  if (dfa.length === 0 || chars.length === 0) return undefined;
  // Per state: where its moves on the characters lead, or undefined where one of them has no
  // move (a string of them dies there).
  const targets = dfa.map(({ moves }) => {
    spend(budget, moves.length);
    const live = moves.filter(({ set }) => intersect(set, chars).length > 0);
    const covered = charSet(live.flatMap(({ set }) => set));
    return intersect(complement(covered), chars).length > 0 ? undefined : live.map(({ to }) => to);
  });
  let states = new Set([0]);
  let first: number | undefined;
  for (let length = 0; length <= MAX_LOOKAHEAD_LENGTH; length++) {
    spend(budget, states.size);
    const all = [...states].every((state) => dfa[state]!.accepting);
    if (all) first ??= length;
    else if (first !== undefined) return [first, length - 1];
    const next = new Set<number>();
    for (const state of states) {
      const to = targets[state];
      if (to === undefined) return first === undefined ? undefined : [first, length];
      for (const target of to) next.add(target);
    }
    if (next.size === states.size && [...next].every((state) => states.has(state))) {
      return first === undefined ? undefined : [first, all ? Infinity : length];
    }
    states = next;
  }
  return first === undefined ? undefined : [first, MAX_LOOKAHEAD_LENGTH];
}

/** The characters a node writes (a lookahead's included, which only widens the check). */
function charsOf(node: PatternNode): CharSet {
  switch (node.kind) {
    case "chars":
      return node.set;
    case "seq":
      return node.items.flatMap(charsOf);
    case "alt":
      return node.branches.flatMap(charsOf);
    case "repeat":
      return charsOf(node.node);
    case "look":
      return node.branches.flatMap(({ node }) => charsOf(node));
  }
}

/**
 * The branches with their repetitions bounded so that no string is longer than `limit`: each
 * sequence shares what its items may add to their shortest in proportion to what each could
 * add, and a repetition keeps as many rounds as fit (never fewer than its minimum). Every
 * string of the result is one of the pattern's.
 *
 * @param branches The parsed pattern's top-level branches.
 * @param limit The most characters a string may have.
 * @returns The bounded branches (those that can be), or undefined where none can: a branch not
 *   anchored at both ends, or one whose shortest string is longer.
 * @example
 * ```ts
 * fitLongest(branchesOf("^[a-z]+@[a-z]+$"), 21); // ^[a-z]{1,10}@[a-z]{1,10}$
 * ```
 */
export function fitLongest(
  branches: readonly PatternBranch[],
  limit: number,
): PatternBranch[] | undefined {
  const fitted: PatternBranch[] = [];
  for (const branch of branches) {
    if (!branch.start || !branch.end) return undefined;
    const node = fitNode(branch.node, limit);
    if (node !== undefined && lengthRange(node)[1] <= limit) fitted.push({ ...branch, node });
  }
  return fitted.length > 0 ? fitted : undefined;
}

function fitNode(node: PatternNode, limit: number): PatternNode | undefined {
  const [shortest, longest] = lengthRange(node);
  if (shortest > limit) return undefined;
  if (longest <= limit) return node;
  switch (node.kind) {
    case "chars":
    case "look":
      return undefined;
    case "alt": {
      const branches = node.branches.flatMap((branch) => fitNode(branch, limit) ?? []);
      return branches.length > 0 ? { kind: "alt", branches } : undefined;
    }
    case "seq": {
      const ranges = node.items.map(lengthRange);
      const slack = limit - shortest;
      // What each item could add to its shortest, an unbounded one as much as the whole limit.
      const room = ranges.map(([a, b]) => Math.min(b, a + limit) - a);
      const total = room.reduce((sum, r) => sum + r, 0);
      const items: PatternNode[] = [];
      for (let i = 0; i < node.items.length; i++) {
        const share = total === 0 ? 0 : Math.floor((slack * room[i]!) / total);
        const item = fitNode(node.items[i]!, ranges[i]![0] + share);
        if (item === undefined) return undefined;
        items.push(item);
      }
      return { kind: "seq", items };
    }
    case "repeat": {
      let child = node.node;
      let [, childLongest] = lengthRange(child);
      if (childLongest === Infinity) {
        const inner = fitNode(child, Math.floor(limit / Math.max(node.min, 1)));
        if (inner === undefined) return undefined;
        child = inner;
        childLongest = lengthRange(inner)[1];
      }
      let rounds = Math.min(node.max ?? Infinity, Math.floor(limit / Math.max(childLongest, 1)));
      // Too long for even one round (or its minimum): fewer rounds of a shorter child, rather than
      // none (an email's dotted atoms `(\.atom){0,2}` keep one shorter atom).
      const fewest = Math.max(node.min, 1);
      if (rounds < fewest) {
        const inner = fitNode(child, Math.floor(limit / fewest));
        if (inner === undefined) {
          if (node.min > 0) return undefined;
          return { kind: "repeat", node: child, min: 0, max: 0 };
        }
        [child, rounds] = [inner, fewest];
      }
      return { kind: "repeat", node: child, min: node.min, max: rounds };
    }
  }
}

/**
 * Whether every string of the pattern already meets the length bounds.
 *
 * @param branches The parsed pattern's top-level branches.
 * @param lengths `minLength` and `maxLength`.
 * @returns True when no string of the pattern is shorter or longer.
 * @example
 * ```ts
 * impliedLengths(branchesOf("^[a-z]{2,4}$"), { min: 1, max: 10 }); // true
 * ```
 */
export function impliedLengths(
  branches: readonly PatternBranch[],
  { min, max }: LengthBounds,
): boolean {
  const ranges = branches.map(({ node, start, end }) => {
    const [shortest, longest] = lengthRange(node);
    return [shortest, start && end ? longest : Infinity];
  });
  return ranges.every(([shortest, longest]) =>
    shortest! >= (min ?? 0) && longest! <= (max ?? Infinity)
  );
}

/** The fewest and most characters a node matches (Infinity for no bound). */
function lengthRange(node: PatternNode): [number, number] {
  switch (node.kind) {
    case "chars":
      return [1, 1];
    case "look":
      return [0, 0];
    case "seq":
      return node.items.map(lengthRange).reduce(([a, b], [c, d]) => [a + c, b + d], [0, 0]);
    case "alt": {
      const ranges = node.branches.map(lengthRange);
      return [Math.min(...ranges.map(([a]) => a)), Math.max(...ranges.map(([, b]) => b))];
    }
    case "repeat": {
      const [shortest, longest] = lengthRange(node.node);
      const most = node.max === undefined ? (longest === 0 ? 0 : Infinity) : longest * node.max;
      return [shortest * node.min, most];
    }
  }
}
