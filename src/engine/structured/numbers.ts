/**
 * GBNF for JSON numbers within bounds. Integers take exact ranges digit by digit (`[0, 255]`
 * becomes `[0-9] | [1-9] [0-9] | "1" [0-9] [0-9] | "2" [0-4] [0-9] | "25" [0-5]`); numbers with
 * whole-number bounds split into the integer part below, at and above each bound. Digit runs
 * are bounded (16 integer digits, 16 fraction digits, a 2-digit exponent), so every output
 * ends and parses to a finite number.
 *
 * @module
 */

import { oneOf } from "./rules.ts";

/** Most integer digits written where no bound limits them. */
export const MAX_INT_DIGITS = 16;

/** An unbounded JSON integer with at most {@link MAX_INT_DIGITS} digits. */
export const INTEGER_EXPR = `"-"? ("0" | [1-9] [0-9]{0,${MAX_INT_DIGITS - 1}})`;

/** Any fraction, absent or present. */
const FRACTION = `("." [0-9]{1,16})?`;

/** An unbounded JSON number: integer, fraction and exponent parts all bounded in length. */
export const NUMBER_EXPR = `${INTEGER_EXPR} ${FRACTION} ([eE] [-+]? [0-9]{1,2})?`;

function digitClass(from: number, to: number): string {
  return from === to ? `"${from}"` : `[${from}-${to}]`;
}

/** Digit strings of one length from `x` to `y` (same length, x <= y). */
function sameLength(x: string, y: string): string {
  if (x.length === 0) return '""';
  if (x === y) return `"${x}"`;
  const x0 = Number(x[0]);
  const y0 = Number(y[0]);
  const restX = x.slice(1);
  const restY = y.slice(1);
  const any = restX.length === 0 ? "" : ` [0-9]{${restX.length}}`;
  if (x0 === y0) return `"${x0}" ${sameLength(restX, restY)}`;
  if (/^0*$/.test(restX) && /^9*$/.test(restY)) return `${digitClass(x0, y0)}${any}`;
  const alternatives = [`"${x0}" ${sameLength(restX, "9".repeat(restX.length))}`];
  if (x0 + 1 <= y0 - 1) alternatives.push(`${digitClass(x0 + 1, y0 - 1)}${any}`);
  alternatives.push(`"${y0}" ${sameLength("0".repeat(restY.length), restY)}`);
  return oneOf(alternatives);
}

/** Non-negative integers from `a` to `b` (b undefined: up to the digit limit); a <= b. */
function naturalRange(a: bigint, b: bigint | undefined): string[] {
  const from = a.toString();
  const maxDigits = Math.max(MAX_INT_DIGITS, from.length);
  const to = b?.toString() ?? "9".repeat(maxDigits);
  const alternatives: string[] = [];
  for (let length = from.length; length <= to.length; length++) {
    if (b === undefined && length === from.length + 1) {
      // Every longer number up to the limit, in one alternative.
      alternatives.push(`[1-9] [0-9]{${length - 1},${maxDigits - 1}}`);
      break;
    }
    const lowest = length === 1 ? 0n : 10n ** BigInt(length - 1);
    const highest = 10n ** BigInt(length) - 1n;
    const lo = a > lowest ? a : lowest;
    const hi = b !== undefined && b < highest ? b : highest;
    if (lo <= hi) alternatives.push(sameLength(lo.toString(), hi.toString()));
  }
  return alternatives;
}

/**
 * GBNF for the JSON integers from `min` to `max`.
 *
 * @param min Smallest value; undefined for none.
 * @param max Largest value; undefined for none.
 * @returns A GBNF expression, or undefined when the range is empty.
 * @example
 * ```ts
 * integerRange(1n, 12n); // '([1-9] | "1" [0-2])'
 * ```
 */
export function integerRange(min: bigint | undefined, max: bigint | undefined): string | undefined {
  if (min !== undefined && max !== undefined && min > max) return undefined;
  const alternatives: string[] = [];
  if (max === undefined || max >= 0n) {
    alternatives.push(...naturalRange(min !== undefined && min > 0n ? min : 0n, max));
  }
  if (min === undefined || min < 0n) {
    const lo = max !== undefined && max < 0n ? -max : 1n;
    const hi = min === undefined ? undefined : -min;
    for (const magnitude of naturalRange(lo, hi)) alternatives.push(`"-" ${magnitude}`);
  }
  return oneOf(alternatives);
}

/** A bound of a number range: a whole number, inclusive or not. */
export interface WholeBound {
  /** The bound. */
  value: bigint;
  /** Whether the bound itself is excluded. */
  exclusive: boolean;
}

/** A fraction with a non-zero digit. */
const NONZERO_FRACTION = `"." "0"{0,15} [1-9] [0-9]{0,14}`;
/** No fraction, or one of zeros only. */
const ZERO_FRACTION = `("." "0"{1,16})?`;

/**
 * Non-negative numbers (no sign, no exponent) with magnitude between two whole bounds.
 *
 * @returns Alternatives; empty when there are none.
 */
function magnitudeRange(lo: WholeBound, hi: WholeBound | undefined): string[] {
  const out: string[] = [];
  const a = lo.value;
  if (hi !== undefined && (hi.value < a || (hi.value === a && (lo.exclusive || hi.exclusive)))) {
    return out;
  }
  if (hi !== undefined && hi.value === a) return [`"${a}" ${ZERO_FRACTION}`];
  // The integer part equals the lower bound.
  out.push(lo.exclusive ? `"${a}" ${NONZERO_FRACTION}` : `"${a}" ${FRACTION}`);
  // Integer parts strictly between the bounds, with any fraction.
  const top = hi === undefined ? undefined : hi.value - 1n;
  if (top === undefined || a + 1n <= top) {
    out.push(...naturalRange(a + 1n, top).map((int) => `${oneOf([int])} ${FRACTION}`));
  }
  // The integer part equals the upper bound: only a zero fraction stays within it.
  if (hi !== undefined && !hi.exclusive) out.push(`"${hi.value}" ${ZERO_FRACTION}`);
  return out;
}

/**
 * GBNF for JSON numbers between whole-number bounds, exactly: `[0, 1]` allows `0.25` and
 * `1.000` but not `1.5`. No exponent is written when a bound is set.
 *
 * @param min The lower bound; undefined for none.
 * @param max The upper bound; undefined for none.
 * @returns A GBNF expression, or undefined when no number fits.
 * @example
 * ```ts
 * numberRange({ value: 0n, exclusive: false }, { value: 1n, exclusive: false });
 * ```
 */
export function numberRange(
  min: WholeBound | undefined,
  max: WholeBound | undefined,
): string | undefined {
  if (min === undefined && max === undefined) return NUMBER_EXPR;
  const alternatives: string[] = [];
  // Values >= 0: magnitude within [max(min, 0), max].
  if (max === undefined || max.value > 0n || (max.value === 0n && !max.exclusive)) {
    const lo = min !== undefined && min.value >= 0n ? min : { value: 0n, exclusive: false };
    alternatives.push(...magnitudeRange(lo, max));
  }
  // Values < 0, written "-" and a magnitude m > 0 with -max <= m <= -min.
  if (min === undefined || min.value < 0n) {
    const lo = max !== undefined && max.value < 0n
      ? { value: -max.value, exclusive: max.exclusive }
      : { value: 0n, exclusive: true };
    const hi = min === undefined ? undefined : { value: -min.value, exclusive: min.exclusive };
    for (const m of magnitudeRange(lo, hi)) alternatives.push(`"-" ${group(m)}`);
  }
  return alternatives.length === 0 ? undefined : oneOf(alternatives);
}

function group(expr: string): string {
  return `(${expr})`;
}
