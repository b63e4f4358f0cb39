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

/**
 * Token arrays one after another, in one array.
 *
 * @param parts The arrays (or single-token lists), in order.
 * @returns A new array holding them all.
 * @example
 * ```ts
 * concatTokens([[1], new Int32Array([2, 3])]); // Int32Array [1, 2, 3]
 * ```
 */
export function concatTokens(parts: readonly ArrayLike<number>[]): Int32Array {
  const out = new Int32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
