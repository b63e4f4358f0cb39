/**
 * The median of a few timings, as the CLI's benchmark and the attention probe report them.
 *
 * @module
 */

/**
 * The middle value (the upper one of the two middles for an even count).
 *
 * @param values The values, in any order; not changed.
 * @returns The median, or 0 for no values.
 * @example
 * ```ts
 * median([3, 1, 2]); // 2
 * median([4, 1, 3, 2]); // 3
 * ```
 */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
