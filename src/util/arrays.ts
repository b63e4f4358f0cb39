/**
 * Array helpers for long token lists.
 *
 * @module
 */

/**
 * Appends every item of `items` to `target`, one by one: spreading a long array into `push()`
 * passes each item as an argument, and past about 125,000 of them the call fails with "Maximum
 * call stack size exceeded" (a prompt of a few hundred KiB holds that many tokens).
 *
 * @param target The array to grow.
 * @param items What to append.
 * @example
 * ```ts
 * const tokens = [1];
 * appendAll(tokens, new Int32Array(500_000)); // tokens.length === 500_001
 * ```
 */
export function appendAll(target: number[], items: ArrayLike<number>): void {
  for (let i = 0; i < items.length; i++) target.push(items[i] as number);
}
