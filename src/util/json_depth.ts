/**
 * How deeply a JSON text nests and how many strings, arrays and objects it holds, read from the
 * text before it is parsed: a body nested millions deep parses, but then costs seconds to copy
 * to a worker and overflows the stack of every recursive reader (schema conversion, templates);
 * an 8 MiB body of `[],` took 1.9 s to parse, an object of 700,000 keys 1.4 s. Both are refused
 * first.
 *
 * @module
 */

/** Most levels of arrays and objects a request body may nest: far beyond any real schema. */
export const MAX_JSON_DEPTH = 256;

/**
 * Most strings (object keys included), arrays and objects a request body may hold: a
 * `logit_bias` over the largest vocabulary (262,144 tokens) with room for the rest of the
 * request. Numbers, `true`, `false` and `null` do not count, so a prompt of a million token ids
 * passes. An object of this many keys parses in about 0.3 s.
 */
export const MAX_JSON_VALUES = 300_000;

/** What a JSON text holds too much of: nesting, or strings, arrays and objects. */
export type JsonExcess = "depth" | "values";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;

/** The characters that open or close something: quotes, brackets and braces. */
const STRUCTURE = /["[\]{}]/g;

/**
 * Whether a JSON text nests arrays and objects more than `maxDepth` levels deep, or holds more
 * than `maxValues` strings, arrays and objects. The text between brackets and quotes is skipped
 * by a native search, and strings whole (a long prompt costs one search for its closing quote),
 * so the scan is cheap beside the parse, and it stops at the first limit passed.
 *
 * @param text The JSON text (valid or not: brackets inside strings do not count).
 * @param maxDepth The most levels allowed.
 * @param maxValues The most strings, arrays and objects allowed.
 * @returns The limit passed first, or undefined when the text is within both.
 * @example
 * ```ts
 * jsonExcess('{"a": [[1]]}', 2, 10); // "depth"
 * jsonExcess('{"a": "[[[["}', 1, 10); // undefined
 * jsonExcess('["a", "b", "c"]', 8, 3); // "values"
 * ```
 */
export function jsonExcess(
  text: string,
  maxDepth: number,
  maxValues: number,
): JsonExcess | undefined {
  const structure = new RegExp(STRUCTURE);
  let depth = 0;
  let values = 0;
  for (let match = structure.exec(text); match !== null; match = structure.exec(text)) {
    const c = text.charCodeAt(match.index);
    if (c === QUOTE) {
      if (++values > maxValues) return "values";
      const close = closingQuote(text, match.index);
      if (close < 0) return undefined;
      structure.lastIndex = close + 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) return "depth";
      if (++values > maxValues) return "values";
    } else {
      depth--;
    }
  }
  return undefined;
}

/** Where the string opened at `open` closes: the next quote not escaped, or -1. */
function closingQuote(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at >= 0) {
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}
