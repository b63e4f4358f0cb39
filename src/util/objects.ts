/**
 * Telling JSON objects from the other JSON values.
 *
 * @module
 */

/**
 * Whether a parsed JSON value is an object (not null, not an array).
 *
 * @param value Any value.
 * @returns True for `{…}`.
 * @example
 * ```ts
 * isObject({ a: 1 }); // true
 * isObject([1]); // false
 * ```
 */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
