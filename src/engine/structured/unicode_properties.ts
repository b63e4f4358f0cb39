/**
 * The characters of a Unicode property escape (`\p{L}`, `\p{Script=Greek}`,
 * `\p{Extended_Pictographic}`), as the JavaScript engine's own Unicode tables define them, so a
 * pattern's grammar takes the characters `new RegExp(pattern, "u")` takes. The engine matches
 * the property over a string of every code point once (about 40 ms for `\p{L}`), and the sets are
 * remembered: there are a few hundred property names, so the memory stays bounded.
 *
 * @module
 */

import { type CharSet, charSet, type CodeRange } from "./charset.ts";

/** UTF-16 units of the code points below U+10000, surrogates left out. */
const BASIC_UNITS = 0x10000 - 0x800;
const FIRST_SURROGATE = 0xd800;

/** Sets found, by the text between the braces. */
const known = new Map<string, CharSet>();

/** Every code point but the surrogates, in order, built on first use. */
let everyCodePoint: string | undefined;

/**
 * The characters of `\p{name}`, or undefined when the engine knows no such property (a property
 * of strings, such as `RGI_Emoji`, is none either: it matches sequences, not characters).
 *
 * @param name What the braces hold: `L`, `Letter`, `Script=Greek`, `sc=Grek`, `Emoji`.
 * @returns Its code points, surrogates left out, as sorted ranges.
 * @example
 * ```ts
 * unicodePropertySet("Lu")?.[0]; // [0x41, 0x5a]
 * unicodePropertySet("NoSuchThing"); // undefined
 * ```
 */
export function unicodePropertySet(name: string): CharSet | undefined {
  const found = known.get(name);
  if (found) return found;
  if (!/^[A-Za-z_]+(=[A-Za-z_]+)?$/.test(name)) return undefined;
  let property: RegExp;
  try {
    property = new RegExp(`\\p{${name}}+`, "gu");
  } catch {
    return undefined;
  }
  everyCodePoint ??= allCodePoints();
  const ranges: CodeRange[] = [];
  for (const run of everyCodePoint.matchAll(property)) {
    const last = run[0].codePointAt(run[0].length - 1)!;
    const lastUnits = last >= FIRST_SURROGATE && last <= 0xdfff ? 2 : 1;
    ranges.push([codePointAt(run.index), codePointAt(run.index + run[0].length - lastUnits)]);
  }
  const set = charSet(ranges);
  known.set(name, set);
  return set;
}

/** The code point at a UTF-16 index of {@link allCodePoints}'s string. */
function codePointAt(index: number): number {
  if (index < FIRST_SURROGATE) return index;
  if (index < BASIC_UNITS) return index + 0x800;
  return 0x10000 + (index - BASIC_UNITS) / 2;
}

/** A string of every code point from U+0000 to U+10FFFF but the surrogates, in order. */
function allCodePoints(): string {
  const units = new Uint16Array(BASIC_UNITS + (0x110000 - 0x10000) * 2);
  let at = 0;
  for (let code = 0; code < 0x10000; code++) {
    if (code < FIRST_SURROGATE || code > 0xdfff) units[at++] = code;
  }
  for (let offset = 0; offset < 0x100000; offset++) {
    units[at++] = FIRST_SURROGATE + (offset >> 10);
    units[at++] = 0xdc00 + (offset & 0x3ff);
  }
  return new TextDecoder("utf-16le").decode(units);
}
