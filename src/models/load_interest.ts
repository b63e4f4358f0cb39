/**
 * Who still wants a model that is being loaded. Requests for one model share its load; a load
 * that has to wait for room (every loaded model busy) gives up once every request that wanted it
 * has gone, instead of unloading another model later for nobody.
 *
 * @module
 */

/** The callers that wait for one load; its signal aborts when the last of them has gone. */
export class LoadInterest {
  readonly #gone = new AbortController();
  #callers = 0;
  /** Whether a caller without a signal (a preload, an explicit load) wants it: it never goes. */
  #lasting = false;

  /** Aborted once every caller that joined has gone. */
  get signal(): AbortSignal {
    return this.#gone.signal;
  }

  /**
   * Counts a caller in.
   *
   * @param signal Aborts when the caller goes (its client hung up); none means it stays.
   */
  join(signal?: AbortSignal): void {
    if (signal === undefined) {
      this.#lasting = true;
      return;
    }
    if (signal.aborted) return; // Gone already: it wants nothing.
    this.#callers++;
    signal.addEventListener("abort", () => this.#leave(), { once: true });
  }

  #leave(): void {
    if (this.#callers > 0) this.#callers--;
    if (this.#callers === 0 && !this.#lasting) this.#gone.abort();
  }
}
