/**
 * The memory behind the Responses API's `store`, `previous_response_id`, `GET` and `DELETE`:
 * each stored response with the conversation that led to it (its input items, the items of the
 * responses it continued, and its own output), kept in one map per server. The map is bounded in
 * count and in size (the oldest responses go when either is reached: a thousand stored responses
 * of 8 MB each had run the server out of memory), and every response expires a fixed time after
 * it was stored; nothing is written to disk, so a restart forgets everything.
 *
 * @module
 */

import type { BackgroundRun } from "./responses_background.ts";

/** Default most responses kept. */
export const DEFAULT_MAX_RESPONSES = 1000;

/**
 * Default most bytes of stored conversations: each item counted once, however many stored
 * responses hold it (a chain's responses share the items they continue), each response object,
 * and each background response's kept events.
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024;

/** Default time a response is kept: one hour. */
export const DEFAULT_RESPONSE_TTL_MS = 60 * 60 * 1000;

/** One stored response. */
export interface StoredResponse {
  /** The response object as it was returned. */
  response: Record<string, unknown>;
  /** The request's own input items, each with an id (`GET …/input_items` lists them). */
  input: Record<string, unknown>[];
  /** A background response's run: its live state and events (`responses_background.ts`). */
  run?: BackgroundRun;
  /**
   * The conversation as Responses input items: the continued responses' items, this request's
   * input, then this response's output items.
   */
  items: Record<string, unknown>[];
}

/** Options of {@link ResponseStore}. */
export interface ResponseStoreOptions {
  /** Most responses kept; the oldest is dropped for a new one. Default 1000. */
  maxResponses?: number;
  /**
   * Most bytes kept: the JSON text of each stored item once and of each response object, and the
   * events a background response keeps for replay; the oldest are dropped for a new one.
   * Default {@link DEFAULT_MAX_RESPONSE_BYTES}.
   */
  maxBytes?: number;
  /** Milliseconds a response is kept after it is stored. Default one hour. */
  ttlMs?: number;
  /** The clock, in milliseconds. Default `Date.now`. */
  now?: () => number;
}

/**
 * Stored responses, bounded in number and age.
 *
 * @example
 * ```ts
 * const store = new ResponseStore({ maxResponses: 10, ttlMs: 60_000 });
 * store.put("resp_1", { response: { id: "resp_1" }, input: [], items: [] });
 * store.get("resp_1")?.response.id; // "resp_1"
 * store.delete("resp_1"); // true
 * ```
 */
export class ResponseStore {
  readonly #max: number;
  /** Most bytes kept (see {@link ResponseStoreOptions.maxBytes}). */
  readonly maxBytes: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  /** In insertion order, so the first entry is the oldest. */
  readonly #entries = new Map<
    string,
    /**
     * `bytes`: its response object's JSON length and its run's kept events (its items are counted
     * by their holders).
     */
    { stored: StoredResponse; expires: number; bytes: number }
  >();
  #bytes = 0;
  /** How many stored responses hold each conversation item. */
  readonly #holders = new Map<object, number>();
  /** The stored responses' input and output items by id, and the response that holds each. */
  readonly #items = new Map<string, { item: Record<string, unknown>; response: string }>();

  /** @param options Bounds, expiry and clock. */
  constructor(options: ResponseStoreOptions = {}) {
    this.#max = options.maxResponses ?? DEFAULT_MAX_RESPONSES;
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#ttlMs = options.ttlMs ?? DEFAULT_RESPONSE_TTL_MS;
    this.#now = options.now ?? Date.now;
    if (!(this.#max >= 1)) throw new RangeError("maxResponses must be at least 1");
  }

  /** How many responses are kept now (expired ones not counted). */
  get size(): number {
    this.#expire();
    return this.#entries.size;
  }

  /**
   * Stores a response, dropping expired ones and, when full, the oldest others. Its items count
   * once however many stored responses hold them: counted with every response that continued
   * them, a chain of ten 8 MB steps had counted 440 MB and pushed everyone's responses out.
   *
   * A background response's events are counted as they are now: it is stored again once it has
   * ended, after its last event.
   *
   * @param id The response id.
   * @param stored The response and its conversation (items not to be changed afterwards).
   */
  put(id: string, stored: StoredResponse): void {
    this.#expire();
    this.#drop(id);
    const bytes = JSON.stringify(stored.response).length + (stored.run?.bytes ?? 0);
    this.#entries.set(id, { stored, expires: this.#now() + this.#ttlMs, bytes });
    this.#bytes += bytes;
    this.#hold(stored.items, 1);
    // The new response is the last in the map: the oldest others go first.
    while (
      this.#entries.size > 1 &&
      (this.#entries.size > this.#max || this.#bytes > this.maxBytes)
    ) {
      this.#drop(this.#entries.keys().next().value as string);
    }
    for (const item of itemsOf(stored)) {
      if (typeof item?.id === "string") this.#items.set(item.id, { item, response: id });
    }
  }

  /** Counts the responses that hold each item, its size once while any does. */
  #hold(items: readonly Record<string, unknown>[], change: 1 | -1): void {
    for (const item of items) {
      const holders = (this.#holders.get(item) ?? 0) + change;
      if (holders > 0) this.#holders.set(item, holders);
      else this.#holders.delete(item);
      if (holders === (change > 0 ? 1 : 0)) this.#bytes += change * itemSize(item);
    }
  }

  /**
   * A stored response.
   *
   * @param id The response id.
   * @returns The response, or undefined when unknown or expired.
   */
  get(id: string): StoredResponse | undefined {
    this.#expire();
    return this.#entries.get(id)?.stored;
  }

  /**
   * Forgets a response.
   *
   * @param id The response id.
   * @returns Whether it was there.
   */
  delete(id: string): boolean {
    this.#expire();
    return this.#drop(id);
  }

  #drop(id: string): boolean {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    this.#bytes -= entry.bytes;
    this.#hold(entry.stored.items, -1);
    for (const item of itemsOf(entry.stored)) {
      if (typeof item?.id === "string" && this.#items.get(item.id)?.response === id) {
        this.#items.delete(item.id);
      }
    }
    return this.#entries.delete(id);
  }

  /**
   * An input or output item of a stored response, for an `item_reference` input item.
   *
   * @param id The item's id (`msg_…`, `fc_…`, `fco_…`, `rs_…`).
   * @returns The item, or undefined when no stored response has it.
   */
  item(id: string): Record<string, unknown> | undefined {
    this.#expire();
    return this.#items.get(id)?.item;
  }

  /** Drops expired responses; they expire in insertion order. */
  #expire(): void {
    const now = this.#now();
    for (const [id, entry] of this.#entries) {
      if (entry.expires > now) break;
      this.#drop(id);
    }
  }
}

/** A stored response's own input items and its output items (what `item_reference` names). */
function itemsOf(stored: StoredResponse): Record<string, unknown>[] {
  const output = Array.isArray(stored.response.output) ? stored.response.output : [];
  return [...stored.input, ...output];
}

/** Each item's JSON length, measured once: stored items are shared, and never changed. */
const itemSizes = new WeakMap<object, number>();

/**
 * The length of a list of items as JSON text, each item measured once for all the requests that
 * carry it: a conversation continued by `previous_response_id` is the same item objects every
 * time, and had been turned into JSON again by each request (256 MiB of it, seconds of the event
 * loop apiece).
 *
 * @param items Conversation items, not to be changed afterwards.
 * @returns `JSON.stringify(items).length`.
 * @example
 * ```ts
 * itemsSize([{ type: "message" }]); // 20
 * ```
 */
export function itemsSize(items: readonly Record<string, unknown>[]): number {
  let total = items.length === 0 ? 2 : items.length + 1; // the brackets and commas
  for (const item of items) total += itemSize(item);
  return total;
}

/** An item's JSON length, measured once per item object. */
function itemSize(item: Record<string, unknown>): number {
  let size = itemSizes.get(item);
  if (size === undefined) {
    size = JSON.stringify(item)?.length ?? 4;
    itemSizes.set(item, size);
  }
  return size;
}
