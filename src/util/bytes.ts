/**
 * Byte-array helpers: joining arrays, writing one out whole.
 *
 * @module
 */

/**
 * Joins byte arrays into one.
 *
 * @param parts The arrays, in order.
 * @returns A new array holding them all.
 * @example
 * ```ts
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const joined = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/**
 * Writes all of `bytes`, however many writes the writer takes for them.
 *
 * @param writer A socket or file.
 * @param bytes What to write.
 * @example
 * ```ts
 * await writeAll(conn, new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n"));
 * ```
 */
export async function writeAll(
  writer: { write(bytes: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}

/**
 * A byte count in MiB with one decimal, for messages.
 *
 * @param bytes The count.
 * @returns E.g. `"16.0"`.
 * @example
 * ```ts
 * mebibytes(3 * 2 ** 20); // "3.0"
 * ```
 */
export function mebibytes(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
