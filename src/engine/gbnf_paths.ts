/**
 * A bound on the work llama.cpp's grammar sampler does to check one candidate token. For
 * every candidate, `llama_grammar_reject_candidates` walks the token's characters from each
 * parse stack, and where several stacks match the same character it follows each of them
 * separately, without merging the ones that meet again. An ambiguous grammar therefore costs
 * walks that multiply with every character: `("a"?){128} "b"` reads `aaaa` in C(128, 4) ways,
 * and a server serving it spends seconds to hours per token.
 *
 * The bound simulates those walks on the grammar alone. From the start rule's start and from
 * every place after a terminal where two stacks can match the same character (elsewhere one
 * stack goes on as one), it follows the parse stacks as a multiset of terminals, one character
 * at a time, trying every character that some stack matches. A stack costs one try (llama.cpp
 * scans its candidates once per stack and character) and its advance (llama.cpp rebuilds the
 * stacks that follow and compares each with those built before it). The bound is the largest
 * cost over {@link SEARCH_WINDOW} characters in a row: those of a token's start, and those of
 * any stretch of a run of one space or punctuation mark up to {@link RUN_WINDOW} long (the runs
 * vocabularies hold, on which slowly growing ambiguity adds up). Identical searches are shared,
 * so an unambiguous grammar costs little more than a look at each place.
 *
 * Stacks are kept as their terminal and an instance of its rule that knows where the rule
 * returns to, made as the search enters a reference, for every rule that refers back to
 * itself at most as its last item (`x*` becomes `x' ::= x x' |`). A search starts in an
 * instance whose caller is unknown, as does a rule that recurs otherwise: their end leads to
 * the place after one of their references, a choice, counted as the most any one of them
 * leads to. A rule whose end leads back into itself through callers that still have items to
 * match (`r ::= "a" r "x"? | "b"`) gains a way to match the same character with every nested
 * call, with no bound: that is reported as unbounded.
 *
 * Known gaps, found by crafting grammars against it (each stalls llama.cpp yet passes):
 * - past the end of a rule that recurses other than at its end, stacks are a choice kept as
 *   the most per terminal, so parses that meet again count once (`(q | q q)* "x"` with
 *   `q ::= " " | "(" q ")"`); the choice should be a maximum across callers only;
 * - a long run is bounded by its costliest {@link SEARCH_WINDOW} characters, so a steady cost
 *   just under the limit adds up over 128 (`x*` over 140 one-character alternatives);
 * - searches start only where two stacks match the same character, so a large fan-out that a
 *   repetition re-enters behind a literal prefix is never started from.
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
  reachableRules,
  type RuleEdge,
  startsTerminal,
  terminalIndex,
} from "./gbnf_rules.ts";

/**
 * Characters of a token the bound looks ahead. Vocabularies hold longer tokens (runs of
 * spaces or `=`), but a grammar whose count passes the limit within 8 characters already
 * costs llama.cpp seconds per token on them, and a shorter window keeps the search fast.
 */
export const SEARCH_WINDOW = 8;

/** The rules to bound, as the validator holds them. */
export interface SearchGrammar {
  /** Element codes of every rule (see {@link ./gbnf_rules.ts}). */
  rules: readonly (readonly number[])[];
  /** Keys of each terminal, by terminal index. */
  terminals: readonly KeyRanges[];
  /** Per rule, 1 when it can match the empty string. */
  nullable: Uint8Array;
  /** Per rule, 1 when the start rule refers to it, directly or not. */
  reachable: Uint8Array;
  /** The start rule. */
  root: number;
}

/** The result of {@link searchPaths}. */
export interface SearchBound {
  /**
   * Most stacks llama.cpp may try to check one token, or the first count found past the
   * limit (Infinity when a rule nests without bound, or the grammar is too complex to count).
   */
  paths: number;
  /** The rule where the most was counted, or where the unbounded nesting is. */
  rule: number;
  /** True when the search met more states than it may keep, too many to count. */
  tooComplex?: true;
}

/**
 * Bounds the stacks llama.cpp's grammar sampler may try for one candidate token.
 *
 * @param grammar The validated rules, with their terminals' characters.
 * @param limit Counting stops once a search exceeds it.
 * @returns The largest count (or the first past `limit`), and its rule.
 * @example
 * ```ts
 * searchPaths(grammar, 100_000).paths; // 8 for `root ::= [a-z]*`
 * ```
 */
export function searchPaths(grammar: SearchGrammar, limit: number): SearchBound {
  const nested = unboundedNesting(grammar);
  if (nested !== undefined) return { paths: Infinity, rule: nested };
  return new StackSearch(withoutTwins(grammar), limit).run();
}

/**
 * The grammar with every reference to a rule that does not recur sent to the first rule of
 * the same body (references compared the same way), and what the start rule reaches then: a
 * forced call to one of 128 tools repeats the same rules for each tool's parameters, and
 * their searches would be the same.
 */
function withoutTwins(grammar: SearchGrammar): SearchGrammar {
  const { rules } = grammar;
  const references: RuleEdge[][] = rules.map((rule) =>
    rule.filter((element) => element >= 0).map((to) => ({ to }))
  );
  const same = Int32Array.from(rules, (_, r) => r);
  const firstOfBody = new Map<string, number>();
  for (const members of components(references).order) { // referenced rules first
    const r = members[0]!;
    if (members.length > 1 || references[r]!.some(({ to }) => to === r)) continue;
    const body = rules[r]!.map((element) => element >= 0 ? `r${same[element]}` : element).join();
    const first = firstOfBody.get(body);
    if (first === undefined) firstOfBody.set(body, r);
    else same[r] = first;
  }
  const merged = rules.map((rule) =>
    rule.map((element) => element >= 0 ? same[element]! : element)
  );
  return { ...grammar, rules: merged, reachable: reachableRules(merged, grammar.root) };
}

/**
 * A rule whose end leads back to itself through callers that still have something to match
 * after the reference (each nesting adds a stack for the same character), if any.
 */
function unboundedNesting(grammar: SearchGrammar): number | undefined {
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

/** Parse stacks by terminal place (flat index): how many are there. */
type Counts = Map<number, number>;

/**
 * Parse stacks: those surely there (with repeats), and those past the end of a rule
 * referenced from several places, where the real stack goes on after one of them only. The
 * latter are counted as a choice: the most that any one source leads to, never a sum.
 */
interface Stacks {
  certain: Counts;
  chosen: Counts;
}

/** A multiset of stacks the search met, with its weights divided by their common factor. */
interface State {
  /** The stacks, their weights without common factor. */
  stacks: Stacks;
  /**
   * Its cost in llama.cpp for one more character: each stack tried once, and each stack's
   * advance past its terminal (the stacks it then builds, each compared with those built before
   * it, as llama.cpp drops repeats: the square of their number).
   */
  cost: number;
  /**
   * After each run of characters that the same stacks match: the next state, the factor, and
   * the run's first character.
   */
  next: { state: number; factor: number; key: number }[] | undefined;
  /** The next state after one character, by character, once asked (see {@link StackSearch.run}). */
  byKey: Map<number, { state: number; factor: number } | undefined> | undefined;
  /** Its counts by characters left, once known (see {@link StackSearch.count}). */
  counts: number[];
}

/** Places (elements of rule instances) the search may make; more is too complex to bound. */
const MAX_PLACES = 200_000;

/** States the search may meet; more, and the grammar is too complex to bound. */
const MAX_STATES = 20_000;

/**
 * Characters a run of one of {@link LONG_RUNS} is followed for: vocabularies hold tokens of up
 * to about 128 spaces, dashes or slashes, and a grammar whose ways to match such a run grow
 * slowly at first (`(" " | "  ")*`) costs llama.cpp hours on them while 8 characters look
 * harmless.
 */
const RUN_WINDOW = 128;

/**
 * The characters vocabularies hold long runs of (whitespace and ASCII punctuation), as keys.
 * Runs of letters, digits and other characters are followed for {@link SEARCH_WINDOW} only:
 * tokens repeat those a few times at most, and a word grammar such as `([a-z]+ ?)+` would
 * otherwise count ways to split a run of letters that no token has.
 */
const LONG_RUNS: readonly number[] = [..." \t\n\r-=_*#/.~+`'\"<>|\\:;!?,^()[]{}@$%&"]
  .map((c) => c.codePointAt(0)!);

/**
 * How many of llama.cpp's stack comparisons (when it drops repeated stacks in an advance) cost
 * as much as trying one stack: a stack tried at the start of a token scans the whole
 * vocabulary, one deeper in far fewer tokens. With 256, 250 alternatives that a repetition
 * enters after every character (`("\u0100" | ... )*`, 0.46 s per token measured) pass the
 * limit, and 100 (about 0.03 s) do not.
 */
const ADVANCE_COMPARISONS_PER_STACK = 256;

/** Work units (stacks compared with characters) the search may spend; more is too complex. */
const MAX_WORK = 1_000_000;

/** One search; not reusable. */
class StackSearch {
  readonly #rules: readonly (readonly number[])[];
  readonly #terminals: readonly KeyRanges[];
  readonly #limit: number;
  readonly #root: number;
  /** Per rule, the places after the references to it: holder rule and index. */
  readonly #sites: { holder: number; next: number }[][];
  /** Per rule, its rules that are copied together (see {@link #child}), or none if shared. */
  readonly #units: (readonly number[] | undefined)[];
  /** Per instance: its rule. */
  readonly #instanceRule: number[] = [];
  /** Per instance: the flat index of its first element. */
  readonly #instanceBase: number[] = [];
  /** Per instance: the place its end leads to, or -1 where the caller is unknown. */
  readonly #instanceExit: number[] = [];
  /** Per instance: the instances of its unit, by rule. */
  readonly #instanceUnit: (Map<number, number> | undefined)[] = [];
  /** The instance of each flat place. */
  readonly #placeInstance: number[] = [];
  /** Per rule, its instance with an unknown caller (-1 until made). */
  readonly #unknownCaller: Int32Array;
  /** Instances made for references, by the reference's place. */
  readonly #children = new Map<number, number>();
  /** Per place after a terminal, the terminals its stacks reach first, once computed. */
  readonly #expansions = new Map<number, Stacks>();
  readonly #states: State[] = [];
  /** {@link #intern}'s answers for the stacks objects it saw (expansions recur). */
  readonly #interned = new WeakMap<Stacks, { state: number; factor: number }>();
  readonly #stateIds = new Map<string, number>();
  /** The states of one stack, by its place. */
  readonly #singleIds = new Map<number, number>();
  /** Work units spent (see {@link MAX_WORK}). */
  #work = 0;
  /** Whether the search needed more places than {@link MAX_PLACES}. */
  #overBudget = false;

  /**
   * @param grammar The validated rules.
   * @param limit The count past which the search stops.
   */
  constructor(grammar: SearchGrammar, limit: number) {
    const { rules, reachable } = grammar;
    this.#rules = rules;
    this.#terminals = grammar.terminals;
    this.#limit = limit;
    this.#root = grammar.root;
    this.#unknownCaller = new Int32Array(rules.length).fill(-1);
    this.#sites = rules.map(() => []);
    const references: RuleEdge[][] = rules.map(() => []);
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!;
      for (let i = 0; i < rule.length; i++) {
        const to = rule[i]!;
        if (to < 0) continue;
        references[r]!.push({ to });
        if (reachable[r] === 1) this.#sites[to]!.push({ holder: r, next: i + 1 });
      }
    }
    // Rules that refer to each other (or themselves) only as their last item are copied as
    // a unit: within it no stack returns anywhere but to the unit's caller.
    const { component, order } = components(references);
    const shared = new Uint8Array(order.length);
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!;
      for (let i = 0; i < rule.length; i++) {
        const to = rule[i]!;
        const last = rule[i + 1] === ALT || rule[i + 1] === END;
        if (to >= 0 && !last && component[to] === component[r]) shared[component[r]!] = 1;
      }
    }
    this.#units = rules.map((_, r) =>
      shared[component[r]!] === 1 ? undefined : order[component[r]!]!
    );
  }

  /** A new instance of a rule whose end leads to `exit` (-1: unknown). */
  #instance(rule: number, exit: number, unit: Map<number, number> | undefined): number {
    const id = this.#instanceRule.length;
    this.#instanceRule.push(rule);
    this.#instanceBase.push(this.#placeInstance.length);
    this.#instanceExit.push(exit);
    this.#instanceUnit.push(unit);
    for (let i = 0; i < this.#rules[rule]!.length; i++) this.#placeInstance.push(id);
    return id;
  }

  /** The instance of a rule whose caller is unknown (made with the rest of its unit). */
  #unknown(rule: number): number {
    let id = this.#unknownCaller[rule]!;
    if (id < 0) {
      const members = this.#units[rule];
      const unit = members === undefined ? undefined : new Map<number, number>();
      for (const member of members ?? [rule]) {
        const made = this.#instance(member, -1, unit);
        unit?.set(member, made);
        this.#unknownCaller[member] = made;
      }
      id = this.#unknownCaller[rule]!;
    }
    return id;
  }

  /** The instance a reference (to rule `to`, at a place of an instance) enters. */
  #child(instance: number, place: number, to: number): number {
    const sibling = this.#instanceUnit[instance]?.get(to);
    if (sibling !== undefined) return sibling; // a tail reference within a unit
    const members = this.#units[to];
    if (members === undefined) return this.#unknown(to);
    // Past the budget, an instance made for another reference to the rule stands in: it
    // returns to a place the rule does return to, one of the choices.
    // Past the budget the search is too complex to bound (an instance made for another
    // reference would return to the wrong place and hide what follows this one).
    if (this.#placeInstance.length > MAX_PLACES) {
      this.#overBudget = true;
      return this.#unknown(to);
    }
    let child = this.#children.get(place);
    if (child === undefined) {
      const unit = new Map<number, number>();
      for (const member of members) unit.set(member, this.#instance(member, place + 1, unit));
      child = unit.get(to)!;
      this.#children.set(place, child);
    }
    return child;
  }

  /** The largest count over the starts (the first past the limit stops the search). */
  run(): SearchBound {
    let worst: SearchBound = { paths: 0, rule: this.#root };
    for (const [rule, stacks] of this.#starts()) {
      const { state, factor } = this.#intern(stacks);
      const paths = factor * Math.max(this.#count(state, SEARCH_WINDOW), this.#longestRun(state));
      if (this.#tooComplex()) return { paths: Infinity, rule, tooComplex: true };
      if (paths > worst.paths) worst = { paths, rule };
      if (paths > this.#limit) break;
    }
    if (this.#tooComplex()) return { paths: Infinity, rule: worst.rule, tooComplex: true };
    return worst;
  }

  #tooComplex(): boolean {
    return this.#states.length > MAX_STATES || this.#work > MAX_WORK || this.#overBudget;
  }

  /**
   * The costliest {@link SEARCH_WINDOW} characters in a row of a run of one character from a
   * state (each character its stacks match, repeated up to {@link RUN_WINDOW} times if
   * vocabularies hold long runs of it): where the stacks matching such a run keep multiplying
   * (`(" " | "  ")*`, `("-"*){6}`), the long runs cost llama.cpp hours although their first 8
   * characters look harmless. A run whose stacks stay as many costs no more per 8 characters.
   */
  #longestRun(id: number): number {
    this.#count(id, 2); // its successors, with the characters they follow
    let most = 0;
    for (const { key } of this.#states[id]!.next ?? []) {
      let state = id;
      let factor = 1;
      const costs: number[] = [];
      let window = 0; // the last SEARCH_WINDOW costs' sum
      const length = LONG_RUNS.includes(key) ? RUN_WINDOW : SEARCH_WINDOW;
      for (let step = 0; step < length; step++) {
        const cost = factor * this.#states[state]!.cost;
        costs.push(cost);
        window += cost - (costs[step - SEARCH_WINDOW] ?? 0);
        most = Math.max(most, window);
        const next = this.#on(state, key);
        if (next === undefined || most > this.#limit || this.#tooComplex()) break;
        state = next.state;
        factor *= next.factor;
      }
      if (most > this.#limit) break;
    }
    return most;
  }

  /** The state after one character from a state, if a stack matches it. */
  #on(id: number, key: number): { state: number; factor: number } | undefined {
    const state = this.#states[id]!;
    state.byKey ??= new Map();
    if (state.byKey.has(key)) return state.byKey.get(key);
    const matched = this.#matched(state.stacks, key);
    const next = matched.length === 0
      ? undefined
      : this.#intern(this.#advanceMatched(state.stacks, matched));
    state.byKey.set(key, next);
    return next;
  }

  /**
   * The stacks tried from a state over the worst `left` characters: its own stacks, plus the
   * most that any next state tries in one character less (remembered per state).
   */
  #count(id: number, left: number): number {
    const state = this.#states[id]!;
    if (left === 1 || this.#tooComplex()) return state.cost;
    const known = state.counts[left];
    if (known !== undefined) return known;
    state.next ??= [...this.#successors(state.stacks)].map(([key, stacks]) => ({
      ...this.#intern(stacks),
      key,
    }));
    let most = 0;
    for (const { state: next, factor } of state.next) {
      most = Math.max(most, factor * this.#count(next, left - 1));
      if (state.cost + most > this.#limit) break;
    }
    state.counts[left] = state.cost + most;
    return state.cost + most;
  }

  /**
   * The places a token can start at, by rule: the start rule's start, and after every terminal
   * of every rule the start rule reaches, in the first instance of it met going from the start
   * rule (where another reference leads to differs only once the rule returns, and there the
   * search starts from the places of the referring rule).
   */
  *#starts(): Generator<[number, Stacks]> {
    const root = this.#unknown(this.#root);
    yield [this.#root, this.#advance(root, -1)];
    const met = new Set([this.#root]);
    const todo = [root];
    while (todo.length > 0) {
      const instance = todo.shift()!;
      const r = this.#instanceRule[instance]!;
      const rule = this.#rules[r]!;
      const base = this.#instanceBase[instance]!;
      for (let i = 0; i < rule.length; i++) {
        const element = rule[i]!;
        if (!startsTerminal(element)) {
          if (element >= 0 && !met.has(element)) {
            met.add(element);
            todo.push(this.#child(instance, base + i, element));
          }
          continue;
        }
        // Stacks that no character matches two of go on as one: the count only multiplies
        // from places where some character matches several, so the searches start there.
        const next = this.#next(r, i);
        if (startsTerminal(rule[next]!)) continue; // one stack: the next character
        const after = this.#expand(base + next);
        if (this.#overlaps(after)) yield [r, after];
        if (this.#tooComplex()) return;
      }
    }
  }

  /** Whether some character matches two of the stacks (or a stack is there twice). */
  #overlaps({ certain, chosen }: Stacks): boolean {
    const ranges: number[][] = [];
    for (const [place, weight] of [...certain, ...chosen]) {
      if (weight > 1) return true;
      const keys = this.#keysAt(place);
      for (let i = 0; i < keys.length; i += 2) ranges.push([keys[i]!, keys[i + 1]!]);
    }
    this.#work += ranges.length;
    ranges.sort((a, b) => a[0]! - b[0]!);
    for (let i = 1; i < ranges.length; i++) if (ranges[i]![0]! <= ranges[i - 1]![1]!) return true;
    return false;
  }

  /** The state of these stacks (weights divided by their common factor), and the factor. */
  #intern(stacks: Stacks): { state: number; factor: number } {
    let interned = this.#interned.get(stacks);
    if (interned === undefined) {
      interned = this.#internNew(stacks);
      this.#interned.set(stacks, interned);
    }
    return interned;
  }

  #internNew({ certain, chosen }: Stacks): { state: number; factor: number } {
    if (chosen.size === 0 && certain.size === 1) {
      const [place, weight] = certain.entries().next().value!;
      let state = this.#singleIds.get(place);
      if (state === undefined) {
        state = this.#states.length;
        const stacks = { certain: new Map([[place, 1]]), chosen: new Map() };
        const cost = this.#stackCost(place);
        this.#states.push({ stacks, cost, next: undefined, byKey: undefined, counts: [] });
        this.#singleIds.set(place, state);
      }
      return { state, factor: weight };
    }
    let factor = 0;
    for (const weight of certain.values()) factor = gcd(factor, weight);
    for (const weight of chosen.values()) factor = gcd(factor, weight);
    if (factor === 0) factor = 1;
    const key = `${countsKey(certain, factor)}|${countsKey(chosen, factor)}`;
    let state = this.#stateIds.get(key);
    if (state === undefined) {
      state = this.#states.length;
      const divided = (counts: Counts) =>
        factor === 1 ? counts : new Map([...counts].map(([p, w]) => [p, w / factor]));
      const stacks = { certain: divided(certain), chosen: divided(chosen) };
      let cost = 0;
      for (const [place, weight] of stacks.certain) cost += weight * this.#stackCost(place);
      for (const [place, weight] of stacks.chosen) cost += weight * this.#stackCost(place);
      this.#states.push({ stacks, cost, next: undefined, byKey: undefined, counts: [] });
      this.#stateIds.set(key, state);
    }
    return { state, factor };
  }

  /** A stack's cost for one character: tried once, and its advance (see {@link State.cost}). */
  #stackCost(place: number): number {
    if (this.#keysAt(place).length === 0) return 1;
    const { certain, chosen } = this.#expand(this.#placeAfter(place));
    let built = chosen.size;
    for (const count of certain.values()) built += count;
    return 1 + (built > 1 ? (built * built) / ADVANCE_COMPARISONS_PER_STACK : 0);
  }

  /**
   * For each run of characters that the same stacks match, its first character and the stacks
   * after it.
   */
  *#successors(stacks: Stacks): Generator<[number, Stacks]> {
    const { certain, chosen } = stacks;
    if (chosen.size === 0 && certain.size === 1) {
      // One stack (its weight is 1 once divided): what follows its terminal, if it matches.
      const [place, weight] = certain.entries().next().value!;
      const keys = this.#keysAt(place);
      if (weight === 1) {
        if (keys.length > 0) {
          yield [runKey(keys[0]!, keys[1]! + 1), this.#expand(this.#placeAfter(place))];
        }
        return;
      }
    }
    const bounds = new Set<number>();
    for (const place of [...certain.keys(), ...chosen.keys()]) {
      const keys = this.#keysAt(place);
      for (let i = 0; i < keys.length; i += 2) bounds.add(keys[i]!).add(keys[i + 1]! + 1);
    }
    const cuts = [...bounds].sort((a, b) => a - b);
    this.#work += cuts.length * (certain.size + chosen.size);
    if (this.#tooComplex()) return;
    const seen = new Set<string>();
    for (let c = 0; c + 1 < cuts.length; c++) {
      const key = cuts[c]!;
      const matched = this.#matched(stacks, key);
      const id = matched.join(",");
      if (matched.length === 0 || seen.has(id)) continue;
      seen.add(id);
      yield [runKey(key, cuts[c + 1]!), this.#advanceMatched(stacks, matched)];
    }
  }

  /** The stacks that match a character: certain places, then chosen ones as -1 - place. */
  #matched({ certain, chosen }: Stacks, key: number): number[] {
    const matched: number[] = [];
    for (const place of certain.keys()) if (matches(this.#keysAt(place), key)) matched.push(place);
    for (const place of chosen.keys()) {
      if (matches(this.#keysAt(place), key)) matched.push(-1 - place);
    }
    return matched;
  }

  /** The stacks after the matched ones advance past their terminals. */
  #advanceMatched({ certain, chosen }: Stacks, matched: readonly number[]): Stacks {
    const only = matched.length === 1 ? matched[0]! : undefined;
    if (only !== undefined && only >= 0 && certain.get(only) === 1) {
      return this.#expand(this.#placeAfter(only)); // shared, so its state is found at once
    }
    const next: Stacks = { certain: new Map(), chosen: new Map() };
    for (const entry of matched) {
      const isChosen = entry < 0;
      const place = isChosen ? -1 - entry : entry;
      const weight = (isChosen ? chosen : certain).get(place)!;
      const expansion = this.#expand(this.#placeAfter(place));
      this.#work += expansion.certain.size + expansion.chosen.size;
      for (const [terminal, count] of expansion.certain) {
        if (isChosen) choose(next.chosen, terminal, weight * count);
        else next.certain.set(terminal, (next.certain.get(terminal) ?? 0) + weight * count);
      }
      for (const [terminal, count] of expansion.chosen) {
        choose(next.chosen, terminal, weight * count);
      }
    }
    return next;
  }

  /** The element at a place, and its instance. */
  #at(place: number): { instance: number; rule: number; index: number } {
    const instance = this.#placeInstance[place]!;
    const rule = this.#instanceRule[instance]!;
    return { instance, rule, index: place - this.#instanceBase[instance]! };
  }

  #keysAt(place: number): KeyRanges {
    const { rule, index } = this.#at(place);
    return this.#terminals[terminalIndex(this.#rules[rule]![index]!)]!;
  }

  /** The place after the terminal at a place. */
  #placeAfter(place: number): number {
    const { instance, rule, index } = this.#at(place);
    return this.#instanceBase[instance]! + this.#next(rule, index);
  }

  /** The index after the terminal at index i and its continuations. */
  #next(r: number, i: number): number {
    const rule = this.#rules[r]!;
    let next = i + 1;
    while (rule[next] === CONTINUATION) next++;
    return next;
  }

  /** The stacks after a terminal's place, once computed. */
  #expand(place: number): Stacks {
    let expansion = this.#expansions.get(place);
    if (expansion === undefined) {
      expansion = this.#advance(this.#placeInstance[place]!, place);
      this.#expansions.set(place, expansion);
    }
    return expansion;
  }

  /**
   * The terminals a stack continuing at a place of an instance reaches first (`from` < 0: at
   * the start of each alternative of the instance's rule), as llama.cpp advances it: through
   * references into their alternatives (each instance once), and at the end of an alternative
   * to where the instance's rule returns (each instance once; the start rule's end is the end
   * of generation). Where the caller is unknown, the places after the rule's references are
   * a choice.
   */
  #advance(instance: number, from: number): Stacks {
    const stacks: Stacks = { certain: new Map(), chosen: new Map() };
    const entered = new Set<number>();
    const exited = new Set<number>();
    const todo: { place: number; chosen: boolean }[] = [];
    const enter = (instance: number, chosen: boolean) => {
      if (entered.has(instance)) return;
      entered.add(instance);
      const base = this.#instanceBase[instance]!;
      const elements = this.#rules[this.#instanceRule[instance]!]!;
      let start = 0;
      for (let i = 0; i < elements.length; i++) {
        if (elements[i] !== ALT && elements[i] !== END) continue;
        todo.push({ place: base + start, chosen });
        start = i + 1;
      }
    };
    if (from < 0) enter(instance, false);
    else todo.push({ place: from, chosen: false });
    while (todo.length > 0) {
      const { place, chosen } = todo.pop()!;
      const { instance, rule, index } = this.#at(place);
      const element = this.#rules[rule]![index]!;
      if (startsTerminal(element)) {
        if (chosen) stacks.chosen.set(place, 1);
        else stacks.certain.set(place, (stacks.certain.get(place) ?? 0) + 1);
      } else if (element >= 0) enter(this.#child(instance, place, element), chosen);
      else if (!exited.has(instance)) {
        exited.add(instance);
        const exit = this.#instanceExit[instance]!;
        if (exit >= 0) {
          todo.push({ place: exit, chosen });
          continue;
        }
        const sites = this.#sites[rule]!;
        const choice = chosen || sites.length + (rule === this.#root ? 1 : 0) > 1;
        for (const { holder, next } of sites) {
          todo.push({ place: this.#instanceBase[this.#unknown(holder)]! + next, chosen: choice });
        }
      }
    }
    return stacks;
  }
}

/** The counts divided by a factor, in order of place, as text. */
function countsKey(counts: Counts, factor: number): string {
  const places = [...counts.keys()].sort((a, b) => a - b);
  let key = "";
  for (const place of places) key += `${place}*${counts.get(place)! / factor},`;
  return key;
}

/** Keeps the larger count of a chosen terminal. */
function choose(chosen: Counts, place: number, count: number): void {
  if (count > (chosen.get(place) ?? 0)) chosen.set(place, count);
}

/** A key of `[from, to)` to follow a run of: one with long runs if there is one, else `from`. */
function runKey(from: number, to: number): number {
  return LONG_RUNS.find((key) => key >= from && key < to) ?? from;
}

/** The greatest common divisor of two whole numbers (0 with 0 gives 0). */
function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Whether sorted key ranges hold a key. */
function matches(keys: KeyRanges, key: number): boolean {
  for (let i = 0; i < keys.length; i += 2) {
    if (key < keys[i]!) return false;
    if (key <= keys[i + 1]!) return true;
  }
  return false;
}
