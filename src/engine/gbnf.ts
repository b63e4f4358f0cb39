/**
 * GBNF grammar validation, run before a request's grammar reaches llama.cpp. llama.cpp's
 * parser (`llama_grammar_parser::parse`, v0.5.0) recurses once per parenthesis, loops forever
 * on `x{5,2}`, and expands repetitions into copies and generated rules with no bound on
 * memory. After parsing, its left-recursion check misses rules that are empty only through
 * other rules (its stack search then grows forever), re-walks shared rules without a memo,
 * and its search for the next character multiplies through nullable rules: a few hundred
 * bytes can block it for minutes. This module scans the same syntax left to right with an
 * explicit stack of open groups (no recursion the input can deepen), mirrors llama.cpp's
 * symbol table, rule ids and repetition rewrite (`S{m,n}` becomes m copies of S and n-m
 * generated optional rules) so that it accepts what llama.cpp accepts, and counts the symbols
 * that rewrite creates before creating them. It then checks for undefined rules and the start
 * rule, runs llama.cpp's left-recursion check and bounds its visits, rejects the left
 * recursion llama.cpp misses where that would hang it, and bounds the parse stacks llama.cpp
 * builds per step; these passes over the rules are iterative and linear. Last, it bounds the
 * stacks llama.cpp's sampler tries per candidate token where the grammar is ambiguous
 * (`gbnf_paths.ts`), a search over the grammar of bounded size. Every rejection is a
 * {@link GrammarError}, positioned at a line:column where the problem has a place.
 *
 * @module
 */

import { GenerationError } from "./errors.ts";
import { searchPaths } from "./gbnf_paths.ts";
import {
  ALT,
  classKeys,
  components,
  consumes,
  CONTINUATION,
  END,
  type KeyRanges,
  reachableRules,
  type RuleEdge,
  terminalCode,
  TOKEN_RANGES,
} from "./gbnf_rules.ts";

/** Bounds on what a grammar may cost; see {@link DEFAULT_GRAMMAR_LIMITS} for the defaults. */
export interface GrammarLimits {
  /**
   * Longest grammar text, in UTF-8 bytes: a forced call to one of 128 tools with a few
   * parameters each takes about 90 KB. Default 262144 (256 KiB).
   */
  maxBytes: number;
  /** Deepest nesting of parentheses. Default 64. */
  maxDepth: number;
  /** Largest count in `{m}`, `{m,}` or `{m,n}`. Default 1000. */
  maxRepetition: number;
  /**
   * Most characters and ranges one class lists: llama.cpp compares a character with each of
   * them in turn, for every candidate token a stack tries (a class of 10,000 characters cost
   * 1.6 s per token on qwen2). Default 256.
   */
  maxClassItems: number;
  /**
   * Most symbols llama.cpp may hold after expanding groups and repetitions: every grammar
   * element (character, range bound, rule reference, alternative and rule end) of every rule,
   * plus the names llama.cpp makes for generated rules (the parent rule's name and a number)
   * at one symbol per 8 bytes, the size of an element. Default 100000.
   */
  maxExpandedSymbols: number;
  /**
   * Most parse stacks llama.cpp may build in one step to find the next character, from the
   * start rule or after any item. Rules that can be empty and start with each other multiply
   * them (`a ::= b b | ""` nested 20 deep blocks llama.cpp for minutes). Each of them scans
   * the whole vocabulary for every token (1,000 cost about 0.4 s per token with a 152k
   * vocabulary on 2 cores), so a forced call to one of up to 1,024 tools fits. Default 1024.
   */
  maxStackFanout: number;
  /**
   * Most parse stacks llama.cpp may try to check one candidate token's first 8 characters
   * against the grammar, counting a stack once per character. Where several stacks match the
   * same text (`("a"?){20}`, `("a" | "a" | "a" | "a")*`) it follows each of them without
   * merging, and their number multiplies with every character: `(" "?){24}` costs 15 s per
   * token with a 152k vocabulary, `(" "?){32}` hours. `Infinity` skips the count. Default
   * 100000.
   */
  maxSearchPaths: number;
}

/**
 * The limits {@link validateGrammar} applies to what the caller leaves out.
 *
 * @example
 * ```ts
 * validateGrammar(grammar, { maxBytes: DEFAULT_GRAMMAR_LIMITS.maxBytes * 2 });
 * ```
 */
export const DEFAULT_GRAMMAR_LIMITS: Readonly<GrammarLimits> = Object.freeze({
  maxBytes: 256 * 1024,
  maxDepth: 64,
  maxRepetition: 1000,
  maxClassItems: 256,
  maxExpandedSymbols: 100_000,
  maxStackFanout: 1024,
  maxSearchPaths: 100_000,
});

/** Options of {@link validateGrammar} that are not limits. */
export interface GrammarOptions {
  /** Name of the start rule (llama.cpp's `grammar_root`). Default `"root"`. */
  root?: string;
  /**
   * Whether a token written by its text, e.g. `<|im_end|>` (angle brackets included), is
   * exactly one token of the model's vocabulary, as llama.cpp requires. Default: not checked,
   * so only the syntax of such a token is validated.
   */
  isSingleToken?: (piece: string) => boolean;
  /**
   * Whether a token, by id (`<[2]>`) or by its text (`<|im_end|>`), ends generation: llama.cpp's
   * grammar never lets such a token through, so a grammar that asks for one allows nothing
   * there. Default: not checked.
   */
  endsGeneration?: (token: number | string) => boolean;
}

/** Which check a grammar failed. */
export type GrammarErrorKind =
  | "syntax"
  | "repetition"
  | "too_deep"
  | "too_large"
  | "undefined_rule"
  | "missing_root"
  | "left_recursion";

/** A position in the grammar text, both 1-based; columns count characters. */
export interface GrammarPosition {
  /** Line number. */
  line: number;
  /** Column number. */
  column: number;
}

/**
 * A grammar that llama.cpp would reject, or that could hang or exhaust it. A
 * {@link GenerationError} with code `invalid_request`, so the server answers HTTP 400.
 *
 * @example
 * ```ts
 * try {
 *   validateGrammar('root ::= "a"{5,2}');
 * } catch (error) {
 *   // "repetition", { line: 1, column: 13 }
 *   if (error instanceof GrammarError) console.log(error.kind, error.position);
 * }
 * ```
 */
export class GrammarError extends GenerationError {
  /** Which check failed. */
  readonly kind: GrammarErrorKind;
  /** What is wrong and what to do, without the position. */
  readonly reason: string;
  /** Where in the grammar, when the problem has a place. */
  readonly position: GrammarPosition | undefined;

  /**
   * @param kind Which check failed.
   * @param reason What is wrong and what to do, without the position.
   * @param position Where in the grammar.
   */
  constructor(kind: GrammarErrorKind, reason: string, position?: GrammarPosition) {
    const where = position === undefined ? "" : ` at ${position.line}:${position.column}`;
    super("invalid_request", `Invalid grammar${where}: ${reason}`);
    this.name = "GrammarError";
    this.kind = kind;
    this.reason = reason;
    this.position = position;
  }
}

/** What {@link validateGrammar} learned about a valid grammar. */
export interface GrammarSummary {
  /** The start rule's name. */
  root: string;
  /** Names of the rules the grammar defines, in order of first definition. */
  rules: string[];
  /** Rules llama.cpp will hold, including those it generates for groups and repetitions. */
  ruleCount: number;
  /** Symbols after expansion, as counted for {@link GrammarLimits.maxExpandedSymbols}. */
  expandedSymbols: number;
  /** Most parse stacks llama.cpp builds in one step ({@link GrammarLimits.maxStackFanout}). */
  stackFanout: number;
  /** Most parse stacks tried for one token ({@link GrammarLimits.maxSearchPaths}). */
  searchPaths: number;
}

/**
 * Checks a GBNF grammar the way llama.cpp v0.5.0 parses it, within limits, in time linear in
 * its length plus its expanded size and without recursion.
 *
 * @param text The grammar, e.g. `root ::= "yes" | "no"`.
 * @param limits Bounds; missing fields take {@link DEFAULT_GRAMMAR_LIMITS}.
 * @param options The start rule's name and an optional vocabulary check for `<token>`s.
 * @returns The rule names, the expanded size and the search fan-out.
 * @throws {GrammarError} when llama.cpp would reject the grammar, or a limit is exceeded.
 * @example
 * ```ts
 * const summary = validateGrammar('root ::= answer "."\nanswer ::= "yes" | "no"');
 * summary.rules; // ["root", "answer"]
 * validateGrammar('root ::= "a"{5,2}'); // throws GrammarError: minimum above maximum
 * ```
 */
export function validateGrammar(
  text: string,
  limits: Partial<GrammarLimits> = {},
  options: GrammarOptions = {},
): GrammarSummary {
  const merged: GrammarLimits = { ...DEFAULT_GRAMMAR_LIMITS };
  for (const key of Object.keys(merged) as (keyof GrammarLimits)[]) {
    const value = limits[key];
    if (value !== undefined) merged[key] = value;
  }
  return new GrammarParser(text, merged, options).run(options.root ?? "root");
}

/** llama.cpp's `MAX_REPETITION_THRESHOLD`: it refuses larger counts and rule products. */
const LLAMA_REPETITION_THRESHOLD = 2000;
/** Largest value of `std::stoull`/`std::stoul` (64-bit); larger numbers make llama.cpp fail. */
const UINT64_MAX_DIGITS = "18446744073709551615";
/** Bytes of one `llama_grammar_element`, the unit generated rule names are counted in. */
const ELEMENT_BYTES = 8;
/**
 * Longest token written by its text (`<|im_end|>`, angle brackets included), in characters: the
 * vocabulary is asked whether it is one token and whether it ends generation, and each question
 * tokenizes it on the event loop. Real tokens are far shorter (a few dozen characters at most).
 */
const MAX_TOKEN_TEXT_CHARS = 256;

/** A symbol of llama.cpp's `symbol_ids`: a rule name written in the grammar or generated. */
interface SymbolInfo {
  /** The written name, or for a generated rule the name of the rule it was made for. */
  name: string;
  /** Whether llama.cpp generated it (its real name is `name_id`). */
  generated: boolean;
  /** Offset of its first reference or definition, or of the construct that generated it. */
  origin: number;
  /** Offset of its last definition, for a written rule that has one. */
  definedAt?: number;
}

/** An open rule or group: llama.cpp's `parse_alternates` plus its `parse_sequence` state. */
interface Frame {
  /** Rule id the alternatives are stored under. */
  ruleId: number;
  /** The rule's elements so far. */
  rule: number[];
  /** Whether newlines are spaces here (inside parentheses). */
  nested: boolean;
  /** Where the last item starts, for a repetition operator (`last_sym_start`). */
  lastItem: number;
  /** Rules the last item made, for llama.cpp's repetition product check (`n_prev_rules`). */
  lastItemRules: number;
  /** Offset of the opening parenthesis, for a group. */
  open: number;
  /** Symbols that existed before this group's id was generated. */
  symbolsBefore: number;
}

const CODE_0 = 48;
const CODE_9 = 57;

function isDigit(code: number): boolean {
  return code >= CODE_0 && code <= CODE_9;
}

/** llama.cpp's `is_word_char`: ASCII letters, digits and `-`. */
function isWordChar(code: number): boolean {
  return (code >= 97 && code <= 122) || (code >= 65 && code <= 90) || code === 45 ||
    isDigit(code);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isHexDigit(code: number): boolean {
  return isDigit(code) || (code >= 97 && code <= 102) || (code >= 65 && code <= 70);
}

/** Whether a rule has an empty alternative of its own (llama.cpp's `rules_may_be_empty`). */
function directlyEmpty(rule: readonly number[]): boolean {
  let atStart = true;
  for (const element of rule) {
    if (element === ALT || element === END) {
      if (atStart) return true;
      atStart = true;
    } else atStart = false;
  }
  return false;
}

/** A "can start with" edge of a rule: a reference that may come first in an alternative. */
interface LeftEdge extends RuleEdge {
  /** Whether nothing follows the reference in its alternative (llama.cpp pushes nothing). */
  tail: boolean;
}

/**
 * "Can start with" edges: rule r -> s for each reference to s that follows only references
 * to rules `passes` lets through, in one of r's alternatives (with repeats).
 */
function leftEdges(rules: readonly number[][], passes: (s: number) => boolean): LeftEdge[][] {
  return rules.map((rule) => {
    const out: LeftEdge[] = [];
    let open = true;
    for (let i = 0; i < rule.length; i++) {
      const element = rule[i]!;
      if (element === ALT || element === END) open = true;
      else if (!open) continue;
      else if (consumes(element)) open = false;
      else {
        const after = rule[i + 1];
        out.push({ to: element, tail: after === ALT || after === END });
        if (!passes(element)) open = false;
      }
    }
    return out;
  });
}

/**
 * Sums `value` over the references of each alternative's prefix that `passes` lets through
 * (and the first one it stops at), adding `terminal` when that prefix reaches a terminal.
 */
function prefixSum(
  rule: readonly number[],
  value: (s: number) => number,
  passes: (s: number) => boolean,
  terminal: number,
): number {
  let sum = 0;
  let open = true;
  for (const element of rule) {
    if (element === ALT || element === END) open = true;
    else if (!open) continue;
    else if (consumes(element)) {
      sum += terminal;
      open = false;
    } else {
      sum += value(element);
      if (!passes(element)) open = false;
    }
  }
  return sum;
}

/** Shows one character of the grammar in a message. */
function describe(text: string, pos: number): string {
  if (pos >= text.length) return "the end of the grammar";
  const char = String.fromCodePoint(text.codePointAt(pos) ?? 0);
  if (char === "\n") return "a newline";
  if (char === "\r") return "a carriage return";
  if (char === "\t") return "a tab";
  return `'${char}'`;
}

/** Index of the first UTF-16 unit past `maxBytes` of UTF-8, or -1 when the text fits. */
function utf8Overflow(text: string, maxBytes: number): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        if (bytes > maxBytes) return i;
        i++;
        continue;
      }
      bytes += 3;
    } else bytes += 3;
    if (bytes > maxBytes) return i;
  }
  return -1;
}

/** One grammar check; not reusable. */
class GrammarParser {
  readonly #text: string;
  readonly #limits: GrammarLimits;
  readonly #isSingleToken: ((piece: string) => boolean) | undefined;
  readonly #endsGeneration: ((token: number | string) => boolean) | undefined;
  /** llama.cpp's `symbol_ids` for written names (generated names cannot collide: they hold `_`). */
  readonly #ids = new Map<string, number>();
  /** Every symbol by id; its length is `symbol_ids.size()`. */
  readonly #symbols: SymbolInfo[] = [];
  /** llama.cpp's `rules`, by id; holes are rules referenced but not (yet) defined. */
  readonly #rules: (number[] | undefined)[] = [];
  /** Written rule names in order of first definition. */
  readonly #defined: string[] = [];
  readonly #definedSet = new Set<string>();
  /** What each terminal matches, by terminal index (see `gbnf_rules.ts`). */
  readonly #terminals: KeyRanges[] = [];
  /** Terminal index by its keys, so that equal terminals share an entry. */
  readonly #terminalIds = new Map<string, number>();
  #spent = 0;

  constructor(text: string, limits: GrammarLimits, options: GrammarOptions) {
    this.#text = text;
    this.#limits = limits;
    this.#isSingleToken = options.isSingleToken;
    this.#endsGeneration = options.endsGeneration;
  }

  run(root: string): GrammarSummary {
    this.#checkSize();
    this.#parse();
    this.#checkDefined();
    if (this.#rules.length === 0) {
      throw new GrammarError("missing_root", "it defines no rules; write at least 'root ::= ...'");
    }
    const rootId = this.#rootId(root);
    if (rootId === undefined || this.#rules[rootId] === undefined) {
      throw new GrammarError(
        "missing_root",
        `it has no rule named '${root}'; define it with '${root} ::= ...'`,
      );
    }
    const { stackFanout, searchPaths } = this.#checkStructure(rootId);
    return {
      root,
      rules: [...this.#defined],
      ruleCount: this.#rules.length,
      expandedSymbols: this.#spent,
      stackFanout,
      searchPaths,
    };
  }

  // ---- errors and positions ----

  #position(offset: number): GrammarPosition {
    const text = this.#text;
    let line = 1;
    let column = 1;
    for (let i = 0; i < offset && i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code === 13 && text.charCodeAt(i + 1) === 10) continue; // \r\n counts at the \n
      if (code === 10 || code === 13) {
        line++;
        column = 1;
      } else if (!(code >= 0xdc00 && code <= 0xdfff && isHighSurrogate(text.charCodeAt(i - 1)))) {
        column++;
      }
    }
    return { line, column };
  }

  #fail(kind: GrammarErrorKind, reason: string, offset: number): never {
    throw new GrammarError(kind, reason, this.#position(offset));
  }

  #where(offset: number): string {
    const { line, column } = this.#position(offset);
    return `${line}:${column}`;
  }

  // ---- whole-text checks ----

  #checkSize(): void {
    const { maxBytes } = this.#limits;
    const over = utf8Overflow(this.#text, maxBytes);
    if (over >= 0) {
      this.#fail(
        "too_large",
        `it is longer than the limit of ${maxBytes} bytes (maxBytes); shorten it`,
        over,
      );
    }
    const nul = this.#text.indexOf("\0");
    if (nul >= 0) {
      this.#fail(
        "syntax",
        "it contains a NUL character; remove it (write \\x00 in a literal)",
        nul,
      );
    }
  }

  // ---- the symbol table and rules, as llama.cpp keeps them ----

  /** llama.cpp's `get_symbol_id`: the id of a written name, assigned on first sight. */
  #symbolId(name: string, at: number): number {
    let id = this.#ids.get(name);
    if (id === undefined) {
      id = this.#symbols.length;
      this.#ids.set(name, id);
      this.#symbols.push({ name, generated: false, origin: at });
    }
    return id;
  }

  /** llama.cpp's `generate_symbol_id`: a new id named after the rule being parsed. */
  #generateSymbol(ruleName: string, at: number): number {
    this.#symbols.push({ name: ruleName, generated: true, origin: at });
    return this.#symbols.length - 1;
  }

  /** The cost of a generated rule's name (`ruleName_id`), in symbols. */
  #nameCost(ruleName: string, id: number): number {
    return Math.ceil((ruleName.length + 1 + String(id).length) / ELEMENT_BYTES);
  }

  #label(id: number): string {
    const symbol = this.#symbols[id];
    if (symbol === undefined) return `#${id}`;
    return symbol.generated ? `${symbol.name}_${id}` : symbol.name;
  }

  /** llama.cpp's `add_rule`: stores (or replaces) a rule, growing the table densely. */
  #addRule(id: number, rule: number[]): void {
    const rules = this.#rules;
    while (rules.length <= id) rules.push(undefined);
    rules[id] = rule;
  }

  /** Counts symbols about to be created, refusing past the limit before creating them. */
  #spend(count: number, at: number): void {
    this.#spent += count;
    if (this.#spent > this.#limits.maxExpandedSymbols) {
      this.#fail(
        "too_large",
        `it expands to more than ${this.#limits.maxExpandedSymbols} symbols ` +
          "(maxExpandedSymbols); reduce repetition counts or split the grammar",
        at,
      );
    }
  }

  #push(frame: Frame, element: number, at: number): void {
    this.#spend(1, at);
    frame.rule.push(element);
  }

  /** The element code of a terminal that matches these keys. */
  #terminal(keys: KeyRanges): number {
    const key = keys.join(",");
    let index = this.#terminalIds.get(key);
    if (index === undefined) {
      index = this.#terminals.length;
      this.#terminals.push(keys);
      this.#terminalIds.set(key, index);
    }
    return terminalCode(index);
  }

  #rootId(root: string): number | undefined {
    const id = this.#ids.get(root);
    if (id !== undefined) return id;
    // llama.cpp looks the root up among generated names (`rule_12`) too.
    const match = /^(.+)_(\d+)$/.exec(root);
    if (match === null) return undefined;
    const generatedId = Number(match[2]);
    const symbol = this.#symbols[generatedId];
    return symbol?.generated && symbol.name === match[1] && String(generatedId) === match[2]
      ? generatedId
      : undefined;
  }

  // ---- scanning ----

  /** llama.cpp's `parse_space`: blanks, `#` comments, and newlines where allowed. */
  #skipSpace(pos: number, newlineOk: boolean): number {
    const text = this.#text;
    for (;;) {
      const code = text.charCodeAt(pos);
      if (code === 32 || code === 9 || (newlineOk && (code === 13 || code === 10))) pos++;
      else if (code === 35) {
        while (pos < text.length) {
          const c = text.charCodeAt(pos);
          if (c === 13 || c === 10) break;
          pos++;
        }
      } else return pos;
    }
  }

  #scanName(pos: number): number {
    const text = this.#text;
    while (isWordChar(text.charCodeAt(pos))) pos++;
    return pos;
  }

  #scanDigits(pos: number): number {
    const text = this.#text;
    while (isDigit(text.charCodeAt(pos))) pos++;
    return pos;
  }

  /** Parses digits like `std::stoull`, failing where llama.cpp's conversion would throw. */
  #number(start: number, end: number): number {
    const digits = this.#text.slice(start, end).replace(/^0+(?=\d)/, "");
    if (
      digits.length > UINT64_MAX_DIGITS.length ||
      (digits.length === UINT64_MAX_DIGITS.length && digits > UINT64_MAX_DIGITS)
    ) {
      this.#fail("syntax", `the number ${digits} does not fit in 64 bits`, start);
    }
    return Number(digits);
  }

  /** llama.cpp's `parse_char`: one character or escape of a literal or class. */
  #char(pos: number, opener: number): number {
    const text = this.#text;
    if (pos >= text.length) this.#unterminated(opener);
    const code = text.charCodeAt(pos);
    if (code === 92) { // backslash
      const escape = text[pos + 1];
      const hexDigits = hexDigitsOf(escape);
      if (hexDigits > 0) {
        for (let i = 0; i < hexDigits; i++) {
          if (!isHexDigit(text.charCodeAt(pos + 2 + i))) {
            this.#fail(
              "syntax",
              `expected ${hexDigits} hex digits after \\${escape}, found ${
                describe(text, pos + 2 + i)
              }`,
              pos + 2 + i,
            );
          }
        }
        const value = parseInt(text.slice(pos + 2, pos + 2 + hexDigits), 16);
        if (value === 0 && text[opener] === '"') {
          // llama.cpp reads a 0 in a literal as the end of its rule and aborts the process
          // while sampling ("Unexpected empty grammar stack").
          this.#fail("syntax", "a literal cannot contain the NUL character", pos);
        }
        return pos + 2 + hexDigits;
      }
      if (escape !== undefined && 'trn\\"[]-'.includes(escape)) return pos + 2;
      this.#fail(
        "syntax",
        `unknown escape ${
          escape === undefined ? "\\ at the end" : `\\${escape}`
        }; use \\x, \\u, \\U, \\t, \\n, \\r, \\\\, \\", \\[, \\] or \\-`,
        pos,
      );
    }
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(pos + 1);
      if (next >= 0xdc00 && next <= 0xdfff) return pos + 2;
    }
    return pos + 1;
  }

  /** The code point a character or escape of a literal or class stands for (see {@link #char}). */
  #charValue(pos: number): number {
    const text = this.#text;
    if (text.charCodeAt(pos) !== 92) return text.codePointAt(pos) ?? 0;
    const escape = text[pos + 1] ?? "";
    const hexDigits = hexDigitsOf(escape);
    if (hexDigits > 0) return parseInt(text.slice(pos + 2, pos + 2 + hexDigits), 16);
    return ESCAPED[escape] ?? escape.codePointAt(0) ?? 0;
  }

  #unterminated(opener: number): never {
    const literal = this.#text.charCodeAt(opener) === 34;
    this.#fail(
      "syntax",
      literal
        ? `the string literal never ends; close it with "`
        : "the character class never ends; close it with ]",
      opener,
    );
  }

  // ---- parsing ----

  /** llama.cpp's `parse`: space, then rules until the end. */
  #parse(): void {
    let pos = this.#skipSpace(0, true);
    while (pos < this.#text.length) pos = this.#parseRule(pos);
  }

  /** llama.cpp's `parse_rule`: `name ::= alternatives` and a newline or the end. */
  #parseRule(start: number): number {
    const text = this.#text;
    const nameEnd = this.#scanName(start);
    if (nameEnd === start) {
      this.#fail(
        "syntax",
        `expected a rule name (letters, digits and '-'), found ${describe(text, start)}`,
        start,
      );
    }
    const name = text.slice(start, nameEnd);
    const id = this.#symbolId(name, start);
    this.#symbols[id]!.definedAt = start;
    let pos = this.#skipSpace(nameEnd, false);
    if (!text.startsWith("::=", pos)) {
      this.#fail(
        "syntax",
        `expected '::=' after the rule name '${name}', found ${describe(text, pos)}`,
        pos,
      );
    }
    if (!this.#definedSet.has(name)) {
      this.#definedSet.add(name);
      this.#defined.push(name);
    }
    pos = this.#parseAlternates(this.#skipSpace(pos + 3, true), name, id);
    const code = text.charCodeAt(pos);
    if (code === 13) pos += text.charCodeAt(pos + 1) === 10 ? 2 : 1;
    else if (code === 10) pos++;
    else if (pos < text.length) {
      this.#fail(
        "syntax",
        `expected a newline or the end of the grammar, found ${describe(text, pos)}`,
        pos,
      );
    }
    return this.#skipSpace(pos, true);
  }

  /**
   * llama.cpp's `parse_alternates` and `parse_sequence` with its recursion through groups
   * turned into a stack of frames.
   */
  #parseAlternates(start: number, ruleName: string, ruleId: number): number {
    const text = this.#text;
    const { maxDepth } = this.#limits;
    const stack: Frame[] = [];
    let frame: Frame = {
      ruleId,
      rule: [],
      nested: false,
      lastItem: 0,
      lastItemRules: 1,
      open: -1,
      symbolsBefore: 0,
    };
    stack.push(frame);
    let pos = start;
    for (;;) {
      const code = text.charCodeAt(pos); // NaN at the end
      if (code === 34) { // "literal"
        const opener = pos;
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
        pos++;
        while (text.charCodeAt(pos) !== 34) {
          const value = this.#charValue(pos);
          pos = this.#char(pos, opener);
          this.#push(frame, this.#terminal([value, value]), opener);
        }
        pos = this.#skipSpace(pos + 1, frame.nested);
      } else if (code === 91) { // [class]
        const opener = pos;
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
        pos++;
        const negated = text.charCodeAt(pos) === 94; // ^
        if (negated) pos++;
        const ranges: [number, number][] = [];
        const first = frame.rule.length;
        while (text.charCodeAt(pos) !== 93) {
          const from = this.#charValue(pos);
          pos = this.#char(pos, opener);
          this.#push(frame, CONTINUATION, opener);
          let to = from;
          if (text.charCodeAt(pos) === 45 && text.charCodeAt(pos + 1) !== 93) { // a-z
            if (pos + 1 >= text.length) this.#unterminated(opener);
            to = this.#charValue(pos + 1);
            pos = this.#char(pos + 1, opener);
            this.#push(frame, CONTINUATION, opener);
          }
          ranges.push([from, to]);
          if (ranges.length > this.#limits.maxClassItems) {
            this.#fail(
              "too_large",
              `this class lists more than ${this.#limits.maxClassItems} characters or ranges ` +
                "(maxClassItems), and llama.cpp compares each one in turn for every token; write " +
                "neighbouring characters as ranges (a-z)",
              opener,
            );
          }
        }
        // llama.cpp keeps an empty class as no element at all.
        if (ranges.length > 0) frame.rule[first] = this.#terminal(classKeys(ranges, negated));
        if (matchesOnlyNonCharacters(ranges, negated)) {
          // llama.cpp would let partial UTF-8 through for it (lead bytes of code points past
          // U+10FFFF), which decodes as U+FFFD. (A class that matches nothing, like [], is
          // llama.cpp's to parse: the generation ends there.)
          this.#fail(
            "syntax",
            "the character class matches only surrogates or code points past U+10FFFF, no " +
              "Unicode character",
            opener,
          );
        }
        pos = this.#skipSpace(pos + 1, frame.nested);
      } else if (code === 60 || code === 33) { // <token> or !<token>
        const opener = pos;
        pos = this.#token(pos);
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
        this.#push(frame, this.#terminal(TOKEN_RANGES), opener);
        pos = this.#skipSpace(pos, frame.nested);
      } else if (isWordChar(code)) { // rule reference
        const end = this.#scanName(pos);
        const id = this.#symbolId(text.slice(pos, end), pos);
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
        this.#push(frame, id, pos);
        pos = this.#skipSpace(end, frame.nested);
      } else if (code === 40) { // ( group
        if (stack.length > maxDepth) {
          this.#fail(
            "too_deep",
            `parentheses nest deeper than ${maxDepth} levels (maxDepth); flatten the grammar ` +
              "with named rules",
            pos,
          );
        }
        const open = pos;
        pos = this.#skipSpace(pos + 1, true);
        const symbolsBefore = this.#symbols.length;
        const id = this.#generateSymbol(ruleName, open);
        this.#spend(this.#nameCost(ruleName, id), open);
        frame = {
          ruleId: id,
          rule: [],
          nested: true,
          lastItem: 0,
          lastItemRules: 1,
          open,
          symbolsBefore,
        };
        stack.push(frame);
      } else if (code === 46) { // . any character
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
        this.#push(frame, this.#terminal(classKeys([], true)), pos);
        pos = this.#skipSpace(pos + 1, frame.nested);
      } else if (code === 42 || code === 43 || code === 63) { // * + ?
        const at = pos;
        pos = this.#skipSpace(pos + 1, frame.nested);
        const min = code === 43 ? 1 : 0;
        this.#repeat(frame, ruleName, min, code === 63 ? 1 : Infinity, at);
      } else if (code === 123) { // {m}, {m,}, {m,n}
        pos = this.#repetitionBraces(frame, ruleName, pos);
      } else if (code === 124) { // | another alternative
        this.#push(frame, ALT, pos);
        pos = this.#skipSpace(pos + 1, true);
        frame.lastItem = frame.rule.length;
        frame.lastItemRules = 1;
      } else { // the end of this rule or group
        this.#spend(1, pos);
        frame.rule.push(END);
        this.#addRule(frame.ruleId, frame.rule);
        stack.pop();
        const parent = stack.at(-1);
        if (parent === undefined) return pos;
        if (code !== 41) {
          this.#fail(
            "syntax",
            `expected ')' to close the group opened at ${this.#where(frame.open)}, found ${
              describe(text, pos)
            }`,
            pos,
          );
        }
        parent.lastItemRules = Math.max(1, this.#symbols.length - frame.symbolsBefore);
        parent.lastItem = parent.rule.length;
        this.#push(parent, frame.ruleId, frame.open);
        pos = this.#skipSpace(pos + 1, parent.nested);
        frame = parent;
      }
    }
  }

  /** llama.cpp's `parse_token`: `<[id]>`, `<text>`, or either after `!`. */
  #token(start: number): number {
    const text = this.#text;
    let pos = start;
    const negated = text.charCodeAt(pos) === 33; // !
    if (negated) pos++;
    if (text.charCodeAt(pos) !== 60) {
      this.#fail("syntax", `expected '<' after '!', found ${describe(text, pos)}`, pos);
    }
    const open = pos;
    pos++;
    if (text.charCodeAt(pos) === 91) { // <[123]>
      pos++;
      const end = this.#scanDigits(pos);
      if (end === pos) {
        this.#fail("syntax", `expected a token id after '<[', found ${describe(text, pos)}`, pos);
      }
      this.#refuseLongToken(end + 2 - open, open);
      const id = this.#number(pos, end);
      if (!negated) this.#refuseEndOfGeneration(id, text.slice(open, end + 2), open);
      pos = end;
      if (text.charCodeAt(pos) !== 93) {
        this.#fail("syntax", `expected ']' after the token id, found ${describe(text, pos)}`, pos);
      }
      pos++;
      if (text.charCodeAt(pos) !== 62) {
        this.#fail("syntax", `expected '>' to close the token, found ${describe(text, pos)}`, pos);
      }
      return pos + 1;
    }
    const close = text.indexOf(">", pos);
    if (close < 0) this.#fail("syntax", "the token never ends; close it with >", open);
    this.#refuseLongToken(close + 1 - open, open);
    const piece = text.slice(open, close + 1);
    if (this.#isSingleToken !== undefined && !this.#isSingleToken(piece)) {
      this.#fail(
        "syntax",
        `${piece} is not a single token of the model's vocabulary; write its id as <[id]>`,
        open,
      );
    }
    if (!negated) this.#refuseEndOfGeneration(piece, piece, open);
    return close + 1;
  }

  /** Refuses a token reference longer than {@link MAX_TOKEN_TEXT_CHARS}, before it is read. */
  #refuseLongToken(length: number, at: number): void {
    if (length <= MAX_TOKEN_TEXT_CHARS) return;
    this.#fail(
      "too_large",
      `this token's text is ${length} characters long, more than the limit of ` +
        `${MAX_TOKEN_TEXT_CHARS}, and no token of a vocabulary is that long; write a single ` +
        "token of the model's vocabulary, or its id as <[id]>",
      at,
    );
  }

  /** Refuses a token the grammar asks for that ends generation (see `endsGeneration`). */
  #refuseEndOfGeneration(token: number | string, written: string, at: number): void {
    if (this.#endsGeneration?.(token) !== true) return;
    this.#fail(
      "syntax",
      `${written} ends the generation, and llama.cpp's grammar never lets such a token through; ` +
        "end the grammar where the answer ends instead",
      at,
    );
  }

  /** Parses `{m}`, `{m,}` or `{m,n}` as llama.cpp does and applies it. */
  #repetitionBraces(frame: Frame, ruleName: string, at: number): number {
    const text = this.#text;
    const nested = frame.nested;
    let pos = this.#skipSpace(at + 1, nested);
    const minEnd = this.#scanDigits(pos);
    if (minEnd === pos) {
      this.#fail("syntax", `expected a number after '{', found ${describe(text, pos)}`, pos);
    }
    const min = this.#number(pos, minEnd);
    pos = this.#skipSpace(minEnd, nested);
    let max = Infinity;
    if (text.charCodeAt(pos) === 125) { // }
      max = min;
      pos = this.#skipSpace(pos + 1, nested);
    } else if (text.charCodeAt(pos) === 44) { // ,
      pos = this.#skipSpace(pos + 1, nested);
      const maxEnd = this.#scanDigits(pos);
      if (maxEnd > pos) {
        max = this.#number(pos, maxEnd);
        pos = this.#skipSpace(maxEnd, nested);
      }
      if (text.charCodeAt(pos) !== 125) {
        this.#fail(
          "syntax",
          `expected '}' to end the repetition, found ${describe(text, pos)}`,
          pos,
        );
      }
      pos = this.#skipSpace(pos + 1, nested);
    } else {
      this.#fail(
        "syntax",
        `expected ',' or '}' in the repetition, found ${describe(text, pos)}`,
        pos,
      );
    }
    const { maxRepetition } = this.#limits;
    const largest = Math.max(min, max === Infinity ? 0 : max);
    if (largest > maxRepetition) {
      this.#fail(
        "repetition",
        `the repetition count ${largest} is above the limit of ${maxRepetition} ` +
          "(maxRepetition); use a smaller count or * and +",
        at,
      );
    }
    if (min > LLAMA_REPETITION_THRESHOLD) {
      this.#fail(
        "repetition",
        `the repetition count ${min} is above llama.cpp's limit of ${LLAMA_REPETITION_THRESHOLD}`,
        at,
      );
    }
    if (max > LLAMA_REPETITION_THRESHOLD) max = Infinity; // llama.cpp drops such a maximum
    if (min > max) {
      this.#fail(
        "repetition",
        `the repetition {${min},${max}} has its minimum above its maximum; write {${max},${min}}`,
        at,
      );
    }
    this.#repeat(frame, ruleName, min, max, at);
    return pos;
  }

  /**
   * llama.cpp's `handle_repetitions`: `S{m,n}` becomes S m times, then a chain of n-m
   * generated rules `S' ::= S S'' |`; `S{m,}` ends in one `S' ::= S S' |`.
   */
  #repeat(frame: Frame, ruleName: string, min: number, max: number, at: number): void {
    const rule = frame.rule;
    if (frame.lastItem === rule.length) {
      this.#fail(
        "syntax",
        `${describe(this.#text, at)} repeats nothing; put it after an item`,
        at,
      );
    }
    const unbounded = max === Infinity;
    const total = !unbounded && max > 0 ? max : min > 0 ? min : 1;
    const product = frame.lastItemRules * total;
    if (product > LLAMA_REPETITION_THRESHOLD) {
      this.#fail(
        "too_large",
        `this repetition repeats ${frame.lastItemRules} rules ${total} times; llama.cpp refuses ` +
          `more than ${LLAMA_REPETITION_THRESHOLD} (nested repetitions multiply)`,
        at,
      );
    }
    const item = rule.slice(frame.lastItem);
    const optional = unbounded ? 1 : max - min;
    const copies = min > 0 ? (min - 1) * item.length : -item.length;
    const references = (unbounded ? optional : Math.max(0, optional - 1)) + (optional > 0 ? 1 : 0);
    let names = 0;
    for (let i = 0; i < optional; i++) names += this.#nameCost(ruleName, this.#symbols.length + i);
    this.#spend(copies + optional * (item.length + 2) + references + names, at);

    if (min === 0) rule.length = frame.lastItem;
    for (let copy = 1; copy < min; copy++) {
      for (const element of item) rule.push(element);
    }
    let last = 0;
    for (let i = 0; i < optional; i++) {
      const id = this.#generateSymbol(ruleName, at);
      const generated = item.slice();
      if (i > 0 || unbounded) generated.push(unbounded ? id : last);
      generated.push(ALT, END);
      this.#addRule(id, generated);
      last = id;
    }
    if (optional > 0) rule.push(last);
    frame.lastItemRules = product;
  }

  // ---- checks after parsing ----

  /** llama.cpp's check that every rule slot is filled and every reference resolves. */
  #checkDefined(): void {
    const rules = this.#rules;
    let missing: number | undefined;
    const consider = (id: number) => {
      const origin = this.#symbols[id]?.origin ?? 0;
      if (missing === undefined || origin < (this.#symbols[missing]?.origin ?? 0)) missing = id;
    };
    for (let id = 0; id < rules.length; id++) {
      const rule = rules[id];
      if (rule === undefined) {
        consider(id);
        continue;
      }
      for (const element of rule) {
        if (element >= 0 && rules[element] === undefined) consider(element);
      }
    }
    if (missing !== undefined) {
      const name = this.#label(missing);
      this.#fail(
        "undefined_rule",
        `the rule '${name}' is used but never defined; add '${name} ::= ...'`,
        this.#symbols[missing]?.origin ?? 0,
      );
    }
  }

  /**
   * Rejects a rule that can start with itself, and grammars whose search for the next
   * character would blow up in llama.cpp. Runs llama.cpp's own left-recursion check (it
   * follows a reference only past rules with an empty alternative of their own) and bounds
   * the visits it makes; then, with full nullability, rejects the left recursion it misses
   * where something follows the recursive reference (its stack search then grows forever;
   * in tail position the stacks repeat and it copes); then bounds the parse stacks it builds.
   *
   * @param rootId The start rule.
   * @returns The most parse stacks llama.cpp builds in one step.
   */
  #checkStructure(rootId: number): { stackFanout: number; searchPaths: number } {
    const rules = this.#rules as number[][]; // #checkDefined filled every slot
    const direct = rules.map(directlyEmpty);
    const llamaEdges = leftEdges(rules, (s) => direct[s]!);
    this.#checkVisits(llamaEdges, this.#llamaLeftRecursion(rules, llamaEdges, direct));

    const nullable = this.#nullable(rules);
    const edges = leftEdges(rules, (s) => nullable[s] === 1);
    const { component, order } = components(edges);
    const reachable = reachableRules(rules, rootId);
    for (let r = 0; r < rules.length; r++) {
      if (reachable[r] === 0) continue;
      for (const edge of edges[r]!) {
        if (!edge.tail && component[edge.to] === component[r]) {
          this.#reportCycle(this.#cycleThrough(edges, component, r, edge.to), false);
        }
      }
    }

    // Stacks that reach a first character of each rule, components sinks first. Within a
    // component the stacks repeat (llama.cpp drops repeats), so members share their union.
    const starts = new Float64Array(rules.length);
    for (const members of order) {
      const own = component[members[0]!];
      let total = 0;
      for (const r of members) {
        total += prefixSum(
          rules[r]!,
          (s) => component[s] === own ? 0 : starts[s]!,
          (s) => nullable[s] === 1,
          1,
        );
      }
      for (const r of members) {
        starts[r] = total;
        this.#checkWays(total + nullable[r]!, r); // the innermost rule past the limit
      }
    }
    const stackFanout = this.#checkFanout(rules, nullable, starts);
    return { stackFanout, searchPaths: this.#checkSearch(rules, nullable, reachable, rootId) };
  }

  /**
   * llama.cpp's `llama_grammar_detect_left_recursion` over every rule, without recursion.
   *
   * @returns Per rule, how many calls llama.cpp makes when it checks that rule (no memo).
   */
  #llamaLeftRecursion(
    rules: number[][],
    edges: readonly (readonly LeftEdge[])[],
    direct: readonly boolean[],
  ): Float64Array {
    const n = rules.length;
    const visits = new Float64Array(n);
    const state = new Uint8Array(n); // 0 unseen, 1 on the path, 2 done
    const path: number[] = [];
    const next: number[] = [];
    for (let start = 0; start < n; start++) {
      if (state[start] !== 0) continue;
      path.push(start);
      next.push(0);
      state[start] = 1;
      while (path.length > 0) {
        const top = path.length - 1;
        const r = path[top]!;
        const out = edges[r]!;
        const i = next[top]!;
        if (i < out.length) {
          next[top] = i + 1;
          const s = out[i]!.to;
          if (state[s] === 1) this.#reportCycle(path.slice(path.indexOf(s)).concat(s), true);
          if (state[s] === 0) {
            state[s] = 1;
            path.push(s);
            next.push(0);
          }
          continue;
        }
        state[r] = 2;
        path.pop();
        next.pop();
        visits[r] = 1 + prefixSum(rules[r]!, (s) => visits[s]!, (s) => direct[s]!, 0);
      }
    }
    return visits;
  }

  /** Bounds llama.cpp's left-recursion check, which re-walks shared rules without memo. */
  #checkVisits(edges: readonly (readonly LeftEdge[])[], visits: Float64Array): void {
    const visited = new Uint8Array(edges.length);
    let total = 0;
    for (let start = 0; start < edges.length; start++) {
      if (visited[start] === 1) continue;
      total += visits[start]!;
      if (total > this.#limits.maxExpandedSymbols) {
        this.#fail(
          "too_large",
          `llama.cpp's left-recursion check would visit rules more than ` +
            `${this.#limits.maxExpandedSymbols} times (maxExpandedSymbols); rules with an ` +
            "empty alternative that start with each other twice multiply the visits",
          this.#ruleOrigin(start),
        );
      }
      // llama.cpp marks every rule its check reached as visited.
      const todo = [start];
      visited[start] = 1;
      while (todo.length > 0) {
        for (const { to } of edges[todo.pop()!]!) {
          if (visited[to] === 0) {
            visited[to] = 1;
            todo.push(to);
          }
        }
      }
    }
  }

  /** A cycle r -> s -> ... -> r inside one component, for a message. */
  #cycleThrough(
    edges: readonly (readonly LeftEdge[])[],
    component: Int32Array,
    r: number,
    s: number,
  ): number[] {
    if (r === s) return [r, r];
    const from = new Map<number, number>([[s, s]]);
    const todo = [s];
    for (let i = 0; i < todo.length && !from.has(r); i++) {
      for (const { to } of edges[todo[i]!]!) {
        if (component[to] === component[r] && !from.has(to)) {
          from.set(to, todo[i]!);
          todo.push(to);
        }
      }
    }
    const back = [r]; // r, the rule before it, ..., s
    for (let v = r; v !== s;) {
      v = from.get(v)!;
      back.push(v);
    }
    return [r, ...back.reverse()];
  }

  /**
   * Bounds the parse stacks llama.cpp's `llama_grammar_advance_stack` builds from any point
   * of the grammar (from the start of a rule, or after any item), where a nullable item lets
   * the search continue with the next one.
   */
  #checkFanout(rules: number[][], nullable: Uint8Array, starts: Float64Array): number {
    let most = 0;
    const check = (ways: number, rule: number) => {
      this.#checkWays(ways, rule);
      if (ways > most) most = ways;
    };
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!;
      check(starts[r]! + nullable[r]!, r);
      // Backwards through each alternative: ways from here, and whether it can end here.
      let ways = 0;
      let canEnd = 1;
      for (let i = rule.length - 1; i >= 0; i--) {
        const element = rule[i]!;
        if (element === ALT || element === END) {
          ways = 0;
          canEnd = 1;
        } else if (consumes(element)) {
          ways = 1;
          canEnd = 0;
        } else {
          ways = starts[element]! + (nullable[element] === 1 ? ways : 0);
          canEnd = nullable[element] === 1 ? canEnd : 0;
          check(ways + canEnd, r);
        }
      }
    }
    return most;
  }

  /** Bounds the walks llama.cpp takes per candidate token where the grammar is ambiguous. */
  #checkSearch(
    rules: number[][],
    nullable: Uint8Array,
    reachable: Uint8Array,
    root: number,
  ): number {
    const { maxSearchPaths } = this.#limits;
    if (maxSearchPaths === Infinity) return 0; // not asked to bound it
    const grammar = { rules, terminals: this.#terminals, nullable, reachable, root };
    const { paths: counted, rule, tooComplex, run } = searchPaths(grammar, maxSearchPaths);
    const paths = Math.ceil(counted);
    const name = this.#label(rule);
    if (tooComplex) {
      this.#fail(
        "too_large",
        `the parse stacks llama.cpp would build from rule '${name}' are too many to bound its ` +
          "work per token; simplify the grammar or split it",
        this.#ruleOrigin(rule),
      );
    }
    if (paths === Infinity && run !== undefined) {
      this.#fail(
        "too_large",
        `after each nested call of the rule '${name}', runs of ${
          JSON.stringify(
            String.fromCodePoint(run),
          )
        } of several lengths can follow, so one run splits among the calls around it in more ` +
          "ways with every level (a token of 128 spaces after ten calls: 2×10^13 ways) and " +
          'llama.cpp tries them all (like q ::= "(" q " "+ | "x"); end what follows the ' +
          "recursive reference with another character, or give the run one length",
        this.#ruleOrigin(rule),
      );
    }
    if (paths === Infinity) {
      this.#fail(
        "too_large",
        `the rule '${name}' can end inside a call to itself where optional items still ` +
          "follow, so each nested call adds one more way to match the same text and llama.cpp " +
          'tries them all (like r ::= "a" r "x"? | "b"); make what follows the recursive ' +
          "reference non-empty",
        this.#ruleOrigin(rule),
      );
    }
    if (paths > maxSearchPaths) {
      this.#fail(
        "too_large",
        `llama.cpp would try more than ${maxSearchPaths} parse stacks to check one token ` +
          `from rule '${name}' (maxSearchPaths): the same text matches its items in many ways ` +
          "(optional items in a row, or alternatives that match the same text) and llama.cpp " +
          'tries every way; write a run of optional items as one repetition, e.g. "a"{0,20}',
        this.#ruleOrigin(rule),
      );
    }
    return paths;
  }

  #checkWays(ways: number, rule: number): void {
    const { maxStackFanout } = this.#limits;
    if (ways <= maxStackFanout) return;
    this.#fail(
      "too_large",
      `llama.cpp would search more than ${maxStackFanout} ways at once for the next ` +
        `character in rule '${this.#symbols[rule]?.name}' (maxStackFanout); optional or ` +
        "repeated items that can be empty multiply them, make them non-empty",
      this.#ruleOrigin(rule),
    );
  }

  /** Where a rule was defined, or for a generated rule, the construct that made it. */
  #ruleOrigin(id: number): number {
    const symbol = this.#symbols[id];
    return symbol?.definedAt ?? symbol?.origin ?? 0;
  }

  /** Which rules can match the empty string (1) or not (0): a linear worklist fixpoint. */
  #nullable(rules: number[][]): Uint8Array {
    const n = rules.length;
    const nullable = new Uint8Array(n);
    const remaining: number[] = []; // per alternative without terminals: references left
    const owner: number[] = []; // per such alternative: its rule
    const waiting: number[][] = Array.from({ length: n }, () => []); // rule -> alternatives
    const queue: number[] = [];
    const settle = (r: number) => {
      if (nullable[r] === 0) {
        nullable[r] = 1;
        queue.push(r);
      }
    };
    const references: number[] = [];
    for (let r = 0; r < n; r++) {
      let terminal = false;
      for (const element of rules[r]!) {
        if (element === ALT || element === END) {
          if (!terminal && references.length === 0) settle(r);
          else if (!terminal) {
            const alt = owner.length;
            owner.push(r);
            remaining.push(references.length);
            for (const s of references) waiting[s]!.push(alt);
          }
          references.length = 0;
          terminal = false;
        } else if (consumes(element)) terminal = true;
        else references.push(element);
      }
    }
    while (queue.length > 0) {
      const s = queue.pop()!;
      for (const alt of waiting[s]!) {
        if (--remaining[alt]! === 0) settle(owner[alt]!);
      }
    }
    return nullable;
  }

  #reportCycle(cycle: number[], llamaRejects: boolean): never {
    const first = cycle.find((id) => !this.#symbols[id]?.generated) ?? cycle[0]!;
    const symbol = this.#symbols[first];
    const name = symbol?.name ?? this.#label(first);
    const written = cycle.map((id) => this.#label(id)).join(" -> ");
    const consequence = llamaRejects
      ? "llama.cpp does not support left recursion"
      : "with more after it llama.cpp would loop forever";
    this.#fail(
      "left_recursion",
      `the rule '${name}' can start with itself (${written}); ${consequence}, rewrite it ` +
        `with repetition, e.g. list ::= item ("," item)*`,
      symbol?.definedAt ?? symbol?.origin ?? 0,
    );
  }
}

/** How many hex digits follow `\x`, `\u` or `\U` (0 after any other escape letter). */
function hexDigitsOf(escape: string | undefined): number {
  return escape === "x" ? 2 : escape === "u" ? 4 : escape === "U" ? 8 : 0;
}

/** What `\t`, `\n` and `\r` stand for in a literal or class. */
const ESCAPED: Readonly<Record<string, number>> = { t: 9, n: 10, r: 13 };

/** The Unicode scalar values: code points up to U+10FFFF, surrogates left out. */
const SCALAR_VALUES: readonly [number, number][] = [[0, 0xd7ff], [0xe000, 0x10ffff]];

/**
 * Whether a class of these ranges matches some code point but no Unicode scalar value: only
 * surrogates or code points past U+10FFFF (a negated class matches those whatever it lists).
 */
function matchesOnlyNonCharacters(ranges: readonly [number, number][], negated: boolean): boolean {
  const proper = ranges.filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]);
  if (!negated) {
    return proper.length > 0 &&
      !proper.some(([a, b]) => SCALAR_VALUES.some(([x, y]) => a <= y && b >= x));
  }
  for (const [x, y] of SCALAR_VALUES) {
    let next = x; // the lowest value of this interval not yet covered
    for (const [a, b] of proper) {
      if (a > next) break;
      next = Math.max(next, b + 1);
    }
    if (next <= y) return false;
  }
  return true;
}
