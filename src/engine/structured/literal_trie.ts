/**
 * Alternatives that begin with literal text, written so that they share their common beginnings
 * (a trie). llama.cpp's grammar sampler keeps a parse stack per alternative and checks every
 * candidate token against each of them, so alternatives that spell the same beginning cost
 * once per alternative for every character they share: a 1,000-value enum, or a forced call to
 * one of 128 tools that all open with `<tool_call>\n{"name": "`, multiplied each token's check.
 * As a trie, one stack follows the shared text and splits where the texts part.
 *
 * @module
 */

import { gbnfLiteral } from "./charset.ts";
import { oneOf } from "./rules.ts";

/** One alternative: its literal beginning and the GBNF expression that follows it. */
export interface TrieEntry {
  /** Literal text, matched exactly. */
  text: string;
  /** What follows the text (a GBNF expression), or "" for nothing. */
  tail: string;
}

/**
 * One GBNF expression matching every entry, the texts sharing their beginnings.
 *
 * @param entries The alternatives; texts need not be distinct when their tails are.
 * @param addRule Adds a rule with the given body and returns its name; each branch of more than
 *   one alternative becomes a rule, so that long texts that part often stay within GBNF's
 *   nesting limit.
 * @returns The expression (the entries' order is kept among siblings).
 * @example
 * ```ts
 * const rules: string[] = [];
 * const addRule = (body: string) => (rules.push(`b${rules.length} ::= ${body}`), `b${rules.length - 1}`);
 * literalTrie([{ text: "get_a", tail: "x" }, { text: "get_b", tail: "y" }], addRule);
 * // "\"get_\" b0", with rules ["b0 ::= (\"a\" x | \"b\" y)"]
 * ```
 */
export function literalTrie(
  entries: readonly TrieEntry[],
  addRule: (body: string) => string,
): string {
  return branch(entries.map(({ text, tail }) => ({ chars: [...text], tail })), addRule);
}

interface Pending {
  chars: readonly string[];
  tail: string;
}

function branch(entries: readonly Pending[], addRule: (body: string) => string): string {
  const groups = new Map<string, Pending[]>();
  const ended: string[] = [];
  for (const entry of entries) {
    const first = entry.chars[0];
    if (first === undefined) ended.push(entry.tail === "" ? '""' : entry.tail);
    else {
      const group = groups.get(first);
      if (group) group.push(entry);
      else groups.set(first, [entry]);
    }
  }
  const alternatives: string[] = [];
  for (const group of groups.values()) {
    const head = group[0]!.chars;
    let shared = 1; // characters every entry of the group begins with
    while (group.every(({ chars }) => chars.length > shared && chars[shared] === head[shared])) {
      shared++;
    }
    const text = gbnfLiteral(head.slice(0, shared).join(""));
    if (group.length === 1) { // the whole text
      alternatives.push(group[0]!.tail === "" ? text : `${text} ${group[0]!.tail}`);
      continue;
    }
    const below = branch(
      group.map(({ chars, tail }) => ({ chars: chars.slice(shared), tail })),
      addRule,
    );
    alternatives.push(`${text} ${below.startsWith("(") ? addRule(below) : below}`);
  }
  alternatives.push(...ended);
  return oneOf(alternatives);
}
