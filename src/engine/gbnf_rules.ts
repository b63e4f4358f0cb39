/**
 * The rules of a GBNF grammar as the validator ({@link ./gbnf.ts}) stores them: one number per
 * llama.cpp `llama_grammar_element`, so that counts and positions match llama.cpp's. A rule
 * reference is the referenced rule's id (>= 0); the negative codes below are alternatives,
 * rule ends and terminals. A terminal (a literal's character, a class, `.` or a token) is one
 * position of llama.cpp's parse stacks: its first element carries the index of its characters
 * in a table, and a class's further elements (more characters, range ends) are
 * {@link CONTINUATION}s.
 *
 * @module
 */

/** An element that belongs to the terminal before it: a class's further characters. */
export const CONTINUATION = -1;
/** `LLAMA_GRETYPE_ALT`: the start of another alternative. */
export const ALT = -2;
/** `LLAMA_GRETYPE_END`: the end of a rule. */
export const END = -3;
/** The code of the terminal with index 0; index i is `FIRST_TERMINAL - i`. */
const FIRST_TERMINAL = -4;

/**
 * The element code of the terminal whose characters are entry `index` of the table.
 *
 * @param index Index in the table of terminal characters.
 * @returns A code below {@link END}.
 * @example
 * ```ts
 * terminalIndex(terminalCode(7)); // 7
 * ```
 */
export function terminalCode(index: number): number {
  return FIRST_TERMINAL - index;
}

/**
 * Whether an element starts a terminal (a stack position that consumes input).
 *
 * @param element An element code.
 * @returns True for the first element of a terminal.
 * @example
 * ```ts
 * startsTerminal(terminalCode(0)); // true
 * startsTerminal(CONTINUATION); // false
 * ```
 */
export function startsTerminal(element: number): boolean {
  return element <= FIRST_TERMINAL;
}

/**
 * The table index of a terminal's characters.
 *
 * @param element An element for which {@link startsTerminal} holds.
 * @returns The index given to {@link terminalCode}.
 * @example
 * ```ts
 * terminalIndex(terminalCode(3)); // 3
 * ```
 */
export function terminalIndex(element: number): number {
  return FIRST_TERMINAL - element;
}

/**
 * Whether an element consumes input: a terminal or one of its continuations.
 *
 * @param element An element code.
 * @returns False for rule references, alternatives and rule ends.
 * @example
 * ```ts
 * consumes(CONTINUATION); // true
 * consumes(ALT); // false
 * ```
 */
export function consumes(element: number): boolean {
  return element === CONTINUATION || element <= FIRST_TERMINAL;
}

/** The key every token terminal (`<x>`, `<[id]>`, `!<x>`) matches: past the code points. */
export const TOKEN_KEY = 0x110000;
/** One past the last key a terminal can match. */
export const KEY_END = TOKEN_KEY + 1;
const LAST_CODE_POINT = 0x10ffff;

/**
 * What a terminal matches, as sorted, disjoint, inclusive key ranges in one flat array
 * (`[from0, to0, from1, to1, ...]`): code points, or {@link TOKEN_KEY} for tokens.
 */
export type KeyRanges = readonly number[];

/** A token terminal's keys. */
export const TOKEN_RANGES: KeyRanges = Object.freeze([TOKEN_KEY, TOKEN_KEY]);

/**
 * The keys a character class matches, as llama.cpp reads it: a range whose end is below its
 * start matches nothing, and a negated class matches every other code point.
 *
 * @param ranges The class's `[from, to]` ranges, in the order written.
 * @param negated Whether the class starts with `^` (`.` is an empty negated class).
 * @returns Sorted, merged key ranges.
 * @example
 * ```ts
 * classKeys([[0x61, 0x7a], [0x30, 0x39]], false); // [0x30, 0x39, 0x61, 0x7a]
 * ```
 */
export function classKeys(
  ranges: readonly (readonly [number, number])[],
  negated: boolean,
): number[] {
  const proper = ranges
    .filter(([from, to]) => from <= to && from <= LAST_CODE_POINT)
    .map(([from, to]): [number, number] => [from, Math.min(to, LAST_CODE_POINT)])
    .sort((a, b) => a[0] - b[0]);
  const merged: number[] = [];
  for (const [from, to] of proper) {
    const last = merged.length - 1;
    if (last > 0 && from <= merged[last]! + 1) merged[last] = Math.max(merged[last]!, to);
    else merged.push(from, to);
  }
  if (!negated) return merged;
  const complement: number[] = [];
  let next = 0;
  for (let i = 0; i < merged.length; i += 2) {
    if (merged[i]! > next) complement.push(next, merged[i]! - 1);
    next = merged[i + 1]! + 1;
  }
  if (next <= LAST_CODE_POINT) complement.push(next, LAST_CODE_POINT);
  return complement;
}

/**
 * The characters vocabularies hold long runs of, as keys: whitespace and the punctuation that
 * Qwen2's, Llama 3's, DeepSeek Coder's and StarCoder's tokens repeat more than 8 times (up to
 * 256 spaces, 128 dashes, 96 slashes). Runs of letters, digits, brackets, quotes and other
 * characters are followed for the search window only (see `gbnf_paths.ts`): tokens repeat those 16 times at most
 * (StarCoder), most 3 to 5 times, and a word grammar such as `([a-z]+ ?)+` would otherwise count
 * ways to split a run of letters that no token has.
 */
export const LONG_RUN_KEYS: readonly number[] = [..." \t\n-=_*#/.~+%;:?!^"].map((c) =>
  c.codePointAt(0)!
);

/**
 * Whether sorted key ranges hold a key.
 *
 * @param keys Sorted, disjoint, inclusive ranges, as {@link classKeys} makes them.
 * @param key A code point or {@link TOKEN_KEY}.
 * @returns True when one of the ranges holds it.
 * @example
 * ```ts
 * keysHold([0x30, 0x39], 0x35); // true
 * ```
 */
export function keysHold(keys: KeyRanges, key: number): boolean {
  for (let i = 0; i < keys.length; i += 2) {
    if (key < keys[i]!) return false;
    if (key <= keys[i + 1]!) return true;
  }
  return false;
}

/**
 * The rules a start rule refers to, directly or not.
 *
 * @param rules Element codes of every rule.
 * @param root The start rule.
 * @returns Per rule, 1 when reached (the start rule included), else 0.
 * @example
 * ```ts
 * reachableRules([[1, END], [ALT, END], [END]], 0); // Uint8Array [1, 1, 0]
 * ```
 */
export function reachableRules(rules: readonly (readonly number[])[], root: number): Uint8Array {
  const seen = new Uint8Array(rules.length);
  const todo = [root];
  seen[root] = 1;
  while (todo.length > 0) {
    for (const element of rules[todo.pop()!]!) {
      if (element >= 0 && seen[element] === 0) {
        seen[element] = 1;
        todo.push(element);
      }
    }
  }
  return seen;
}

/** An edge of a graph over rules, as {@link components} reads it. */
export interface RuleEdge {
  /** The rule the edge leads to. */
  to: number;
}

/**
 * Strongly connected components (Tarjan's algorithm with an explicit stack).
 *
 * @param edges Each rule's outgoing edges.
 * @returns Each rule's component, and the components with every component listed after
 *   all the components it has edges to.
 * @example
 * ```ts
 * components([[{ to: 1 }], [{ to: 0 }], []]).order; // [[1, 0], [2]]
 * ```
 */
export function components(edges: readonly (readonly RuleEdge[])[]): {
  component: Int32Array;
  order: number[][];
} {
  const n = edges.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const component = new Int32Array(n).fill(-1);
  const order: number[][] = [];
  const stack: number[] = [];
  const path: number[] = [];
  const next: number[] = [];
  let counter = 0;
  const enter = (v: number) => {
    index[v] = low[v] = counter++;
    stack.push(v);
    onStack[v] = 1;
    path.push(v);
    next.push(0);
  };
  for (let start = 0; start < n; start++) {
    if (index[start] !== -1) continue;
    enter(start);
    while (path.length > 0) {
      const top = path.length - 1;
      const v = path[top]!;
      const out = edges[v]!;
      const i = next[top]!;
      if (i < out.length) {
        next[top] = i + 1;
        const w = out[i]!.to;
        if (index[w] === -1) enter(w);
        else if (onStack[w] === 1) low[v] = Math.min(low[v]!, index[w]!);
        continue;
      }
      path.pop();
      next.pop();
      const parent = path.at(-1);
      if (parent !== undefined) low[parent] = Math.min(low[parent]!, low[v]!);
      if (low[v] === index[v]) {
        const members: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component[w] = order.length;
          members.push(w);
        } while (w !== v);
        order.push(members);
      }
    }
  }
  return { component, order };
}
