/**
 * How deeply a JSON text nests, read from the text before it is parsed: a body nested millions
 * deep parses, but then costs seconds to copy to a worker and overflows the stack of every
 * recursive reader (schema conversion, templates), so it is refused first.
 *
 * @module
 */

/** Most levels of arrays and objects a request body may nest: far beyond any real schema. */
export const MAX_JSON_DEPTH = 256;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;

/** The characters that open or close something: quotes, brackets and braces. */
const STRUCTURE = /["[\]{}]/g;

/**
 * Whether a JSON text nests arrays and objects more than `max` levels deep. The text between
 * brackets and quotes is skipped by a native search, and strings whole (a long prompt costs one
 * search for its closing quote), so the scan is cheap beside the parse.
 *
 * @param text The JSON text (valid or not: brackets inside strings do not count).
 * @param max The most levels allowed.
 * @returns True when some value is nested deeper.
 * @example
 * ```ts
 * nestsDeeperThan('{"a": [[1]]}', 2); // true
 * nestsDeeperThan('{"a": "[[[["}', 1); // false
 * ```
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  const structure = new RegExp(STRUCTURE);
  let depth = 0;
  for (let match = structure.exec(text); match !== null; match = structure.exec(text)) {
    const c = text.charCodeAt(match.index);
    if (c === QUOTE) {
      const close = closingQuote(text, match.index);
      if (close < 0) return false;
      structure.lastIndex = close + 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else {
      depth--;
    }
  }
  return false;
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
