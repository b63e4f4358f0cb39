/**
 * A map that keeps its most recently used entries: at most a number of them, at most a total
 * size (the keys' and values' sizes as the caller counts them), and, when told, none set longer
 * ago than an age.
 *
 * @module
 */

/** Bounds of a {@link RecentMap}. */
export interface RecentMapOptions<V> {
  /** Most entries kept. */
  maxEntries: number;
  /** Most total size kept; an entry larger than it is not kept. Default no bound. */
  maxSize?: number;
  /** How an entry's size is counted. Default the key's length. */
  sizeOf?: (key: string, value: V) => number;
  /** Milliseconds an entry is kept after it was set (a use does not renew it). Default forever. */
  maxAgeMs?: number;
  /** The clock for `maxAgeMs`, in ms. Default `performance.now`. */
  now?: () => number;
}

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
  readonly #entries = new Map<string, { value: V; size: number; setAt: number }>();
  readonly #maxEntries: number;
  readonly #maxSize: number;
  readonly #sizeOf: (key: string, value: V) => number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  #size = 0;

  /** @param options The bounds; see {@link RecentMapOptions} for their defaults. */
  constructor(options: RecentMapOptions<V>) {
    this.#maxEntries = options.maxEntries;
    this.#maxSize = options.maxSize ?? Infinity;
    this.#sizeOf = options.sizeOf ?? ((key) => key.length);
    this.#maxAgeMs = options.maxAgeMs ?? Infinity;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Whether the key is kept; does not count as a use. */
  has(key: string): boolean {
    this.#dropExpired();
    return this.#entries.has(key);
  }

  /**
   * The value kept for a key, which becomes the most recently used.
   *
   * @param key The key.
   * @returns The value, or undefined.
   */
  get(key: string): V | undefined {
    this.#dropExpired();
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
    this.delete(key);
    this.#dropExpired();
    const size = this.#sizeOf(key, value);
    if (size > this.#maxSize) return;
    this.#entries.set(key, { value, size, setAt: this.#now() });
    this.#size += size;
    for (const [oldest, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && this.#size <= this.#maxSize) break;
      this.#entries.delete(oldest);
      this.#size -= entry.size;
    }
  }

  /**
   * Forgets a key.
   *
   * @param key The key.
   * @returns Whether it was kept.
   */
  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#entries.delete(key);
    this.#size -= entry.size;
    return true;
  }

  /**
   * The values kept, least recently used first; reading them is not a use.
   *
   * @returns The values.
   */
  values(): V[] {
    this.#dropExpired();
    return [...this.#entries.values()].map((entry) => entry.value);
  }

  #dropExpired(): void {
    if (this.#maxAgeMs === Infinity) return;
    const oldest = this.#now() - this.#maxAgeMs;
    for (const [key, entry] of this.#entries) {
      if (entry.setAt <= oldest) this.delete(key);
    }
  }
}
