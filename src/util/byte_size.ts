/**
 * Byte sizes as people write them, read and written: `1048576`, `512MiB`, `4GiB`, `10GB`,
 * `1.5 G`. Binary units (KiB, MiB, GiB, TiB, and the bare letters K, M, G, T, as `ulimit` and
 * Docker read them) count in 1024s, decimal ones (kB, MB, GB, TB) in 1000s; case does not matter.
 *
 * @module
 */

/** Bytes per unit, by the unit's name in lower case. */
const UNITS: ReadonlyMap<string, number> = new Map([
  ["", 1],
  ["b", 1],
  ["k", 2 ** 10],
  ["kib", 2 ** 10],
  ["kb", 1e3],
  ["m", 2 ** 20],
  ["mib", 2 ** 20],
  ["mb", 1e6],
  ["g", 2 ** 30],
  ["gib", 2 ** 30],
  ["gb", 1e9],
  ["t", 2 ** 40],
  ["tib", 2 ** 40],
  ["tb", 1e12],
]);

/** A number without sign or exponent, then perhaps spaces and a unit. */
const SIZE = /^(\d+\.?\d*|\.\d+)\s*([a-z]*)$/i;

/**
 * Reads a byte size: a count of bytes, or a number with a unit.
 *
 * @param text E.g. `"512MiB"`, `"10GB"`, `"1048576"`; spaces around it are ignored.
 * @returns The whole bytes it names (a fraction of a byte is dropped), or undefined for text that
 *   is not a size (a negative number, an unknown unit) or one beyond 2^53 bytes.
 * @example
 * ```ts
 * parseByteSize("4GiB"); // 4294967296
 * parseByteSize("10GB"); // 10000000000
 * parseByteSize("ten"); // undefined
 * ```
 */
export function parseByteSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  const unit = match ? UNITS.get((match[2] ?? "").toLowerCase()) : undefined;
  if (!match || unit === undefined) return undefined;
  const bytes = Math.floor(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * Writes a byte count for people, in binary units with one decimal.
 *
 * @param bytes The count.
 * @returns E.g. `"512 B"`, `"1.5 KiB"`, `"40.0 MiB"`, `"10.0 GiB"`.
 * @example
 * ```ts
 * formatByteSize(10 * 2 ** 30); // "10.0 GiB"
 * ```
 */
export function formatByteSize(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (Math.abs(bytes) < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
