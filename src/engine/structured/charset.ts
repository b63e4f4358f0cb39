/**
 * Sets of Unicode code points as sorted inclusive ranges, and how to write them in GBNF: as a
 * character class, or, for characters inside a JSON string, as what the JSON text must hold
 * (`"` and `\` escaped, control characters as `\n` or `\u00XX`). Surrogates are never members:
 * they cannot appear in UTF-8 text.
 *
 * @module
 */

/** An inclusive range of code points. */
export type CodeRange = readonly [number, number];

/** A set of code points: sorted, disjoint, non-adjacent ranges. */
export type CharSet = readonly CodeRange[];

/** The largest code point. */
const MAX_CODE = 0x10ffff;

/**
 * Normalizes ranges into a {@link CharSet} (sorted, merged, surrogates removed).
 *
 * @param ranges Any ranges.
 * @returns The set.
 * @example
 * ```ts
 * charSet([[0x61, 0x7a], [0x41, 0x5a]]); // [[0x41,0x5a],[0x61,0x7a]]
 * ```
 */
export function charSet(ranges: Iterable<CodeRange>): CharSet {
  const sorted = [...ranges].filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const last = out.at(-1);
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return withoutSurrogates(out);
}

function withoutSurrogates(ranges: [number, number][]): CharSet {
  const out: [number, number][] = [];
  for (const [a, b] of ranges) {
    if (b < 0xd800 || a > 0xdfff) out.push([a, b]);
    else {
      if (a < 0xd800) out.push([a, 0xd7ff]);
      if (b > 0xdfff) out.push([0xe000, b]);
    }
  }
  return out;
}

/**
 * The code points not in a set.
 *
 * @param set A set.
 * @returns Its complement (surrogates excluded).
 * @example
 * ```ts
 * complement(charSet([[0, 0x60], [0x7b, 0x10ffff]])); // [[0x61,0x7a]]
 * ```
 */
export function complement(set: CharSet): CharSet {
  const out: [number, number][] = [];
  let next = 0;
  for (const [a, b] of set) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CODE) out.push([next, MAX_CODE]);
  return withoutSurrogates(out);
}

/** Most ranges a set may hold in a class: the grammar validator's `maxClassItems`. */
export const MAX_SET_RANGES = 256;

/**
 * Ranges below this code point (Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic) stay first
 * when a set is narrowed.
 */
const KEPT_FIRST = 0x800;

/**
 * A part of a set that fits in a class ({@link MAX_SET_RANGES}): the ranges below U+0800, then
 * those that hold the most characters. Where the pattern asks for a character of the set, a
 * grammar with this part takes only characters the pattern takes (`\p{L}` has 677 ranges).
 *
 * @param set A set.
 * @returns The set itself when it fits, else a subset that does.
 * @example
 * ```ts
 * narrowed(charSet([[0x41, 0x5a]])); // [[0x41,0x5a]]
 * ```
 */
export function narrowed(set: CharSet): CharSet {
  if (set.length <= MAX_SET_RANGES) return set;
  const first = (range: CodeRange) => range[0] < KEPT_FIRST ? 0 : 1;
  const kept = [...set]
    .sort((x, y) => first(x) - first(y) || (y[1] - y[0]) - (x[1] - x[0]))
    .slice(0, MAX_SET_RANGES);
  return charSet(kept);
}

/**
 * A set that holds another and fits in a class ({@link MAX_SET_RANGES}): its narrowest gaps
 * filled. Where the pattern refuses the set's characters (in `(?!…)`), a grammar with this one
 * refuses at least those.
 *
 * @param set A set.
 * @returns The set itself when it fits, else a superset that does.
 * @example
 * ```ts
 * widened(charSet([[0x41, 0x5a]])); // [[0x41,0x5a]]
 * ```
 */
export function widened(set: CharSet): CharSet {
  if (set.length <= MAX_SET_RANGES) return set;
  // Two fewer than the limit: a filled range across the surrogates splits in two.
  const gaps = set.slice(1).map((range, i) => ({ at: i + 1, width: range[0] - set[i]![1] }));
  const kept = new Set(
    gaps.sort((x, y) => y.width - x.width).slice(0, MAX_SET_RANGES - 2).map(({ at }) => at),
  );
  const out: CodeRange[] = [];
  let start = set[0]![0];
  for (let i = 1; i < set.length; i++) {
    if (!kept.has(i)) continue;
    out.push([start, set[i - 1]![1]]);
    start = set[i]![0];
  }
  out.push([start, set.at(-1)![1]]);
  return charSet(out);
}

/**
 * The code points in both sets.
 *
 * @param x A set.
 * @param y A set.
 * @returns Their intersection.
 * @example
 * ```ts
 * intersect(charSet([[0, 100]]), charSet([[50, 200]])); // [[50,100]]
 * ```
 */
export function intersect(x: CharSet, y: CharSet): CharSet {
  return complement(charSet([...complement(x), ...complement(y)]));
}

/**
 * Whether a set holds a code point (a binary search: the ranges are sorted).
 *
 * @param set A set.
 * @param code A code point.
 * @returns True when one of its ranges holds it.
 * @example
 * ```ts
 * contains(charSet([[0x61, 0x7a]]), 0x62); // true
 * ```
 */
export function contains(set: CharSet, code: number): boolean {
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
 * Writes one code point for a GBNF literal or class: printable ASCII letters and digits as
 * they are, everything else as `\xHH`, `\uHHHH` or `\UHHHHHHHH`.
 */
function escapeCode(code: number): string {
  const isAlnum = (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a);
  if (isAlnum) return String.fromCodePoint(code);
  if (code < 0x100) return `\\x${code.toString(16).padStart(2, "0")}`;
  if (code < 0x10000) return `\\u${code.toString(16).padStart(4, "0")}`;
  return `\\U${code.toString(16).padStart(8, "0")}`;
}

/**
 * A GBNF string literal for a text.
 *
 * @param text The exact text.
 * @returns E.g. `"a\x22b"`; `""` for the empty text.
 * @example
 * ```ts
 * gbnfLiteral('say "hi"'); // "say\x20\x22hi\x22" (a GBNF literal)
 * ```
 */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    const plain = code >= 0x20 && code !== 0x22 && code !== 0x5c && code !== 0x7f;
    out += plain ? char : escapeCode(code);
  }
  return out + '"';
}

/**
 * A GBNF character class for a non-empty set.
 *
 * @param set The set.
 * @returns E.g. `[a-z0-9]`.
 * @example
 * ```ts
 * gbnfClass(charSet([[0x30, 0x39]])); // "[0-9]"
 * ```
 */
export function gbnfClass(set: CharSet): string {
  let out = "[";
  for (const [a, b] of set) {
    out += a === b ? escapeCode(a) : `${escapeCode(a)}-${escapeCode(b)}`;
  }
  return out + "]";
}

/** JSON's short escapes for control characters. */
const SHORT_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x08, "b"],
  [0x09, "t"],
  [0x0a, "n"],
  [0x0c, "f"],
  [0x0d, "r"],
]);

/**
 * The JSON-string text of one character: `"` and `\` escaped, control characters as JSON
 * escapes, everything else as it is.
 *
 * @param code A code point.
 * @returns The characters a JSON string holds for it.
 * @example
 * ```ts
 * jsonCharText(0x0a); // "\\n"
 * ```
 */
export function jsonCharText(code: number): string {
  if (code === 0x22) return '\\"';
  if (code === 0x5c) return "\\\\";
  if (code < 0x20) {
    const short = SHORT_ESCAPES.get(code);
    return short ? `\\${short}` : `\\u${code.toString(16).padStart(4, "0")}`;
  }
  return String.fromCodePoint(code);
}

/**
 * A GBNF expression for any one character of a set as it appears inside a JSON string.
 *
 * @param set A non-empty set.
 * @returns A GBNF expression, alternatives in parentheses when there are several.
 * @example
 * ```ts
 * jsonCharSetExpr(charSet([[0x22, 0x22], [0x61, 0x61]])); // ([a] | "\x5c" [\x22])
 * ```
 */
export function jsonCharSetExpr(set: CharSet): string {
  const alternatives = jsonCharBranches([{ set, tail: "" }]);
  if (alternatives.length === 0) throw new Error("Empty character set");
  return alternativesOf(alternatives);
}

/** Characters of a JSON string and what follows them, one way on from a place in a grammar. */
export interface CharBranch {
  /** The characters. */
  set: CharSet;
  /** A GBNF expression that follows any of them, or "" for nothing. */
  tail: string;
}

/**
 * Alternatives of GBNF for branches on disjoint character sets as a JSON string holds them:
 * each branch's plain characters as a class followed by its tail, and every escaped character
 * (`"`, `\` and controls, as `\n` or `\u00XX` in either case) after one shared backslash, the
 * `\u00XX` escapes sharing their beginning too. llama.cpp's sampler keeps a parse stack per
 * alternative and tries each on every character: a `.` of a pattern had listed 30 `\u00XX`
 * escapes apart, which multiplied every ambiguity of the pattern around it by 30.
 *
 * @param branches Sets that share no character, with their tails.
 * @returns The alternatives, none for empty sets.
 * @example
 * ```ts
 * jsonCharBranches([{ set: [[0x0a, 0x0a]], tail: "next" }]);
 * // ['"\x5c" ([n] next | "u00" "0" [Aa] next)']
 * ```
 */
export function jsonCharBranches(branches: readonly CharBranch[]): string[] {
  const alternatives: string[] = [];
  const escaped: string[] = [];
  const hexByHigh: string[][] = [[], []];
  for (const { set, tail } of branches) {
    const then = tail === "" ? "" : ` ${tail}`;
    const plain = intersect(set, PLAIN_JSON_CHARS);
    if (plain.length > 0) alternatives.push(gbnfClass(plain) + then);
    const letters: CodeRange[] = [];
    const hexDigits: CodeRange[][] = [[], []];
    for (const code of [0x22, 0x5c]) if (contains(set, code)) letters.push([code, code]);
    for (let code = 0; code < 0x20; code++) {
      if (!contains(set, code)) continue;
      const short = SHORT_ESCAPES.get(code)?.codePointAt(0);
      if (short !== undefined) letters.push([short, short]);
      hexDigits[code >> 4]!.push(...hexDigitRanges(code & 0xf));
    }
    if (letters.length > 0) escaped.push(gbnfClass(charSet(letters)) + then);
    hexDigits.forEach((digits, high) => {
      if (digits.length > 0) hexByHigh[high]!.push(gbnfClass(charSet(digits)) + then);
    });
  }
  const unicode = hexByHigh.flatMap((digits, high) =>
    digits.length > 0 ? [`"${high}" ${alternativesOf(digits)}`] : []
  );
  if (unicode.length > 0) escaped.push(`"u00" ${alternativesOf(unicode)}`);
  if (escaped.length > 0) alternatives.push(`"\\x5c" ${alternativesOf(escaped)}`);
  return alternatives;
}

/** Characters a JSON string holds as they are. */
const PLAIN_JSON_CHARS = charSet([[0x20, 0x21], [0x23, 0x5b], [0x5d, MAX_CODE]]);

/** Alternatives as one item of a sequence: in parentheses when there are several. */
function alternativesOf(alternatives: readonly string[]): string {
  return alternatives.length === 1 ? alternatives[0]! : `(${alternatives.join(" | ")})`;
}

/** The characters that write one hex digit in a `\u` escape, either case. */
function hexDigitRanges(digit: number): CodeRange[] {
  const lower = digit.toString(16).codePointAt(0)!;
  const upper = digit.toString(16).toUpperCase().codePointAt(0)!;
  return lower === upper ? [[lower, lower]] : [[lower, lower], [upper, upper]];
}
