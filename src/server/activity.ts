/**
 * Counts the work in flight (HTTP exchanges until their response is delivered, WebSocket
 * sessions until they close), so a graceful shutdown knows when everything has finished.
 *
 * @module
 */

/** In-flight work counter. */
export class Activity {
  #count = 0;
  readonly #waiters = new Set<() => void>();

  /** Work in flight now. */
  get count(): number {
    return this.#count;
  }

  /**
   * Records the start of a piece of work.
   *
   * @returns Ends it; calling it twice is harmless.
   * @example
   * ```ts
   * const end = activity.begin();
   * try { await work(); } finally { end(); }
   * ```
   */
  begin(): () => void {
    this.#count++;
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      this.#count--;
      if (this.#count === 0) { for (const wake of [...this.#waiters]) wake(); }
    };
  }

  /**
   * Waits until no work is in flight, or the time is up.
   *
   * @param timeoutMs Most milliseconds to wait.
   * @returns Whether everything finished in time.
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.#count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (finished: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(finished);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#waiters.add(wake);
    });
  }
}
