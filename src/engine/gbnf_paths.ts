/**
 * A bound on the work llama.cpp's grammar sampler does to check one candidate token. For
 * every candidate, `llama_grammar_reject_candidates` walks the token's characters from each
 * parse stack, and where several stacks match the same character it follows each of them
 * separately, without merging the ones that meet again. An ambiguous grammar therefore costs
 * walks that multiply with every character: `("a"?){128} "b"` reads `aaaa` in C(128, 4) ways,
 * and a server serving it spends seconds to hours per token.
 *
 * The bound simulates those walks on the grammar alone. From the start rule's start, from
 * every place after a terminal where two stacks can match the same character (elsewhere one
 * stack goes on as one), and from every place whose stacks cost much on their own, in each
 * context of a rule that leads to other characters after it (see `#starts`), it follows
 * the parse stacks as a multiset of terminals, one character at a time, trying every character
 * that some stack matches. A stack costs one try (llama.cpp scans its candidates once per stack
 * and character; on a token's first character that is the whole vocabulary, see
 * {@link TOKEN_START_TRIES}) and its advance (llama.cpp rebuilds the stacks that follow and
 * compares each with those built before it, whether a candidate matched or not). The bound is
 * the largest cost over {@link SEARCH_WINDOW} characters in a row from a token's start, or over
 * a whole run of one character of those that vocabularies hold long runs of (up to
 * {@link RUN_WINDOW}), on which slowly growing ambiguity, or a steady cost, adds up. Identical
 * searches are shared, so an unambiguous grammar costs little more than a look at each place.
 *
 * Stacks are kept as their terminal and an instance of its rule that knows where the rule
 * returns to, made as the search enters a reference (see {@link Unit}). An instance referred to
 * from several places in one advance (`g ::= r | r`, or rules alike, which the search merges)
 * counts its stacks once per way in, as llama.cpp makes a stack per reference: counted once,
 * `(r0 | … | r999)+` with every `rI ::= "~"` passed, and hung a server for minutes per token. A call that recurs other
 * than at the rule's end (`q ::= "(" q ")"`) gets its own instance once per reference within
 * each call from outside its rules, so a stack returns from it to the right place in the
 * right rule, and deeper nestings share those instances (each return still leads to the right
 * place of its rule). Recursion that gains ways to match with every nested call, whatever the
 * window (`r ::= "a" r "x"? | "b"`, `q ::= "(" q " "+ | "x"`), is found before the search
 * ({@link ./gbnf_nesting.ts}) and reported as unbounded.
 *
 * Known gaps: llama.cpp stops checking a candidate once one stack accepts it, which the bound
 * ignores, so grammars whose runs of spaces split many ways but almost every token is accepted
 * early (`ws field ws` with `ws ::= " "*` and fields that take spaces) are refused although they
 * cost little; a stack that returns through two or more nested recursive calls within one
 * window goes on where the first such call returns, and a search starts only a few calls deep,
 * so nested calls that each leave an ambiguous run behind pass unless the run is of one
 * character that tokens repeat (those {@link ./gbnf_nesting.ts} refuses), as runs that
 * alternate characters (`q ::= "(" q (" -")+ | "x"`) do; and the cost of a stack's depth
 * (llama.cpp copies and compares whole stacks) is not counted.
 *
 * @module
 */

import { unboundedNesting } from "./gbnf_nesting.ts";
import {
  ALT,
  components,
  CONTINUATION,
  END,
  type KeyRanges,
  keysHold,
  LONG_RUN_KEYS,
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
  /** Where a rule nests without bound: the character whose runs split among its calls, if any. */
  run?: number;
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
  if (nested !== undefined) return { paths: Infinity, ...nested };
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

/** Parse stacks by terminal place (flat index): how many are there. */
type Stacks = Map<number, number>;

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

/**
 * Instances of the rules of one component of the reference graph that return to the same place:
 * a rule's tail call to another of its component (`x' ::= x x' |`) enters the instance of the
 * callee here, since its end leads where the caller's does.
 */
interface Unit {
  /** The place the instances' end leads to, or -1: the end of generation. */
  exit: number;
  /** Its instances by rule, made as references reach them. */
  members: Map<number, number>;
  /** The unit entered from outside the component that this one nests in; none if it is one. */
  family: Unit | undefined;
  /** In a unit entered from outside: the units of the calls that recur in it, by reference. */
  nested: Map<number | string, Unit>;
}

/** Places (elements of rule instances) the search may make; more is too complex to bound. */
const MAX_PLACES = 1_000_000;

/** States the search may meet; more, and the grammar is too complex to bound. */
const MAX_STATES = 50_000;

/**
 * Characters a run of one of {@link LONG_RUN_KEYS} is followed for: vocabularies hold tokens of up
 * to about 128 spaces, dashes or slashes, and a grammar whose ways to match such a run grow
 * slowly at first (`(" " | "  ")*`) costs llama.cpp hours on them while 8 characters look
 * harmless; one whose stacks stay many but do not grow costs them on every character of it.
 */
const RUN_WINDOW = 128;

/**
 * How many of llama.cpp's stack comparisons (when it drops repeated stacks in an advance) cost
 * as much as trying one stack: a stack tried at the start of a token scans the whole
 * vocabulary, one deeper in far fewer tokens. With 256, 250 alternatives that a repetition
 * enters after every character (`("\u0100" | ... )*`, 0.46 s per token measured) pass the
 * limit, and 100 (about 0.03 s) do not.
 */
const ADVANCE_COMPARISONS_PER_STACK = 256;

/**
 * What a stack tried on a token's first character costs, in tries: it scans every candidate of
 * the vocabulary (when llama.cpp narrows the candidates to what the grammar allows, as it does
 * whenever the model's picks are refused), where a stack deeper in a token scans the few
 * candidates that share its beginning. 1,000 alternatives at a token's start (`"i0" | "i1" |
 * ... | "i999"`) cost 2.6-2.8 s per token on qwen2; with 256, about 400 at once pass the limit.
 */
const TOKEN_START_TRIES = 256;

/** Work units (stacks compared with characters) the search may spend; more is too complex. */
const MAX_WORK = 1_000_000;

/** One search; not reusable. */
class StackSearch {
  readonly #rules: readonly (readonly number[])[];
  readonly #terminals: readonly KeyRanges[];
  readonly #limit: number;
  readonly #root: number;
  /** Per rule, its component of the reference graph. */
  readonly #component: Int32Array;
  /** Per rule, the index of its first element among all rules' elements. */
  readonly #ruleStart: number[] = [];
  /** Per instance: its rule. */
  readonly #instanceRule: number[] = [];
  /** Per instance: the flat index of its first element. */
  readonly #instanceBase: number[] = [];
  /** Per instance: its unit. */
  readonly #instanceUnit: Unit[] = [];
  /** The instance of each flat place. */
  readonly #placeInstance: number[] = [];
  /** Units entered by references from outside their component, by the reference's place. */
  readonly #children = new Map<number | string, Unit>();
  /** Units entered by tail calls from outside their component, by rule and exit. */
  readonly #tails = new Map<number | string, Unit>();
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
    const { rules } = grammar;
    this.#rules = rules;
    this.#terminals = grammar.terminals;
    this.#limit = limit;
    this.#root = grammar.root;
    const references: RuleEdge[][] = rules.map((rule) =>
      rule.filter((element) => element >= 0).map((to) => ({ to }))
    );
    this.#component = Int32Array.from(components(references).component);
    let start = 0;
    for (const rule of rules) {
      this.#ruleStart.push(start);
      start += rule.length;
    }
  }

  /** The instance of a rule in a unit, made on first use. */
  #member(unit: Unit, rule: number): number {
    let id = unit.members.get(rule);
    if (id === undefined) {
      id = this.#instanceRule.length;
      this.#instanceRule.push(rule);
      this.#instanceBase.push(this.#placeInstance.length);
      this.#instanceUnit.push(unit);
      for (let i = 0; i < this.#rules[rule]!.length; i++) this.#placeInstance.push(id);
      unit.members.set(rule, id);
    }
    return id;
  }

  /**
   * The instance a reference (to rule `to`, at a place of an instance) enters: for a tail call
   * within the instance's component, the callee's in the same unit; else that of a unit that
   * returns to the place after the reference. A call from outside the component gets a unit of
   * its own (its family); a call within it that recurs otherwise (`q ::= "(" q ")"`) gets one
   * unit per reference of the rules in each family, which deeper nestings share, so that the
   * number of instances stays that of the references however deep the search reads.
   */
  #child(instance: number, place: number, to: number): number {
    const { rule, index } = this.#at(place);
    const unit = this.#instanceUnit[instance]!;
    const next = this.#rules[rule]![index + 1];
    const within = this.#component[to] === this.#component[rule];
    const tail = next === ALT || next === END;
    if (within && tail) return this.#member(unit, to);
    // A tail call from outside returns where its caller's unit does: one unit per rule and exit
    // serves every such call (chains of optional properties call their rest from many places).
    const children = within ? (unit.family ?? unit).nested : tail ? this.#tails : this.#children;
    const key = within ? this.#ruleStart[rule]! + index : tail ? `${to}@${unit.exit}` : place;
    let child = children.get(key);
    if (child === undefined) {
      if (this.#placeInstance.length > MAX_PLACES) {
        // Too complex to bound: the search ends, and any instance will do until it does.
        this.#overBudget = true;
        return instance;
      }
      const family = within ? unit.family ?? unit : undefined;
      const exit = !within && tail ? unit.exit : place + 1;
      child = { exit, members: new Map(), family, nested: new Map() };
      children.set(key, child);
    }
    return this.#member(child, to);
  }

  /** The largest count over the starts (the first past the limit stops the search). */
  run(): SearchBound {
    let worst: SearchBound = { paths: 0, rule: this.#root };
    for (const [rule, stacks] of this.#starts()) {
      const { state, factor } = this.#intern(stacks);
      const first = (TOKEN_START_TRIES - 1) * this.#tries(stacks); // see TOKEN_START_TRIES
      const paths = first +
        factor * Math.max(this.#count(state, SEARCH_WINDOW), this.#longestRun(state));
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
   * The costliest characters in a row of a run of one character from a state (each character
   * its stacks match): the costliest {@link SEARCH_WINDOW} of them, or, where vocabularies hold
   * long runs of it, the whole run up to {@link RUN_WINDOW}. Where the stacks matching such a run
   * keep multiplying (`(" " | "  ")*`, `("-"*){6}`), or stay many, the long runs cost llama.cpp
   * seconds to hours although their first 8 characters look harmless.
   */
  #longestRun(id: number): number {
    this.#count(id, 2); // its successors, with the characters they follow
    let most = 0;
    for (const { key } of this.#states[id]!.next ?? []) {
      let state = id;
      let factor = 1;
      const costs: number[] = [];
      let window = 0; // the last SEARCH_WINDOW costs' sum
      const long = LONG_RUN_KEYS.includes(key);
      for (let step = 0; step < (long ? RUN_WINDOW : SEARCH_WINDOW); step++) {
        const cost = factor * this.#states[state]!.cost;
        costs.push(cost);
        window = long ? window + cost : window + cost - (costs[step - SEARCH_WINDOW] ?? 0);
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
   * rule and in every other whose end leads to other characters (a loop of rules met first
   * elsewhere, `(sentence | ws)*`, is only ambiguous there). Instances whose ends lead to the
   * same characters differ only once a stack has returned from them, and there the search
   * starts from the places of the referring rule.
   */
  *#starts(): Generator<[number, Stacks]> {
    const unit = { exit: -1, members: new Map(), family: undefined, nested: new Map() };
    const root = this.#member(unit, this.#root);
    yield [this.#root, this.#advance(root, -1)];
    const met = new Set([root]);
    const firstMet = new Set([this.#root]);
    const contexts = new Set<string>();
    const todo = [root];
    while (todo.length > 0) {
      const instance = todo.shift()!;
      const r = this.#instanceRule[instance]!;
      const rule = this.#rules[r]!;
      const base = this.#instanceBase[instance]!;
      for (let i = 0; i < rule.length; i++) {
        const element = rule[i]!;
        if (!startsTerminal(element)) {
          if (element < 0) continue;
          const child = this.#child(instance, base + i, element);
          if (met.has(child)) continue;
          // A rule's first instance, and any other whose end leads to other characters.
          const context = firstMet.has(element) ? this.#context(child) : "";
          if (context === "" || !contexts.has(context)) {
            met.add(child);
            firstMet.add(element);
            if (context !== "") contexts.add(context);
            todo.push(child);
          }
          if (this.#tooComplex()) return;
          continue;
        }
        // Stacks that no character matches two of go on as one, and cost what each costs: the
        // count only multiplies from places where some character matches several, and stacks
        // that cost little add little until they meet such a place, where a search starts.
        const next = this.#next(r, i);
        if (startsTerminal(rule[next]!)) continue; // one stack: the next character
        const after = this.#expand(base + next);
        if (
          this.#overlaps(after) || this.#cost(after) > this.#limit / RUN_WINDOW ||
          TOKEN_START_TRIES * this.#tries(after) > this.#limit / 2 // many stacks at a token start
        ) {
          yield [r, after];
        }
        if (this.#tooComplex()) return;
      }
    }
  }

  /**
   * An instance's rule and the characters that its end leads to (the terminals there, with
   * repeats): instances that agree on it make searches alike from their places, at least until a
   * stack returns twice; one of them is searched.
   */
  #context(instance: number): string {
    const { exit } = this.#instanceUnit[instance]!;
    let context = `${this.#instanceRule[instance]}:`;
    if (exit < 0) return context;
    const terminals: number[] = [];
    for (const [place, weight] of this.#expand(exit)) {
      const { rule, index } = this.#at(place);
      for (let w = 0; w < weight; w++) terminals.push(terminalIndex(this.#rules[rule]![index]!));
    }
    for (const terminal of terminals.sort((a, b) => a - b)) context += `${terminal},`;
    return context;
  }

  /** Whether some character matches two of the stacks (or a stack is there twice). */
  #overlaps(stacks: Stacks): boolean {
    const ranges: number[][] = [];
    for (const [place, weight] of stacks) {
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

  #internNew(stacks: Stacks): { state: number; factor: number } {
    if (stacks.size === 1) {
      const [place, weight] = stacks.entries().next().value!;
      let state = this.#singleIds.get(place);
      if (state === undefined) {
        state = this.#newState(new Map([[place, 1]]));
        this.#singleIds.set(place, state);
      }
      return { state, factor: weight };
    }
    let factor = 0;
    for (const weight of stacks.values()) factor = gcd(factor, weight);
    if (factor === 0) factor = 1;
    const key = stacksKey(stacks, factor);
    let state = this.#stateIds.get(key);
    if (state === undefined) {
      state = this.#newState(
        factor === 1
          ? stacks
          : new Map([...stacks].map(([place, weight]) => [place, weight / factor])),
      );
      this.#stateIds.set(key, state);
    }
    return { state, factor };
  }

  /** A new state of these stacks (their weights without common factor); its id. */
  #newState(stacks: Stacks): number {
    const state: State = {
      stacks,
      cost: this.#cost(stacks),
      next: undefined,
      byKey: undefined,
      counts: [],
    };
    return this.#states.push(state) - 1;
  }

  /** How many stacks there are, repeats included. */
  #tries(stacks: Stacks): number {
    let tries = 0;
    for (const weight of stacks.values()) tries += weight;
    return tries;
  }

  /** The stacks' cost for one character (see {@link State.cost}). */
  #cost(stacks: Stacks): number {
    let cost = 0;
    for (const [place, weight] of stacks) cost += weight * this.#stackCost(place);
    return cost;
  }

  /** A stack's cost for one character: tried once, and its advance (see {@link State.cost}). */
  #stackCost(place: number): number {
    if (this.#keysAt(place).length === 0) return 1;
    let built = 0;
    for (const count of this.#expand(this.#placeAfter(place)).values()) built += count;
    return 1 + (built > 1 ? (built * built) / ADVANCE_COMPARISONS_PER_STACK : 0);
  }

  /**
   * For each run of characters that the same stacks match, its first character and the stacks
   * after it.
   */
  *#successors(stacks: Stacks): Generator<[number, Stacks]> {
    if (stacks.size === 1) {
      // One stack (its weight is 1 once divided): what follows its terminal, if it matches.
      const [place, weight] = stacks.entries().next().value!;
      const keys = this.#keysAt(place);
      if (weight === 1) {
        if (keys.length > 0) {
          yield [runKey(keys[0]!, keys[1]! + 1), this.#expand(this.#placeAfter(place))];
        }
        return;
      }
    }
    const bounds = new Set<number>();
    for (const place of stacks.keys()) {
      const keys = this.#keysAt(place);
      for (let i = 0; i < keys.length; i += 2) bounds.add(keys[i]!).add(keys[i + 1]! + 1);
    }
    const cuts = [...bounds].sort((a, b) => a - b);
    // The stacks that match each run between cuts, each stack added to the runs it covers.
    const matchedAt: number[][] = cuts.map(() => []);
    let pairs = cuts.length;
    for (const place of stacks.keys()) {
      const keys = this.#keysAt(place);
      for (let i = 0; i < keys.length; i += 2) {
        for (let c = firstAtLeast(cuts, keys[i]!); cuts[c]! <= keys[i + 1]!; c++) {
          matchedAt[c]!.push(place);
          pairs++;
        }
      }
    }
    this.#work += pairs;
    if (this.#tooComplex()) return;
    const seen = new Set<string>();
    for (let c = 0; c + 1 < cuts.length; c++) {
      const matched = matchedAt[c]!;
      const id = matched.join(",");
      if (matched.length === 0 || seen.has(id)) continue;
      seen.add(id);
      yield [runKey(cuts[c]!, cuts[c + 1]!), this.#advanceMatched(stacks, matched)];
    }
  }

  /** The places of the stacks that match a character. */
  #matched(stacks: Stacks, key: number): number[] {
    const matched: number[] = [];
    for (const place of stacks.keys()) if (keysHold(this.#keysAt(place), key)) matched.push(place);
    return matched;
  }

  /** The stacks after the matched ones advance past their terminals. */
  #advanceMatched(stacks: Stacks, matched: readonly number[]): Stacks {
    if (matched.length === 1 && stacks.get(matched[0]!) === 1) {
      return this.#expand(this.#placeAfter(matched[0]!)); // shared, so its state is found at once
    }
    const next: Stacks = new Map();
    for (const place of matched) {
      const weight = stacks.get(place)!;
      const expansion = this.#expand(this.#placeAfter(place));
      this.#work += expansion.size;
      for (const [terminal, count] of expansion) {
        next.set(terminal, (next.get(terminal) ?? 0) + weight * count);
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
      this.#work += expansion.size;
      this.#expansions.set(place, expansion);
    }
    return expansion;
  }

  /**
   * The terminals a stack continuing at a place of an instance reaches first (`from` < 0: at
   * the start of each alternative of the instance's rule), as llama.cpp advances it: through
   * references into their alternatives (each instance once), and at the end of an alternative
   * to where the instance returns (each instance once; the start rule's end is the end of
   * generation).
   */
  #advance(instance: number, from: number): Stacks {
    const reached: number[] = [];
    const entered = new Set<number>();
    const exited = new Set<number>();
    // Every reference followed, as (referring instance, referred instance): llama.cpp makes a
    // stack for each, so an instance referred to from two places (`g ::= r | r`, or twin rules
    // merged into one) yields its terminals twice (see `#referencePaths`).
    const references: [number, number][] = [];
    const todo: number[] = [];
    const enter = (instance: number) => {
      if (entered.has(instance)) return;
      entered.add(instance);
      const base = this.#instanceBase[instance]!;
      const elements = this.#rules[this.#instanceRule[instance]!]!;
      let start = 0;
      for (let i = 0; i < elements.length; i++) {
        if (elements[i] !== ALT && elements[i] !== END) continue;
        todo.push(base + start);
        start = i + 1;
      }
    };
    if (from < 0) enter(instance);
    else todo.push(from);
    while (todo.length > 0) {
      const place = todo.pop()!;
      const { instance, rule, index } = this.#at(place);
      const element = this.#rules[rule]![index]!;
      if (startsTerminal(element)) reached.push(place);
      else if (element >= 0) {
        const child = this.#child(instance, place, element);
        references.push([instance, child]);
        enter(child);
      } else if (!exited.has(instance)) {
        exited.add(instance);
        const { exit } = this.#instanceUnit[instance]!;
        if (exit >= 0) todo.push(exit);
      }
    }
    const paths = this.#referencePaths(references);
    const stacks: Stacks = new Map();
    for (const place of reached) {
      const weight = paths.get(this.#placeInstance[place]!) ?? 1;
      stacks.set(place, (stacks.get(place) ?? 0) + weight);
    }
    return stacks;
  }

  /**
   * How many ways each instance was reached through references, within one advance: 1 for one
   * reached other than by a reference (where the advance started, or where an instance returned
   * to), and for a referred one the sum over the references to it of their referring instance's
   * ways. References that close a cycle add nothing.
   */
  #referencePaths(references: readonly [number, number][]): Map<number, number> {
    const paths = new Map<number, number>();
    if (references.length === 0) return paths;
    const incoming = new Map<number, number>();
    const outgoing = new Map<number, number[]>();
    for (const [from, to] of references) {
      incoming.set(to, (incoming.get(to) ?? 0) + 1);
      outgoing.set(from, [...(outgoing.get(from) ?? []), to]);
    }
    // Kahn's order from the instances no reference leads to; what a cycle keeps unvisited counts 1.
    const ready = [...outgoing.keys()].filter((instance) => !incoming.has(instance));
    for (const instance of ready) paths.set(instance, 1);
    while (ready.length > 0) {
      const instance = ready.pop()!;
      const ways = paths.get(instance) ?? 1;
      for (const to of outgoing.get(instance) ?? []) {
        paths.set(to, (paths.get(to) ?? 0) + ways);
        const left = incoming.get(to)! - 1;
        incoming.set(to, left);
        if (left === 0) ready.push(to);
      }
    }
    this.#work += references.length;
    return paths;
  }
}

/** The stacks with their weights divided by a factor, in order of place, as text. */
function stacksKey(stacks: Stacks, factor: number): string {
  const places = [...stacks.keys()].sort((a, b) => a - b);
  let key = "";
  for (const place of places) key += `${place}*${stacks.get(place)! / factor},`;
  return key;
}

/** A key of `[from, to)` to follow a run of: one with long runs if there is one, else `from`. */
function runKey(from: number, to: number): number {
  return LONG_RUN_KEYS.find((key) => key >= from && key < to) ?? from;
}

/** The greatest common divisor of two whole numbers (0 with 0 gives 0). */
function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The index of the first of sorted numbers that is at least `value` (their length if none). */
function firstAtLeast(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}
