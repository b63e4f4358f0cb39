/**
 * Numeric limits that values crossing into libllama share.
 *
 * @module
 */

/** Largest 32-bit signed integer: counts and token ids that reach libllama as `int32_t`. */
export const I32_MAX = 2 ** 31 - 1;
