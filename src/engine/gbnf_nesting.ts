/**
 * Recursion whose cost in llama.cpp's grammar sampler grows with every level a text nests, which
 * no count over a few characters can bound ({@link ./gbnf_paths.ts} counts from places a few
 * calls deep). llama.cpp follows every way a token's characters match, one stack each, without
 * merging the ways that meet again. Where each nested call of a rule leaves something behind that
 * the calls around it can share, the ways multiply with the depth:
 *
 * - optional items after the recursive reference (`r ::= "a" r "x"? | "b"`): `xxxx` after ten
 *   nested calls is any four of the ten;
 * - a run of one character that takes several lengths (`q ::= "(" q " "+ | "\n"`): a token of
 *   128 spaces after ten nested calls splits among them in about 10^13 ways, and the model
 *   nests one call deeper with every `(`. Only the characters that vocabularies repeat in long
 *   tokens ({@link LONG_RUN_KEYS}) count here: runs of others are a few characters long, so
 *   they split few ways whatever the depth.
 *
 * @module
 */

import {
  ALT,
  components,
  consumes,
  CONTINUATION,
  END,
  type KeyRanges,
  keysHold,
  LONG_RUN_KEYS,
  type RuleEdge,
  startsTerminal,
  terminalIndex,
} from "./gbnf_rules.ts";

/** The grammar as {@link unboundedNesting} reads it (a part of the validator's). */
export interface NestingGrammar {
  /** Element codes of every rule (see {@link ./gbnf_rules.ts}). */
  rules: readonly (readonly number[])[];
  /** Keys of each terminal, by terminal index. */
  terminals: readonly KeyRanges[];
  /** Per rule, 1 when it can match the empty string. */
  nullable: Uint8Array;
  /** Per rule, 1 when the start rule refers to it, directly or not. */
  reachable: Uint8Array;
}

/** A recursion whose ways to match grow with its depth, as {@link unboundedNesting} finds it. */
export interface UnboundedNesting {
  /** The rule referred to recursively. */
  rule: number;
  /**
   * The character whose runs split among nested calls, or undefined where optional items
   * follow each call.
   */
  run?: number;
}

/**
 * The first recursion of a grammar whose nested calls each leave optional items, or a run of one
 * character that takes several lengths, for the calls around them to share; none if there is none.
 *
 * @param grammar The validated rules, with their terminals' characters.
 * @returns The recursive rule and, for a run, its character.
 * @example
 * ```ts
 * unboundedNesting(grammar); // { rule: 1, run: 0x20 } for q ::= "(" q " "+ | "\n"
 * ```
 */
export function unboundedNesting(grammar: NestingGrammar): UnboundedNesting | undefined {
  const optional = optionalAfterCalls(grammar);
  if (optional !== undefined) return { rule: optional };
  const used = new Set<number>();
  for (const keys of grammar.terminals) {
    for (const key of LONG_RUN_KEYS) if (keysHold(keys, key)) used.add(key);
  }
  for (const run of LONG_RUN_KEYS) {
    if (!used.has(run)) continue;
    const rule = runSplitAmongCalls(grammar, run);
    if (rule !== undefined) return { rule, run };
  }
  return undefined;
}

/**
 * A rule whose end leads back to itself through callers that still have something optional to
 * match after the reference (each nesting adds a stack for the same character), if any.
 */
function optionalAfterCalls(grammar: NestingGrammar): number | undefined {
  const { rules, nullable, reachable } = grammar;
  const matching = matchesSomething(rules);
  // Edges from a rule to the rules it can end in (a reference followed only by items that
  // can be empty), and those of them where one of those items can match something.
  const edges: RuleEdge[][] = rules.map(() => []);
  const pending: { from: number; to: number }[] = [];
  for (let r = 0; r < rules.length; r++) {
    if (reachable[r] !== 1) continue;
    const rule = rules[r]!;
    let ends = true;
    let more = false; // an item after this one, before the end, can match something
    for (let i = rule.length - 1; i >= 0; i--) {
      const element = rule[i]!;
      if (element === ALT || element === END) {
        ends = true;
        more = false;
      } else if (consumes(element)) ends = false;
      else {
        if (ends) {
          edges[element]!.push({ to: r });
          if (more) pending.push({ from: element, to: r });
        }
        ends = ends && nullable[element] === 1;
        more = more || matching[element] === 1;
      }
    }
  }
  const { component } = components(edges);
  return pending.find(({ from, to }) => component[from] === component[to])?.from;
}

/** Per rule, 1 when it can match some character or token (holds a terminal, directly or not). */
function matchesSomething(rules: readonly (readonly number[])[]): Uint8Array {
  const matching = new Uint8Array(rules.length);
  const referrers: number[][] = rules.map(() => []);
  const todo: number[] = [];
  for (let r = 0; r < rules.length; r++) {
    for (const element of rules[r]!) {
      if (element >= 0) referrers[element]!.push(r);
      else if (consumes(element) && matching[r] === 0) {
        matching[r] = 1;
        todo.push(r);
      }
    }
  }
  while (todo.length > 0) {
    for (const r of referrers[todo.pop()!]!) {
      if (matching[r] === 0) {
        matching[r] = 1;
        todo.push(r);
      }
    }
  }
  return matching;
}

/**
 * Lengths of a run of one character, as a bit set: bit n for n characters, bit
 * {@link MANY} for that many or more.
 */
type RunLengths = number;

/** The length from which runs are counted as one: a set holding it takes several lengths. */
const MANY = 16;

/** The set of the empty run alone. */
const EMPTY_RUN: RunLengths = 1;

/**
 * A recursive reference after which the rest of the calling rule can match runs of `run` of
 * several lengths, where the way from the rule's end back into the reference can match runs of
 * it too (possibly empty), so that one run splits among the nested calls; none if there is none.
 */
function runSplitAmongCalls(grammar: NestingGrammar, run: number): number | undefined {
  const { rules, terminals, reachable } = grammar;
  const lengths = runLengthsByRule(grammar, run);
  // Edges from a referred rule to the rule that refers to it, where what follows the reference
  // there can be a run of the character: returns that go on inside the run.
  const edges: RuleEdge[][] = rules.map(() => []);
  const several: { from: number; to: number }[] = [];
  for (let r = 0; r < rules.length; r++) {
    if (reachable[r] !== 1) continue;
    const rule = rules[r]!;
    let after = EMPTY_RUN;
    for (let i = rule.length - 1; i >= 0; i--) {
      const element = rule[i]!;
      if (element === ALT || element === END) after = EMPTY_RUN;
      else if (startsTerminal(element)) {
        after = keysHold(terminals[terminalIndex(element)]!, run) ? longer(after) : 0;
      } else if (element >= 0) {
        if (after !== 0) {
          edges[element]!.push({ to: r });
          if (takesSeveral(after)) several.push({ from: element, to: r });
        }
        after = joined(lengths[element]!, after);
      }
    }
  }
  const { component } = components(edges);
  return several.find(({ from, to }) => component[from] === component[to])?.from;
}

/** Per rule, the lengths of the runs of `run` it can match as a whole (a fixed point). */
function runLengthsByRule(grammar: NestingGrammar, run: number): Int32Array {
  const { rules, terminals, reachable } = grammar;
  const lengths = new Int32Array(rules.length);
  const referrers: number[][] = rules.map(() => []);
  for (let r = 0; r < rules.length; r++) {
    if (reachable[r] !== 1) continue;
    for (const element of rules[r]!) if (element >= 0) referrers[element]!.push(r);
  }
  const todo: number[] = [];
  const queued = new Uint8Array(rules.length);
  for (let r = 0; r < rules.length; r++) {
    if (reachable[r] === 1) {
      todo.push(r);
      queued[r] = 1;
    }
  }
  while (todo.length > 0) {
    const r = todo.pop()!;
    queued[r] = 0;
    let all = 0;
    let alternative = EMPTY_RUN;
    for (const element of rules[r]!) {
      if (element === ALT || element === END) {
        all |= alternative;
        alternative = EMPTY_RUN;
      } else if (element === CONTINUATION || alternative === 0) continue;
      else if (startsTerminal(element)) {
        alternative = keysHold(terminals[terminalIndex(element)]!, run) ? longer(alternative) : 0;
      } else alternative = joined(alternative, lengths[element]!);
    }
    if ((all | lengths[r]!) === lengths[r]) continue;
    lengths[r] = all | lengths[r]!;
    for (const referrer of referrers[r]!) {
      if (queued[referrer] === 0) {
        queued[referrer] = 1;
        todo.push(referrer);
      }
    }
  }
  return lengths;
}

/** The lengths one character more. */
function longer(lengths: RunLengths): RunLengths {
  const many = 1 << MANY;
  const shifted = (lengths << 1) & ((many << 1) - 1);
  return (lengths & many) !== 0 ? shifted | many : shifted;
}

/** The lengths of a run of `a`'s lengths followed by one of `b`'s. */
function joined(a: RunLengths, b: RunLengths): RunLengths {
  if (a === 0 || b === 0) return 0;
  let out = 0;
  for (let i = 0; i <= MANY; i++) {
    if ((a & (1 << i)) === 0) continue;
    for (let j = 0; j <= MANY; j++) {
      if ((b & (1 << j)) !== 0) out |= 1 << Math.min(i + j, MANY);
    }
  }
  return out;
}

/** Whether a set holds several lengths ({@link MANY} stands for many). */
function takesSeveral(lengths: RunLengths): boolean {
  return (lengths & (lengths - 1)) !== 0 || (lengths & (1 << MANY)) !== 0;
}
