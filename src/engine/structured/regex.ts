/**
 * A practical subset of ECMAScript regular expressions (JSON Schema `pattern`) turned into
 * GBNF for the inside of a JSON string: literals, `.`, classes with ranges and negation,
 * escapes (`\d \w \s \D \W \S`, `\n \t \r \f \v \0`, `\xHH`, `\uHHHH`, escaped punctuation,
 * Unicode properties `\p{…}` and `\P{…}`),
 * groups (capturing, `(?:…)`, named), alternation, `? * + {m} {m,} {m,n}` (lazy forms match
 * the same strings), and `^`/`$` at the ends of the pattern or of its top-level branches.
 * A branch without `^` or `$` may have any text before or after it, as JSON Schema searches
 * for the pattern. Lookaheads go where the rest of their branch follows them to its end (see
 * pattern_automaton.ts). Backreferences, lookbehind and word boundaries raise a {@link SchemaError}.
 * Each character the pattern produces is written as the JSON string must hold it.
 *
 * @module
 */

import {
  type CharSet,
  charSet,
  type CodeRange,
  complement,
  gbnfLiteral,
  jsonCharSetExpr,
  jsonCharText,
  narrowed,
  widened,
} from "./charset.ts";
import { SchemaError } from "./errors.ts";
import { unicodePropertySet } from "./unicode_properties.ts";
import { type LengthBounds, withShare, type WorkBudget } from "./dfa.ts";
import { patternRules } from "./pattern_automaton.ts";
import { fitLongest, impliedLengths, lookaheadLengths } from "./pattern_lengths.ts";
import { group, oneOf, repeat, type RuleSet } from "./rules.ts";

const DIGIT: CharSet = [[0x30, 0x39]];
const WORD: CharSet = charSet([[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]]);
/** ECMAScript's `\s`: its white space and line terminators. */
const SPACE: CharSet = charSet([
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
]);
/** `.`: anything but line terminators. */
const DOT: CharSet = complement(charSet([[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]]));

const CLASS_ESCAPES: Readonly<Record<string, CharSet>> = {
  d: DIGIT,
  D: complement(DIGIT),
  w: WORD,
  W: complement(WORD),
  s: SPACE,
  S: complement(SPACE),
};

const CONTROL_ESCAPES: Readonly<Record<string, number>> = {
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  f: 0x0c,
  v: 0x0b,
  0: 0x00,
};

/** Deepest nesting of groups in a pattern. */
const MAX_GROUP_DEPTH = 32;

/**
 * Longest pattern parsed, in UTF-16 code units. A 1.5 MB pattern took 1.5 s of the event loop,
 * then overflowed the stack; the longest format's pattern has some 600 characters.
 */
export const MAX_PATTERN_LENGTH = 4_096;

/** A parsed pattern. */
export type PatternNode =
  | { kind: "chars"; set: CharSet }
  | { kind: "seq"; items: PatternNode[] }
  | { kind: "alt"; branches: PatternNode[] }
  | { kind: "repeat"; node: PatternNode; min: number; max: number | undefined }
  | Lookahead;

/**
 * `(?=x)` or `(?!x)`: the text from here on starts (or does not start) with a string of the
 * branches, each followed by any text unless it ends with `$`.
 */
export interface Lookahead {
  kind: "look";
  positive: boolean;
  branches: PatternBranch[];
}

/** A top-level branch of a pattern, with whether it is anchored at its start and its end. */
export interface PatternBranch {
  node: PatternNode;
  start: boolean;
  end: boolean;
}

/** Parses one pattern; not reusable. */
class PatternParser {
  readonly #src: string;
  readonly #path: string;
  #pos = 0;
  #depth = 0;
  /** Negative lookaheads around the place being read. */
  #negations = 0;

  constructor(src: string, path: string) {
    this.#src = src;
    this.#path = path;
  }

  #fail(reason: string): never {
    throw new SchemaError("pattern", this.#path, `${reason} (in /${this.#src}/)`);
  }

  #peek(): string | undefined {
    return this.#src[this.#pos];
  }

  /** Top-level branches, each with whether it was anchored at its start and end. */
  branches(): PatternBranch[] {
    return this.#branches(false);
  }

  /**
   * Branches up to the end of the pattern, or inside a lookahead up to its `)` (where each
   * starts where the lookahead stands, and may end with `$`).
   */
  #branches(inLookahead: boolean): PatternBranch[] {
    const out: PatternBranch[] = [];
    while (true) {
      const start = inLookahead || this.#peek() === "^";
      if (!inLookahead && start) this.#pos++;
      const node = this.#sequence(true);
      let end = false;
      if (this.#peek() === "$") {
        this.#pos++;
        end = true;
      }
      out.push({ node, start, end });
      if (inLookahead ? this.#peek() === ")" : this.#pos >= this.#src.length) return out;
      if (this.#peek() === "|") this.#pos++;
      else if (this.#peek() === ")") this.#fail(`unmatched ')' at ${this.#pos}`);
      else if (this.#pos >= this.#src.length) this.#fail(`a lookahead is not closed`);
      else this.#fail(`'^' and '$' are supported only at the ends of the pattern`);
    }
  }

  #alternation(): PatternNode {
    const branches = [this.#sequence(false)];
    while (this.#peek() === "|") {
      this.#pos++;
      branches.push(this.#sequence(false));
    }
    return branches.length === 1 ? branches[0]! : { kind: "alt", branches };
  }

  #sequence(top: boolean): PatternNode {
    const items: PatternNode[] = [];
    while (this.#pos < this.#src.length) {
      const c = this.#peek()!;
      if (c === "|" || c === ")") break;
      if (c === "$" && top) break;
      if (c === "^" || c === "$") {
        this.#fail(`'^' and '$' are supported only at the ends of the pattern`);
      }
      items.push(this.#quantified(this.#atom()));
    }
    return items.length === 1 ? items[0]! : { kind: "seq", items };
  }

  #quantified(node: PatternNode): PatternNode {
    const c = this.#peek();
    let min: number;
    let max: number | undefined;
    if (c === "*") [min, max] = [0, undefined];
    else if (c === "+") [min, max] = [1, undefined];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      const match = /^\{(\d+)(,(\d*))?\}/.exec(this.#src.slice(this.#pos));
      if (!match) return node;
      min = Number(match[1]);
      max = match[2] === undefined ? min : match[3] === "" ? undefined : Number(match[3]);
      if (max !== undefined && max < min) {
        this.#fail(`{${min},${max}} has its minimum above its maximum`);
      }
      this.#pos += match[0].length - 1;
    } else return node;
    this.#pos++;
    if (this.#peek() === "?") this.#pos++; // lazy: matches the same strings
    const next = this.#src.slice(this.#pos);
    if (/^[*+?]/.test(next) || /^\{\d+(,\d*)?\}/.test(next)) {
      this.#fail(`a quantifier follows a quantifier at ${this.#pos}`);
    }
    return { kind: "repeat", node, min, max };
  }

  #atom(): PatternNode {
    const c = this.#peek()!;
    if (c === "(") return this.#group();
    if (c === "[") return { kind: "chars", set: this.#fitted(this.#class()) };
    if (c === ".") {
      this.#pos++;
      return { kind: "chars", set: DOT };
    }
    if (c === "\\") return { kind: "chars", set: this.#fitted(this.#escape(false)) };
    if ("*+?".includes(c)) this.#fail(`'${c}' at ${this.#pos} repeats nothing`);
    const code = this.#src.codePointAt(this.#pos)!;
    this.#pos += code > 0xffff ? 2 : 1;
    return { kind: "chars", set: [[code, code]] };
  }

  #group(): PatternNode {
    if (++this.#depth > MAX_GROUP_DEPTH) {
      this.#fail(`groups nest more than ${MAX_GROUP_DEPTH} deep`);
    }
    this.#pos++; // (
    let node: PatternNode | undefined;
    if (this.#peek() === "?") {
      const rest = this.#src.slice(this.#pos);
      if (rest.startsWith("?:")) this.#pos += 2;
      else if (/^\?<[A-Za-z_$][\w$]*>/.test(rest)) {
        this.#pos = this.#src.indexOf(">", this.#pos) + 1;
      } else if (rest.startsWith("?=") || rest.startsWith("?!")) {
        this.#pos += 2;
        const positive = rest[1] === "=";
        if (!positive) this.#negations++;
        node = { kind: "look", positive, branches: this.#branches(true) };
        if (!positive) this.#negations--;
      } else this.#fail(`lookbehind and other (?…) groups are not supported`);
    }
    node ??= this.#alternation();
    if (this.#peek() !== ")") this.#fail(`a group is not closed`);
    this.#pos++;
    this.#depth--;
    return node;
  }

  /** An escape at `\`; inside a class `\b` is a backspace. */
  #escape(inClass: boolean): CharSet {
    this.#pos++; // backslash
    const c = this.#peek();
    if (c === undefined) this.#fail("the pattern ends with a backslash");
    this.#pos++;
    const named = CLASS_ESCAPES[c];
    if (named) return named;
    const control = CONTROL_ESCAPES[c];
    if (control !== undefined && !(c === "0" && /\d/.test(this.#peek() ?? ""))) {
      return [[control, control]];
    }
    if (c === "b" && inClass) return [[0x08, 0x08]];
    if (c === "p" || c === "P") return this.#property(c === "P");
    if (c === "x" || c === "u") {
      const digits = c === "x" ? 2 : 4;
      const hex = this.#src.slice(this.#pos, this.#pos + digits);
      if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.#fail(`bad \\${c} escape`);
      this.#pos += digits;
      const code = parseInt(hex, 16);
      return charSet([[code, code]]);
    }
    if (/[A-Za-z0-9]/.test(c)) {
      this.#fail(`the escape \\${c} (backreference, word boundary or similar) is not supported`);
    }
    const code = c.codePointAt(0)!;
    return [[code, code]];
  }

  /**
   * A set as a class can hold it: a larger one narrowed where the pattern takes its characters,
   * widened inside an odd number of negative lookaheads, where it refuses them, so the grammar
   * takes only strings the pattern takes.
   */
  #fitted(set: CharSet): CharSet {
    return this.#negations % 2 === 0 ? narrowed(set) : widened(set);
  }

  /** A Unicode property escape after `\p` or `\P`: `{Name}` or `{Name=Value}`. */
  #property(negated: boolean): CharSet {
    const braces = /^\{([^}]*)\}/.exec(this.#src.slice(this.#pos));
    if (!braces) this.#fail(`\\${negated ? "P" : "p"} needs a property in braces, e.g. \\p{L}`);
    this.#pos += braces[0].length;
    const set = unicodePropertySet(braces[1]!);
    if (!set) {
      this.#fail(
        `\\p{${braces[1]}} is not a Unicode property of characters (e.g. L, Lu, N, ` +
          "Script=Greek, Emoji, Extended_Pictographic)",
      );
    }
    return negated ? complement(set) : set;
  }

  #class(): CharSet {
    this.#pos++; // [
    const negated = this.#peek() === "^";
    if (negated) this.#pos++;
    const ranges: CodeRange[] = [];
    while (this.#peek() !== "]") {
      if (this.#pos >= this.#src.length) this.#fail("a character class is not closed");
      const from = this.#classAtom();
      if (this.#peek() === "-" && this.#src[this.#pos + 1] !== "]" && from.single) {
        this.#pos++;
        const to = this.#classAtom();
        if (!to.single) this.#fail("a class range ends in a class escape");
        const [start, end] = [from.set[0], to.set[0]];
        // A UTF-16 surrogate (\ud800) is no character: its set is empty.
        if (!start || !end) this.#fail("a class range starts or ends at a UTF-16 surrogate");
        const [a, b] = [start[0], end[0]];
        if (a > b) this.#fail("a class range is out of order");
        ranges.push([a, b]);
      } else ranges.push(...from.set);
    }
    this.#pos++; // ]
    const set = charSet(ranges);
    return negated ? complement(set) : set;
  }

  #classAtom(): { set: CharSet; single: boolean } {
    if (this.#peek() === "\\") {
      const letter = this.#src[this.#pos + 1] ?? "";
      const set = this.#escape(true);
      return { set, single: !(letter in CLASS_ESCAPES) && letter !== "p" && letter !== "P" };
    }
    const code = this.#src.codePointAt(this.#pos)!;
    this.#pos += code > 0xffff ? 2 : 1;
    return { set: [[code, code]], single: true };
  }
}

/**
 * Parses a pattern into its top-level branches.
 *
 * @param text An ECMAScript regular expression, as JSON Schema's `pattern`.
 * @param path Where in the schema, for errors.
 * @returns Its top-level branches, each with whether it is anchored at its start and end (an
 *   unanchored side takes any text, as JSON Schema searches for the pattern).
 * @throws {SchemaError} naming `pattern` for syntax outside the supported subset, or a pattern
 *   longer than {@link MAX_PATTERN_LENGTH}.
 * @example
 * ```ts
 * parsePattern("^[a-z]+", ""); // [{ node: { kind: "repeat", … }, start: true, end: false }]
 * ```
 */
export function parsePattern(text: string, path: string): PatternBranch[] {
  if (text.length > MAX_PATTERN_LENGTH) {
    throw new SchemaError(
      "pattern",
      path,
      `has ${text.length} characters; at most ${MAX_PATTERN_LENGTH} are supported, shorten it`,
    );
  }
  return new PatternParser(text, path).branches();
}

/**
 * Writes a parsed node as GBNF, as it reads. A set of characters that takes several alternatives
 * (escapes beside plain characters) goes in a rule, which a repetition repeats as one item:
 * llama.cpp refuses a repetition whose nested groups, multiplied by its count, pass 2,000.
 */
function emit(node: PatternNode, path: string, charRule: (expr: string) => string): string {
  switch (node.kind) {
    case "chars": {
      if (node.set.length === 0) {
        throw new SchemaError("pattern", path, "has a character class that matches nothing");
      }
      const [a, b] = node.set[0]!;
      // A control character has several spellings (`\n`, `\u000a`, `\u000A`): a set takes them all.
      if (node.set.length === 1 && a === b && a >= 0x20) return gbnfLiteral(jsonCharText(a));
      const expr = jsonCharSetExpr(node.set);
      return group(expr) === expr ? expr : charRule(expr);
    }
    case "seq":
      return node.items.length === 0
        ? '""'
        : node.items.map((n) => group(emit(n, path, charRule))).join(" ");
    case "alt":
      return oneOf(node.branches.map((n) => emit(n, path, charRule)));
    case "repeat":
      return repeat(emit(node.node, path, charRule), node.min, node.max, "pattern", path);
    case "look":
      throw new SchemaError(
        "pattern",
        path,
        "has a lookahead that the rest of its branch does not follow to its end (in a repetition, " +
          "or before what follows a group), or too large a pattern around it",
      );
  }
}

/** Where a pattern's grammar goes, and what it is for. */
export interface PatternContext {
  /** `minLength` and `maxLength`, in characters. */
  lengths: LengthBounds;
  /** Where the automaton's rules go. */
  rules: RuleSet;
  /** Name hint for its rules. */
  hint: string;
  /** The schema's work left for automata (`AUTOMATON_WORK` of pattern_automaton.ts). */
  budget: WorkBudget;
  /** GBNF for one character of any string, for an unanchored pattern written as it reads. */
  anyChar: () => string;
  /** Where in the schema, for errors. */
  path: string;
  /** The keyword the pattern came from, for errors: `pattern`, or `format` for a format's. */
  keyword: string;
}

/**
 * GBNF for the inside of a JSON string (the quotes not included) that matches every one of some
 * patterns and length bounds. The patterns are written as one deterministic automaton, a rule
 * per state (see {@link ./pattern_automaton.ts}); where that would be too large, a lone pattern
 * whose lengths are none or follow from it is written as it reads, which llama.cpp may find
 * costly to match where its parts overlap (the grammar validator refuses what costs too much).
 *
 * @param patterns ECMAScript regular expressions, as JSON Schema's `pattern`: a format's and a
 *   schema's own, or one.
 * @param context Lengths, rules and names.
 * @returns A GBNF expression.
 * @throws {SchemaError} for syntax outside the supported subset, when no string matches them all
 *   and the lengths, or when they need too large a grammar together.
 * @example
 * ```ts
 * patternToGbnf(["^[a-z]{2,4}-\\d+$"], context); // the first state's rule, a rule per state
 * ```
 */
export function patternToGbnf(patterns: readonly string[], context: PatternContext): string {
  const { rules, hint, budget, anyChar, path, keyword } = context;
  const parsed = patterns.map((text) => ({
    text,
    branches: parsePattern(text, path),
  }));
  // Read as lengths, a lookahead leaves out some strings: only where the patterns as they are
  // take too large a grammar, with a quarter of the work.
  const lowered = lookaheadsAsLengths(parsed, context.lengths, budget);
  let start = withShare(
    budget,
    lowered ? 0.25 : 1,
    (share) => automatonRules(parsed, context.lengths, { ...context, budget: share }),
  );
  if (start === undefined && lowered) {
    // No string of the lowered lengths is no proof that the pattern matches none.
    start = automatonRules(lowered.parsed, lowered.lengths, context, false) ?? undefined;
  }
  if (start === null) {
    const bounded = context.lengths.min !== undefined || context.lengths.max !== undefined;
    const what = parsed.length > 1 ? "match no string together" : "matches no string";
    throw new SchemaError(keyword, path, bounded ? `${what} of the allowed lengths` : what);
  }
  if (start !== undefined) return start;
  if (parsed.length > 1) {
    throw new SchemaError(keyword, path, "together need too large a grammar");
  }
  const implied = impliedLengths(parsed[0]!.branches, context.lengths);
  if (!implied && (context.lengths.min !== undefined || context.lengths.max !== undefined)) {
    throw new SchemaError(
      keyword,
      path,
      "together with minLength or maxLength needs too large a grammar; lower or drop them",
    );
  }
  const charRule = (expr: string) => rules.add(`${hint}-char`, expr);
  return oneOf(parsed[0]!.branches.map(({ node, start, end }) => {
    const parts = [emit(node, path, charRule)];
    if (!start) parts.unshift(`${anyChar()}*`);
    if (!end) parts.push(`${anyChar()}*`);
    return parts.filter((p) => p !== '""').join(" ") || '""';
  }));
}

/**
 * Where counting the length up to `maxLength` takes too large a grammar: the rules of the
 * patterns with one of them bounded under it ({@link fitLongest}), so that only `minLength` is
 * counted, if any. An email format under a `maxLength` of 64 keeps shorter atoms and labels
 * instead of 16 characters in all.
 */
/** A parsed pattern, with its text (which names its automaton in the cache). */
interface ParsedPattern {
  text: string;
  branches: readonly PatternBranch[];
}

/**
 * The patterns as one automaton's rules: lengths counted in exactly, else the patterns fitted
 * under maxLength, else maxLength halved, each way leaving work for the next.
 *
 * @param exactFirst Whether to try counting the lengths exactly first (the lengths of a
 *   lookahead read as lengths are too many to count: it goes to fitting at once).
 * @returns The start rule; null when no string meets them; undefined when too large.
 */
function automatonRules(
  parsed: readonly ParsedPattern[],
  bounds: LengthBounds,
  context: PatternContext,
  exactFirst = true,
): string | null | undefined {
  const { rules, hint, budget } = context;
  const implied = parsed.some(({ branches }) => impliedLengths(branches, bounds));
  const lengths = implied ? {} : bounds;
  const counted = lengths.min !== undefined || lengths.max !== undefined;
  let start: string | null | undefined;
  if (exactFirst || !counted) {
    start = withShare(
      budget,
      counted ? 0.5 : 1,
      (share) => patternRules(parsed, lengths, rules, hint, share, false),
    );
  }
  if (start === undefined && counted) {
    start = withShare(
      budget,
      0.5,
      (share) => fittedRules(parsed, lengths, { ...context, budget: share }),
    );
  }
  if (start === undefined && counted) {
    start = patternRules(parsed, lengths, rules, hint, budget, true);
  }
  return start;
}

/**
 * The patterns with each lookahead that only bounds the length (see `lookaheadLengths`) read as
 * lengths, for when they are too large as they are; undefined where none is.
 */
function lookaheadsAsLengths(
  parsed: readonly ParsedPattern[],
  bounds: LengthBounds,
  budget: WorkBudget,
): { parsed: ParsedPattern[]; lengths: LengthBounds } | undefined {
  let lengths = bounds;
  let any = false;
  const out = parsed.map(({ text, branches }) => {
    const lowered = lookaheadLengths(branches, lengths, budget);
    if (!lowered) return { text, branches };
    [lengths, any] = [lowered.lengths, true];
    return { text: `${text} with its lookahead as lengths`, branches: lowered.branches };
  });
  return any ? { parsed: out, lengths } : undefined;
}

function fittedRules(
  parsed: readonly ParsedPattern[],
  { min, max }: LengthBounds,
  { rules, hint, budget }: PatternContext,
): string | undefined {
  if (max === undefined) return undefined;
  for (let i = 0; i < parsed.length; i++) {
    const branches = fitLongest(parsed[i]!.branches, max);
    if (branches === undefined) continue;
    const fitted = [...parsed];
    fitted[i] = { text: `${parsed[i]!.text} under ${max}`, branches };
    const lengths = impliedLengths(branches, { min }) ? {} : { min };
    const start = patternRules(fitted, lengths, rules, hint, budget, false);
    // null: the shortened pattern cannot meet minLength, which the whole one may: not a refusal.
    if (start) return start;
  }
  return undefined;
}
