/**
 * A map that keeps its most recently used entries: at most a number of them, and at most a total
 * size (the keys' and values' sizes as the caller counts them).
 *
 * @module
 */

/**
 * The most recently used entries of a map.
 *
 * @example
 * ```ts
 * const recent = new RecentMap<string>({ maxEntries: 2 });
 * recent.set("a", "1");
 * recent.set("b", "2");
 * recent.get("a"); // "1", now the most recent
 * recent.set("c", "3"); // "b" is dropped
 * ```
 */
export class RecentMap<V> {
  /** Entries, least recently used first. */
  readonly #entries = new Map<string, { value: V; size: number }>();
  readonly #maxEntries: number;
  readonly #maxSize: number;
  readonly #sizeOf: (key: string, value: V) => number;
  #size = 0;

  /**
   * @param options `maxEntries`; `maxSize` and `sizeOf` (default: the key's length) bound the
   *   total size, and an entry larger than it is not kept.
   */
  constructor(options: {
    maxEntries: number;
    maxSize?: number;
    sizeOf?: (key: string, value: V) => number;
  }) {
    this.#maxEntries = options.maxEntries;
    this.#maxSize = options.maxSize ?? Infinity;
    this.#sizeOf = options.sizeOf ?? ((key) => key.length);
  }

  /** Whether the key is kept; does not count as a use. */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /**
   * The value kept for a key, which becomes the most recently used.
   *
   * @param key The key.
   * @returns The value, or undefined.
   */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  /**
   * Keeps a value as the most recently used, dropping the least recently used past the bounds.
   *
   * @param key The key.
   * @param value The value.
   */
  set(key: string, value: V): void {
    const size = this.#sizeOf(key, value);
    const old = this.#entries.get(key);
    if (old !== undefined) {
      this.#entries.delete(key);
      this.#size -= old.size;
    }
    if (size > this.#maxSize) return;
    this.#entries.set(key, { value, size });
    this.#size += size;
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#size <= this.#maxSize) break;
      this.#entries.delete(oldest);
      this.#size -= entry.size;
    }
  }
}
