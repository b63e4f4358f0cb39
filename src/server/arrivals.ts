/**
 * Requests on their way to a model: from the first bytes a listener reads until the request's
 * handler hands it to a scheduler, or answers without one. When a model's loop wakes from idle
 * for a new request, it waits for these (briefly, see `SchedulerOptions.requestsOnTheWay`) so
 * that a burst starts in one step; with none on the way, a lone request starts at once.
 *
 * A handler is followed through its awaits with an `AsyncLocalStorage`, so the generation code
 * that hands a request over needs no handle of its own: it calls {@link Arrivals.handOver}.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { RequestsOnTheWay } from "../engine/scheduler.ts";

/** One request's handler, counted until it hands over or ends. */
interface Handling {
  startedAt: number;
}

/**
 * Counts the requests on their way to a scheduler.
 *
 * @example
 * ```ts
 * const arrivals = new Arrivals();
 * const registry = new ModelRegistry(entries, { requestsOnTheWay: arrivals });
 * const server = serveGuarded({ port: 0 }, (request) => arrivals.track(() => route(request)));
 * arrivals.watch((withinMs) => server.requestsArriving(withinMs));
 * // in the generation path, once the scheduler knows of the request:
 * arrivals.handOver();
 * ```
 */
export class Arrivals implements RequestsOnTheWay {
  readonly #scope = new AsyncLocalStorage<Handling>();
  readonly #handling = new Set<Handling>();
  readonly #readers: ((withinMs: number) => number)[] = [];
  readonly #settledListeners = new Set<() => void>();

  /**
   * Adds a source of requests still being read before any handler runs (a listener's
   * connections).
   *
   * @param requestsArriving Counts them, among those whose first bytes came within `withinMs`.
   */
  watch(requestsArriving: (withinMs: number) => number): void {
    this.#readers.push(requestsArriving);
  }

  /**
   * Runs a request's handler, counting the request as on its way until it calls
   * {@link handOver} or the handler settles.
   *
   * @param handler The handler.
   * @returns What the handler returns.
   */
  async track<T>(handler: () => Promise<T>): Promise<T> {
    const handling = { startedAt: performance.now() };
    this.#handling.add(handling);
    try {
      return await this.#scope.run(handling, handler);
    } finally {
      if (this.#handling.delete(handling)) this.#settle();
    }
  }

  /** Called by the tracked handler whose request a scheduler now knows of: it is no longer counted. */
  handOver(): void {
    const handling = this.#scope.getStore();
    if (handling) this.#handling.delete(handling);
  }

  /**
   * Counts the requests on their way that started arriving within the last `withinMs`: older
   * ones are slow (a trickling upload, a model loading), and nobody should wait for them.
   *
   * @param withinMs How recent.
   * @returns Requests being read by a listener or prepared by a handler.
   */
  count(withinMs: number): number {
    const since = performance.now() - withinMs;
    let count = 0;
    for (const handling of this.#handling) if (handling.startedAt > since) count++;
    for (const requestsArriving of this.#readers) count += requestsArriving(withinMs);
    return count;
  }

  /**
   * Calls `listener` once, when a tracked handler ends without handing its request over.
   *
   * @param listener Called then.
   * @returns Cancels the call.
   */
  onceSettled(listener: () => void): () => void {
    this.#settledListeners.add(listener);
    return () => this.#settledListeners.delete(listener);
  }

  #settle(): void {
    const listeners = [...this.#settledListeners];
    this.#settledListeners.clear();
    for (const listener of listeners) listener();
  }
}
